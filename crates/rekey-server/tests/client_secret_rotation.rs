//! Rotating an integration's client secret against a real OpenID Provider
//! (node `oidc-provider` on loopback, which here accepts a second secret
//! per client and can delete one, as provider consoles do): the new secret
//! is tested at the token endpoint before rekey switches to it, a refused
//! or untestable one changes nothing, and after the old secret is deleted
//! at the provider every connection of the integration still refreshes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::oidc::{
    authorize_as, client_secret as old_secret, code_client, connect_link, finish, m2m_client,
    start_connect, OidcProvider,
};
use rekey_testkit::{both_backends, Db, Resp, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

both_backends!(
    authorization_code_integration,
    client_credentials_integration,
    refusals_change_nothing,
    generated_private_key_jwt_key
);

async fn start(s: &TestServer) -> OidcProvider {
    let code = |id: &str, method: &str| code_client(&s.base, id, method);
    let m2m = m2m_client("m2m-client", "client_secret_post");
    // private_key_jwt clients whose keys are registered at their jwks_uri.
    let jwt = |id: &str| {
        let mut c = code(id, "private_key_jwt");
        c.as_object_mut().unwrap().remove("client_secret");
        c["jwks_uri"] = json!(format!("{{issuer}}/__jwks/{id}"));
        c
    };
    let op = OidcProvider::start(json!([
        code("basic-client", "client_secret_basic"),
        code("other-client", "client_secret_basic"),
        m2m,
        jwt("jwt2-client"),
        jwt("jwt3-client")
    ]))
    .await;
    for id in ["jwt2-client", "jwt3-client"] {
        op.set_client_jwks(id, json!([fixture_jwk()])).await;
    }
    op
}

fn fixture_jwk() -> Value {
    serde_json::from_str(&rekey_testkit::fixture("test-rsa-2048.jwk.json")).unwrap()
}

async fn integration(s: &TestServer, op: &OidcProvider, client: &str, method: &str) -> String {
    let scopes = ["openid", "email", "read"];
    rekey_testkit::oidc::integration(s, op, client, method, &scopes).await
}

/// A connection made through the integration by a real login as `login`.
async fn connect(s: &TestServer, integ: &str, login: &str) -> String {
    let to_idp = start_connect(&connect_link(s, integ).await).await;
    let cb = authorize_as(&to_idp, login, true).await;
    let (status, page) = finish(&cb).await;
    assert_eq!(status, 200, "{page}");
    let list = s
        .get_admin(&format!("/api/v1/connections?q={login}"))
        .await
        .json();
    list["items"][0]["id"].as_str().unwrap().to_string()
}

fn rotate_path(integ: &str) -> String {
    format!("/api/v1/integrations/{integ}/rotate-secret")
}

/// `POST …/rotate-secret` with the admin key.
async fn rotate(s: &TestServer, integ: &str, body: Value) -> Resp {
    s.post_admin(&rotate_path(integ), body).await
}

/// `POST …/rotate-secret/confirm` with the admin key.
async fn confirm(s: &TestServer, integ: &str) -> Resp {
    let path = format!("{}/confirm", rotate_path(integ));
    s.post_admin(&path, json!({})).await
}

async fn refreshes(s: &TestServer, id: &str) -> Value {
    let r = s
        .post_admin(&format!("/api/v1/connections/{id}/refresh"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

async fn authorization_code_integration(db: Db) {
    let s = TestServer::start(db).await;
    let op = start(&s).await;
    let integ = integration(&s, &op, "basic-client", "client_secret_basic").await;
    let alice = connect(&s, &integ, "alice").await;
    let bob = connect(&s, &integ, "bob").await;
    let new = "basic-client-NEW-secret-9f8e7d6c5b4a";
    // Made in the provider's console: both secrets work there for now.
    op.add_client_secret("basic-client", new).await;
    let r = rotate(&s, &integ, json!({"client_secret": new})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["tested_with"], "authorization_code", "{body}");
    assert_eq!(body["connections"], 2);
    assert_ne!(body["old_fingerprint"], body["new_fingerprint"]);
    assert!(!r.text.contains(new) && !r.text.contains(&old_secret("basic-client")));
    // The old secret is deleted at the provider: both connections refresh
    // with the new one.
    op.retire_client_secret("basic-client", &old_secret("basic-client"))
        .await;
    for id in [&alice, &bob] {
        let c = refreshes(&s, id).await;
        assert_eq!(c["status"], "active", "{c}");
    }
    // Audited with fingerprints, never a secret.
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?action=integration.secret_rotate&target={integ}"
        ))
        .await;
    let e = &a.json()["items"][0];
    assert_eq!(e["outcome"], "ok", "{}", a.text);
    assert_eq!(e["details"]["new_fingerprint"], body["new_fingerprint"]);
    assert!(!a.text.contains(new));
    // The current secret again: refused, it is not new.
    rotate(&s, &integ, json!({"client_secret": new}))
        .await
        .assert_error(422, "invalid_field");
    s.stop().await;
}

async fn client_credentials_integration(db: Db) {
    let s = TestServer::start(db).await;
    let op = start(&s).await;
    let integ = integration(&s, &op, "m2m-client", "client_secret_post").await;
    let id = s
        .create_connection(
            json!({"provider": "custom-oidc", "kind": "oauth2_client_credentials",
            "display_name": "M2M", "scopes": ["read"], "credentials": {"integration": integ}}),
        )
        .await;
    let new = "m2m-client-NEW-secret-0a1b2c3d4e5f";
    op.add_client_secret("m2m-client", new).await;
    op.reset_stats().await;
    let r = rotate(&s, &integ, json!({"client_secret": new})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["tested_with"], "client_credentials");
    let (token_requests, _) = op.stats().await;
    assert_eq!(token_requests, 1, "one test request");
    op.retire_client_secret("m2m-client", &old_secret("m2m-client"))
        .await;
    let c = refreshes(&s, &id).await;
    assert_eq!(c["status"], "active", "{c}");
    s.stop().await;
}

async fn refusals_change_nothing(db: Db) {
    let s = TestServer::start(db).await;
    let op = start(&s).await;
    let integ = integration(&s, &op, "other-client", "client_secret_basic").await;
    let alice = connect(&s, &integ, "alice").await;
    let before = s
        .get_admin(&format!("/api/v1/integrations/{integ}"))
        .await
        .json();
    // Not made at the provider (a typo, another app's secret): refused there.
    let r = rotate(
        &s,
        &integ,
        json!({"client_secret": "other-client-typo-secret-000000"}),
    )
    .await;
    r.assert_error(422, "client_secret_rejected");
    assert!(!r.text.contains("typo-secret"), "{}", r.text);
    // A provider that echoes the presented secret in its refusal: the
    // answer names the refusal, never the secret.
    op.set_faults(json!({"token_status": 401, "token_count": 1,
        "token_body": {"error": "invalid_client", "error_description": "unknown secret other-client-ECHO-secret-222222"}}))
        .await;
    let r = rotate(
        &s,
        &integ,
        json!({"client_secret": "other-client-ECHO-secret-222222"}),
    )
    .await;
    r.assert_error(422, "client_secret_rejected");
    assert!(!r.text.contains("ECHO-secret"), "{}", r.text);
    // The provider is down: untested, nothing changed.
    op.add_client_secret("other-client", "other-client-NEW-secret-111111")
        .await;
    op.set_faults(json!({"token_status": 503, "token_count": 1}))
        .await;
    rotate(
        &s,
        &integ,
        json!({"client_secret": "other-client-NEW-secret-111111"}),
    )
    .await
    .assert_error(422, "client_secret_untested");
    // A token endpoint that answers `invalid_grant` whatever the client
    // credential proves nothing: the control request with a credential
    // nobody registered gets the same answer, so it is untested too.
    op.set_faults(json!({"token_status": 400, "token_count": 2,
        "token_body": {"error": "invalid_grant", "error_description": "grant checked first"}}))
        .await;
    rotate(
        &s,
        &integ,
        json!({"client_secret": "other-client-NEW-secret-111111"}),
    )
    .await
    .assert_error(422, "client_secret_untested");
    op.set_faults(json!({})).await;
    let after = s
        .get_admin(&format!("/api/v1/integrations/{integ}"))
        .await
        .json();
    assert_eq!(before["version"], after["version"]);
    let c = refreshes(&s, &alice).await;
    assert_eq!(c["status"], "active", "the old secret is still used: {c}");
    // The refused attempts are audited as errors.
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?action=integration.secret_rotate&target={integ}"
        ))
        .await
        .json();
    let outcomes: Vec<&str> = a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["error", "error", "error", "error"], "{a}");
    // Bad bodies, ids and callers.
    for (body, status, code) in [
        (json!({}), 400, "invalid_field"),
        (
            json!({"client_secret": "a-new-secret-12345", "private_key_pem": "x"}),
            400,
            "invalid_field",
        ),
        (
            json!({"client_secret": "a-new-secret-12345", "key_id": "k1"}),
            400,
            "invalid_field",
        ),
        (
            json!({"client_secret": "s", "surprise": 1}),
            400,
            "invalid_body",
        ),
    ] {
        rotate(&s, &integ, body.clone())
            .await
            .assert_error(status, code);
    }
    rotate(
        &s,
        "int_00000000000000000000000000000000",
        json!({"client_secret": "x-new-secret-12345"}),
    )
    .await
    .assert_error(404, "integration_not_found");
    let writer = s.key("default", &["connections:write"]).await;
    s.post(
        &rotate_path(&integ),
        &writer,
        json!({"client_secret": "x-new-secret-12345"}),
    )
    .await
    .assert_error(403, "missing_scope");
    s.stop().await;
}

