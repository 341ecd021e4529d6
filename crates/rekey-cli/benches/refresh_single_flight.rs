//! 1000 concurrent credential fetches on one connection whose access token
//! has expired: how many token requests reach the provider (must be 1) and
//! how long the whole burst takes. Runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{env_or, on_both_backends};

use rekey_testkit::oauth2_fixture::{browser, walk_connect, OAuth2Fixture};
use rekey_testkit::{Db, TestServer};
use serde_json::json;
use std::time::{Duration, Instant};

async fn run(db: Db, fetches: usize, provider_latency_ms: u64) {
    let s = TestServer::start(db).await;
    let fx = OAuth2Fixture::start(
        "bench",
        "bench-secret",
        &format!("{}/oauth/callback", s.base),
    )
    .await;
    let integ = s
        .post("/api/v1/integrations", &s.admin_key, json!({
            "provider": "custom-oauth2", "display_name": "Bench", "client_id": "bench", "client_secret": "bench-secret",
            "endpoints": fx.endpoints()}))
        .await
        .json();
    let sess = s
        .post(
            "/api/v1/connect-sessions",
            &s.admin_key,
            json!({"integration": integ["id"]}),
        )
        .await
        .json();
    fx.with(|st| st.access_ttl = 1);
    let b = browser();
    let cb = walk_connect(&b, sess["url"].as_str().unwrap()).await;
    assert_eq!(b.get(&cb).send().await.unwrap().status(), 200);
    let id = s.get("/api/v1/connections", &s.admin_key).await.json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await; // now expired
    fx.with(|st| {
        st.access_ttl = 3600;
        st.token_delay_ms = provider_latency_ms;
    });
    let before = fx.token_requests();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let url = format!("{}/api/v1/connections/{id}/credentials", s.base);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(fetches);
    for _ in 0..fetches {
        let (http, url, key) = (http.clone(), url.clone(), s.admin_key.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = http
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .map(|r| r.status().as_u16() == 200)
                .unwrap_or(false);
            (ok, t.elapsed())
        }));
    }
    let mut lat = Vec::with_capacity(fetches);
    let mut failures = 0;
    for t in tasks {
        let (ok, d) = t.await.unwrap();
        if !ok {
            failures += 1;
        }
        lat.push(d);
    }
    let wall = start.elapsed();
    lat.sort();
    let p =
        |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "single-flight backend={db:?} fetches={fetches} provider_latency={provider_latency_ms}ms token_requests={} failures={failures} wall={:.2}s p50={:.1}ms p99={:.1}ms max={:.1}ms",
        fx.token_requests() - before,
        wall.as_secs_f64(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    assert_eq!(fx.token_requests() - before, 1, "single-flight violated");
    assert_eq!(failures, 0);
    s.stop().await;
}

fn main() {
    let fetches = env_or("BENCH_FETCHES", 1000) as usize;
    on_both_backends(|db| run(db, fetches, 50));
}
