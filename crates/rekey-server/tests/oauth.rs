//! OAuth connections end to end against a real (loopback) OAuth 2.0 server
//! that enforces PKCE, single-use codes, exact redirect URIs and refresh
//! token rotation. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::browser::get_text;
use rekey_testkit::oauth2_fixture::OAuth2Fixture;
use rekey_testkit::{assert_checked, assert_error_mentions, both_backends, items, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

struct Env {
    s: TestServer,
    fx: OAuth2Fixture,
    integration: String,
    browser: reqwest::Client,
}

async fn setup(db: Db) -> Env {
    let s = TestServer::start(db).await;
    let fx = OAuth2Fixture::start(
        "client-1",
        "secret-1",
        &format!("{}/oauth/callback", s.base),
    )
    .await;
    let r = s
        .post_admin("/api/v1/integrations", json!({
            "provider": "custom-oauth2", "display_name": "Acme CRM", "client_id": "client-1", "client_secret": "secret-1",
            "scopes": ["read", "write"],
            "endpoints": fx.endpoints(),
        }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(
        !r.text.contains("secret-1"),
        "integration view leaks the client secret"
    );
    let integration = r.json()["id"].as_str().unwrap().to_string();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Env {
        s,
        fx,
        integration,
        browser,
    }
}

impl Env {
    async fn session(&self, extra: Value) -> Value {
        let mut body =
            json!({"integration": self.integration, "tags": ["crm"], "custody": ["salesforce"]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = self
            .s
            .post("/api/v1/connect-sessions", &self.s.admin_key, body)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()
    }

    /// Walk the browser part: Connect page → start → provider → callback URL.
    async fn authorize(&self, url: &str) -> String {
        let page = self.browser.get(url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        assert!(page.text().await.unwrap().contains("Acme CRM"));
        let start = self
            .browser
            .post(format!("{url}/start"))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), 303);
        let to_provider = start.headers()["location"].to_str().unwrap().to_string();
        assert!(to_provider.starts_with(&self.fx.base), "{to_provider}");
        assert!(
            to_provider.contains("code_challenge_method=S256")
                && to_provider.contains("code_challenge="),
            "{to_provider}"
        );
        let back = self.browser.get(&to_provider).send().await.unwrap();
        assert_eq!(back.status(), 303, "{}", back.text().await.unwrap());
        back.headers()["location"].to_str().unwrap().to_string()
    }

    async fn callback(&self, url: &str) -> (u16, String) {
        let r = self.browser.get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn connect(&self, extra: Value) -> (u16, String) {
        let sess = self.session(extra).await;
        let cb = self.authorize(sess["url"].as_str().unwrap()).await;
        self.callback(&cb).await
    }

    async fn only_connection(&self) -> Value {
        let list = self
            .s
            .get(
                "/api/v1/connections?kind=oauth2_authorization_code",
                &self.s.admin_key,
            )
            .await
            .json();
        let items = items(&list);
        assert_eq!(items.len(), 1, "{list}");
        items[0].clone()
    }

    /// A forced refresh of `id` against a provider that takes 1.5 s to
    /// answer, started in a task and returned once the provider has the
    /// request: its status and body when awaited.
    async fn refresh_under_way(&self, id: &str) -> tokio::task::JoinHandle<(StatusCode, String)> {
        self.fx.with(|s| s.token_delay_ms = 1500);
        let before = self.fx.token_requests();
        let url = format!("{}/api/v1/connections/{id}/refresh", self.s.base);
        let (http, key) = (self.s.http.clone(), self.s.admin_key.clone());
        let refresh = tokio::spawn(async move {
            let r = http.post(url).bearer_auth(key).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        });
        while self.fx.token_requests() == before {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        refresh
    }

    /// Connect through the browser flow with the defaults: the one
    /// connection's id.
    async fn connected(&self) -> String {
        let (status, page) = self.connect(json!({})).await;
        assert_eq!(status, 200, "{page}");
        self.only_connection().await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn creds(&self, id: &str) -> (StatusCode, Value) {
        let r = self
            .s
            .get(
                &format!("/api/v1/connections/{id}/credentials"),
                &self.s.admin_key,
            )
            .await;
        (r.status, r.json())
    }
}

both_backends!(
    refresh_and_reauthorization_events,
    oauth_probe_refreshes_first,
    connect_read_refresh_revoke,
    concurrent_fetches_make_one_refresh,
    refresh_failures_are_classified,
    reauthorization_checks_identity_and_scopes,
    callback_attacks_fail_cleanly,
    client_credentials_connections,
    delete_revokes_first,
    scheduler_refreshes_expiring_tokens,
    custom_oauth2_is_checked_at_identity_url,
    connections_filtered_by_integration,
    a_live_grant_stays_an_alarm,
    an_edit_during_a_refresh_keeps_the_rotated_token,
    a_disable_during_a_refresh_is_not_undone,
    a_grant_switched_away_from_is_tracked_until_proven_dead,
);

/// The revocation records of connection `id`, newest first.
async fn revocations(e: &Env, id: &str) -> Vec<Value> {
    let r =
        e.s.get_admin(&format!("/api/v1/connections/{id}/revocations"))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    items(&r.json()).to_vec()
}

/// A reauthorization switches to the new grant and then revokes the old
/// one at the provider. When that call fails (here the provider's
/// revocation endpoint is down; a crash between the switch and the call
/// leaves the same state), the old grant is not forgotten: its revocation
/// was recorded with the switch, and verification finds it still accepted.
async fn a_grant_switched_away_from_is_tracked_until_proven_dead(db: Db) {
    let e = setup(db).await;
    let id = e.connected().await;
    let current = || async {
        let v =
            e.s.get_admin(&format!("/api/v1/connections/{id}/versions"))
                .await
                .json();
        items(&v)
            .iter()
            .find(|v| v["label"] == "current")
            .cloned()
            .unwrap()
    };
    let first = current().await;
    let (_, cr) = e.creds(&id).await;
    let old_at = cr["credentials"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let old_refresh = e.fx.refresh_tokens();
    assert_eq!(old_refresh.len(), 1);
    e.fx.with(|s| s.revoke_status = Some(503));
    let url = e.s.reauthorize_link(&id).await;
    let cb = e.authorize(&url).await;
    let (st, page) = e.callback(&cb).await;
    assert_eq!(st, 200);
    assert!(page.contains("Reconnected"), "{page}");
    assert!(e.fx.access_valid(&old_at), "the provider revoked nothing");
    let revs = revocations(&e, &id).await;
    assert_eq!(revs.len(), 1, "{revs:?}");
    assert_eq!(revs[0]["method"], "provider");
    assert_eq!(
        revs[0]["credential_version"], first["seq"],
        "the old grant's version"
    );
    assert_eq!(revs[0]["fingerprint"], first["fingerprint"]);
    assert!(
        !revs[0].to_string().contains(&old_at),
        "the record shows no token: {}",
        revs[0]
    );
    let r =
        e.s.act(&format!("/api/v1/connections/{id}/revoke/verify"))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["verdict"], "still_accepted", "{}", r.text);
    // The connection itself runs on the new grant, untouched by the alarm.
    let conn = || async {
        e.s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .json()
    };
    assert_eq!(conn().await["status"], "active");
    assert_ne!(current().await["fingerprint"], first["fingerprint"]);

    // Once the old grant is revoked at the provider (here by hand, exactly
    // its two tokens), verification proves it; the new grant lives on.
    e.fx.with(|s| s.revoke_status = None);
    let mut old = old_refresh;
    old.push(old_at);
    e.fx.revoke_tokens(&old);
    let r =
        e.s.act(&format!("/api/v1/connections/{id}/revoke/verify"))
            .await;
    assert_eq!(r.json()["verdict"], "verified_rejected", "{}", r.text);
    let (st, cr) = e.creds(&id).await;
    assert_eq!(st, StatusCode::OK);
    let new_at = cr["credentials"]["access_token"].as_str().unwrap();
    assert!(e.fx.access_valid(new_at), "the new grant was not touched");
    let c = conn().await;
    assert_eq!(c["status"], "active", "{c}");

    e.s.stop().await;
}

/// "Rotate the app's secret, then reauthorize every connection using it":
/// `?integration=` lists exactly the grants made through one OAuth app.
async fn connections_filtered_by_integration(db: Db) {
    let e = setup(db).await;
    let m2m = e
        .s
        .create_connection(json!({"provider": "custom-oauth2", "kind": "oauth2_client_credentials",
            "display_name": "M2M", "scopes": ["read"], "credentials": {"integration": e.integration}}))
        .await;
    e.s.create_api_key_conn(&e.s.admin_key, "sk-not-oauth", json!({}))
        .await;
    let l =
        e.s.get_admin(&format!(
            "/api/v1/connections?integration={}",
            e.integration
        ))
        .await
        .json();
    let got: Vec<&str> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [m2m.as_str()], "{l}");
    let none =
        e.s.get_admin("/api/v1/connections?integration=int_00000000000000000000000000000000")
            .await
            .json();
    assert_eq!(none["items"], json!([]));
    e.s.get_admin("/api/v1/connections?integration=salesforce")
        .await
        .assert_error(400, "invalid_id");
    e.s.stop().await;
}

/// `custom-oauth2` has no catalog probe: its grants are checked at the
/// integration's `identity_url` with the access token; a token the provider
/// no longer knows is an auth failure found by the check itself.
async fn custom_oauth2_is_checked_at_identity_url(db: Db) {
    let e = setup(db).await;
    e.fx.with(|s| s.access_ttl = 3600);
    e.connect(json!({})).await;
    let id = e.only_connection().await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let check = || async {
        e.s.act(&format!("/api/v1/connections/{id}/check"))
            .await
            .ok_json()
    };
    let r = check().await;
    assert_eq!(
        (r["outcome"].as_str(), r["http_status"].as_u64()),
        (Some("ok"), Some(200)),
        "{r}"
    );
    assert_eq!(r["status"], "active", "{r}");
    let before = e.fx.token_requests();
    e.fx.revoke_all_grants();
    let r = check().await;
    assert_checked(&r, "auth_failure", "needs_reauth");
    assert_eq!(r["http_status"], 401, "{r}");
    assert_eq!(r["last_error"]["source"], "check", "{r}");
    assert_eq!(
        e.fx.token_requests(),
        before,
        "a valid-looking token is not refreshed first"
    );
}

async fn scheduler_refreshes_expiring_tokens(db: Db) {
    let e = setup(db).await;
    e.fx.with(|s| s.access_ttl = 60); // inside the 15-minute window
    e.connect(json!({})).await;
    e.fx.with(|s| s.access_ttl = 3600);
    e.connect(json!({"display_name": "second"})).await; // far from expiry
    let before = e.fx.token_requests();
    let run = e.s.rekey.refresh_due(100).await.unwrap();
    assert_eq!(run.refreshed, 1, "{run:?}");
    assert_eq!(run.failed, 0);
    assert_eq!(e.fx.token_requests() - before, 1);
    // The refreshed token is now far from expiry: the next pass does nothing.
    let run = e.s.rekey.refresh_due(100).await.unwrap();
    assert_eq!(run.refreshed, 0, "{run:?}");
    assert_eq!(e.fx.token_requests() - before, 1);
    // A dead grant found by the scheduler lands in needs_reauth.
    e.fx.with(|s| s.access_ttl = 60);
    let list = e.s.get_admin("/api/v1/connections").await.json();
    let id = list["items"][1]["id"].as_str().unwrap().to_string();
    e.s.act(&format!("/api/v1/connections/{id}/refresh")).await;
    e.fx.revoke_all_grants();
    let run = e.s.rekey.refresh_due(100).await.unwrap();
    assert!(run.failed >= 1, "{run:?}");
    let statuses: Vec<String> = e.s.get_admin("/api/v1/connections").await.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_string())
        .collect();
    assert!(
        statuses.contains(&"needs_reauth".to_string()),
        "{statuses:?}"
    );
    let a =
        e.s.get_admin("/api/v1/audit?actor=system:refresh")
            .await
            .json();
    assert!(!items(&a).is_empty());
    e.s.stop().await;
}

async fn connect_read_refresh_revoke(db: Db) {
    let e = setup(db).await;
    let (status, page) = e.connect(json!({})).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Connected"), "{page}");
    let c = e.only_connection().await;
    assert_eq!(c["status"], "active");
    assert_eq!(c["provider"], "custom-oauth2");
    assert_eq!(c["owner"]["subject"], "uid-alice");
    assert_eq!(c["owner"]["email"], "alice@example.com");
    assert_eq!(c["scopes"], json!(["read", "write"]));
    assert_eq!(c["tags"], json!(["crm"]));
    let id = c["id"].as_str().unwrap().to_string();
    let listing = e.s.get_admin("/api/v1/connections").await.text;
    assert!(
        !listing.contains("at-alice") && !listing.contains("rt-alice"),
        "tokens in listing"
    );

    let (st, cr) = e.creds(&id).await;
    assert_eq!(st, 200, "{cr}");
    let at = cr["credentials"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(e.fx.access_valid(&at));
    assert_eq!(
        cr["credentials"]["apply"]["headers"]["Authorization"],
        format!("Bearer {at}")
    );
    let before = e.fx.token_requests();
    // Not near expiry: no refresh.
    e.creds(&id).await;
    assert_eq!(e.fx.token_requests(), before);

    // Forced refresh rotates the refresh token; the rotated one is kept and works.
    let r = e.s.act(&format!("/api/v1/connections/{id}/refresh")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (_, cr2) = e.creds(&id).await;
    let at2 = cr2["credentials"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(at, at2);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // The provider stops rotating: the response omits refresh_token and rekey keeps the stored one.
    e.fx.with(|s| s.rotate_refresh = false);
    assert_eq!(
        e.s.act(&format!("/api/v1/connections/{id}/refresh"))
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = e.s.act(&format!("/api/v1/connections/{id}/refresh")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "refresh token was wiped: {}",
        r.text
    );
    let audit =
        e.s.get_admin(&format!(
            "/api/v1/audit?target={id}&action=connection.refreshed"
        ))
        .await
        .json();
    assert_eq!(items(&audit).len(), 3);

    // Revocation at the provider (RFC 7009).
    let (_, cr3) = e.creds(&id).await;
    let at3 = cr3["credentials"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = e.s.act(&format!("/api/v1/connections/{id}/revoke")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rv = r.json();
    assert_eq!(rv["revoked_at_provider"], true);
    assert_eq!(rv["connection"]["status"], "revoked");
    assert!(
        !e.fx.access_valid(&at3),
        "access token still valid at the provider"
    );
    assert!(e.fx.with(|s| s.revocations) >= 1);
    e.s.get_admin(&format!("/api/v1/connections/{id}/credentials"))
        .await
        .assert_error(409, "connection_unusable");
    e.s.act(&format!("/api/v1/connections/{id}/revoke"))
        .await
        .assert_error(409, "already_revoked");
    // Reconnected by its owner: the new grant is in use, and the old one,
    // already revoked and held by its revocation record, is not sent to
    // the provider again.
    let sent = e.fx.with(|s| s.revocations);
    let r =
        e.s.act(&format!("/api/v1/connections/{id}/reauthorize"))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let url = r.json()["session"]["url"].as_str().unwrap().to_string();
    let cb = e.authorize(&url).await;
    let (st, page) = e.callback(&cb).await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(e.creds(&id).await.0, 200);
    assert_eq!(
        e.fx.with(|s| s.revocations),
        sent,
        "no second revocation of the old grant"
    );
    e.s.stop().await;
}

async fn concurrent_fetches_make_one_refresh(db: Db) {
    let e = setup(db).await;
    // Tokens that are already inside the refresh window, and a slow provider.
    e.fx.with(|s| s.access_ttl = 60);
    let id = e.connected().await;
    e.fx.with(|s| {
        s.token_delay_ms = 300;
        s.access_ttl = 3600;
    });
    let before = e.fx.token_requests();
    let mut tokens = concurrent_access_tokens(&e, &id, 25, |_| e.s.base.clone()).await;
    assert_eq!(
        e.fx.token_requests() - before,
        1,
        "single-flight: exactly one token request"
    );
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "everyone got the refreshed token");
    e.s.stop().await;
}

/// A provider that rotates refresh tokens has made the stored one dead by
/// the time it answers: the new one must be kept even when the connection
/// was edited while the provider was answering (on SQLite the refresh
/// holds no lock across the call, and the edit moves the row's version).
async fn an_edit_during_a_refresh_keeps_the_rotated_token(db: Db) {
    let e = setup(db).await;
    let id = e.connected().await;
    let path = format!("/api/v1/connections/{id}/refresh");
    let refresh = e.refresh_under_way(&id).await;
    // The edit lands while the provider is answering (on PostgreSQL it
    // waits for the refresh's row lock instead).
    let r =
        e.s.patch_admin(
            &format!("/api/v1/connections/{id}"),
            json!({"display_name": "renamed during refresh"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (st, text) = refresh.await.unwrap();
    assert_eq!(st, 200, "{text}");
    e.fx.with(|s| s.token_delay_ms = 0);
    let c =
        e.s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .ok_json();
    assert_eq!(c["display_name"], "renamed during refresh", "{c}");
    assert_eq!(c["status"], "active", "{c}");
    // The refresh token the provider rotated to is the one stored: the
    // next refresh works (the one before it is dead at the provider).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = e.s.act(&path).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the rotated refresh token was lost: {}",
        r.text
    );
    let (st, cr) = e.creds(&id).await;
    assert_eq!(st, 200, "{cr}");
    assert!(e
        .fx
        .access_valid(cr["credentials"]["access_token"].as_str().unwrap()));
    e.s.stop().await;
}

/// A connection disabled while the provider answers a refresh stays
/// disabled: the refresh's tokens are not written onto it.
async fn a_disable_during_a_refresh_is_not_undone(db: Db) {
    let e = setup(db).await;
    let id = e.connected().await;
    let before_version =
        e.s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .ok_json()["credential_version"]
            .clone();
    let refresh = e.refresh_under_way(&id).await;
    let r = e.s.act(&format!("/api/v1/connections/{id}/disable")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (st, _) = refresh.await.unwrap();
    let c =
        e.s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .ok_json();
    assert_eq!(c["status"], "disabled", "{c}");
    // On PostgreSQL the disable waited for the refresh's row lock, so the
    // refresh came first; on SQLite the disable landed during the call.
    if db == Db::Sqlite {
        assert_ne!(st, 200, "the refresh must not succeed over the disable");
        assert_eq!(c["credential_version"], before_version, "{c}");
    }
    e.s.stop().await;
}

/// `n` concurrent credential reads of `id`, the i-th from the server at
/// `base(i)`; each must succeed. The access tokens they got, in task order.
async fn concurrent_access_tokens(
    e: &Env,
    id: &str,
    n: usize,
    base: impl Fn(usize) -> String,
) -> Vec<String> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let url = format!("{}/api/v1/connections/{id}/credentials", base(i));
        let (http, key) = (e.s.http.clone(), e.s.admin_key.clone());
        tasks.push(tokio::spawn(async move {
            let r = http.get(url).bearer_auth(key).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["credentials"]["access_token"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    tokens
}

async fn refresh_failures_are_classified(db: Db) {
    let e = setup(db).await;
    e.fx.with(|s| s.access_ttl = 1);
    e.connect(json!({})).await;
    let id = e.only_connection().await["id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    async fn show_conn(e: &Env, id: &str) -> Value {
        e.s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .json()
    }
    // 5xx: degraded, not needs_reauth; the token is not handed out expired.
    e.fx.with(|s| s.override_token = Some((503, "{}".into(), None)));
    let (st, body) = e.creds(&id).await;
    assert_eq!(st, 503, "{body}");
    let c = show_conn(&e, &id).await;
    assert_eq!(c["status"], "degraded");
    assert_eq!(c["last_error"]["code"], "http_503");
    assert_eq!(c["health"]["consecutive_failures"], 1);
    // Backoff: while it runs, reads do not call the provider again.
    let n = e.fx.token_requests();
    let (st, body) = e.creds(&id).await;
    assert_eq!(st, 503);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("next attempt"),
        "{body}"
    );
    assert_eq!(e.fx.token_requests(), n, "backoff ignored");
    // A forced refresh (operator) bypasses the backoff: 429 with Retry-After.
    e.fx.with(|s| s.override_token = Some((429, "{}".into(), Some(7))));
    e.s.act(&format!("/api/v1/connections/{id}/refresh")).await;
    let c = show_conn(&e, &id).await;
    assert_eq!(c["status"], "degraded");
    assert_eq!(c["last_error"]["retry_after_secs"], 7);
    assert_eq!(c["health"]["consecutive_failures"], 2);
    // Malformed success: nothing stored changes.
    e.fx.with(|s| s.override_token = Some((200, r#"{"token_type":"Bearer"}"#.into(), None)));
    e.s.act(&format!("/api/v1/connections/{id}/refresh")).await;
    assert_eq!(
        show_conn(&e, &id).await["last_error"]["code"],
        "malformed_response"
    );
    // Recovery clears the error.
    e.fx.with(|s| s.override_token = None);
    let r = e.s.act(&format!("/api/v1/connections/{id}/refresh")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (st, _) = e.creds(&id).await;
    assert_eq!(st, 200);
    let c = show_conn(&e, &id).await;
    assert_eq!(c["status"], "active");
    assert!(c["last_error"].is_null());
    // The user revoked the app at the provider: invalid_grant → needs_reauth with context.
    e.fx.revoke_all_grants();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r =
        e.s.get_admin(&format!("/api/v1/connections/{id}/credentials"))
            .await;
    r.assert_error(409, "needs_reauth");
    let c = show_conn(&e, &id).await;
    assert_eq!(c["status"], "needs_reauth");
    assert_eq!(c["last_error"]["code"], "invalid_grant");
    assert_error_mentions(&c, "revoked");
    let listed =
        e.s.get_admin("/api/v1/connections?status=needs_reauth")
            .await
            .json();
    assert_eq!(items(&listed).len(), 1);
    e.s.stop().await;
}

async fn reauthorization_checks_identity_and_scopes(db: Db) {
    let e = setup(db).await;
    e.connect(json!({})).await;
    let c = e.only_connection().await;
    let id = c["id"].as_str().unwrap().to_string();
    let (_, cr) = e.creds(&id).await;
    let old_at = cr["credentials"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // Same person, same scopes: switches to the new grant and revokes the old one.
    let r =
        e.s.act(&format!("/api/v1/connections/{id}/reauthorize"))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rr = r.json();
    let url = rr["session"]["url"].as_str().unwrap().to_string();
    let page = get_text(&e.browser, &url).await;
    assert!(
        page.contains("Connect new account") && page.contains("alice@example.com"),
        "{page}"
    );
    let cb = e.authorize(&url).await;
    let (st, page) = e.callback(&cb).await;
    assert_eq!(st, 200);
    assert!(page.contains("Reconnected"), "{page}");
    let (_, cr) = e.creds(&id).await;
    let new_at = cr["credentials"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_at, old_at, "a new grant, never the old one");
    assert!(
        !e.fx.access_valid(&old_at),
        "old grant revoked at the provider"
    );
    let revs = revocations(&e, &id).await;
    assert_eq!(
        revs.len(),
        1,
        "the old grant's revocation is recorded: {revs:?}"
    );
    assert_eq!(revs[0]["method"], "provider");
    assert_eq!(
        e.only_connection().await["id"],
        json!(id),
        "no second connection"
    );

    // Another person: the grant is parked, the connection keeps working on the old one.
    e.fx.with(|s| s.user = "mallory".into());
    let url = e.s.reauthorize_link(&id).await;
    let cb = e.authorize(&url).await;
    let (_, page) = e.callback(&cb).await;
    assert!(
        page.contains("Not switched over") && page.contains("identity_mismatch"),
        "{page}"
    );
    let c =
        e.s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .json();
    assert_eq!(c["owner"]["subject"], "uid-alice");
    assert_eq!(c["last_error"]["code"], "identity_mismatch");
    assert!(c["last_error"]["got_identity"]
        .as_str()
        .unwrap()
        .contains("mallory"));
    assert!(c["last_error"]["expected_identity"]
        .as_str()
        .unwrap()
        .contains("alice"));
    assert!(
        !c.to_string().contains("at-mallory"),
        "parked tokens leak into the view"
    );
    let (_, cr) = e.creds(&id).await;
    assert_eq!(cr["credentials"]["access_token"], json!(new_at));

    // Fewer scopes, same person: parked as a downgrade.
    e.fx.with(|s| {
        s.user = "alice".into();
        s.grant_scopes = Some(vec!["read".into()]);
    });
    let url = e.s.reauthorize_link(&id).await;
    let cb = e.authorize(&url).await;
    let (_, page) = e.callback(&cb).await;
    assert!(page.contains("scope_downgrade"), "{page}");
    let c =
        e.s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .json();
    assert_eq!(c["last_error"]["code"], "scope_downgrade");
    assert_eq!(c["last_error"]["missing_scopes"], json!(["write"]));

    // An operator accepts the parked grant explicitly; it is audited.
    let r =
        e.s.act(&format!(
            "/api/v1/connections/{id}/reauthorize?accept_mismatch=true"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rr = r.json();
    assert_eq!(rr["accepted_pending_grant"], true);
    assert_eq!(rr["connection"]["scopes"], json!(["read"]));
    assert!(rr["connection"]["last_error"].is_null());
    e.s.act(&format!(
        "/api/v1/connections/{id}/reauthorize?accept_mismatch=true"
    ))
    .await
    .assert_error(409, "no_pending_grant");
    let a =
        e.s.get_admin(&format!(
            "/api/v1/audit?target={id}&action=connection.reauthorize_accepted"
        ))
        .await
        .json();
    assert_eq!(items(&a).len(), 1);
    assert!(!e.fx.access_valid(&new_at), "the replaced grant is revoked");
    // Accepting recorded the replaced grant's revocation too.
    let revs = revocations(&e, &id).await;
    assert_eq!(revs.len(), 2, "{revs:?}");
    assert!(revs.iter().all(|r| r["method"] == "provider"), "{revs:?}");
    assert_ne!(revs[0]["credential_version"], revs[1]["credential_version"]);
    e.s.stop().await;
}

async fn callback_attacks_fail_cleanly(db: Db) {
    let e = setup(db).await;
    let cb_base = format!("{}/oauth/callback", e.s.base);
    let (st, page) = e.callback(&format!("{cb_base}?code=x")).await;
    assert_eq!(st, 400);
    assert!(page.contains("invalid_state"), "{page}");
    let (st, page) = e
        .callback(&format!("{cb_base}?code=x&state=forged-state"))
        .await;
    assert_eq!(st, 400);
    assert!(page.contains("invalid_state"));

    // A good flow, then replaying the same callback (code replay) fails and changes nothing.
    let sess = e.session(json!({})).await;
    let cb = e.authorize(sess["url"].as_str().unwrap()).await;
    let (st, _) = e.callback(&cb).await;
    assert_eq!(st, 200);
    let c = e.only_connection().await;
    let (st, page) = e.callback(&cb).await;
    assert_eq!(st, 400, "{page}");
    assert!(page.contains("connect_session_used"), "{page}");
    assert_eq!(e.only_connection().await["version"], c["version"]);
    // The connect link itself is single use.
    let page = e
        .browser
        .get(sess["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    assert!(page.text().await.unwrap().contains("already been used"));

    // The user says no at the provider: a clear page, nothing stored.
    let sess = e.session(json!({})).await;
    let url = sess["url"].as_str().unwrap();
    let start = e.browser.post(format!("{url}/start")).send().await.unwrap();
    let loc = start.headers()["location"].to_str().unwrap().to_string();
    let state = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let (st, page) = e
        .callback(&format!(
            "{cb_base}?error=access_denied&error_description=The+user+said+no&state={state}"
        ))
        .await;
    assert_eq!(st, 422);
    assert!(
        page.contains("Authorization was not granted") && page.contains("access_denied"),
        "{page}"
    );

    // Expired session.
    let sess = e.session(json!({})).await;
    let url = sess["url"].as_str().unwrap().to_string();
    let start = e.browser.post(format!("{url}/start")).send().await.unwrap();
    let to_provider = start.headers()["location"].to_str().unwrap().to_string();
    let back = e.browser.get(&to_provider).send().await.unwrap();
    let cb = back.headers()["location"].to_str().unwrap().to_string();
    e.s.sql(&[&format!(
        "UPDATE connect_sessions SET expires_at = 0 WHERE id = '{}'",
        sess["id"].as_str().unwrap()
    )])
    .await;
    let (st, page) = e.callback(&cb).await;
    assert_eq!(st, 400);
    assert!(page.contains("connect_session_expired"), "{page}");

    // Token endpoint misbehaving: missing access_token, huge body, HTML.
    for body in [
        r#"{"token_type":"Bearer"}"#.to_string(),
        format!(
            r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
            "x".repeat(200_000)
        ),
        "<html>oops</html>".into(),
    ] {
        e.fx.with(|s| s.override_token = Some((200, body.clone(), None)));
        let sess = e.session(json!({})).await;
        let cb = e.authorize(sess["url"].as_str().unwrap()).await;
        let (st, page) = e.callback(&cb).await;
        assert_eq!(st, 422, "{page}");
        assert!(page.contains("token_exchange_failed"), "{page}");
    }
    e.fx.with(|s| s.override_token = None);
    assert_eq!(
        e.s.get_admin("/api/v1/connections").await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no connection from failed flows"
    );
    // Unknown tokens on the Connect page.
    let r = e
        .browser
        .get(format!("{}/connect/not-a-token", e.s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Off-site redirect URIs are refused at registration.
    let r = e.s.post("/api/v1/integrations", &e.s.admin_key, json!({"provider": "custom-oauth2", "display_name": "x", "client_id": "c", "client_secret": "s",
        "redirect_uri": "http://evil.example/cb", "endpoints": {"authorize_url": format!("{}/authorize", e.fx.base), "token_url": format!("{}/token", e.fx.base),
        "revocation_url": format!("{}/revoke", e.fx.base), "identity_url": format!("{}/me", e.fx.base)}})).await;
    r.assert_error(400, "invalid_integration");
    let r = e.s.post("/api/v1/integrations", &e.s.admin_key, json!({"provider": "custom-oauth2", "display_name": "x", "client_id": "c", "client_secret": "s"})).await;
    r.assert_error(400, "invalid_integration");
    e.s.stop().await;
}

async fn client_credentials_connections(db: Db) {
    let e = setup(db).await;
    let r =
        e.s.post(
            "/api/v1/connections",
            &e.s.admin_key,
            json!({"provider": "custom-oauth2", "kind": "oauth2_client_credentials",
        "display_name": "M2M", "scopes": ["read"], "credentials": {"integration": e.integration}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let c = r.json();
    assert_eq!(c["status"], "active");
    let id = c["id"].as_str().unwrap().to_string();
    let (st, cr) = e.creds(&id).await;
    assert_eq!(st, 200);
    assert!(cr["credentials"]["access_token"]
        .as_str()
        .unwrap()
        .starts_with("at-client:client-1"));
    // Near expiry: re-requested once for many concurrent readers.
    e.fx.with(|s| {
        s.access_ttl = 3600;
        s.token_delay_ms = 200;
    });
    e.s.act(&format!("/api/v1/connections/{id}/refresh")).await;
    let before = e.fx.token_requests();
    e.s.sql(&[&format!("UPDATE connections SET credential_meta = REPLACE(credential_meta, '\"access_expires_at\":', '\"access_expires_at\":1,\"x\":') WHERE id = '{id}'")]).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let http = e.s.http.clone();
        let url = format!("{}/api/v1/connections/{id}/credentials", e.s.base);
        let key = e.s.admin_key.clone();
        tasks.push(tokio::spawn(async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(e.fx.token_requests() - before, 1);
    // Wrong client secret: a clear error at creation.
    e.s.patch(
        &format!("/api/v1/integrations/{}", e.integration),
        &e.s.admin_key,
        json!({"client_secret": "wrong"}),
    )
    .await;
    let r =
        e.s.post(
            "/api/v1/connections",
            &e.s.admin_key,
            json!({"provider": "custom-oauth2", "kind": "oauth2_client_credentials",
        "display_name": "M2M 2", "credentials": {"integration": e.integration}}),
        )
        .await;
    r.assert_error(422, "token_request_failed");
    assert!(!r.text.contains("wrong"));
    e.s.stop().await;
}

async fn delete_revokes_first(db: Db) {
    let e = setup(db).await;
    e.connect(json!({})).await;
    let id = e.only_connection().await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, cr) = e.creds(&id).await;
    let at = cr["credentials"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r =
        e.s.delete(&format!("/api/v1/connections/{id}"), &e.s.admin_key)
            .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(!e.fx.access_valid(&at), "deleted without revoking");
    // With ?revoke=false nothing is sent to the provider.
    e.connect(json!({})).await;
    let id = e.only_connection().await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let n = e.fx.with(|s| s.revocations);
    let r =
        e.s.delete(
            &format!("/api/v1/connections/{id}?revoke=false"),
            &e.s.admin_key,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(e.fx.with(|s| s.revocations), n);
    // The integration can go once nothing uses it.
    let r =
        e.s.delete(
            &format!("/api/v1/integrations/{}", e.integration),
            &e.s.admin_key,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    e.s.stop().await;
}

mod key_forms {
    use super::*;
    use rekey_testkit::browser::submit;

    async fn connect_form_for_key_kinds(db: Db) {
        let s = TestServer::start(db).await;
        let b = rekey_testkit::oauth2_fixture::browser();
        let r = s.post_admin("/api/v1/connect-sessions", json!({"provider": "sixsense", "kind": "api_key", "owner_hint": "ops@example.com", "tags": ["crm"]})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let url = r.json()["url"].as_str().unwrap().to_string();
        let page = get_text(&b, &url).await;
        assert!(
            page.contains(r#"name="key""#)
                && page.contains(r#"type="password""#)
                && page.contains("API token"),
            "{page}"
        );
        assert!(!page.contains("/start"), "a key form, not an OAuth button");
        // Invalid input: the form again, with the reason and without the value.
        let (st, page) = submit(&b, &url, &[("key", "tooshort-secret-zz")]).await;
        assert_eq!(st, 400, "{page}");
        assert!(
            page.contains("at least 40") && !page.contains("tooshort-secret-zz"),
            "{page}"
        );
        let key = "k".repeat(40);
        let (st, page) = submit(&b, &url, &[("key", key.as_str())]).await;
        assert_eq!(st, 200, "{page}");
        assert!(page.contains("Connected"), "{page}");
        let (st, page) = submit(&b, &url, &[("key", key.as_str())]).await;
        assert_eq!(st, 400);
        assert!(page.contains("already been used"), "{page}");
        let list = s
            .get_admin("/api/v1/connections?provider=sixsense")
            .await
            .json();
        let c = &list["items"][0];
        assert_eq!(c["owner"]["email"], "ops@example.com");
        assert_eq!(c["tags"], json!(["crm"]));
        let id = c["id"].as_str().unwrap().to_string();
        let cr = s
            .get_admin(&format!("/api/v1/connections/{id}/credentials"))
            .await
            .json();
        assert_eq!(
            cr["credentials"]["apply"]["headers"]["Authorization"],
            format!("Token {key}"),
            "catalog placement applied"
        );
        // Reauthorize a key-based connection: a new form link; the new key replaces the old.
        let url2 = s.reauthorize_link(&id).await;
        let key2 = "n".repeat(40);
        let (st, page) = submit(&b, &url2, &[("key", key2.as_str())]).await;
        assert_eq!(st, 200, "{page}");
        assert!(page.contains("Reconnected"), "{page}");
        let cr = s
            .get_admin(&format!("/api/v1/connections/{id}/credentials"))
            .await
            .json();
        assert_eq!(cr["credentials"]["key"], json!(key2));
        // Kinds without a form, and OAuth kinds without an integration, are refused.
        s.post_admin(
            "/api/v1/connect-sessions",
            json!({"provider": "slack", "kind": "oauth2_authorization_code"}),
        )
        .await
        .assert_error(422, "kind_not_supported");
        s.post_admin("/api/v1/connect-sessions", json!({}))
            .await
            .assert_error(400, "invalid_field");
        s.stop().await;
    }

    both_backends!(connect_form_for_key_kinds);
}

/// Two replicas (separate processes' worth of state: own pools, own
/// in-process locks) on one PostgreSQL: concurrent fetches through both make
/// exactly one token request, thanks to the row lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_refresh_once_on_postgres() {
    let e = setup(Db::Postgres).await;
    e.fx.with(|s| s.access_ttl = 60);
    e.connect(json!({})).await;
    let id = e.only_connection().await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Replica 2: same data dir (keyring) and database, its own Rekey and port.
    let opened = rekey_service::OpenOptions {
        data_dir: e.s.dir.path().join("data"),
        database_url: Some(e.s.database_url().into()),
        ..Default::default()
    }
    .open(rekey_service::LockMode::Shared)
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base2 = format!("http://{}", listener.local_addr().unwrap());
    let r2 = opened.rekey.clone();
    tokio::spawn(async move { rekey_server::serve(listener, r2, std::future::pending()).await });
    e.fx.with(|s| {
        s.token_delay_ms = 400;
        s.access_ttl = 3600;
    });
    let before = e.fx.token_requests();
    let replica = |i: usize| {
        if i.is_multiple_of(2) {
            e.s.base.clone()
        } else {
            base2.clone()
        }
    };
    let mut tokens = concurrent_access_tokens(&e, &id, 20, replica).await;
    assert_eq!(
        e.fx.token_requests() - before,
        1,
        "one refresh across both replicas"
    );
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 1);
    e.s.stop().await;
}

/// The OAuth life of a connection as a webhook receiver sees it:
/// created, refresh_failed (+ status_changed), refreshed after failures,
/// a dead grant, reauthorized, revoked — each signed, none with a token.
async fn refresh_and_reauthorization_events(db: Db) {
    use rekey_testkit::webhook_receiver::{verify_signature, WebhookReceiver};
    let e = setup(db).await;
    let rx = WebhookReceiver::start(0).await;
    let r =
        e.s.post(
            "/api/v1/webhooks",
            &e.s.admin_key,
            json!({"url": rx.url(), "events": ["connection.*"]}),
        )
        .await;
    let secret = r.json()["secret"].as_str().unwrap().to_string();
    e.connect(json!({})).await;
    let id = e.only_connection().await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refresh = || async { e.s.act(&format!("/api/v1/connections/{id}/refresh")).await };
    e.fx.with(|s| {
        s.override_token = Some((503, r#"{"error":"temporarily_unavailable"}"#.into(), None))
    });
    // The provider is down; the current token still works, so it is handed out.
    assert_eq!(refresh().await.status, StatusCode::OK);
    let c =
        e.s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .json();
    assert_eq!(c["status"], "degraded");
    e.fx.with(|s| s.override_token = None);
    assert_eq!(refresh().await.status, StatusCode::OK);
    // A routine refresh is no news (no event). Forced refreshes within 2 s
    // of another count as the same one, so wait between them.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(refresh().await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    e.fx.revoke_all_grants();
    assert_eq!(refresh().await.status, StatusCode::CONFLICT);
    let c =
        e.s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .json();
    assert_eq!(c["status"], "needs_reauth");
    assert_eq!(c["health"]["consecutive_failures"], 1);
    // Reauthorize ("Connect new account").
    let url = e.s.reauthorize_link(&id).await;
    let cb = e.authorize(&url).await;
    assert_eq!(e.callback(&cb).await.0, 200);
    let c =
        e.s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .json();
    assert_eq!(c["status"], "active");
    assert_eq!(c["health"]["consecutive_failures"], 0);
    assert!(c["last_error"].is_null());
    let r = e.s.act(&format!("/api/v1/connections/{id}/revoke")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let mut got = Vec::new();
    for _ in 0..200 {
        e.s.rekey.deliver_due("w", 100).await.unwrap();
        got = rx.delivered();
        if got.len() >= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Deliveries may arrive out of order; event ids sort by creation.
    got.sort_by(|a, b| a.id.cmp(&b.id));
    let events: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let seq: Vec<String> = events
        .iter()
        .map(|b| {
            let t = b["type"].as_str().unwrap();
            match t {
                "connection.status_changed" => format!(
                    "{t}:{}->{}",
                    b["data"]["from"].as_str().unwrap(),
                    b["data"]["to"].as_str().unwrap()
                ),
                _ => t.to_string(),
            }
        })
        .collect();
    assert_eq!(
        seq,
        [
            "connection.created",
            "connection.status_changed:active->degraded",
            "connection.refresh_failed",
            "connection.status_changed:degraded->active",
            "connection.refreshed",
            "connection.status_changed:active->needs_reauth",
            "connection.refresh_failed",
            "connection.status_changed:needs_reauth->active",
            "connection.reauthorized",
            "connection.status_changed:active->revoked",
            "connection.revoked",
            // rekey then tried the old grant: the provider refused it.
            "connection.revocation_verified",
        ],
        "{events:#?}"
    );
    let failed = events
        .iter()
        .find(|b| b["type"] == "connection.refresh_failed")
        .unwrap();
    assert_eq!(failed["data"]["error"]["http_status"], 503);
    let recovered = events
        .iter()
        .find(|b| b["type"] == "connection.refreshed")
        .unwrap();
    assert_eq!(recovered["data"]["recovered_from"], "degraded");
    for r in &got {
        assert!(verify_signature(&secret, r));
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            !text.contains("access_token") && !text.contains("refresh_token"),
            "{text}"
        );
        assert!(!text.contains("secret-1"));
    }
    e.s.stop().await;
}

/// A probe of an OAuth connection whose token is about to expire refreshes
/// first and presents the new token; a 401 from the API is `needs_reauth`.
async fn oauth_probe_refreshes_first(db: Db) {
    use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
    let e = setup(db).await;
    e.fx.with(|s| s.access_ttl = 60); // inside the refresh window
    e.connect(json!({})).await;
    let id = e.only_connection().await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let api = ProviderFixture::start().await;
    let r =
        e.s.patch(
            &format!("/api/v1/connections/{id}"),
            &e.s.admin_key,
            json!({"probe_url": api.rest_url()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    e.fx.with(|s| s.access_ttl = 3600);
    let before = e.fx.token_requests();
    let r = e.s.act(&format!("/api/v1/connections/{id}/check")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["outcome"], "ok");
    assert_eq!(
        e.fx.token_requests() - before,
        1,
        "refreshed before probing"
    );
    let (_, cr) = e.creds(&id).await;
    let at = cr["credentials"]["access_token"].as_str().unwrap();
    assert_eq!(api.last_authorization().unwrap(), format!("Bearer {at}"));
    api.set_mode(Mode::Unauthorized);
    let r = e.s.act(&format!("/api/v1/connections/{id}/check")).await;
    let j = r.json();
    assert_eq!(j["status"], "needs_reauth", "{j}");
    assert_eq!(j["last_error"]["source"], "check");
    assert!(
        !r.text.contains(at),
        "the token never appears in a check result"
    );
    // A dead grant stays needs_reauth even while its last access token
    // still works at the API (no flapping back to active).
    api.set_mode(Mode::Ok);
    let check = || async {
        e.s.act(&format!("/api/v1/connections/{id}/check"))
            .await
            .json()
    };
    assert_eq!(check().await["status"], "active");
    e.fx.revoke_all_grants();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = e.s.act(&format!("/api/v1/connections/{id}/refresh")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let j = check().await;
    assert_eq!(j["status"], "needs_reauth", "{j}");
    assert_eq!(j["last_error"]["source"], "refresh");
    e.s.stop().await;
}

/// A grant the provider did not revoke stays `still_accepted`: breaking
/// the app's own login (a wrong client secret: `invalid_client`) proves
/// nothing about the token, and an app repointed since (no try made)
/// does not silence the alarm either.
async fn a_live_grant_stays_an_alarm(db: Db) {
    let e = setup(db).await;
    e.connect(json!({})).await;
    let id = e.only_connection().await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The provider refuses rekey's revocation call: the operator's runbook.
    e.fx.with(|s| s.client_secret = "rotated-elsewhere".into());
    let r = e.s.act(&format!("/api/v1/connections/{id}/revoke")).await;
    assert_eq!(r.json()["revoked_at_provider"], false, "{}", r.text);
    e.fx.with(|s| s.client_secret = "secret-1".into());
    // The operator says it is done; the grant still refreshes.
    let r =
        e.s.post(
            &format!("/api/v1/connections/{id}/revoke/confirm"),
            &e.s.admin_key,
            json!({}),
        )
        .await;
    assert_eq!(r.json()["status"], "revocation_failed", "{}", r.text);
    let verify = format!("/api/v1/connections/{id}/revoke/verify");
    let integ = format!("/api/v1/integrations/{}", e.integration);

    // A wrong client secret: invalid_client is no answer, not proof.
    let r =
        e.s.patch(&integ, &e.s.admin_key, json!({"client_secret": "WRONG"}))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = e.s.act(&verify).await.ok_json();
    assert_eq!(v["verdict"], "still_accepted", "{v}");
    let rt = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tried"] == "refresh_token")
        .unwrap()
        .clone();
    assert_eq!(rt["result"], "no_answer", "{v}");
    assert_eq!(rt["code"], "invalid_client", "{v}");

    // The app repointed: nothing is sent, the alarm stands and is retried.
    let mut endpoints = e.fx.endpoints();
    endpoints["token_url"] = json!("http://127.0.0.1:9/token");
    let r =
        e.s.patch(
            &integ,
            &e.s.admin_key,
            json!({"client_secret": "secret-1", "endpoints": endpoints}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = e.s.act(&verify).await.ok_json();
    assert_eq!(v["verdict"], "still_accepted", "{v}");
    assert_eq!(v["checks"][0]["result"], "not_tried", "{v}");
    assert!(v["next_verification_at"].is_string(), "{v}");
    let c =
        e.s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .ok_json();
    assert_eq!(c["status"], "revocation_failed", "{c}");
    e.s.stop().await;
}