/// private_key_jwt: rekey generates the key and shows the public JWK; the
/// operator registers it at the provider and confirms; rekey tests it and
/// switches, and a new login through the integration signs with it. An
/// unregistered key is refused and stays waiting until discarded.
async fn generated_private_key_jwt_key(db: Db) {
    let s = TestServer::start(db).await;
    let op = start(&s).await;
    let integ = integration(&s, &op, "jwt2-client", "private_key_jwt").await;
    let r = rotate(
        &s,
        &integ,
        json!({"generate_key": true, "key_id": "rekey-test-2"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert!(!r.text.contains("PRIVATE"), "{}", r.text);
    let body = r.json();
    assert_eq!(body["state"], "awaiting_registration");
    let jwk = body["public_jwk"].clone();
    assert_eq!(
        (jwk["kty"].as_str(), jwk["kid"].as_str()),
        (Some("RSA"), Some("rekey-test-2"))
    );
    assert_ne!(jwk["n"], fixture_jwk()["n"]);
    assert!(jwk.get("d").is_none(), "public half only");
    assert!(body["new_fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("SHA256:"));
    // Shown again on request (the same public key, no private part).
    let again = s.get_admin(&rotate_path(&integ)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json()["public_jwk"], jwk);
    assert!(!again.text.contains("PRIVATE"));
    // Registered in the provider's console next to the old key, confirmed.
    op.set_client_jwks("jwt2-client", json!([fixture_jwk(), jwk]))
        .await;
    let r = confirm(&s, &integ).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["state"], "rotated");
    assert_eq!(r.json()["integration"]["key_id"], "rekey-test-2");
    // A login through the integration now signs its client assertion with
    // the new key (the old one is gone at the provider).
    op.set_client_jwks("jwt2-client", json!([jwk])).await;
    let id = connect(&s, &integ, "carol").await;
    assert_eq!(
        s.get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .json()["status"],
        "active"
    );
    confirm(&s, &integ)
        .await
        .assert_error(409, "no_pending_secret");
    s.get_admin(&rotate_path(&integ))
        .await
        .assert_error(409, "no_pending_secret");

    // Never registered: refused, kept waiting, then discarded.
    let other = integration(&s, &op, "jwt3-client", "private_key_jwt").await;
    let r = rotate(&s, &other, json!({"generate_key": true})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json()["public_jwk"]["kid"].as_str().unwrap().len(), 43);
    confirm(&s, &other)
        .await
        .assert_error(422, "client_secret_rejected");
    assert_eq!(
        s.delete(&rotate_path(&other), &s.admin_key).await.status,
        StatusCode::NO_CONTENT
    );
    s.delete(&rotate_path(&other), &s.admin_key)
        .await
        .assert_error(409, "no_pending_secret");
    // A key generated for the old setup is dropped when the secret is
    // replaced by hand (PATCH).
    let r = rotate(&s, &other, json!({"generate_key": true})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let r = s
        .patch_admin(&format!("/api/v1/integrations/{other}"), json!({"private_key_pem": rekey_testkit::fixture("test-rsa-2048.pem"), "key_id": "rekey-test-1"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    confirm(&s, &other)
        .await
        .assert_error(409, "no_pending_secret");
    // generate_key is for private_key_jwt only.
    let plain = integration(&s, &op, "other-client", "client_secret_basic").await;
    rotate(&s, &plain, json!({"generate_key": true}))
        .await
        .assert_error(400, "invalid_field");
    s.stop().await;
}
