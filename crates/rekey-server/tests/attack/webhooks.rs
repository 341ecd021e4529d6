//! Unbounded webhook fan-out (issue 12 item 9): 2,000 subscriptions per
//! tenant were accepted, `GET /api/v1/webhooks` answered all of them at once,
//! and every connection change wrote one delivery row per subscription
//! inside its own write transaction. Now subscriptions are capped per
//! tenant (also under concurrent creates), the list is paginated, and a
//! change writes one outbox event; the delivery worker fans it out later,
//! exactly once, also with two replicas at it.

use futures_util::future::join_all;
use rekey_service::WebhookSettings;
use rekey_testkit::webhook_receiver::WebhookReceiver;
use rekey_testkit::{both_backends, items, Db, Resp, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

both_backends!(
    subscriptions_are_capped_per_tenant,
    concurrent_creates_never_pass_the_cap,
    subscription_list_is_paginated,
    changes_write_no_deliveries_and_the_worker_fans_out_once,
    fan_out_is_all_or_nothing,
    two_replicas_never_duplicate_a_fan_out,
);

fn settings(max_webhooks: i64) -> WebhookSettings {
    WebhookSettings {
        max_webhooks,
        base_delay_ms: 20,
        max_delay_ms: 200,
        timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

/// A server whose tenants may have `max_webhooks` subscriptions each, its
/// admin key, and a receiver for the deliveries.
async fn start(db: Db, max_webhooks: i64) -> (TestServer, String, WebhookReceiver) {
    let s = TestServer::start(db).await;
    s.rekey.set_webhook_settings(settings(max_webhooks));
    let k = s.admin_key.clone();
    (s, k, WebhookReceiver::start(0).await)
}

/// `POST /api/v1/webhooks`: subscribe `url` to the events matching `events`.
async fn subscribe(s: &TestServer, key: &str, url: &str, events: &str) -> Resp {
    s.post(
        "/api/v1/webhooks",
        key,
        json!({"url": url, "events": [events]}),
    )
    .await
}

async fn create(s: &TestServer, key: &str, url: &str) -> reqwest::StatusCode {
    let r = subscribe(s, key, url, "connection.*").await;
    assert!(
        r.status == StatusCode::CREATED || r.status == StatusCode::CONFLICT,
        "{} {}",
        r.status,
        r.text
    );
    r.status
}

const DELIVERIES: &str = "SELECT COUNT(*) FROM webhook_deliveries";
const NOT_FANNED_OUT: &str = "SELECT COUNT(*) FROM webhook_events WHERE fanned_out_at IS NULL";

/// `SELECT COUNT(*) …` on the test's database.
async fn count(s: &TestServer, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(s.rekey.store().pool())
        .await
        .unwrap()
}

async fn subscriptions_are_capped_per_tenant(db: Db) {
    let (s, k, rx) = start(db, 3).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = subscribe(&s, &k, &rx.url(), "*").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        ids.push(r.json()["webhook"]["id"].as_str().unwrap().to_string());
    }
    // The fourth is refused, with a stable code and the limit named.
    let r = subscribe(&s, &k, &rx.url(), "*").await;
    r.assert_error(409, "webhook_limit");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains('3') && msg.contains("--max-webhooks"), "{msg}");
    // Paused subscriptions count too (they can be resumed).
    let r = s
        .patch(
            &format!("/api/v1/webhooks/{}", ids[0]),
            &k,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    subscribe(&s, &k, &rx.url(), "*")
        .await
        .assert_error(409, "webhook_limit");
    // Another tenant has its own allowance.
    let other = s.key("other", &["admin"]).await;
    assert_eq!(create(&s, &other, &rx.url()).await, StatusCode::CREATED);
    // Deleting one makes room for one.
    let r = s.delete(&format!("/api/v1/webhooks/{}", ids[1]), &k).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(create(&s, &k, &rx.url()).await, StatusCode::CREATED);
    assert_eq!(create(&s, &k, &rx.url()).await, StatusCode::CONFLICT);
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM webhooks WHERE tenant = 'default'").await,
        3
    );
    s.stop().await;
}

/// 40 creates at once, spread over two servers on one database (replicas on
/// PostgreSQL; two pools with their own write locks on SQLite): exactly the
/// cap get in, the rest are refused with `webhook_limit`, nothing fails.
async fn concurrent_creates_never_pass_the_cap(db: Db) {
    let (s, k, rx) = start(db, 5).await;
    let replica = s.replica().await;
    replica.rekey.set_webhook_settings(settings(5));
    let bases = [s.base.clone(), replica.base.clone()];
    let http = reqwest::Client::new();
    let results = join_all((0..40).map(|n| {
        let (http, base, k, url) = (http.clone(), bases[n % 2].clone(), k.clone(), rx.url());
        async move {
            let r = http
                .post(format!("{base}/api/v1/webhooks"))
                .bearer_auth(&k)
                .json(&json!({"url": url, "events": ["*"]}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (status, body)
        }
    }))
    .await;
    let created = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::CREATED)
        .count();
    for (st, body) in &results {
        if *st != StatusCode::CREATED {
            assert_eq!(*st, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["error"]["code"], "webhook_limit", "{body}");
        }
    }
    assert_eq!(created, 5, "exactly the cap got in");
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM webhooks WHERE tenant = 'default'").await,
        5
    );
    replica.stop().await;
    s.stop().await;
}

async fn subscription_list_is_paginated(db: Db) {
    let (s, k, rx) = start(db, 60).await;
    let mut want = BTreeSet::new();
    for _ in 0..55 {
        let r = subscribe(&s, &k, &rx.url(), "*").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        want.insert(r.json()["webhook"]["id"].as_str().unwrap().to_string());
    }
    let other = s.key("other", &["admin"]).await;
    create(&s, &other, &rx.url()).await;

    // Walk the pages: every subscription exactly once, in id order; a cursor
    // only while another page exists.
    let walk = |limit: Option<u32>| {
        let (s, k) = (&s, &k);
        async move {
            let mut seen: Vec<String> = Vec::new();
            let mut pages = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut path = "/api/v1/webhooks?".to_string();
                if let Some(l) = limit {
                    path.push_str(&format!("limit={l}&"));
                }
                if let Some(c) = &cursor {
                    path.push_str(&format!("cursor={c}"));
                }
                let r = s.get(&path, k).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                let j = r.json();
                let items = items(&j);
                pages.push(items.len());
                seen.extend(items.iter().map(|w| w["id"].as_str().unwrap().to_string()));
                match j["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
                assert!(pages.len() < 100, "cursor loops");
            }
            (seen, pages)
        }
    };
    let (seen, pages) = walk(None).await;
    assert_eq!(pages, vec![50, 5], "default page size 50");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "id order");
    assert_eq!(seen.len(), 55);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), want);
    // A last page that is exactly full has no cursor.
    let (seen, pages) = walk(Some(5)).await;
    assert_eq!(pages, vec![5; 11]);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), want);
    let (seen, pages) = walk(Some(200)).await;
    assert_eq!(pages, vec![55]);
    assert_eq!(seen.len(), 55);

    for bad in ["limit=0", "limit=201", "limit=x"] {
        let r = s.get(&format!("/api/v1/webhooks?{bad}"), &k).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    s.get("/api/v1/webhooks?limit=0", &k)
        .await
        .assert_error(400, "invalid_limit");
    for bad in ["nope", "Y29uXzEyMw", "d2hrXw"] {
        s.get(&format!("/api/v1/webhooks?cursor={bad}"), &k)
            .await
            .assert_error(400, "invalid_cursor");
    }
    s.stop().await;
}

