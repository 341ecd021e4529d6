//! Webhooks end to end: subscriptions, events from the outbox, Standard
//! Webhooks signatures checked by an independent verifier, retries against
//! a real receiver that fails the first N deliveries, giving up, replay.
//! On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_api::CreateWebhook;
use rekey_service::{HealthSettings, WebhookSettings};
use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
use rekey_testkit::webhook_receiver::{verify_signature, Received, WebhookReceiver};
use rekey_testkit::{assert_api_error, both_backends, items, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

both_backends!(
    events_are_signed_retried_and_replayable,
    failing_receiver_gives_up_after_the_limit,
    subscriptions_validate_and_filter,
);

fn quick(s: &TestServer, max_attempts: i64) {
    s.rekey.set_webhook_settings(WebhookSettings {
        max_attempts,
        base_delay_ms: 20,
        max_delay_ms: 200,
        timeout: Duration::from_secs(2),
        ..Default::default()
    });
    s.rekey.set_health_settings(HealthSettings {
        max_probe_timeout: Duration::from_secs(1),
        per_provider_rate: 0.0,
        ..Default::default()
    });
}

/// Run delivery passes (as the worker does) until `pred` holds.
async fn pump(
    s: &TestServer,
    rx: &WebhookReceiver,
    pred: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        s.rekey.deliver_due("test-worker", 100).await.unwrap();
        let d = rx.delivered();
        if pred(&d) || Instant::now() > deadline {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn body(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

async fn create_hook(s: &TestServer, url: &str, events: Value) -> (String, String) {
    let r = s
        .post_admin(
            "/api/v1/webhooks",
            json!({"url": url, "events": events, "description": "ops"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    let j = r.json();
    (
        j["webhook"]["id"].as_str().unwrap().to_string(),
        j["secret"].as_str().unwrap().to_string(),
    )
}

async fn events_are_signed_retried_and_replayable(db: Db) {
    let s = TestServer::start(db).await;
    quick(&s, 10);
    let rx = WebhookReceiver::start(2).await;
    let (hook, secret) = create_hook(&s, &rx.url(), json!(["connection.*"])).await;
    assert!(secret.starts_with("whsec_"));
    // The secret is shown once: never in reads.
    for path in [
        "/api/v1/webhooks".to_string(),
        format!("/api/v1/webhooks/{hook}"),
    ] {
        let t = s.get_admin(&path).await.text;
        assert!(!t.contains(&secret[6..]), "{t}");
    }

    let fx = ProviderFixture::start().await;
    let api_secret = "k-webhook-secret-abc123";
    fx.set_valid_credential(Some(&format!("Bearer {api_secret}")));
    let id = s
        .create_api_key_conn(
            &s.admin_key,
            api_secret,
            json!({"probe_url": fx.rest_url(),
                   "credentials": {"key": api_secret, "placement": "header", "name": "Authorization", "prefix": "Bearer "}}),
        )
        .await;
    fx.set_mode(Mode::Unauthorized);
    let r = s.act(&format!("/api/v1/connections/{id}/check")).await;
    assert_eq!(r.json()["status"], "needs_reauth");

    // created + status_changed; the first two posts fail and are retried.
    let got = pump(&s, &rx, |d| d.len() >= 2).await;
    assert_eq!(got.len(), 2, "delivered: {got:?}");
    let all = rx.received();
    assert_eq!(all.iter().filter(|r| r.answered == 500).count(), 2);
    for r in &all {
        assert!(verify_signature(&secret, r), "bad signature on {}", r.id);
        assert!(r.id.starts_with("msg_"));
        let ts: i64 = r.timestamp.parse().unwrap();
        assert!((ts - time_now()).abs() < 60, "timestamp is the attempt's");
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains(api_secret), "secret in payload: {text}");
        assert!(!text.contains(&secret[6..]));
    }
    // A failed attempt is retried with the same webhook-id.
    let failed_ids: Vec<&str> = all
        .iter()
        .filter(|r| r.answered == 500)
        .map(|r| r.id.as_str())
        .collect();
    for f in &failed_ids {
        assert!(got.iter().any(|d| d.id == *f), "retry of {f} delivered");
    }
    // Tampering breaks the signature (the verifier is not a rubber stamp).
    let mut forged = got[0].clone();
    forged.body = br#"{"type":"connection.deleted"}"#.to_vec();
    assert!(!verify_signature(&secret, &forged));

    let created = got
        .iter()
        .map(body)
        .find(|b| b["type"] == "connection.created")
        .unwrap();
    assert_eq!(created["data"]["connection_id"], id.as_str());
    assert_eq!(created["data"]["provider"], "custom-rest");
    assert!(created["timestamp"].is_string());
    let changed = got
        .iter()
        .map(body)
        .find(|b| b["type"] == "connection.status_changed")
        .unwrap();
    assert_eq!(changed["data"]["from"], "pending");
    assert_eq!(changed["data"]["to"], "needs_reauth");
    assert_eq!(changed["data"]["error"]["code"], "auth_rejected");
    assert_eq!(changed["data"]["error"]["http_status"], 401);

    // Deliveries and their attempts are visible.
    let l = s
        .get_admin(&format!("/api/v1/webhooks/{hook}/deliveries"))
        .await
        .json();
    let items = items(&l);
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|d| d["status"] == "delivered"));
    let retried = items
        .iter()
        .find(|d| d["attempts"].as_i64().unwrap() > 1)
        .unwrap();
    let did = retried["id"].as_str().unwrap();
    let d = s
        .get_admin(&format!("/api/v1/webhooks/{hook}/deliveries/{did}"))
        .await
        .json();
    let log = d["attempt_log"].as_array().unwrap();
    assert_eq!(log.first().unwrap()["http_status"], 500);
    assert_eq!(log.last().unwrap()["http_status"], 204);
    assert!(log.first().unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("500"));

    // Replay sends the same message again (same webhook-id).
    let event_id = d["event_id"].as_str().unwrap().to_string();
    let r = s
        .act(&format!("/api/v1/webhooks/{hook}/deliveries/{did}/replay"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json()["status"], "pending");
    let got = pump(&s, &rx, |d| d.len() >= 3).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].id, event_id);
    assert!(verify_signature(&secret, &got[2]));

    // Recovery after reauthorization by credential update: reauthorized +
    // status_changed (needs_reauth → pending).
    let r = s.put_admin(&format!("/api/v1/connections/{id}/credentials"), json!({"credentials": {"key": "k-new-1", "placement": "header", "name": "Authorization", "prefix": "Bearer "}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got = pump(&s, &rx, |d| d.len() >= 5).await;
    let types: Vec<String> = got[3..]
        .iter()
        .map(|r| body(r)["type"].as_str().unwrap().to_string())
        .collect();
    assert!(
        types.contains(&"connection.reauthorized".to_string()),
        "{types:?}"
    );
    assert!(
        types.contains(&"connection.status_changed".to_string()),
        "{types:?}"
    );
    assert!(got
        .iter()
        .all(|r| !String::from_utf8_lossy(&r.body).contains("k-new-1")));

    // The secret can be rotated; new deliveries verify with the new one only.
    let r = s
        .act(&format!("/api/v1/webhooks/{hook}/rotate-secret"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let new_secret = r.json()["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let r = s.act(&format!("/api/v1/webhooks/{hook}/test")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let got = pump(&s, &rx, |d| d.len() >= 6).await;
    let last = got.last().unwrap();
    assert_eq!(body(last)["type"], "webhook.test");
    assert!(verify_signature(&new_secret, last));
    assert!(!verify_signature(&secret, last));
    s.stop().await;
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Pause or resume the subscription `hook`; asserts `200 OK` and returns
/// its view.
async fn set_enabled(s: &TestServer, hook: &str, enabled: bool) -> Value {
    let path = format!("/api/v1/webhooks/{hook}");
    let r = s.patch_admin(&path, json!({"enabled": enabled})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

async fn failing_receiver_gives_up_after_the_limit(db: Db) {
    let s = TestServer::start(db).await;
    quick(&s, 3);
    let rx = WebhookReceiver::start(1000).await;
    let (hook, _) = create_hook(&s, &rx.url(), json!(["*"])).await;
    let r = s.act(&format!("/api/v1/webhooks/{hook}/test")).await;
    let did = r.json()["id"].as_str().unwrap().to_string();
    let d = s.settle_delivery(&hook, &did).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["attempt_log"].as_array().unwrap().len(), 3);
    assert_eq!(rx.received().len(), 3);
    // Backoff: attempts are spaced out, not sent back to back.
    let at: Vec<Instant> = rx.received().iter().map(|r| r.at).collect();
    assert!(
        at[1] - at[0] >= Duration::from_millis(10),
        "{:?}",
        at[1] - at[0]
    );
    // Failed deliveries can be listed by status and replayed once the receiver is fixed.
    let l = s
        .get_admin(&format!("/api/v1/webhooks/{hook}/deliveries?status=failed"))
        .await
        .json();
    assert_eq!(items(&l).len(), 1);
    rx.set_fail_next(0);
    s.act(&format!("/api/v1/webhooks/{hook}/deliveries/{did}/replay"))
        .await;
    let got = pump(&s, &rx, |d| !d.is_empty()).await;
    assert_eq!(got.len(), 1);
    // A pending retry waits while the subscription is paused.
    rx.set_fail_next(1);
    let r = s.act(&format!("/api/v1/webhooks/{hook}/test")).await;
    let paused_did = r.json()["id"].as_str().unwrap().to_string();
    s.rekey.deliver_due("w", 100).await.unwrap(); // fails once, retry pending
    set_enabled(&s, &hook, false).await;
    let n = rx.received().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.rekey.deliver_due("w", 100).await.unwrap().claimed, 0);
    assert_eq!(rx.received().len(), n, "nothing sent while paused");
    set_enabled(&s, &hook, true).await;
    let got = pump(&s, &rx, |d| d.len() >= 2).await;
    assert_eq!(got.len(), 2);
    let d = s
        .get_admin(&format!("/api/v1/webhooks/{hook}/deliveries/{paused_did}"))
        .await
        .json();
    assert_eq!(d["status"], "delivered");
    // A paused subscription gets no new events.
    let v = set_enabled(&s, &hook, false).await;
    assert_eq!(v["enabled"], false);
    s.create_api_key_conn(&s.admin_key, "k-1", json!({})).await;
    let l = s
        .get_admin(&format!("/api/v1/webhooks/{hook}/deliveries"))
        .await
        .json();
    assert_eq!(items(&l).len(), 2);
    // A delivery that cannot even be signed (its secret row is gone) is
    // recorded as failed attempts and gives up; it does not loop.
    set_enabled(&s, &hook, true).await;
    s.sql(&["DELETE FROM secrets WHERE owner_kind = 'webhook'"])
        .await;
    let r = s.act(&format!("/api/v1/webhooks/{hook}/test")).await;
    let did = r.json()["id"].as_str().unwrap().to_string();
    let before = rx.received().len();
    let d = s.settle_delivery(&hook, &did).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert!(
        d["last_error"].as_str().unwrap().contains("cannot sign"),
        "{d}"
    );
    assert_eq!(rx.received().len(), before, "nothing unsigned was sent");
    s.stop().await;
}

async fn subscriptions_validate_and_filter(db: Db) {
    let s = TestServer::start(db).await;
    quick(&s, 3);
    let k = &s.admin_key;
    let rx = WebhookReceiver::start(0).await;
    let admin = s.client(k);
    let hook_to = |url: &str, events: &[&str]| CreateWebhook {
        url: url.into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        description: None,
    };
    for (req, code) in [
        (hook_to("http://hooks.example.com/x", &["*"]), "invalid_url"),
        (hook_to("not a url", &["*"]), "invalid_url"),
        (
            hook_to(&rx.url(), &["connection.exploded"]),
            "invalid_field",
        ),
        (hook_to(&rx.url(), &[]), "invalid_field"),
    ] {
        assert_api_error(admin.create_webhook(&req).await, 400, code);
    }
    // Not a field of the request type: written by hand.
    s.post(
        "/api/v1/webhooks",
        k,
        json!({"url": rx.url(), "events": ["*"], "secret": "mine"}),
    )
    .await
    .assert_error(400, "invalid_body");
    let writer = s.client(&s.key("default", &["connections:write"]).await);
    assert_api_error(
        writer.create_webhook(&hook_to(&rx.url(), &["*"])).await,
        403,
        "missing_scope",
    );
    assert_api_error(
        admin
            .get_webhook("whk_0000000000000000000000000000000a")
            .await,
        404,
        "webhook_not_found",
    );
    assert_api_error(admin.get_webhook("bogus").await, 400, "invalid_id");

    // Only matching events are queued; other tenants' events never reach us.
    let (hook, _) = create_hook(&s, &rx.url(), json!(["connection.deleted"])).await;
    let id = s.create_api_key_conn(k, "k-1", json!({})).await;
    let other = s.key("other", &["admin"]).await;
    let oid = s.create_api_key_conn(&other, "k-2", json!({})).await;
    s.delete(&format!("/api/v1/connections/{oid}"), &other)
        .await;
    let r = s.delete(&format!("/api/v1/connections/{id}"), k).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let got = pump(&s, &rx, |d| !d.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.rekey.deliver_due("w", 100).await.unwrap();
    let got2 = rx.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got2.len(), 1, "only one event matched");
    assert_eq!(body(&got2[0])["type"], "connection.deleted");
    assert_eq!(body(&got2[0])["data"]["connection_id"], id.as_str());
    // Deleting the subscription removes its deliveries.
    let r = s.delete(&format!("/api/v1/webhooks/{hook}"), k).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_api_error(
        admin.list_deliveries(&hook, &Default::default()).await,
        404,
        "webhook_not_found",
    );
    s.stop().await;
}
