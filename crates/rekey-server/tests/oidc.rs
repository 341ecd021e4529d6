//! OAuth against a real OpenID Provider (node `oidc-provider`, started on
//! loopback): discovery, login + consent, ID token validation, refresh-token
//! rotation, RFC 7009 revocation, the three client authentication methods,
//! client credentials, RFC 9207 `iss` mix-up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::oidc::{
    authorize_as, code_client, connect_link, finish, m2m_client, start_connect, OidcProvider,
};
use rekey_testkit::{assert_checked, both_backends, fixture, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn start(s: &TestServer) -> OidcProvider {
    start_env(s, &[]).await
}

async fn start_env(s: &TestServer, env: &[(&str, &str)]) -> OidcProvider {
    let jwk: Value = serde_json::from_str(&fixture("test-rsa-2048.jwk.json")).unwrap();
    let code = |id: &str, method: &str| code_client(&s.base, id, method);
    let mut jwt = code("jwt-client", "private_key_jwt");
    jwt.as_object_mut().unwrap().remove("client_secret");
    jwt["jwks"] = json!({"keys": [jwk]});
    let m2m = m2m_client("m2m-client", "client_secret_basic");
    OidcProvider::start_with_env(
        json!([
            code("basic-client", "client_secret_basic"),
            code("post-client", "client_secret_post"),
            jwt,
            m2m
        ]),
        env,
    )
    .await
}

async fn integration(s: &TestServer, op: &OidcProvider, client: &str, method: &str) -> String {
    let scopes = ["openid", "email", "profile", "read", "write"];
    rekey_testkit::oidc::integration(s, op, client, method, &scopes).await
}

/// Connect page → start → real login and consent as `login` → callback URL.
async fn authorize(
    s: &TestServer,
    integration: &str,
    login: &str,
    reauthorize: Option<&str>,
) -> String {
    let url = match reauthorize {
        Some(id) => s.reauthorize_link(id).await,
        None => connect_link(s, integration).await,
    };
    let to_idp = start_connect(&url).await;
    assert!(
        to_idp.contains("nonce=") && to_idp.contains("code_challenge_method=S256"),
        "{to_idp}"
    );
    authorize_as(&to_idp, login, true).await
}

/// The id of the one connection made so far.
async fn only_connection(s: &TestServer) -> String {
    let list = s.get_admin("/api/v1/connections").await.json();
    list["items"][0]["id"].as_str().unwrap().to_string()
}

/// Connection `id`'s access token, as a fetch hands it out.
async fn access_token(s: &TestServer, id: &str) -> String {
    s.get_admin(&format!("/api/v1/connections/{id}/credentials"))
        .await
        .json()["credentials"]["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

both_backends!(
    oidc_end_to_end,
    oidc_client_auth_methods_and_m2m,
    oidc_issuer_mixup_and_denial,
    custom_oidc_is_checked_at_userinfo,
    oidc_revocation_is_verified_at_the_provider,
    a_grant_switch_without_a_revocation_endpoint_records_nothing
);

/// A provider with no revocation endpoint: reauthorizing a connection to a
/// new grant calls nothing and records no revocation to verify (there is
/// no call to retry, and verification would only ever find the old grant
/// alive); the audit log says the old grant was not revoked there.
async fn a_grant_switch_without_a_revocation_endpoint_records_nothing(db: Db) {
    let s = TestServer::start(db).await;
    let op = start_env(&s, &[("NO_REVOCATION", "1")]).await;
    let integ = integration(&s, &op, "basic-client", "client_secret_basic").await;
    let (st, page) = finish(&authorize(&s, &integ, "alice", None).await).await;
    assert_eq!(st, 200, "{page}");
    let id = only_connection(&s).await;
    let old = access_token(&s, &id).await;
    let (st, page) = finish(&authorize(&s, &integ, "alice", Some(&id)).await).await;
    assert_eq!(st, 200, "{page}");
    assert!(page.contains("Reconnected"), "{page}");
    assert_ne!(
        access_token(&s, &id).await,
        old,
        "switched to the new grant"
    );
    let revs = s
        .get_admin(&format!("/api/v1/connections/{id}/revocations"))
        .await
        .json();
    assert_eq!(revs["items"].as_array().unwrap().len(), 0, "{revs}");
    let (_, revocation_requests) = op.stats().await;
    assert_eq!(revocation_requests, 0);
    let c = s
        .get_admin(&format!("/api/v1/connections/{id}"))
        .await
        .json();
    assert_eq!(c["status"], "active", "{c}");
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?action=connection.provider_revocation&target={id}"
        ))
        .await
        .json();
    let entries = a["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{a}");
    assert_eq!(entries[0]["outcome"], "error", "{a}");
    s.stop().await;
}

/// After RFC 7009 revocation rekey tries the old grant: the refresh token
/// must get `invalid_grant` and the access token a 401 at userinfo.
async fn oidc_revocation_is_verified_at_the_provider(db: Db) {
    let s = TestServer::start(db).await;
    let op = start(&s).await;
    let integ = integration(&s, &op, "basic-client", "client_secret_basic").await;
    let cb = authorize(&s, &integ, "alice", None).await;
    let (st, page) = finish(&cb).await;
    assert_eq!(st, 200, "{page}");
    let id = only_connection(&s).await;
    let token = access_token(&s, &id).await;
    let r = s
        .act(&format!("/api/v1/connections/{id}/revoke"))
        .await
        .json();
    assert_eq!(r["revoked_at_provider"], true, "{r}");
    assert_eq!(r["connection"]["status"], "revoked", "{r}");
    let rev = &r["revocation"];
    assert_eq!(rev["method"], "provider");
    assert_eq!(rev["verdict"], "verified_rejected", "{r}");
    let checks = rev["checks"].as_array().unwrap();
    let by = |what: &str| {
        checks
            .iter()
            .find(|c| c["tried"] == what)
            .unwrap_or_else(|| panic!("{what} tried: {r}"))
    };
    assert_eq!(by("refresh_token")["result"], "rejected");
    assert_eq!(by("refresh_token")["code"], "invalid_grant", "{r}");
    assert_eq!(by("access_token")["result"], "rejected");
    assert_eq!(by("access_token")["http_status"], 401, "{r}");
    assert!(!r.to_string().contains(&token), "no token in the answer");
    // Asked again, the provider still refuses it.
    let again = s
        .act(&format!("/api/v1/connections/{id}/revoke/verify"))
        .await
        .json();
    assert_eq!(again["verdict"], "verified_rejected", "{again}");
    assert_eq!(again["verification_attempts"], 2);
    // A revoked grant is not refreshed (it would mint new tokens).
    s.act(&format!("/api/v1/connections/{id}/refresh"))
        .await
        .assert_error(409, "connection_unusable");
    // The app pointed elsewhere since: the old tokens are not sent there,
    // and nothing there can vouch for them.
    let r = s
        .patch_admin(
            &format!("/api/v1/integrations/{integ}"),
            json!({"endpoints": {"token_url": "http://127.0.0.1:9/token"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let moved = s
        .act(&format!("/api/v1/connections/{id}/revoke/verify"))
        .await
        .json();
    assert_eq!(moved["verdict"], "unverifiable", "{moved}");
    assert_eq!(moved["checks"][0]["result"], "not_tried", "{moved}");
    assert!(
        moved["checks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("changed since the revocation"),
        "{moved}"
    );
    s.stop().await;
}

async fn oidc_end_to_end(db: Db) {
    let s = TestServer::start(db).await;
    let op = start(&s).await;
    let integ = integration(&s, &op, "basic-client", "client_secret_basic").await;
    let cb = authorize(&s, &integ, "alice", None).await;
    assert!(
        cb.contains("iss="),
        "RFC 9207 iss expected from this provider: {cb}"
    );
    let (st, page) = finish(&cb).await;
    assert_eq!(st, 200, "{page}");
    assert!(page.contains("Connected"), "{page}");
    let list = s.get_admin("/api/v1/connections").await.json();
    let c = &list["items"][0];
    assert_eq!(
        c["owner"]["subject"], "alice",
        "identity from the validated ID token"
    );
    assert_eq!(c["owner"]["email"], "alice@example.com");
    for sc in ["read", "write", "openid"] {
        assert!(c["scopes"].as_array().unwrap().contains(&json!(sc)), "{c}");
    }
    let id = c["id"].as_str().unwrap().to_string();
    // Access tokens live 5 s here, inside the refresh window: reads refresh, and
    // the rotated refresh token must be persisted (reusing the old one would
    // make the provider revoke the whole grant).
    op.reset_stats().await;
    for _ in 0..3 {
        let r = s
            .get_admin(&format!("/api/v1/connections/{id}/credentials"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        s.act(&format!("/api/v1/connections/{id}/refresh")).await;
    }
    let (token_requests, _) = op.stats().await;
    assert!(token_requests >= 3, "{token_requests}");
    assert_eq!(
        s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .json()["status"],
        "active"
    );
    // Reauthorize as the same person: switches, old grant revoked.
    let cb = authorize(&s, &integ, "alice", Some(&id)).await;
    let (_, page) = finish(&cb).await;
    assert!(page.contains("Reconnected"), "{page}");
    // As someone else: parked with identity_mismatch.
    let cb = authorize(&s, &integ, "mallory", Some(&id)).await;
    let (_, page) = finish(&cb).await;
    assert!(page.contains("identity_mismatch"), "{page}");
    // Revocation through the discovered RFC 7009 endpoint.
    let r = s
        .act(&format!("/api/v1/connections/{id}/revoke"))
        .await
        .json();
    assert_eq!(r["revoked_at_provider"], true, "{r}");
    let (_, revocations) = op.stats().await;
    assert!(revocations >= 1);
    s.stop().await;
}

async fn oidc_client_auth_methods_and_m2m(db: Db) {
    let s = TestServer::start(db).await;
    let op = start(&s).await;
    // The provider enforces each client's registered method, so success proves rekey used it.
    for (client, method) in [
        ("post-client", "client_secret_post"),
        ("jwt-client", "private_key_jwt"),
    ] {
        let integ = integration(&s, &op, client, method).await;
        let cb = authorize(&s, &integ, "bob", None).await;
        let (st, page) = finish(&cb).await;
        assert_eq!(st, 200, "{method}: {page}");
        assert!(page.contains("Connected"), "{method}: {page}");
    }
    let integ = integration(&s, &op, "m2m-client", "client_secret_basic").await;
    let id = s
        .create_connection(
            json!({"provider": "custom-oidc", "kind": "oauth2_client_credentials",
        "display_name": "M2M", "scopes": ["read"], "credentials": {"integration": integ}}),
        )
        .await;
    let cr = s
        .get_admin(&format!("/api/v1/connections/{id}/credentials"))
        .await;
    assert_eq!(cr.status, StatusCode::OK, "{}", cr.text);
    assert!(cr.json()["credentials"]["access_token"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    // A wrong method is refused by the provider and reported clearly.
    let wrong = integration(&s, &op, "basic-client", "client_secret_post").await;
    let cb = authorize(&s, &wrong, "bob", None).await;
    let (st, page) = finish(&cb).await;
    assert_eq!(st, 422, "{page}");
    assert!(
        page.contains("token_exchange_failed") && page.contains("invalid_client"),
        "{page}"
    );
    s.stop().await;
}

async fn oidc_issuer_mixup_and_denial(db: Db) {
    let s = TestServer::start(db).await;
    let op = start(&s).await;
    let integ = integration(&s, &op, "basic-client", "client_secret_basic").await;
    // RFC 9207: a response claiming another issuer is refused before any token request.
    let cb = authorize(&s, &integ, "alice", None).await;
    let mut u = url::Url::parse(&cb).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut().clear();
    for (k, v) in pairs {
        let v = if k == "iss" {
            "https://evil.example".to_string()
        } else {
            v
        };
        u.query_pairs_mut().append_pair(&k, &v);
    }
    op.reset_stats().await;
    let (st, page) = finish(u.as_str()).await;
    assert_eq!(st, 400, "{page}");
    assert!(page.contains("issuer_mismatch"), "{page}");
    assert_eq!(
        op.stats().await.0,
        0,
        "no token request after an iss mismatch"
    );
    // The user declines consent: a clear page, nothing stored.
    let to_idp = start_connect(&connect_link(&s, &integ).await).await;
    let cb = authorize_as(&to_idp, "alice", false).await;
    let (st, page) = finish(&cb).await;
    assert_eq!(st, 422, "{page}");
    assert!(page.contains("access_denied"), "{page}");
    assert_eq!(
        s.get_admin("/api/v1/connections").await.json()["items"],
        json!([])
    );
    s.stop().await;
}

/// A `custom-oidc` grant has no catalog probe: its check is a GET of the
/// discovered userinfo endpoint with the access token (refreshed first
/// when expired); a refused token is an auth failure (`needs_reauth`).
async fn custom_oidc_is_checked_at_userinfo(db: Db) {
    let s = TestServer::start(db).await;
    // Long-lived access tokens: a refresh happens only when we expire one.
    let op = start_env(&s, &[("ACCESS_TOKEN_TTL", "3600")]).await;
    let integ = integration(&s, &op, "basic-client", "client_secret_basic").await;
    let cb = authorize(&s, &integ, "alice", None).await;
    let (st, page) = finish(&cb).await;
    assert_eq!(st, 200, "{page}");
    let id = only_connection(&s).await;
    let check = || s.check(&id);

    op.reset_stats().await;
    let r = check().await;
    assert_checked(&r, "ok", "active");
    assert_eq!(r["http_status"], 200, "{r}");
    assert_eq!(r["connection"]["health"]["unchecked"], Value::Null, "{r}");
    let st = op.stats_json().await;
    assert_eq!(
        st["userinfo_requests"], 1,
        "the check is a userinfo request: {st}"
    );
    assert_eq!(st["token_requests"], 0, "{st}");

    // An expired access token is refreshed before the probe.
    let expire = match s.db {
        Db::Sqlite => "json_set(credential_meta, '$.access_expires_at', 1)",
        Db::Postgres => "jsonb_set(credential_meta::jsonb, '{access_expires_at}', '1')::text",
    };
    s.sql(&[&format!(
        "UPDATE connections SET expires_at = 1, credential_meta = {expire} WHERE id = '{id}'"
    )])
    .await;
    op.reset_stats().await;
    let r = check().await;
    assert_eq!(r["outcome"], "ok", "{r}");
    let st = op.stats_json().await;
    assert_eq!(
        (
            st["token_requests"].as_u64(),
            st["userinfo_requests"].as_u64()
        ),
        (Some(1), Some(1)),
        "{st}"
    );

    // The provider refuses the token (revoked there): the policy's auth failure.
    let at = access_token(&s, &id).await;
    let revocation = op.discovery().await["revocation_endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let r = reqwest::Client::new()
        .post(revocation)
        .basic_auth("basic-client", Some("basic-client-secret-0123456789abcdef"))
        .form(&[("token", at.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    op.reset_stats().await;
    let r = check().await;
    assert_eq!(
        (
            r["outcome"].as_str(),
            r["status_before"].as_str(),
            r["status"].as_str()
        ),
        (Some("auth_failure"), Some("active"), Some("needs_reauth")),
        "{r}"
    );
    assert_eq!(r["http_status"], 401, "{r}");
    assert!(!r.to_string().contains(&at), "the token is never echoed");
    assert_eq!(op.stats_json().await["userinfo_requests"], 1);
    s.stop().await;
}
