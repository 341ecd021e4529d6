//! The credential fetch's cached path (`rekey-service`'s `hot` module):
//! one replica serves reads from its caches, and every change made on
//! another replica — new material, a disabled or deleted connection, a
//! revoked or rotated API key — is obeyed on the very next read, because
//! the read's audit entry is only written (and the secret only handed out)
//! if the key and the connection are still as cached in that transaction.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::{both_backends, items, Db, Resp, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

both_backends!(
    cached_reads_obey_changes_made_on_another_replica,
    cached_keys_stop_at_once_on_every_replica,
    the_cache_serves_and_the_version_decides,
    cached_oauth_reads_follow_a_refresh_on_another_replica,
);

/// A request to another server (a replica) with `key`.
async fn on(
    s: &TestServer,
    base: &str,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Resp {
    let mut req = s
        .http
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    Resp {
        status: r.status(),
        headers: r.headers().clone(),
        text: r.text().await.unwrap(),
    }
}

/// A new API key: (id, token).
async fn new_key(s: &TestServer, name: &str, scopes: &[&str]) -> (String, String) {
    let r = s
        .post_admin("/api/v1/api-keys", json!({"name": name, "scopes": scopes}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let v = r.json();
    (
        v["api_key"]["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

fn key_of(r: &Resp) -> Value {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["credentials"]["key"].clone()
}

async fn cached_reads_obey_changes_made_on_another_replica(db: Db) {
    let s = TestServer::start(db).await;
    let b = s.replica().await;
    let admin = s.admin_key.clone();
    let (_, key) = new_key(&s, "fetcher", &["credentials:read"]).await;
    let id = s.api_key_conn("sk-hot-1").await;
    let path = format!("/api/v1/connections/{id}/credentials");
    // Warm this server's caches: the key and the connection.
    for _ in 0..3 {
        assert_eq!(key_of(&s.get(&path, &key).await), "sk-hot-1");
    }

    // New material through the replica: the next read here hands it out.
    let r = on(
        &s,
        &b.base,
        Method::PUT,
        &format!("/api/v1/connections/{id}/credentials"),
        &admin,
        Some(json!({"credentials": {"key": "sk-hot-2"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(key_of(&s.get(&path, &key).await), "sk-hot-2");

    // Disabled on the replica: refused here at once, and the refusal audited.
    let r = on(
        &s,
        &b.base,
        Method::POST,
        &format!("/api/v1/connections/{id}/disable"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    s.get(&path, &key)
        .await
        .assert_error(409, "connection_unusable");
    let r = on(
        &s,
        &b.base,
        Method::POST,
        &format!("/api/v1/connections/{id}/enable"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(key_of(&s.get(&path, &key).await), "sk-hot-2");

    // Every read, served from the cache or not, has its entry: 5 handed
    // out, 1 refused, nothing else.
    let audit = s
        .get(
            &format!("/api/v1/audit?target={id}&action=credentials.read"),
            &admin,
        )
        .await
        .json();
    let outcomes: Vec<&str> = items(&audit)
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "ok").count(),
        5,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "denied").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(outcomes.len(), 6, "{outcomes:?}");

    // Deleted on the replica: gone here too.
    let r = on(
        &s,
        &b.base,
        Method::DELETE,
        &format!("/api/v1/connections/{id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    s.get(&path, &key)
        .await
        .assert_error(404, "connection_not_found");

    let chain = s.get("/api/v1/audit/verify", &admin).await.json();
    assert_eq!(chain["ok"], true, "{chain}");
    b.stop().await;
    s.stop().await;
}

async fn cached_keys_stop_at_once_on_every_replica(db: Db) {
    let s = TestServer::start(db).await;
    let b = s.replica().await;
    let admin = s.admin_key.clone();
    let id = s.api_key_conn("sk-hot-keys").await;
    let path = format!("/api/v1/connections/{id}/credentials");

    // A key revoked on the replica stops here on the next request, for the
    // cached current read and for the previous version alike.
    let (kid, key) = new_key(&s, "revoked", &["credentials:read"]).await;
    assert_eq!(key_of(&s.get(&path, &key).await), "sk-hot-keys");
    let r = on(
        &s,
        &b.base,
        Method::DELETE,
        &format!("/api/v1/api-keys/{kid}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    s.get(&path, &key).await.assert_error(401, "unauthorized");
    s.get(&format!("{path}?version=previous"), &key)
        .await
        .assert_error(401, "unauthorized");
    // Whatever else a revoked key still in this server's cache asks, 401
    // first (not a 400 or 404 that would tell it anything).
    for p in [
        format!("{path}?version=bogus"),
        format!("{path}?version=2"),
        format!("{path}?nope=1"),
        "/api/v1/connections/conn_doesnotexist/credentials".to_string(),
        "/api/v1/connections/not-an-id/credentials".to_string(),
    ] {
        let (kid, key) = new_key(&s, "revoked-2", &["credentials:read"]).await;
        assert_eq!(key_of(&s.get(&path, &key).await), "sk-hot-keys");
        let r = on(
            &s,
            &b.base,
            Method::DELETE,
            &format!("/api/v1/api-keys/{kid}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        s.get(&p, &key).await.assert_error(401, "unauthorized");
    }

    // A key rotated with a grace works, from the cache, until the grace
    // ends; then it stops here too.
    let (kid, graced) = new_key(&s, "graced", &["credentials:read"]).await;
    assert_eq!(key_of(&s.get(&path, &graced).await), "sk-hot-keys");
    let r = on(
        &s,
        &b.base,
        Method::POST,
        &format!("/api/v1/api-keys/{kid}/rotate"),
        &admin,
        Some(json!({"grace": "2s"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(key_of(&s.get(&path, &graced).await), "sk-hot-keys");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    s.get(&path, &graced)
        .await
        .assert_error(401, "unauthorized");

    // Rotated on the replica with no grace: the old key stops here, the new
    // one works.
    let (kid, old) = new_key(&s, "rotated", &["credentials:read"]).await;
    assert_eq!(key_of(&s.get(&path, &old).await), "sk-hot-keys");
    let r = on(
        &s,
        &b.base,
        Method::POST,
        &format!("/api/v1/api-keys/{kid}/rotate"),
        &admin,
        Some(json!({"grace": 0})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let new = r.json()["key"].as_str().unwrap().to_string();
    s.get(&path, &old).await.assert_error(401, "unauthorized");
    assert_eq!(key_of(&s.get(&path, &new).await), "sk-hot-keys");

    // A cached key without the scope is refused (and the refusal audited)
    // as it always was.
    let (_, reader) = new_key(&s, "meta", &["connections:read"]).await;
    s.get(&path, &reader)
        .await
        .assert_error(403, "missing_scope");
    s.get(&path, &reader)
        .await
        .assert_error(403, "missing_scope");

    // Only the reads handed out by live keys, and the two refusals, are in
    // the log: nothing for the revoked or rotated keys' refused requests.
    let audit = s
        .get(
            &format!("/api/v1/audit?target={id}&action=credentials.read"),
            &admin,
        )
        .await
        .json();
    let outcomes: Vec<&str> = items(&audit)
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["denied", "denied", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok"],
        "{outcomes:?}"
    );
    b.stop().await;
    s.stop().await;
}

/// White-box: reads are served from the cache (a secret row garbled in the
/// database behind its back, without a new version, is not noticed), and
/// the connection's version decides: once it moves, the cached copy is
/// dropped and the database's — here undecryptable — is what counts.
async fn the_cache_serves_and_the_version_decides(db: Db) {
    let s = TestServer::start(db).await;
    let (_, key) = new_key(&s, "fetcher", &["credentials:read"]).await;
    let id = s.api_key_conn("sk-cached").await;
    let path = format!("/api/v1/connections/{id}/credentials");
    assert_eq!(key_of(&s.get(&path, &key).await), "sk-cached");
    let other = s.api_key_conn("sk-other").await;
    s.sql(&[&format!(
        "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE owner_id = '{other}' AND field = 'key') \
         WHERE owner_id = '{id}' AND field = 'key'"
    )])
    .await;
    assert_eq!(key_of(&s.get(&path, &key).await), "sk-cached");
    s.sql(&[&format!(
        "UPDATE connections SET version = version + 1 WHERE id = '{id}'"
    )])
    .await;
    let r = s.get(&path, &key).await;
    r.assert_error(500, "decryption_failed");
    assert!(!r.text.contains("sk-cached") && !r.text.contains("sk-other"));
    s.stop().await;
}

/// An OAuth token served from the cache (a real authorization server,
/// oidc-provider): refreshed on the replica, the next read here hands out
/// the new token.
async fn cached_oauth_reads_follow_a_refresh_on_another_replica(db: Db) {
    use rekey_testkit::oidc::{integration, m2m_client, OidcProvider};
    let s = TestServer::start(db).await;
    let b = s.replica().await;
    // Tokens for an hour: outside the refresh window, so reads are served
    // as they are (the fixture's default of 5 s is always due).
    let op = OidcProvider::start_with_env(
        json!([m2m_client("m2m-client", "client_secret_basic")]),
        &[("CLIENT_CREDENTIALS_TTL", "3600")],
    )
    .await;
    let integ = integration(&s, &op, "m2m-client", "client_secret_basic", &["read"]).await;
    let id = s
        .create_connection(
            json!({"provider": "custom-oidc", "kind": "oauth2_client_credentials",
            "display_name": "M2M", "scopes": ["read"], "credentials": {"integration": integ}}),
        )
        .await;
    let (_, key) = new_key(&s, "fetcher", &["credentials:read"]).await;
    let path = format!("/api/v1/connections/{id}/credentials");
    let token = |r: &Resp| {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json()["credentials"]["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = token(&s.get(&path, &key).await);
    assert!(!first.is_empty());
    assert_eq!(token(&s.get(&path, &key).await), first);
    let r = on(
        &s,
        &b.base,
        Method::POST,
        &format!("/api/v1/connections/{id}/refresh"),
        &s.admin_key,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let second = token(&s.get(&path, &key).await);
    assert_ne!(second, first);
    assert_eq!(token(&s.get(&path, &key).await), second);
    b.stop().await;
    s.stop().await;
}

/// Single flight at scale: 1,000 concurrent fetches of an expired OAuth
/// token, spread over three replicas on one PostgreSQL, make exactly one
/// token request at the authorization server (oidc-provider, counted
/// there), and all get the one new token. While that request is held at
/// the provider, reads of another connection on every replica are
/// answered: the refresh holds that connection's row, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_readers_on_three_replicas_refresh_once() {
    use rekey_testkit::oidc::{integration, m2m_client, OidcProvider};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const READERS: usize = 1000;
    let s = TestServer::start(Db::Postgres).await;
    let (b, c) = (s.replica().await, s.replica().await);
    let op = OidcProvider::start_with_env(
        json!([m2m_client("m2m-client", "client_secret_basic")]),
        &[("CLIENT_CREDENTIALS_TTL", "3600")],
    )
    .await;
    let integ = integration(&s, &op, "m2m-client", "client_secret_basic", &["read"]).await;
    let id = s
        .create_connection(
            json!({"provider": "custom-oidc", "kind": "oauth2_client_credentials",
            "display_name": "M2M", "scopes": ["read"], "credentials": {"integration": integ}}),
        )
        .await;
    let other = s
        .create_connection(json!({"provider": "custom-rest", "kind": "api_key",
            "display_name": "other", "credentials": {"key": "sk-other-conn"}}))
        .await;
    // The token from the create expired a minute ago (before any read, so
    // no replica has it cached).
    let past = rekey_core::time::now_ms() - 60_000;
    s.sql(&[&format!(
        "UPDATE connections SET expires_at = {past}, credential_meta = \
         jsonb_set(credential_meta::jsonb, '{{access_expires_at}}', '{past}'::jsonb)::text \
         WHERE id = '{id}'"
    )])
    .await;
    let (_, key) = new_key(&s, "fetcher", &["credentials:read"]).await;
    op.reset_stats().await;
    // Long enough that the other connection's reads below finish inside it
    // on any machine; the readers of this one all wait for it.
    op.set_faults(json!({"token_delay_ms": 4000})).await;
    let bases = [s.base.clone(), b.base.clone(), c.base.clone()];
    let done = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..READERS {
        let url = format!("{}/api/v1/connections/{id}/credentials", bases[i % 3]);
        let (key, done) = (key.clone(), done.clone());
        // A client each: every reader has its own connection.
        let http = reqwest::Client::new();
        tasks.push(tokio::spawn(async move {
            let r = http.get(url).bearer_auth(key).send().await.unwrap();
            let st = r.status();
            let v: Value = r.json().await.unwrap();
            done.fetch_add(1, Ordering::SeqCst);
            assert_eq!(st, StatusCode::OK, "{v}");
            v["credentials"]["access_token"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    // The one token request is at the provider now.
    for _ in 0..400 {
        if op.stats().await.0 > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        op.stats().await.0,
        1,
        "the refresh started ({} readers answered)",
        done.load(Ordering::SeqCst)
    );
    for base in &bases {
        for _ in 0..20 {
            let r = on(
                &s,
                base,
                Method::GET,
                &format!("/api/v1/connections/{other}/credentials"),
                &key,
                None,
            )
            .await;
            assert_eq!(key_of(&r), json!("sk-other-conn"));
        }
    }
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "the other connection's 60 reads were answered while every reader of the expired one still waited"
    );
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    let wall = started.elapsed();
    assert_eq!(
        op.stats().await.0,
        1,
        "one token request for {READERS} readers"
    );
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "one new token");
    eprintln!("{READERS} readers over 3 replicas: {wall:?} (the provider held the request 4 s)");
    op.set_faults(json!({})).await;
    c.stop().await;
    b.stop().await;
    s.stop().await;
}
