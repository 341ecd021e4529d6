//! Three `rekey serve` processes on one PostgreSQL database share the
//! background work through leases, and one of them dying by SIGKILL in the
//! middle of it loses nothing: its leased campaign steps and health checks
//! are taken over by the other two once the leases lapse, no provider call
//! is made twice, every webhook event still arrives, and the audit chain
//! that three processes appended to at once verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{start_server, Env, Server};
use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
use rekey_testkit::webhook_receiver::WebhookReceiver;
use rekey_testkit::{short_unique, Db};
use serde_json::json;
use sqlx::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CAMPAIGN_CONNS: usize = 18;
const CHECKED_CONNS: usize = 12;

/// This replica's lease name, from its `rekey listening` log line.
async fn replica_id(s: &Server) -> String {
    for _ in 0..200 {
        let logs = s.logs();
        if let Some(rest) = logs.split("replica=").nth(1) {
            let id: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !id.is_empty() {
                return id;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no replica id in the log: {}", s.logs());
}

async fn db(url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url).await.unwrap()
}

/// `(lease owner, connection id)` of unfinished campaign items and of
/// connections whose health check is claimed, right now.
async fn leases(c: &mut sqlx::AnyConnection) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let items = sqlx::query_as(
        "SELECT lease_owner, connection_id FROM campaign_items \
         WHERE lease_owner IS NOT NULL AND finished_at IS NULL",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    let checks = sqlx::query_as(
        "SELECT lease_owner, id FROM connections WHERE lease_owner IS NOT NULL \
         AND status IN ('pending', 'active', 'degraded')",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    (items, checks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_the_work_and_take_over_from_a_killed_one() {
    let env = Env::new(Db::Postgres).await;
    let key = env.admin_key("default", "admin").await;
    let url = env.pg.as_ref().unwrap().url();
    let slack = ProviderFixture::start().await;
    // Probes that take 3 s: every replica holds claimed checks at any time.
    let slow = ProviderFixture::start().await;
    slow.set_mode(Mode::Slow(Duration::from_secs(3)));
    let rx = WebhookReceiver::start(0).await;

    let args = [
        "--worker-tick-ms",
        "100",
        "--check-interval",
        "2",
        "--check-timeout",
        "5",
        "--campaign-rate",
        "3",
        "--campaign-concurrency",
        "2",
    ];
    let mut servers = Vec::new();
    for _ in 0..3 {
        let mut cmd = env.serve_command(&args, None);
        cmd.env("REKEY_LOG", "warn,rekey::config=info");
        servers.push(start_server(cmd).await);
    }
    let mut ids = Vec::new();
    for s in &servers {
        ids.push(replica_id(s).await);
    }
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3, "{ids:?}");
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();

    let hook = common::api_post(
        &bases[0],
        &key,
        "/api/v1/webhooks",
        json!({"url": rx.url(), "events": ["*"]}),
    )
    .await;
    let hook_id = hook["webhook"]["id"]
        .as_str()
        .or(hook["id"].as_str())
        .unwrap_or_else(|| panic!("{hook}"))
        .to_string();

    // Work for everyone: slack bots a campaign revokes (3 a second across
    // the replicas), and REST connections whose checks are slow.
    let tag = format!("rep-{}", short_unique());
    let mut bots = Vec::new();
    for i in 0..CAMPAIGN_CONNS {
        let token = format!("xoxb-{i}-{}", short_unique());
        let v = common::api_post(
            &bases[i % 3],
            &key,
            "/api/v1/connections",
            json!({
            "provider": "slack", "kind": "api_key", "display_name": format!("bot {i}"),
            "probe_url": slack.slack_url(), "tags": [tag], "credentials": {"key": token}}),
        )
        .await;
        bots.push(
            v["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{v}"))
                .to_string(),
        );
    }
    let mut checked = Vec::new();
    for i in 0..CHECKED_CONNS {
        let v = common::api_post(&bases[i % 3], &key, "/api/v1/connections", json!({
            "provider": "custom-rest", "kind": "api_key", "display_name": format!("rest {i}"),
            "probe_url": slow.rest_url(),
            "credentials": {"key": format!("rest-{i}"), "placement": "header", "name": "Authorization", "prefix": "Bearer "}})).await;
        checked.push(
            v["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{v}"))
                .to_string(),
        );
    }
    // Readers on every replica all along: audit entries from three
    // processes at once.
    let stop_reading = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        let (base, key, id) = (base.clone(), key.clone(), checked[i].clone());
        let (stop, reads) = (stop_reading.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let url = format!("{base}/api/v1/connections/{id}/credentials");
            while !stop.load(Ordering::SeqCst) {
                // The killed replica's reader sees its connection refused.
                let r = http.get(&url).bearer_auth(&key).send().await;
                if r.is_ok_and(|r| r.status() == 200) {
                    reads.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    let client = rekey_client::Client::new(&bases[0], key.clone()).unwrap();
    let actions: BTreeMap<String, Vec<String>> = [("api_key".to_string(), vec!["revoke".into()])]
        .into_iter()
        .collect();
    let campaign = common::start_campaign(&client, "breach", &tag, actions).await;

    // Mid-work: some revocations made, and a replica holding campaign
    // steps and health checks it has not finished. That one is killed.
    let mut c = db(&url).await;
    let started = Instant::now();
    let (victim, held_items, held_checks) = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never saw a replica holding both kinds of work"
        );
        let (items, checks) = leases(&mut c).await;
        let done = slack.revocations();
        let found = ids
            .iter()
            .position(|r| items.iter().any(|(o, _)| o == r) && checks.iter().any(|(o, _)| o == r));
        if let (true, Some(v)) = (done >= 2, found) {
            // Kill first, then read what it held: nothing it holds can
            // change after SIGKILL.
            servers[v].child.start_kill().unwrap();
            servers[v].child.wait().await.unwrap();
            let (items, checks) = leases(&mut c).await;
            let mine = |l: &[(String, String)]| -> Vec<String> {
                l.iter()
                    .filter(|(o, _)| *o == ids[v])
                    .map(|(_, id)| id.clone())
                    .collect()
            };
            break (v, mine(&items), mine(&checks));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (killed_at, killed) = (rekey_core::time::now_ms(), Instant::now());
    assert!(
        !held_items.is_empty() && !held_checks.is_empty(),
        "the killed replica held work: {held_items:?} {held_checks:?}"
    );
    eprintln!(
        "killed replica {victim} after {:?} holding {} campaign steps and {} checks",
        started.elapsed(),
        held_items.len(),
        held_checks.len()
    );
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let base = bases[survivors[0]].clone();

    // The campaign finishes on the two that are left (its steps' leases
    // last a minute), and the checks the dead one claimed are made again.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, v) = common::api_request(
            reqwest::Method::GET,
            &base,
            &key,
            &format!("/api/v1/campaigns/{campaign}"),
            None,
        )
        .await;
        let rows: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT id, last_checked_at FROM connections")
                .fetch_all(&mut c)
                .await
                .unwrap();
        let rechecked = held_checks.iter().all(|id| {
            rows.iter()
                .any(|(i, at)| i == id && at.is_some_and(|t| t > killed_at))
        });
        if v["state"] == "completed" && rechecked {
            eprintln!("all taken over {:?} after the kill", killed.elapsed());
            assert_eq!(v["counts"]["done"], json!(CAMPAIGN_CONNS), "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not taken over: campaign {v}, checks rechecked {rechecked}\n{}",
            survivors
                .iter()
                .map(|i| servers[*i].logs())
                .collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop_reading.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.unwrap();
    }
    assert!(reads.load(Ordering::SeqCst) > 0);

    // No provider call twice: one `auth.revoke` per bot, each token once,
    // and one revocation record per connection.
    let revoked = slack.revoked_tokens();
    assert_eq!(revoked.len(), CAMPAIGN_CONNS, "{revoked:?}");
    assert_eq!(
        revoked.iter().collect::<BTreeSet<_>>().len(),
        CAMPAIGN_CONNS
    );
    assert_eq!(slack.revocations(), CAMPAIGN_CONNS, "auth.revoke calls");
    for id in &bots {
        let (st, v) = common::api_request(
            reqwest::Method::GET,
            &base,
            &key,
            &format!("/api/v1/connections/{id}/revocations"),
            None,
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{id}: {v}");
    }
    // The dead replica's items were finished by the others.
    let owners: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT connection_id, lease_owner, state FROM campaign_items")
            .fetch_all(&mut c)
            .await
            .unwrap();
    for id in &held_items {
        let (_, owner, state) = owners.iter().find(|(i, _, _)| i == id).unwrap();
        assert_eq!(state, "done", "{id}");
        assert_ne!(owner.as_deref(), Some(ids[victim].as_str()), "{id}");
    }

    // Every webhook event arrives; a post the dead replica had in flight
    // may arrive twice (at-least-once, same webhook-id), never more.
    let pending: Vec<(String, String)> =
        sqlx::query_as("SELECT event_id, status FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(&hook_id)
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert!(pending.len() >= CAMPAIGN_CONNS * 2, "{}", pending.len());
    let events: BTreeSet<String> = pending.iter().map(|(e, _)| e.clone()).collect();
    // The dead replica's leased deliveries (posted but not marked, or not
    // posted yet) are taken over once their lease ends, later than the
    // campaign's: wait for the outbox to drain before counting.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let undelivered: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1 AND status <> 'delivered'",
        )
        .bind(&hook_id)
        .fetch_one(&mut c)
        .await
        .unwrap();
        if undelivered == 0 || Instant::now() >= deadline {
            assert_eq!(undelivered, 0, "deliveries still pending after 180 s");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let got = rx
        .wait_until(Duration::from_secs(180), |d| {
            let seen: BTreeSet<&str> = d.iter().map(|r| r.id.as_str()).collect();
            events.iter().all(|e| seen.contains(e.as_str()))
        })
        .await;
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &got {
        *times.entry(r.id.as_str()).or_default() += 1;
    }
    for e in &events {
        let n = times.get(e.as_str()).copied().unwrap_or(0);
        assert!((1..=2).contains(&n), "event {e} delivered {n} times");
    }

    for (i, s) in servers.into_iter().enumerate() {
        if i != victim {
            s.stop().await;
        }
    }
    // The chain three processes appended to at once is whole.
    let out = env.run(&["audit", "verify", "--offline"], &[]).await;
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    slack.stop().await;
    slow.stop().await;
    rx.stop().await;
}