/// Five subscriptions, a connection created: the change's transaction
/// writes one event and no delivery. One worker pass gives every
/// subscription exactly one delivery; more passes add none.
async fn changes_write_no_deliveries_and_the_worker_fans_out_once(db: Db) {
    let (s, k, rx) = start(db, 50).await;
    for _ in 0..5 {
        assert_eq!(create(&s, &k, &rx.url()).await, StatusCode::CREATED);
    }
    // One subscription that does not match and one paused: no delivery.
    let r = subscribe(&s, &k, &rx.url(), "webhook.test").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = subscribe(&s, &k, &rx.url(), "*").await;
    let paused = r.json()["webhook"]["id"].as_str().unwrap().to_string();
    s.patch(
        &format!("/api/v1/webhooks/{paused}"),
        &k,
        json!({"enabled": false}),
    )
    .await;

    let id = s.create_api_key_conn(&k, "k-fanout-1", json!({})).await;
    assert_eq!(
        count(&s, DELIVERIES).await,
        0,
        "the change wrote no delivery rows"
    );
    assert_eq!(
        count(&s, NOT_FANNED_OUT).await,
        1,
        "one outbox event, waiting for fan-out"
    );
    // A tenant without an enabled subscription gets no event at all.
    let other = s.key("other", &["admin"]).await;
    s.create_api_key_conn(&other, "k-fanout-2", json!({})).await;
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM webhook_events WHERE tenant = 'other'"
        )
        .await,
        0
    );

    let run = s.rekey.deliver_due("w1", 100).await.unwrap();
    assert_eq!(run.fanned_out, 1);
    assert_eq!(run.claimed, 5, "{run:?}");
    assert_eq!(count(&s, DELIVERIES).await, 5);
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM (SELECT webhook_id FROM webhook_deliveries GROUP BY webhook_id HAVING COUNT(*) = 1) x"
        )
        .await,
        5,
        "one delivery per matching subscription"
    );
    assert_eq!(count(&s, NOT_FANNED_OUT).await, 0);
    for _ in 0..3 {
        let run = s.rekey.deliver_due("w2", 100).await.unwrap();
        assert_eq!(run.fanned_out, 0);
    }
    assert_eq!(count(&s, DELIVERIES).await, 5);
    let got = rx
        .wait_until(Duration::from_secs(10), |d| d.len() >= 5)
        .await;
    assert_eq!(got.len(), 5);
    for r in &got {
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(b["type"], "connection.created");
        assert_eq!(b["data"]["connection_id"], id.as_str());
    }
    assert_eq!(
        got.iter()
            .map(|r| r.id.clone())
            .collect::<BTreeSet<_>>()
            .len(),
        1,
        "one event, one webhook-id"
    );
    s.stop().await;
}

