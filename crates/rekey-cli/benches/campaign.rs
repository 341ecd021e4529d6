//! Incident campaigns at scale, through the API of an in-process server:
//!
//! 1. Plan and start a campaign over BENCH_CONNECTIONS connections
//!    (default 100,000; one made through the API, the rest copied from it
//!    in SQL, which planning and freezing do not tell apart): the time to
//!    create it, to page through the whole plan (200 a page), to start it
//!    (the plan frozen into one item per connection), to read its
//!    progress, and to cancel it.
//! 2. Run a campaign over BENCH_STEP_CONNECTIONS Slack bot tokens (default
//!    1,000) revoked at the fixture provider, whose answers to rekey's
//!    verification take 20 ms: steps (connections finished) per second,
//!    while a reader fetches another credential in a loop: its p50/p99.
//!
//! SQLite, then PostgreSQL.
//!
//! `cargo bench -p rekey-cli --bench campaign`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{create_connections, env_or, on_both_backends};
use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
use rekey_testkit::{Db, TestServer};
use serde_json::{json, Value};
use sqlx::Row;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    on_both_backends(bench);
}

fn deadline() -> String {
    rekey_core::time::ms_to_rfc3339(rekey_core::time::now_ms() + 86_400_000)
}

/// Copy the connection `template` `n` times in SQL (new ids and names).
async fn clone_connections(s: &TestServer, db: Db, template: &str, n: u64) {
    let pool = s.rekey.store().pool();
    let columns_sql = match db {
        Db::Sqlite => "SELECT name FROM pragma_table_info('connections')",
        Db::Postgres => {
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
             WHERE table_name = 'connections' AND table_schema = current_schema()"
        }
    };
    let cols: Vec<String> = sqlx::query(columns_sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    let id = match db {
        Db::Sqlite => "'con_' || lower(hex(randomblob(16)))",
        Db::Postgres => "'con_' || md5(random()::text || CAST(seq.i AS TEXT))",
    };
    let select: Vec<String> = cols
        .iter()
        .map(|c| match c.as_str() {
            "id" => id.to_string(),
            "display_name" => "'bulk ' || CAST(seq.i AS TEXT)".to_string(),
            other => format!("c.{other}"),
        })
        .collect();
    let series = match db {
        Db::Sqlite => format!(
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n}) \
             SELECT {} FROM seq, connections c WHERE c.id = '{template}'",
            select.join(", ")
        ),
        Db::Postgres => format!(
            "SELECT {} FROM generate_series(1, {n}) AS seq(i), connections c WHERE c.id = '{template}'",
            select.join(", ")
        ),
    };
    let sql = format!("INSERT INTO connections ({}) {series}", cols.join(", "));
    sqlx::query(&sql).execute(pool).await.unwrap();
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let v = f.await;
    (v, t.elapsed())
}

async fn bench(db: Db) {
    let n = env_or("BENCH_CONNECTIONS", 100_000);
    let steps_n = env_or("BENCH_STEP_CONNECTIONS", 1000) as usize;
    let s = TestServer::start(db).await;
    let template = s
        .create_connection(json!({"provider": "custom-rest", "kind": "api_key",
            "display_name": "bulk 0", "owner": {"email": "ops@example.com"},
            "credentials": {"key": "sk-bulk", "placement": "header", "name": "X-Api-Key"}}))
        .await;
    let (_, fill) = timed(clone_connections(&s, db, &template, n - 1)).await;

    // 1. Plan and start over n connections.
    let body = json!({"name": "bench", "reason": "bench", "deadline": deadline(),
        "filter": {"provider": "custom-rest"}, "actions": {"api_key": ["disable"]}});
    let (r, create) = timed(s.post("/api/v1/campaigns", &s.admin_key, body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.created_id();
    let (planned, plan) = timed(async {
        let mut cursor: Option<String> = None;
        let mut seen = 0u64;
        loop {
            let q = match &cursor {
                Some(c) => format!("/api/v1/campaigns/{id}/plan?limit=200&cursor={c}"),
                None => format!("/api/v1/campaigns/{id}/plan?limit=200"),
            };
            let p: Value = s.get_admin(&q).await.ok_json();
            seen += p["items"].as_array().unwrap().len() as u64;
            match p["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return seen,
            }
        }
    })
    .await;
    assert_eq!(planned, n);
    let (r, start) = timed(s.act(&format!("/api/v1/campaigns/{id}/start"))).await;
    assert_eq!(r.json()["total"], n, "{}", r.text);
    let (r, status) = timed(s.get_admin(&format!("/api/v1/campaigns/{id}"))).await;
    assert_eq!(r.json()["counts"]["pending"], n);
    let (r, cancel) = timed(s.act(&format!("/api/v1/campaigns/{id}/cancel"))).await;
    assert_eq!(r.json()["counts"]["skipped"], n);
    println!(
        "campaign backend={db:?} connections={n} fill={:.1}s create={:.2}s plan(all pages)={:.2}s \
         start(freeze)={:.2}s status={:.0}ms cancel={:.2}s",
        fill.as_secs_f64(),
        create.as_secs_f64(),
        plan.as_secs_f64(),
        start.as_secs_f64(),
        status.as_secs_f64() * 1000.0,
        cancel.as_secs_f64()
    );

    // 2. Steps per second against a provider answering in 20 ms, and the
    // credential fetch meanwhile.
    let fx = ProviderFixture::start().await;
    create_connections(&s, steps_n, |i| {
        json!({"provider": "slack", "kind": "api_key", "display_name": format!("bot {i}"),
               "probe_url": fx.slack_url(), "credentials": {"key": format!("xoxb-{i}-bench")}})
    })
    .await;
    fx.set_mode(Mode::Slow(Duration::from_millis(20)));
    // What rekey itself can do: no per-provider rate (the default is 10
    // steps/s per provider, REKEY_CAMPAIGN_RATE), 4 in flight.
    s.rekey
        .set_campaign_settings(rekey_service::CampaignSettings {
            per_provider_concurrency: 4,
            per_provider_rate: 0.0,
        });
    let body = json!({"name": "steps", "reason": "bench", "deadline": deadline(),
        "filter": {"provider": "slack"}, "actions": {"api_key": ["revoke"]}});
    let id = s
        .post("/api/v1/campaigns", &s.admin_key, body)
        .await
        .created_id();
    s.act(&format!("/api/v1/campaigns/{id}/start")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, http) = (stop.clone(), reqwest::Client::new());
        let url = format!("{}/api/v1/connections/{template}/credentials", s.base);
        let key = s.admin_key.clone();
        tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = http.get(&url).bearer_auth(&key).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        })
    };
    let t = Instant::now();
    loop {
        s.rekey.campaign_due(50).await.unwrap();
        s.rekey.verify_due_revocations("bench").await.unwrap();
        let v: Value = s.get_admin(&format!("/api/v1/campaigns/{id}")).await.json();
        if v["state"] == "completed" {
            assert_eq!(v["counts"]["done"], steps_n, "{v}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(600), "{v}");
    }
    let wall = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lat = reader.await.unwrap();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0;
    println!(
        "campaign backend={db:?} steps={steps_n} (revoke at the provider + verification at 20 ms) \
         wall={:.1}s steps/s={:.0} provider_calls={} | credential fetch meanwhile: n={} p50={:.2}ms p99={:.2}ms",
        wall.as_secs_f64(),
        steps_n as f64 / wall.as_secs_f64(),
        fx.revocations(),
        lat.len(),
        pct(0.5),
        pct(0.99)
    );
    s.stop().await;
    fx.stop().await;
}
