//! Outbound URL policy (issue 12, item 4): a caller who may set a probe
//! URL, a webhook receiver, an integration endpoint, a key file's
//! `token_uri` or a database host must not make rekey connect into its own
//! network (cloud metadata at 169.254.169.254, private ranges, …).
//!
//! Refused IP literals fail at configuration time with a 400. Host names
//! are accepted and checked after DNS, at connection time: the tests answer
//! `*.test` names with fixed addresses (`Rekey::set_test_host`), so no
//! traffic leaves the machine, and a counting loopback listener reached
//! through `0.0.0.0` (which Linux delivers to the host itself) proves that a
//! refused name is never connected to while an allowed one is.

use rekey_core::outbound::OutboundPolicy;
use rekey_service::{HealthSettings, WebhookSettings};
use rekey_testkit::provider_fixture::ProviderFixture;
use rekey_testkit::webhook_receiver::WebhookReceiver;
use rekey_testkit::{assert_checked, assert_error_mentions, both_backends, Db, Resp, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

both_backends!(
    refused_ip_literals_are_rejected_at_configuration,
    names_resolving_to_refused_addresses_are_refused_at_connection,
    loopback_names_still_work,
    allow_list_lets_named_ranges_and_hosts_through,
);

const KEY: &str = "k-outbound-secret-7f3a";

fn quick(s: &TestServer) {
    s.rekey.set_health_settings(HealthSettings {
        max_probe_timeout: Duration::from_secs(2),
        per_provider_rate: 0.0,
        ..Default::default()
    });
    s.rekey.set_webhook_settings(WebhookSettings {
        max_attempts: 1,
        base_delay_ms: 20,
        max_delay_ms: 200,
        timeout: Duration::from_secs(2),
        ..Default::default()
    });
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A loopback listener that counts the connections it accepts and hangs up.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            n2.fetch_add(1, Ordering::SeqCst);
            drop(sock);
        }
    });
    (port, n)
}

