//! Connection health end to end: probes against a loopback fixture that
//! answers like a real SaaS API (ok, 401, Slack-style 200 + ok:false, 500,
//! 429 + Retry-After, slow, refused), the status machine and its error
//! context, and the scheduler's claims. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_api::{AuditQuery, CreateConnection, DisableConnection, UpdateConnection};
use rekey_service::HealthSettings;
use rekey_testkit::provider_fixture::{refused_url, Mode, ProviderFixture, LEAKED_API_KEY};
use rekey_testkit::{
    assert_api_error, assert_checked, assert_error_mentions, both_backends, fixture, items, Db,
    TestServer,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

both_backends!(
    probe_transitions_and_error_context,
    slack_style_body_predicates,
    provider_bodies_are_scrubbed,
    check_endpoint_validates,
    scheduler_claims_once_and_respects_limits,
    database_probes,
    aws_sigv4_probe_against_moto,
    key_file_and_key_pair_probes,
);

fn fast(s: &TestServer) {
    s.rekey.set_health_settings(HealthSettings {
        max_probe_timeout: Duration::from_secs(1),
        per_provider_rate: 0.0,
        ..Default::default()
    });
}

async fn rest_conn(s: &TestServer, fx: &ProviderFixture, key: &str) -> String {
    s.bearer_key_conn(&fx.rest_url(), key).await
}

async fn check(s: &TestServer, id: &str) -> Value {
    let r = s
        .client(&s.admin_key)
        .check_connection(id)
        .await
        .unwrap_or_else(|e| panic!("check {id}: {e}"));
    serde_json::to_value(r).unwrap()
}

async fn transitions(s: &TestServer, id: &str) -> Vec<(String, String)> {
    let a = s
        .client(&s.admin_key)
        .list_audit(&AuditQuery {
            action: Some("connection.status_changed".into()),
            target: Some(id.into()),
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut v: Vec<(String, String)> = a
        .items
        .iter()
        .map(|e| {
            (
                e.details["from"].as_str().unwrap().to_string(),
                e.details["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.reverse(); // oldest first
    v
}

async fn probe_transitions_and_error_context(db: Db) {
    let s = TestServer::start(db).await;
    fast(&s);
    let fx = ProviderFixture::start().await;
    fx.set_valid_credential(Some("Bearer k-good"));
    let id = rest_conn(&s, &fx, "k-good").await;

    // pending → active; the probe presented the stored credential.
    let r = check(&s, &id).await;
    assert_eq!(
        (
            r["outcome"].as_str(),
            r["status_before"].as_str(),
            r["status"].as_str()
        ),
        (Some("ok"), Some("pending"), Some("active")),
        "{r}"
    );
    assert_eq!(fx.last_authorization().as_deref(), Some("Bearer k-good"));
    assert_eq!(r["http_status"], 200);
    let c = &r["connection"];
    assert!(c["health"]["last_ok_at"].is_string());
    assert!(c["health"]["last_checked_at"].is_string());
    assert_eq!(c["health"]["consecutive_failures"], 0);

    // 500: degraded, with the context; a second failure keeps first_failed_at.
    fx.set_mode(Mode::ServerError);
    let r = check(&s, &id).await;
    assert_checked(&r, "transient", "degraded");
    let e = &r["last_error"];
    assert_eq!(e["code"], "provider_unavailable");
    assert_eq!(e["http_status"], 500);
    assert!(
        e["at"].is_string() && e["message"].as_str().unwrap().contains("500"),
        "{e}"
    );
    assert!(
        e["provider_body"].as_str().unwrap().contains("internal"),
        "{e}"
    );
    let first = r["connection"]["health"]["first_failed_at"].clone();
    assert!(first.is_string());
    assert_eq!(r["connection"]["health"]["consecutive_failures"], 1);
    let r = check(&s, &id).await;
    assert_eq!(r["connection"]["health"]["consecutive_failures"], 2);
    assert_eq!(r["connection"]["health"]["first_failed_at"], first);
    // The last success is remembered through the failures.
    assert!(r["connection"]["health"]["last_ok_at"].is_string());

    // 429 with Retry-After: still degraded, the wait is honoured.
    fx.set_mode(Mode::RateLimited {
        retry_after_secs: 120,
    });
    let r = check(&s, &id).await;
    assert_eq!(r["status"], "degraded");
    assert_eq!(r["last_error"]["code"], "rate_limited");
    assert_eq!(r["last_error"]["http_status"], 429);
    assert_eq!(r["last_error"]["retry_after_secs"], 120);

    // Recovery clears the error context.
    fx.set_mode(Mode::Ok);
    let r = check(&s, &id).await;
    assert_eq!(
        (r["status_before"].as_str(), r["status"].as_str()),
        (Some("degraded"), Some("active"))
    );
    assert!(r["last_error"].is_null(), "{r}");
    assert!(r["connection"]["health"]["first_failed_at"].is_null());
    assert_eq!(r["connection"]["health"]["consecutive_failures"], 0);

    // Slow beyond the timeout: degraded with `timeout`.
    fx.set_mode(Mode::Slow(Duration::from_secs(3)));
    let r = check(&s, &id).await;
    assert_eq!(r["status"], "degraded");
    assert_eq!(r["last_error"]["code"], "timeout", "{r}");
    assert!(r["last_error"]["http_status"].is_null());

    // Nothing listening: degraded with `connection_failed`.
    fx.set_mode(Mode::Ok);
    let p = s
        .patch_admin(
            &format!("/api/v1/connections/{id}"),
            json!({"probe_url": format!("{}/v1/me", refused_url())}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let r = check(&s, &id).await;
    assert_eq!(r["last_error"]["code"], "connection_failed", "{r}");
    assert_eq!(r["status"], "degraded");

    // 401: needs_reauth (from degraded), with the provider's reason.
    let p = s
        .patch_admin(
            &format!("/api/v1/connections/{id}"),
            json!({"probe_url": fx.rest_url()}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    fx.set_mode(Mode::Unauthorized);
    let r = check(&s, &id).await;
    assert_checked(&r, "auth_failure", "needs_reauth");
    assert_eq!(r["last_error"]["code"], "auth_rejected");
    assert_eq!(r["last_error"]["http_status"], 401);
    assert_error_mentions(&r, "invalid");
    // A transient failure does not hide a dead credential: needs_reauth stays.
    fx.set_mode(Mode::ServerError);
    let r = check(&s, &id).await;
    assert_eq!(r["status"], "needs_reauth");
    // A wrong credential in Ok mode is an auth failure too.
    fx.set_mode(Mode::Ok);
    fx.set_valid_credential(Some("Bearer k-other"));
    assert_eq!(check(&s, &id).await["status"], "needs_reauth");
    // Updating the credential (what the three-dot → Update does) goes back
    // through pending, then the check makes it active.
    let r = s.put_admin(&format!("/api/v1/connections/{id}/credentials"), json!({"credentials": {"key": "k-other", "placement": "header", "name": "Authorization", "prefix": "Bearer "}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "pending");
    assert_eq!(check(&s, &id).await["status"], "active");

    assert_eq!(
        transitions(&s, &id).await,
        [
            ("pending", "active"),
            ("active", "degraded"),
            ("degraded", "active"),
            ("active", "degraded"),
            ("degraded", "needs_reauth"),
            ("needs_reauth", "pending"),
            ("pending", "active"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // Manual checks are audited one by one.
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?action=connection.checked&target={id}&limit=100"
        ))
        .await
        .json();
    assert_eq!(items(&a).len(), 11);
    // The list filter finds broken connections.
    fx.set_mode(Mode::Unauthorized);
    check(&s, &id).await;
    let l = s
        .get_admin("/api/v1/connections?status=needs_reauth")
        .await
        .json();
    assert_eq!(items(&l).len(), 1);
    assert_eq!(l["items"][0]["id"], id.as_str());
    s.stop().await;
}

async fn slack_style_body_predicates(db: Db) {
    let s = TestServer::start(db).await;
    fast(&s);
    let fx = ProviderFixture::start().await;
    fx.set_valid_credential(Some("Bearer xoxb-good-1"));
    let id = s
        .create_connection(
            json!({"provider": "slack", "kind": "api_key", "display_name": "Slack bot",
                   "probe_url": fx.slack_url(),
                   "credentials": {"key": "xoxb-good-1", "prefix": "Bearer "}}),
        )
        .await;
    assert_eq!(check(&s, &id).await["status"], "active");
    // 200 with {"ok": false, "error": "missing_scope"}: the catalog's
    // success_when fails, so it is unexpected (degraded), not dead.
    fx.set_mode(Mode::Forbidden);
    let r = check(&s, &id).await;
    assert_checked(&r, "unexpected", "degraded");
    assert_eq!(r["last_error"]["http_status"], 200);
    assert_error_mentions(&r, "missing_scope");
    // 200 with {"ok": false, "error": "invalid_auth"}: dead credential.
    fx.set_mode(Mode::Unauthorized);
    let r = check(&s, &id).await;
    assert_checked(&r, "auth_failure", "needs_reauth");
    assert_eq!(r["last_error"]["http_status"], 200);
    assert_eq!(r["last_error"]["code"], "auth_rejected");
    assert_error_mentions(&r, "invalid_auth");
    // token_revoked, another of the catalog's auth failures.
    fx.set_mode(Mode::Ok);
    assert_eq!(check(&s, &id).await["status"], "active");
    fx.set_mode(Mode::SlackError("token_revoked".into()));
    assert_eq!(check(&s, &id).await["status"], "needs_reauth");
    s.stop().await;
}

async fn provider_bodies_are_scrubbed(db: Db) {
    let s = TestServer::start(db).await;
    fast(&s);
    let fx = ProviderFixture::start().await;
    let secret = "k-secret-value-9f8e7d6c5b4a";
    let id = rest_conn(&s, &fx, secret).await;
    fx.set_mode(Mode::EchoSecretInBody);
    let r = check(&s, &id).await;
    assert_eq!(r["status"], "needs_reauth");
    let body = r["last_error"]["provider_body"].as_str().unwrap();
    assert!(body.contains("[redacted]"), "{body}");
    for text in [
        r.to_string(),
        s.get_admin(&format!("/api/v1/connections/{id}")).await.text,
        s.get_admin("/api/v1/audit?limit=100").await.text,
    ] {
        assert!(!text.contains(secret), "secret leaked: {text}");
        assert!(
            !text.contains(LEAKED_API_KEY),
            "provider's secret kept: {text}"
        );
    }
    s.stop().await;
}

async fn check_endpoint_validates(db: Db) {
    let s = TestServer::start(db).await;
    fast(&s);
    let fx = ProviderFixture::start().await;
    let id = rest_conn(&s, &fx, "k-1").await;
    let k = &s.admin_key;
    let admin = s.client(k);
    assert_api_error(admin.check_connection("nope").await, 400, "invalid_id");
    assert_api_error(
        admin
            .check_connection("con_0000000000000000000000000000000a")
            .await,
        404,
        "connection_not_found",
    );
    let viewer = s.client(&s.key("default", &["connections:read"]).await);
    assert_api_error(viewer.check_connection(&id).await, 403, "missing_scope");
    // Pointing a credential at a URL of one's choosing needs credentials:read.
    let writer = s.client(&s.key("default", &["connections:write"]).await);
    let probe_elsewhere = UpdateConnection {
        probe_url: Some("https://attacker.example/collect".into()),
        ..Default::default()
    };
    assert_api_error(
        writer.update_connection(&id, &probe_elsewhere, None).await,
        403,
        "missing_scope",
    );
    let create: CreateConnection = serde_json::from_value(
        json!({"provider": "custom-rest", "kind": "api_key", "display_name": "x",
               "probe_url": "https://attacker.example/collect", "credentials": {"key": "k"}}),
    )
    .unwrap();
    assert_api_error(
        writer.create_connection(&create).await,
        403,
        "missing_scope",
    );
    // The same key may check, and change other fields.
    let renamed = UpdateConnection {
        display_name: Some("renamed".into()),
        ..Default::default()
    };
    if let Err(e) = writer.update_connection(&id, &renamed, None).await {
        panic!("{e}");
    }
    // Other tenants do not see it.
    let other = s.client(&s.key("other", &["admin"]).await);
    assert_api_error(
        other.check_connection(&id).await,
        404,
        "connection_not_found",
    );
    // A connection with no probe is skipped with the reason, status unchanged.
    let plain = s.create_api_key_conn(k, "k-2", json!({})).await;
    let r = check(&s, &plain).await;
    assert_eq!(r["outcome"], "skipped");
    assert_eq!(r["status"], "pending");
    assert!(
        r["message"].as_str().unwrap().contains("no known endpoint"),
        "{r}"
    );
    // Disabled connections are not checked.
    let disable = DisableConnection {
        reason: Some("test".into()),
        version: None,
    };
    if let Err(e) = admin.disable_connection(&id, &disable, None).await {
        panic!("{e}");
    }
    assert_api_error(
        admin.check_connection(&id).await,
        409,
        "connection_unusable",
    );
    // Bad probe settings are refused clearly.
    let admin = &admin;
    let bad = |body: Value| async move {
        let mut b = json!({"provider": "custom-rest", "kind": "api_key", "display_name": "x",
                           "credentials": {"key": "k"}});
        for (k, v) in body.as_object().unwrap() {
            b[k] = v.clone();
        }
        let req: CreateConnection = serde_json::from_value(b).unwrap();
        admin.create_connection(&req).await
    };
    assert_api_error(
        bad(json!({"probe_url": "http://example.com/me"})).await,
        400,
        "invalid_url",
    );
    assert_api_error(
        bad(json!({"probe_url": "https://u:p@example.com/me"})).await,
        400,
        "invalid_url",
    );
    assert_api_error(
        bad(json!({"params": {"site": "acme"}})).await,
        400,
        "invalid_field",
    );
    assert_eq!(fx.hits(), 0);
    s.stop().await;
}

async fn scheduler_claims_once_and_respects_limits(db: Db) {
    let s = TestServer::start(db).await;
    s.rekey.set_health_settings(HealthSettings {
        max_probe_timeout: Duration::from_secs(5),
        per_provider_concurrency: 2,
        per_provider_rate: 0.0,
        ..Default::default()
    });
    let fx = ProviderFixture::start().await;
    fx.set_mode(Mode::Slow(Duration::from_millis(100)));
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(rest_conn(&s, &fx, &format!("k-{i}")).await);
    }
    // Two workers (as two replicas would) race for the same due checks.
    let (a, b) = tokio::join!(
        s.rekey.check_due("replica-a"),
        s.rekey.check_due("replica-b")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.claimed + b.claimed, 12, "{a:?} {b:?}");
    assert_eq!(a.ok + b.ok, 12, "{a:?} {b:?}");
    assert_eq!(fx.hits(), 12, "every connection checked exactly once");
    assert!(
        fx.max_concurrent() <= 2,
        "per-provider concurrency: {}",
        fx.max_concurrent()
    );
    // Checked connections are not due again until their interval passes.
    let again = s.rekey.check_due("replica-a").await.unwrap();
    assert_eq!(again.claimed, 0, "{again:?}");
    for id in &ids {
        let c = s
            .get_admin(&format!("/api/v1/connections/{id}"))
            .await
            .json();
        assert_eq!(c["status"], "active");
    }
    // A degraded connection comes back sooner than the interval (backoff),
    // but not immediately.
    fx.set_mode(Mode::ServerError);
    check(&s, &ids[0]).await;
    assert_eq!(s.rekey.check_due("replica-a").await.unwrap().claimed, 0);
    s.stop().await;
}

async fn db_conn(s: &TestServer, provider: &str, user: &str, pw: &str, params: Value) -> String {
    s.create_connection(
        json!({"provider": provider, "kind": "basic", "display_name": format!("{provider} {user}"),
                   "params": params, "credentials": {"username": user, "password": pw}}),
    )
    .await
}

/// PostgreSQL and MySQL (MariaDB) probes log in for real: a working login is
/// `active`, a rejected one `needs_reauth`, an unreachable server `degraded`.
async fn database_probes(db: Db) {
    use sqlx::Connection;
    let s = TestServer::start(db).await;
    fast(&s);
    // PostgreSQL (trust auth here, so a role that does not exist is the
    // rejected login: SQLSTATE 28000).
    let pg = json!({"host": "127.0.0.1", "port": "5432", "database": "test"});
    let ok = db_conn(&s, "postgresql", "postgres", "irrelevant-pw-1", pg.clone()).await;
    let r = check(&s, &ok).await;
    assert_checked(&r, "ok", "active");
    let ghost = format!("rekey_no_role_{}", rekey_testkit::uuid_like());
    let bad = db_conn(&s, "postgresql", &ghost, "pw-2", pg).await;
    let r = check(&s, &bad).await;
    assert_eq!(r["status"], "needs_reauth", "{r}");
    assert_eq!(r["last_error"]["code"], "auth_rejected");
    assert_error_mentions(&r, "28000");
    let down = db_conn(&s, "postgresql", "postgres", "pw-3",
        json!({"host": "127.0.0.1", "port": refused_url().rsplit(':').next().unwrap(), "database": "test"})).await;
    let r = check(&s, &down).await;
    assert_eq!(
        (r["status"].as_str(), r["last_error"]["code"].as_str()),
        (Some("degraded"), Some("connection_failed")),
        "{r}"
    );
    // Without the host: refused at creation (and by PATCH), naming it.
    let r = s
        .post_admin(
            "/api/v1/connections",
            json!({"provider": "postgresql", "kind": "basic", "display_name": "nohost",
                   "credentials": {"username": "postgres", "password": "pw-4"}}),
        )
        .await;
    r.assert_error(400, "invalid_field");
    assert!(r.text.contains("`params.host`"), "{}", r.text);
    let nohost = db_conn(
        &s,
        "postgresql",
        "postgres",
        "pw-4",
        json!({"host": "127.0.0.1"}),
    )
    .await;
    s.patch_admin(
        &format!("/api/v1/connections/{nohost}"),
        json!({"params": {}}),
    )
    .await
    .assert_error(400, "invalid_field");
    // A row stored before the rule still gets a clear check result.
    s.sql(&[&format!(
        "UPDATE connections SET params = '{{}}' WHERE id = '{nohost}'"
    )])
    .await;
    let r = check(&s, &nohost).await;
    assert_eq!(r["last_error"]["code"], "probe_misconfigured", "{r}");

    // MariaDB: a user with a password, then the wrong password (error 1045).
    let user = format!("rk{}", &rekey_testkit::uuid_like()[..12]);
    let mut admin = sqlx::MySqlConnection::connect("mysql://root@127.0.0.1:3306/test")
        .await
        .unwrap();
    for host in ["%", "localhost", "127.0.0.1"] {
        sqlx::query(&format!(
            "CREATE USER '{user}'@'{host}' IDENTIFIED BY 'right-pw-5'"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
    }
    let my = json!({"host": "127.0.0.1", "port": "3306", "database": "information_schema"});
    let good = db_conn(&s, "mysql", &user, "right-pw-5", my.clone()).await;
    let wrong = db_conn(&s, "mysql", &user, "wrong-pw-6", my).await;
    let r = check(&s, &good).await;
    assert_checked(&r, "ok", "active");
    let r = check(&s, &wrong).await;
    assert_eq!(r["status"], "needs_reauth", "{r}");
    assert_error_mentions(&r, "1045");
    assert!(!r.to_string().contains("wrong-pw-6"), "{r}");
    for host in ["%", "localhost", "127.0.0.1"] {
        sqlx::query(&format!("DROP USER '{user}'@'{host}'"))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    // Setting params points the password at a host: it needs credentials:read.
    let writer = s.client(&s.key("default", &["connections:write"]).await);
    let params = UpdateConnection {
        params: Some([("host".to_string(), "attacker.example".to_string())].into()),
        ..Default::default()
    };
    assert_api_error(
        writer.update_connection(&ok, &params, None).await,
        403,
        "missing_scope",
    );
    s.stop().await;
}

/// `aws_access_key` connections are probed with a SigV4-signed STS
/// GetCallerIdentity, here against moto with signature checking on: the
/// right key is `active`, a wrong secret or an unknown key `needs_reauth`.
async fn aws_sigv4_probe_against_moto(db: Db) {
    let s = TestServer::start(db).await;
    // moto (Python) loads its STS backend on the first request, which takes
    // over a second on a loaded machine: a roomy timeout, not `fast`.
    s.rekey.set_health_settings(HealthSettings {
        max_probe_timeout: Duration::from_secs(20),
        per_provider_rate: 0.0,
        ..Default::default()
    });
    let moto = rekey_testkit::moto::Moto::start().await;
    let (akid, secret) = moto.create_access_key("rekey-probe").await;
    let conn = |akid: String, secret: String| {
        let s = &s;
        let url = format!("{}/", moto.url);
        async move {
            s.create_connection(
                json!({"provider": "aws", "kind": "aws_access_key", "display_name": "ci deployer",
                           "probe_url": url,
                           "credentials": {"access_key_id": akid, "secret_access_key": secret}}),
            )
            .await
        }
    };
    let good = conn(akid.clone(), secret.clone()).await;
    let r = check(&s, &good).await;
    assert_checked(&r, "ok", "active");
    let wrong = conn(
        akid.clone(),
        "not-the-secret-0123456789abcdefghijklmn".into(),
    )
    .await;
    let r = check(&s, &wrong).await;
    assert_eq!(r["status"], "needs_reauth", "{r}");
    assert_eq!(r["last_error"]["http_status"], 403);
    assert!(!r.to_string().contains("not-the-secret"), "{r}");
    let unknown = conn("AKIAUNKNOWNUNKNOWN00".into(), secret.clone()).await;
    let r = check(&s, &unknown).await;
    assert_eq!(r["status"], "needs_reauth", "{r}");
    assert!(!r.to_string().contains(&secret), "{r}");
    moto.stop().await;
    s.stop().await;
}

/// A token endpoint (RFC 7523 JWT bearer grant, as Google's) and a
/// Snowflake-style SQL API that verify the JWTs rekey signs with the test key.
struct JwtFixture {
    base: String,
    revoked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

async fn jwt_fixture() -> JwtFixture {
    use axum::routing::post;
    use axum::Router;
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let jwk: Value = serde_json::from_str(&fixture("test-rsa-2048.jwk.json")).unwrap();
    let key = Arc::new(
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap(),
    );
    let fp = fixture("test-rsa-2048.fingerprint").trim().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let revoked = Arc::new(AtomicBool::new(false));
    let (k1, k2, rv, token_url) = (key.clone(), key, revoked.clone(), format!("{base}/token"));
    let app = Router::new()
        .route(
            "/token",
            post(move |form: axum::extract::Form<std::collections::HashMap<String, String>>| {
                let (key, rv, token_url) = (k1.clone(), rv.clone(), token_url.clone());
                async move {
                    let mut v = Validation::new(Algorithm::RS256);
                    v.set_audience(&[token_url]);
                    v.set_issuer(&["probe@rekey-test.iam.gserviceaccount.com"]);
                    let ok = form.get("grant_type").map(String::as_str)
                        == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                        && form.get("assertion").is_some_and(|a| {
                            decode::<Value>(a, &key, &v).is_ok_and(|t| {
                                t.claims["scope"] == "https://www.googleapis.com/auth/cloud-platform.read-only"
                                    && t.header.kid.as_deref() == Some("key-1")
                            })
                        });
                    if ok && !rv.load(Ordering::SeqCst) {
                        (axum::http::StatusCode::OK, axum::Json(json!({"access_token": "ya29.fixture-token", "token_type": "Bearer", "expires_in": 3599})))
                    } else {
                        (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})))
                    }
                }
            }),
        )
        .route(
            "/api/v2/statements",
            post(move |headers: axum::http::HeaderMap| {
                let (key, fp) = (k2.clone(), fp.clone());
                async move {
                    let mut v = Validation::new(Algorithm::RS256);
                    v.set_issuer(&[format!("MYORG-ACCT.SVC_USER.SHA256:{fp}")]);
                    v.sub = Some("MYORG-ACCT.SVC_USER".into());
                    v.validate_aud = false;
                    let typed = headers.get("x-snowflake-authorization-token-type").and_then(|h| h.to_str().ok()) == Some("KEYPAIR_JWT");
                    let jwt = headers.get("authorization").and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "));
                    if typed && jwt.is_some_and(|j| decode::<Value>(j, &key, &v).is_ok()) {
                        (axum::http::StatusCode::OK, axum::Json(json!({"code": "090001", "statementHandle": "01-fixture"})))
                    } else {
                        (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({"code": "390144", "message": "JWT token is invalid."})))
                    }
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    JwtFixture { base, revoked }
}

/// Service-account key files mint a token first (RFC 7523) and probe with
/// it; Snowflake key pairs present a key-pair JWT. Both against fixtures
/// that verify the signatures with the public key.
async fn key_file_and_key_pair_probes(db: Db) {
    let s = TestServer::start(db).await;
    fast(&s);
    let jf = jwt_fixture().await;
    let api = ProviderFixture::start().await;
    api.set_valid_credential(Some("Bearer ya29.fixture-token"));
    let pem = fixture("test-rsa-2048.pem");
    let sa = s.create_connection(json!({"provider": "google-cloud", "kind": "service_account_json", "display_name": "bq reader",
                   "probe_url": api.rest_url(),
                   "credentials": {"json": {"type": "service_account", "project_id": "rekey-test",
                       "private_key_id": "key-1", "private_key": pem,
                       "client_email": "probe@rekey-test.iam.gserviceaccount.com",
                       "token_uri": format!("{}/token", jf.base)}}})).await;
    let r = check(&s, &sa).await;
    assert_checked(&r, "ok", "active");
    assert_eq!(
        api.last_authorization().as_deref(),
        Some("Bearer ya29.fixture-token")
    );
    // The key was deleted in the console: the token request fails → needs_reauth.
    jf.revoked.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = check(&s, &sa).await;
    assert_eq!(r["status"], "needs_reauth", "{r}");
    assert_eq!(r["last_error"]["code"], "invalid_grant");
    assert!(!r.to_string().contains("PRIVATE KEY"), "{r}");

    let sf = |user: &str| {
        let s = &s;
        let body = json!({"provider": "snowflake", "kind": "rsa_key_pair", "display_name": format!("sf {user}"),
            "params": {"account": "myorg-acct"}, "probe_url": format!("{}/api/v2/statements", jf.base),
            "credentials": {"private_key_pem": pem, "username": user}});
        async move { s.create_connection(body).await }
    };
    let good = sf("svc_user").await;
    let r = check(&s, &good).await;
    assert_checked(&r, "ok", "active");
    let other = sf("other_user").await;
    let r = check(&s, &other).await;
    assert_eq!(r["status"], "needs_reauth", "{r}");
    assert_eq!(r["last_error"]["http_status"], 401);
    assert_error_mentions(&r, "JWT token is invalid");
    s.stop().await;
}
