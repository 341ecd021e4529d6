//! The health scheduler against the loopback fixture provider: N
//! connections (default 10 000) all due, scheduler passes until every one
//! has been checked. Prints checks/second and the process's memory (RSS,
//! which also holds the in-process server, fixture and client). Runs on
//! SQLite and on PostgreSQL.
//!
//! BENCH_CONNECTIONS (10000), BENCH_CONCURRENCY (per provider, 64),
//! BENCH_LATENCY_MS (fixture answer delay, 20).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{create_connections, env_or, on_both_backends};

use rekey_service::HealthSettings;
use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
use rekey_testkit::{Db, TestServer};
use serde_json::json;
use std::time::{Duration, Instant};

/// (current RSS, peak RSS) in MiB, from /proc.
fn rss_mib() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

async fn run(db: Db, n: usize, concurrency: usize, latency_ms: u64) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    fx.set_mode(if latency_ms > 0 {
        Mode::Slow(Duration::from_millis(latency_ms))
    } else {
        Mode::Ok
    });
    let t = Instant::now();
    let url = fx.rest_url();
    create_connections(&s, n, |i| json!({"provider": "custom-rest", "kind": "api_key", "display_name": format!("c{i}"),
                               "probe_url": url, "credentials": {"key": format!("bench-key-{i}"), "prefix": "Bearer "}})).await;
    let setup = t.elapsed();
    s.rekey.set_health_settings(HealthSettings {
        per_provider_concurrency: concurrency,
        per_provider_rate: 0.0,
        batch: 1000,
        ..Default::default()
    });
    let (rss_before, _) = rss_mib();
    let start = Instant::now();
    let (mut ok, mut failed, mut passes) = (0, 0, 0);
    loop {
        let run = s.rekey.check_due("bench").await.unwrap();
        if run.claimed == 0 {
            break;
        }
        ok += run.ok;
        failed += run.failed + run.skipped;
        passes += 1;
    }
    let wall = start.elapsed();
    let (rss_after, peak) = rss_mib();
    println!(
        "health-checks backend={db:?} connections={n} per_provider_concurrency={concurrency} provider_latency={latency_ms}ms \
         checked={ok} failed={failed} passes={passes} wall={:.2}s rate={:.0} checks/s rss_before={rss_before:.0}MiB rss_after={rss_after:.0}MiB peak={peak:.0}MiB (setup {:.1}s)",
        wall.as_secs_f64(),
        ok as f64 / wall.as_secs_f64(),
        setup.as_secs_f64(),
    );
    assert_eq!(ok, n, "every connection checked once");
    assert_eq!(fx.hits(), n);
    s.stop().await;
}

fn main() {
    let n = env_or("BENCH_CONNECTIONS", 10_000) as usize;
    let c = env_or("BENCH_CONCURRENCY", 64) as usize;
    let lat = env_or("BENCH_LATENCY_MS", 20);
    on_both_backends(|db| run(db, n, c, lat));
}