fn api_key_conn(extra: Value) -> Value {
    let mut body = json!({
        "provider": "custom-rest", "kind": "api_key", "display_name": "Probe target",
        "credentials": {"key": KEY, "placement": "header", "name": "X-Api-Key"},
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn pg_conn(host: &str) -> Value {
    json!({"provider": "postgresql", "kind": "basic", "display_name": "db",
           "params": {"host": host, "port": "5432", "database": "test"},
           "credentials": {"username": "postgres", "password": KEY}})
}

fn sa_conn(token_uri: &str, probe_url: &str) -> Value {
    let pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/test-rsa-2048.pem"),
    )
    .unwrap();
    json!({"provider": "google-cloud", "kind": "service_account_json", "display_name": "sa",
           "probe_url": probe_url,
           "credentials": {"json": {"type": "service_account", "project_id": "p",
               "private_key_id": "key-1", "private_key": pem,
               "client_email": "probe@p.iam.gserviceaccount.com", "token_uri": token_uri}}})
}

/// An integration; for `custom-oauth2` every endpoint defaults to a public
/// host and `endpoints` overrides some.
fn integration(endpoints: Value, provider: &str) -> Value {
    let mut ep = match provider {
        "custom-oauth2" => json!({
            "authorize_url": "https://idp.example.com/authorize",
            "token_url": "https://idp.example.com/token",
            "revocation_url": "https://idp.example.com/revoke",
            "identity_url": "https://idp.example.com/me",
        }),
        _ => json!({}),
    };
    for (k, v) in endpoints.as_object().unwrap() {
        ep[k] = v.clone();
    }
    json!({"provider": provider, "display_name": "Intranet IdP", "client_id": "cid",
           "client_secret": KEY, "endpoints": ep})
}

/// 400 with `code`, a message naming `field`, and neither the URL's path nor a secret.
fn assert_refused(r: &rekey_testkit::Resp, code: &str, field: &str) {
    r.assert_error(400, code);
    let m = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(m.contains(field), "{field}: {m}");
    assert!(m.contains("--allow-outbound"), "{m}");
    for leak in [KEY, "meta-data", "hook-token"] {
        assert!(!r.text.contains(leak), "{leak} in {}", r.text);
    }
}

async fn check(s: &TestServer, id: &str) -> Value {
    s.act(&format!("/api/v1/connections/{id}/check"))
        .await
        .ok_json()
}

async fn create(s: &TestServer, body: Value) -> String {
    s.create_connection(body).await
}

async fn create_hook(s: &TestServer, url: &str) -> String {
    let r = s
        .post_admin("/api/v1/webhooks", json!({"url": url, "events": ["*"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json()["webhook"]["id"].as_str().unwrap().to_string()
}

/// Register an integration of `provider` with these endpoints (it must be
/// accepted), then try a client-credentials connection through it.
async fn m2m_connection(s: &TestServer, endpoints: Value, provider: &str, name: &str) -> Resp {
    let body = integration(endpoints, provider);
    let integ = s
        .post_admin("/api/v1/integrations", body)
        .await
        .created_id();
    s.post_admin(
        "/api/v1/connections",
        json!({"provider": provider, "kind": "oauth2_client_credentials",
               "display_name": name, "credentials": {"integration": integ}}),
    )
    .await
}

/// Send a `webhook.test` event and run delivery passes until it is settled.
async fn deliver_test_event(s: &TestServer, hook: &str) -> Value {
    let r = s.act(&format!("/api/v1/webhooks/{hook}/test")).await;
    let did = r.json()["id"].as_str().unwrap().to_string();
    s.settle_delivery(hook, &did).await
}

async fn refused_ip_literals_are_rejected_at_configuration(db: Db) {
    let s = TestServer::start(db).await;
    let admin = &s.admin_key;
    // probe_url, in every spelling of an internal address.
    for u in [
        "https://169.254.169.254/latest/meta-data/iam/",
        "https://[::ffff:169.254.169.254]/latest/meta-data/",
        "https://0xa9fea9fe/latest/meta-data/",
        "https://10.0.0.5/meta-data",
        "https://172.16.0.1/meta-data",
        "https://192.168.1.1/meta-data",
        "https://100.64.0.1/meta-data",
        "https://0.0.0.0/meta-data",
        "https://[fd00:ec2::254]/meta-data",
        "https://[fe80::1]/meta-data",
        "https://224.0.0.1/meta-data",
    ] {
        let r = s
            .post(
                "/api/v1/connections",
                admin,
                api_key_conn(json!({"probe_url": u})),
            )
            .await;
        assert_refused(&r, "invalid_url", "`probe_url`");
    }
    // The boundary next to a refused range is an ordinary address.
    let id = create(
        &s,
        api_key_conn(json!({"probe_url": "https://172.15.255.255/v1/me"})),
    )
    .await;
    let r = s
        .patch(
            &format!("/api/v1/connections/{id}"),
            admin,
            json!({"probe_url": "https://172.16.0.0/v1/me"}),
        )
        .await;
    assert_refused(&r, "invalid_url", "`probe_url`");

    // Webhook receivers.
    let r = s
        .post(
            "/api/v1/webhooks",
            admin,
            json!({"url": "https://10.1.2.3/hook-token", "events": ["*"]}),
        )
        .await;
    assert_refused(&r, "invalid_url", "`url`");
    let hook = create_hook(&s, "https://hooks.example.com/hook-token").await;
    let r = s
        .patch(
            &format!("/api/v1/webhooks/{hook}"),
            admin,
            json!({"url": "https://[::ffff:192.168.0.10]/hook-token"}),
        )
        .await;
    assert_refused(&r, "invalid_url", "`url`");

    // Integration endpoint overrides that rekey calls (discovery included).
    for (field, ep) in [
        (
            "`endpoints.token_url`",
            json!({"token_url": "https://169.254.169.254/meta-data"}),
        ),
        (
            "`endpoints.issuer`",
            json!({"issuer": "https://[fd00::1]/meta-data"}),
        ),
        (
            "`endpoints.revocation_url`",
            json!({"revocation_url": "https://10.0.0.9/meta-data"}),
        ),
        (
            "`endpoints.identity_url`",
            json!({"identity_url": "https://100.100.100.200/meta-data"}),
        ),
    ] {
        let r = s
            .post(
                "/api/v1/integrations",
                admin,
                integration(ep, "custom-oauth2"),
            )
            .await;
        assert_refused(&r, "invalid_integration", field);
    }
    let r = s
        .post(
            "/api/v1/integrations",
            admin,
            integration(json!({}), "custom-oauth2"),
        )
        .await;
    let integ = r.created_id();
    let r = s
        .patch(
            &format!("/api/v1/integrations/{integ}"),
            admin,
            json!({"endpoints": {"token_url": "https://192.168.10.10/meta-data"}}),
        )
        .await;
    assert_refused(&r, "invalid_integration", "`endpoints.token_url`");

    // Database probe hosts (also the decimal spelling getaddrinfo accepts).
    for host in ["169.254.169.254", "10.0.0.5", "2852039166", "0.0.0.0"] {
        let r = s.post("/api/v1/connections", admin, pg_conn(host)).await;
        assert_refused(&r, "invalid_field", "`params.host`");
    }
    let db_id = create(&s, pg_conn("db.example.com")).await;
    let r = s
        .patch(
            &format!("/api/v1/connections/{db_id}"),
            admin,
            json!({"params": {"host": "172.20.0.2", "port": "5432"}}),
        )
        .await;
    assert_refused(&r, "invalid_field", "`params.host`");

    // A service-account key file's token_uri.
    let r = s
        .post(
            "/api/v1/connections",
            admin,
            sa_conn(
                "https://169.254.169.254/meta-data/token",
                "https://api.example.com/",
            ),
        )
        .await;
    assert_refused(&r, "invalid_url", "`credentials.json.token_uri`");
    s.stop().await;
}

async fn names_resolving_to_refused_addresses_are_refused_at_connection(db: Db) {
    let s = TestServer::start(db).await;
    quick(&s);
    s.rekey
        .set_test_host("metadata.test", &[ip("169.254.169.254")]);
    s.rekey.set_test_host("intranet.test", &[ip("10.0.0.5")]);
    s.rekey
        .set_test_host("mapped.test", &[ip("::ffff:192.168.1.1"), ip("fd00::5")]);
    let (port, accepted) = counting_listener().await;
    // On Linux 0.0.0.0 reaches this host: the listener would see it.
    s.rekey.set_test_host("sneaky.test", &[ip("0.0.0.0")]);

    // A probe URL naming the metadata service: accepted (a name), refused
    // when the probe connects, with its own code; the key never leaves.
    for (u, needle) in [
        (
            "https://metadata.test/latest/meta-data/".to_string(),
            "metadata.test resolves to 169.254.169.254",
        ),
        (
            "https://intranet.test/v1/me".to_string(),
            "intranet.test resolves to 10.0.0.5",
        ),
        (
            "https://mapped.test/v1/me".to_string(),
            "mapped.test resolves to ::ffff:192.168.1.1",
        ),
        (
            format!("https://sneaky.test:{port}/v1/me"),
            "sneaky.test resolves to 0.0.0.0",
        ),
    ] {
        let id = create(&s, api_key_conn(json!({"probe_url": u}))).await;
        let r = check(&s, &id).await;
        assert_checked(&r, "unexpected", "degraded");
        let e = &r["last_error"];
        assert_eq!(e["code"], "outbound_refused", "{r}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(needle), "{m}");
        assert!(!r.to_string().contains(KEY), "{r}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a refused name was connected to"
    );

    // Webhook receivers: the delivery fails with the refusal, no post is made.
    let hook = create_hook(&s, "https://metadata.test/hook-token").await;
    let d = deliver_test_event(&s, &hook).await;
    assert_eq!(d["status"], "failed", "{d}");
    let err = d["last_error"].as_str().unwrap();
    assert!(
        err.contains("outbound connection refused")
            && err.contains("169.254.169.254")
            && !err.contains("hook-token"),
        "{d}"
    );

    // Integration endpoints: a token request to an intranet name …
    let endpoints = json!({"token_url": "https://intranet.test/oauth/token"});
    let r = m2m_connection(&s, endpoints, "custom-oauth2", "m2m").await;
    r.assert_error(422, "outbound_refused");
    assert!(
        r.text.contains("intranet.test resolves to 10.0.0.5"),
        "{}",
        r.text
    );
    assert!(!r.text.contains(KEY));
    // … and OIDC discovery at an issuer that resolves to the metadata service.
    let endpoints = json!({"issuer": "https://metadata.test"});
    let r = m2m_connection(&s, endpoints, "custom-oidc", "m2m oidc").await;
    r.assert_error(422, "outbound_refused");

    // Database probes resolve the host themselves, and check it.
    s.rekey.set_test_host("db.intranet.test", &[ip("10.0.0.5")]);
    let id = create(&s, pg_conn("db.intranet.test")).await;
    let r = check(&s, &id).await;
    assert_eq!(r["last_error"]["code"], "outbound_refused", "{r}");
    assert!(!r.to_string().contains(KEY), "{r}");

    // A key file whose token_uri names the metadata service.
    let id = create(
        &s,
        sa_conn(
            "https://metadata.test/token",
            "https://api.example.com/v1/me",
        ),
    )
    .await;
    let r = check(&s, &id).await;
    assert_eq!(r["last_error"]["code"], "outbound_refused", "{r}");
    assert_error_mentions(&r, "metadata.test resolves to 169.254.169.254");
    s.stop().await;
}

async fn loopback_names_still_work(db: Db) {
    let s = TestServer::start(db).await;
    quick(&s);
    let fx = ProviderFixture::start().await;
    fx.set_valid_credential(Some(KEY));
    // `localhost` through the system resolver, and the literal address.
    for base in [
        fx.base_url().replace("127.0.0.1", "localhost"),
        fx.base_url(),
    ] {
        let id = create(
            &s,
            api_key_conn(json!({"probe_url": format!("{base}/v1/me")})),
        )
        .await;
        let r = check(&s, &id).await;
        assert_eq!(
            (r["outcome"].as_str(), r["status"].as_str()),
            (Some("ok"), Some("active")),
            "{base}: {r}"
        );
    }
    // A database host name that resolves to loopback logs in at the checked address.
    s.rekey.set_test_host("db.loop.test", &[ip("127.0.0.1")]);
    let r = s
        .post_admin(
            "/api/v1/connections",
            json!({"provider": "postgresql", "kind": "basic", "display_name": "db",
                   "params": {"host": "db.loop.test", "port": "5432", "database": "test"},
                   "credentials": {"username": "postgres", "password": "irrelevant"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = check(&s, r.json()["id"].as_str().unwrap()).await;
    assert_eq!(r["status"], "active", "{r}");
    // Webhooks to a loopback receiver by name.
    let rx = WebhookReceiver::start(0).await;
    let hook = create_hook(&s, &rx.url().replace("127.0.0.1", "localhost")).await;
    let d = deliver_test_event(&s, &hook).await;
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(rx.delivered().len(), 1);
    s.stop().await;
}

async fn allow_list_lets_named_ranges_and_hosts_through(db: Db) {
    let s = TestServer::start(db).await;
    quick(&s);
    let admin = &s.admin_key;
    // Configuration: refused by default, accepted once the range is allowed.
    let body = api_key_conn(json!({"probe_url": "https://10.20.0.5/v1/me"}));
    s.post("/api/v1/connections", admin, body.clone())
        .await
        .assert_error(400, "invalid_url");
    s.rekey
        .set_outbound_policy(OutboundPolicy::parse("10.20.0.0/16").unwrap());
    create(&s, body).await;
    create_hook(&s, "https://10.20.255.255/hook").await;
    create(&s, pg_conn("10.20.1.1")).await;
    // Only the named range: its neighbours stay refused.
    s.post(
        "/api/v1/connections",
        admin,
        api_key_conn(json!({"probe_url": "https://10.21.0.1/v1/me"})),
    )
    .await
    .assert_error(400, "invalid_url");

    // Connection time: a name resolving to 0.0.0.0 (this host, on Linux)
    // is refused without a connection, then reached once allowed by name
    // or by range.
    let (port, accepted) = counting_listener().await;
    s.rekey.set_test_host("sneaky.test", &[ip("0.0.0.0")]);
    s.rekey.set_outbound_policy(OutboundPolicy::default());
    let id = create(
        &s,
        api_key_conn(json!({"probe_url": format!("https://sneaky.test:{port}/v1/me")})),
    )
    .await;
    assert_eq!(
        check(&s, &id).await["last_error"]["code"],
        "outbound_refused"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    for (allow, n) in [("sneaky.test", 1), ("0.0.0.0/8", 2)] {
        s.rekey
            .set_outbound_policy(OutboundPolicy::parse(allow).unwrap());
        let r = check(&s, &id).await;
        // The listener hangs up (no TLS): a network failure, not a refusal.
        assert_eq!(r["last_error"]["code"], "connection_failed", "{allow}: {r}");
        assert_eq!(accepted.load(Ordering::SeqCst), n, "{allow}");
    }
    s.stop().await;
}
