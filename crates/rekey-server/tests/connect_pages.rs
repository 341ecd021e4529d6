//! One set of catalog rules for every way a connection comes in (API,
//! credential replacement, Connect page), and Connect pages that speak to
//! the case at hand: key-based wording, the connection's name as title,
//! labels in errors, a readable expiry, and reauthorization keeping the
//! non-secret settings. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::browser::submit;
use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn message(r: &rekey_testkit::Resp) -> String {
    r.json()["error"]["message"].as_str().unwrap().to_string()
}

async fn create(s: &TestServer, body: Value) -> rekey_testkit::Resp {
    s.post_admin("/api/v1/connections", body).await
}

async fn creds(s: &TestServer, id: &str) -> Value {
    s.get_admin(&format!("/api/v1/connections/{id}/credentials"))
        .await
        .ok_json()
}

async fn api_creation_follows_catalog_rules(db: Db) {
    let s = TestServer::start(db).await;
    // A length rule, named by wire name and label, never echoing the value.
    let r = create(
        &s,
        json!({"provider": "sixsense", "kind": "api_key", "display_name": "6s",
        "credentials": {"key": "short-sekrit-value"}}),
    )
    .await;
    r.assert_error(400, "invalid_credentials");
    let m = message(&r);
    assert!(
        m.contains("`credentials.key` (API token)") && m.contains("at least 40"),
        "{m}"
    );
    assert!(!r.text.contains("short-sekrit-value"));
    // A prefix rule.
    let r = create(
        &s,
        json!({"provider": "slack", "kind": "api_key", "display_name": "bot",
        "credentials": {"key": "nope-123"}}),
    )
    .await;
    r.assert_error(400, "invalid_credentials");
    assert!(message(&r).contains("must start with xoxb-"), "{}", r.text);
    // A required parameter (the probe's `{api_host}`), with its allowed values.
    let intercom = json!({"provider": "intercom", "kind": "api_key", "display_name": "Support",
        "credentials": {"key": "tok-intercom-1"}});
    let r = create(&s, intercom.clone()).await;
    r.assert_error(400, "invalid_field");
    let m = message(&r);
    assert!(
        m.contains("`params.api_host` (Intercom region)") && m.contains("api.eu.intercom.io"),
        "{m}"
    );
    // With it: accepted, the form's header and prefix filled in as defaults.
    let mut ok = intercom.clone();
    ok["params"] = json!({"api_host": "api.eu.intercom.io"});
    let r = create(&s, ok).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let c = r.json();
    assert_eq!(c["credential"]["prefix"], "Bearer ", "{c}");
    assert_eq!(c["params"]["api_host"], "api.eu.intercom.io");
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(
        creds(&s, &id).await["credentials"]["apply"]["headers"]["Authorization"],
        "Bearer tok-intercom-1"
    );
    // Credential replacement goes through the same rules.
    let six = create(
        &s,
        json!({"provider": "sixsense", "kind": "api_key", "display_name": "6s",
        "credentials": {"key": "k".repeat(40)}}),
    )
    .await;
    let six_id = six.created_id();
    let r = s
        .put_admin(
            &format!("/api/v1/connections/{six_id}/credentials"),
            json!({"credentials": {"key": "too-short"}}),
        )
        .await;
    r.assert_error(400, "invalid_credentials");
    assert!(message(&r).contains("(API token)"), "{}", r.text);
    let r = s
        .put_admin(
            &format!("/api/v1/connections/{six_id}/credentials"),
            json!({"credentials": {"key": "z".repeat(40)}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["credential"]["prefix"], "Token ", "default kept");
    s.stop().await;
}

async fn session(s: &TestServer, body: Value) -> String {
    let r = s.post_admin("/api/v1/connect-sessions", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json()["url"].as_str().unwrap().to_string()
}

async fn page(b: &reqwest::Client, url: &str) -> String {
    let r = b.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

fn no_oauth_wording(page: &str) {
    for w in [
        "same account",
        "Sign in",
        "sign in",
        "authoriz",
        "on your behalf",
    ] {
        assert!(
            !page.contains(w),
            "OAuth wording `{w}` on a key page: {page}"
        );
    }
}

async fn key_pages_speak_to_the_case(db: Db) {
    let s = TestServer::start(db).await;
    let b = rekey_testkit::oauth2_fixture::browser();
    let url = session(
        &s,
        json!({"provider": "intercom", "kind": "api_key",
        "display_name": "Support inbox", "owner_hint": "ops@example.com"}),
    )
    .await;
    let p = page(&b, &url).await;
    assert!(
        p.contains("<title>Connect Support inbox · rekey</title>"),
        "{p}"
    );
    assert!(p.contains("<h1>Connect Support inbox</h1>"), "{p}");
    no_oauth_wording(&p);
    assert!(
        p.contains("<time datetime=\"") && p.contains(" UTC</time>"),
        "{p}"
    );
    // The region the probe needs is asked for, as a choice of its allowed values.
    assert!(
        p.contains(r#"name="params.api_host""#) && p.contains("Intercom region"),
        "{p}"
    );
    // Errors name the label, not the internal key.
    let (st, p) = submit(&b, &url, &[("key", "tok-1")]).await;
    assert_eq!(st, 400, "{p}");
    assert!(p.contains("Intercom region is required"), "{p}");
    assert!(
        !p.contains("params.api_host`") && !p.contains("tok-1"),
        "{p}"
    );
    // Nothing typed comes back, not even in a non-secret field (a secret
    // pasted into the wrong one).
    let (st, p) = submit(
        &b,
        &url,
        &[("key", "tok-1"), ("params.api_host", "pasted-sekrit-here")],
    )
    .await;
    assert_eq!(st, 400, "{p}");
    assert!(p.contains("Intercom region must be one of"), "{p}");
    assert!(!p.contains("pasted-sekrit-here"), "{p}");
    let six = session(&s, json!({"provider": "sixsense", "kind": "api_key"})).await;
    let (st, p) = submit(&b, &six, &[("key", "short-sekrit")]).await;
    assert_eq!(st, 400, "{p}");
    assert!(
        p.contains("API token must be at least 40 characters"),
        "{p}"
    );
    assert!(!p.contains("`key`") && !p.contains("credentials.key") && !p.contains("short-sekrit"));
    // A first connection: connected, no "data will flow again".
    let (st, p) = submit(
        &b,
        &url,
        &[("key", "tok-1"), ("params.api_host", "api.au.intercom.io")],
    )
    .await;
    assert_eq!(st, 200, "{p}");
    assert!(p.contains("Support inbox is connected"), "{p}");
    assert!(!p.contains("flow again"), "{p}");
    let list = s
        .get_admin("/api/v1/connections?provider=intercom")
        .await
        .json();
    let c = &list["items"][0];
    assert_eq!(c["params"]["api_host"], "api.au.intercom.io");
    assert_eq!(c["credential"]["prefix"], "Bearer ");
    s.stop().await;
}

async fn reauthorization_keeps_settings(db: Db) {
    let s = TestServer::start(db).await;
    let b = rekey_testkit::oauth2_fixture::browser();
    // Settings of its own, set through the API: header name, prefix, region.
    let r = create(
        &s,
        json!({"provider": "intercom", "kind": "api_key", "display_name": "EU support",
        "params": {"api_host": "api.eu.intercom.io"},
        "credentials": {"key": "old-token-1", "name": "X-Intercom-Token", "prefix": "Token "}}),
    )
    .await;
    let id = r.created_id();
    let url = s.reauthorize_link(&id).await;
    let p = page(&b, &url).await;
    assert!(p.contains("<h1>Reconnect EU support</h1>"), "{p}");
    no_oauth_wording(&p);
    assert!(p.contains(r#"value="X-Intercom-Token""#), "{p}");
    assert!(p.contains(r#"value="Token ""#), "{p}");
    assert!(
        p.contains(r#"<option value="api.eu.intercom.io" selected>"#),
        "{p}"
    );
    // The secret is asked for, empty; it is the only password field.
    assert_eq!(p.matches(r#"type="password""#).count(), 1, "{p}");
    assert!(!p.contains("old-token-1"), "a secret prefilled: {p}");
    // Submitting only the secret (what the browser sends: settings unchanged).
    let (st, p) = submit(
        &b,
        &url,
        &[
            ("key", "new-token-2"),
            ("name", "X-Intercom-Token"),
            ("prefix", "Token "),
            ("params.api_host", "api.eu.intercom.io"),
        ],
    )
    .await;
    assert_eq!(st, 200, "{p}");
    assert!(
        p.contains("EU support is reconnected") && p.contains("flow again"),
        "{p}"
    );
    let c = s
        .get_admin(&format!("/api/v1/connections/{id}"))
        .await
        .json();
    assert_eq!(c["params"]["api_host"], "api.eu.intercom.io");
    assert_eq!(c["credential"]["name"], "X-Intercom-Token");
    assert_eq!(c["credential"]["prefix"], "Token ");
    let cr = creds(&s, &id).await;
    assert_eq!(
        cr["credentials"]["apply"]["headers"]["X-Intercom-Token"],
        "Token new-token-2"
    );
    // A second link; only the secret field sent at all: settings still kept.
    let url = s.reauthorize_link(&id).await;
    let (st, p) = submit(&b, &url, &[("key", "new-token-3")]).await;
    assert_eq!(st, 200, "{p}");
    let cr = creds(&s, &id).await;
    assert_eq!(
        cr["credentials"]["apply"]["headers"]["X-Intercom-Token"],
        "Token new-token-3"
    );
    // A setting that did change at the provider is changed, and checked.
    let url = s.reauthorize_link(&id).await;
    let (st, p) = submit(
        &b,
        &url,
        &[
            ("key", "new-token-4"),
            ("params.api_host", "evil.example.com"),
        ],
    )
    .await;
    assert_eq!(st, 400, "{p}");
    assert!(p.contains("Intercom region must be one of"), "{p}");
    let (st, p) = submit(
        &b,
        &url,
        &[
            ("key", "new-token-4"),
            ("params.api_host", "api.au.intercom.io"),
        ],
    )
    .await;
    assert_eq!(st, 200, "{p}");
    let c = s
        .get_admin(&format!("/api/v1/connections/{id}"))
        .await
        .json();
    assert_eq!(c["params"]["api_host"], "api.au.intercom.io");
    assert_eq!(c["credential"]["name"], "X-Intercom-Token");
    s.stop().await;
}

/// The OAuth page keeps its own wording, titled with the integration's
/// name (or the link's display name).
async fn oauth_page_keeps_oauth_wording(db: Db) {
    let s = TestServer::start(db).await;
    let b = rekey_testkit::oauth2_fixture::browser();
    let r = s
        .post_admin("/api/v1/integrations", json!({
            "provider": "custom-oauth2", "display_name": "Acme CRM", "client_id": "c-1", "client_secret": "s-1",
            "endpoints": {"authorize_url": "https://idp.example.com/authorize", "token_url": "https://idp.example.com/token", "revocation_url": "https://idp.example.com/revoke", "identity_url": "https://idp.example.com/me"},
        }))
        .await;
    let integration = r.created_id();
    let url = session(&s, json!({"integration": integration})).await;
    let p = page(&b, &url).await;
    assert!(p.contains("<title>Connect Acme CRM · rekey</title>"), "{p}");
    assert!(p.contains("on your behalf") && p.contains("/start"), "{p}");
    assert!(!p.contains("Save credential"), "{p}");
    let url = session(
        &s,
        json!({"integration": integration, "display_name": "Sales team CRM"}),
    )
    .await;
    assert!(page(&b, &url)
        .await
        .contains("<h1>Connect Sales team CRM</h1>"));
    s.stop().await;
}

both_backends!(
    oauth_page_keeps_oauth_wording,
    api_creation_follows_catalog_rules,
    key_pages_speak_to_the_case,
    reauthorization_keeps_settings
);
