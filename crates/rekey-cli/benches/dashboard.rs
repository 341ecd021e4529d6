//! The dashboard under an operator's session: render the integrations page
//! (200 tiles), a search, and one bulk "Check now" on every connection (the
//! fixture provider answering in BENCH_LATENCY_MS). Prints requests/second,
//! latency percentiles, page size, and bulk rows/second. SQLite, then
//! PostgreSQL.
//!
//! BENCH_CONNECTIONS (1000, the bulk cap), BENCH_REQUESTS (300),
//! BENCH_LATENCY_MS (20).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{create_connections, env_or, on_both_backends, operator_session, pages};

use rekey_testkit::browser::csrf_of;
use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
use rekey_testkit::{Db, TestServer};
use serde_json::json;
use std::time::{Duration, Instant};

async fn run(db: Db, n: usize, requests: usize, latency_ms: u64) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    fx.set_mode(Mode::Slow(Duration::from_millis(latency_ms)));
    let url = fx.rest_url();
    create_connections(&s, n, |i| {
        json!({"provider": "custom-rest", "kind": "api_key", "display_name": format!("Conn {i:04}"),
                               "tags": [if i % 2 == 0 { "even" } else { "odd" }],
                               "probe_url": url, "credentials": {"key": format!("bench-key-{i}")}})
    })
    .await;
    let (http, cookie) = operator_session(&s).await;
    let page = format!("{}/ui/connections", s.base);
    let (rps, p50, p99, bytes) = pages(&http, &page, ("cookie", &cookie), requests).await;
    println!(
        "dashboard backend={db:?} connections={n} connections-page ({} tiles): {rps:.0} req/s p50={p50:.1}ms p99={p99:.1}ms size={}KiB",
        n.min(200),
        bytes / 1024
    );
    let search = format!("{}/ui/connections?q=conn%2009&tag=odd", s.base);
    let (rps, p50, p99, _) = pages(&http, &search, ("cookie", &cookie), requests).await;
    println!(
        "dashboard backend={db:?} search+tag filter: {rps:.0} req/s p50={p50:.1}ms p99={p99:.1}ms"
    );
    let page = http.get(&page).header("cookie", &cookie).send().await;
    let csrf = csrf_of(&page.unwrap().text().await.unwrap());
    let start = Instant::now();
    let r = http
        .post(format!("{}/ui/bulk", s.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("action", "check"), ("all", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let wall = start.elapsed();
    assert!(body.contains(&format!("{n} done, 0 failed")), "bulk result");
    println!(
        "dashboard backend={db:?} bulk check of all {n} (provider {latency_ms}ms): {:.2}s, {:.0} rows/s, result page {}KiB",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        body.len() / 1024
    );
    assert_eq!(fx.hits(), n);
    s.stop().await;
}

fn main() {
    let n = env_or("BENCH_CONNECTIONS", 1000) as usize;
    let requests = env_or("BENCH_REQUESTS", 300) as usize;
    let lat = env_or("BENCH_LATENCY_MS", 20);
    on_both_backends(|db| run(db, n, requests, lat));
}