/// A fan-out that fails after writing deliveries (here: marking the event
/// is made to fail) leaves no delivery and an unmarked event; the next pass
/// does it all, once.
async fn fan_out_is_all_or_nothing(db: Db) {
    let (s, k, rx) = start(db, 50).await;
    for _ in 0..3 {
        create(&s, &k, &rx.url()).await;
    }
    s.create_api_key_conn(&k, "k-atomic-1", json!({})).await;
    match db {
        Db::Sqlite => {
            s.sql(&[
                "CREATE TRIGGER fail_fan_out BEFORE UPDATE ON webhook_events \
                     BEGIN SELECT RAISE(ABORT, 'injected fan-out failure'); END",
            ])
            .await
        }
        Db::Postgres => {
            s.sql(&[
                "CREATE FUNCTION fail_fan_out() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'injected fan-out failure'; END $$",
                "CREATE TRIGGER fail_fan_out BEFORE UPDATE ON webhook_events \
                 FOR EACH ROW EXECUTE FUNCTION fail_fan_out()",
            ])
            .await
        }
    }
    let run = s.rekey.deliver_due("w", 100).await.unwrap();
    assert_eq!(run.fanned_out, 0);
    assert_eq!(
        count(&s, DELIVERIES).await,
        0,
        "the failed fan-out left no deliveries"
    );
    assert_eq!(count(&s, NOT_FANNED_OUT).await, 1);
    match db {
        Db::Sqlite => s.sql(&["DROP TRIGGER fail_fan_out"]).await,
        Db::Postgres => {
            s.sql(&["DROP TRIGGER fail_fan_out ON webhook_events"])
                .await
        }
    }
    let run = s.rekey.deliver_due("w", 100).await.unwrap();
    assert_eq!(run.fanned_out, 1);
    assert_eq!(count(&s, DELIVERIES).await, 3);
    let got = rx
        .wait_until(Duration::from_secs(10), |d| d.len() >= 3)
        .await;
    assert_eq!(got.len(), 3);
    s.stop().await;
}

/// 30 events for 4 subscriptions, fanned out by two servers' delivery
/// passes racing each other in small batches: 120 deliveries, one per
/// (event, subscription), every event marked.
async fn two_replicas_never_duplicate_a_fan_out(db: Db) {
    let (s, k, rx) = start(db, 50).await;
    let replica = s.replica().await;
    replica.rekey.set_webhook_settings(settings(50));
    for _ in 0..4 {
        create(&s, &k, &rx.url()).await;
    }
    for i in 0..30 {
        s.create_api_key_conn(&k, &format!("k-race-{i}"), json!({}))
            .await;
    }
    assert_eq!(count(&s, DELIVERIES).await, 0);
    let pass = |r: rekey_service::Rekey, owner: &'static str| async move {
        let mut fanned = 0;
        for _ in 0..50 {
            let run = r.deliver_due(owner, 3).await.unwrap();
            fanned += run.fanned_out;
            if run.fanned_out == 0 && !run.fan_out_backlog {
                break;
            }
        }
        fanned
    };
    let (a, b) = tokio::join!(
        pass(s.rekey.clone(), "replica-a"),
        pass(replica.rekey.clone(), "replica-b")
    );
    assert_eq!(a + b, 30, "each event fanned out once ({a} + {b})");
    assert_eq!(count(&s, DELIVERIES).await, 120);
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM (SELECT event_id, webhook_id FROM webhook_deliveries \
             GROUP BY event_id, webhook_id HAVING COUNT(*) > 1) x"
        )
        .await,
        0,
        "no (event, subscription) twice"
    );
    assert_eq!(count(&s, NOT_FANNED_OUT).await, 0);
    // And every delivery goes out: 4 posts of each of the 30 events.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rx.delivered().len() < 120 && std::time::Instant::now() < deadline {
        s.rekey.deliver_due("replica-a", 100).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = rx.delivered();
    assert!(got.len() >= 120, "{} delivered", got.len());
    let events: BTreeSet<String> = got.iter().map(|r| r.id.clone()).collect();
    assert_eq!(events.len(), 30);
    replica.stop().await;
    s.stop().await;
}
