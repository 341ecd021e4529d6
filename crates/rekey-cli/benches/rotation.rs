//! Rotation throughput: rotate N PostgreSQL-password connections
//! (single-user strategy, real roles on 127.0.0.1:5432) through the engine,
//! `BENCH_PARALLEL` at a time, while a reader fetches another connection's
//! credential in a loop; prints rotations/s and the fetch latencies
//! measured meanwhile. Runs on the SQLite store, then on PostgreSQL.
//!
//! `cargo bench -p rekey-cli --bench rotation`
//! Env: BENCH_ROTATIONS (default 1000), BENCH_PARALLEL (default 16; the
//! database server allows 100 connections).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{create_connections, env_or, on_both_backends};
use futures_util::StreamExt;
use rekey_testkit::dbtarget::DbTarget;
use rekey_testkit::{Db, TestServer};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    on_both_backends(bench);
}

async fn bench(db: Db) {
    let n = env_or("BENCH_ROTATIONS", 1000) as usize;
    let parallel = env_or("BENCH_PARALLEL", 16) as usize;
    let s = TestServer::start(db).await;
    // The roles, in one round trip.
    let prefix = format!("rkbench{}", rekey_testkit::short_unique());
    let create: String = (0..n)
        .map(|i| {
            format!("CREATE ROLE {prefix}_{i} LOGIN PASSWORD 'bench-pw-{i}' IN ROLE rekey_password_login;")
        })
        .collect();
    DbTarget::Postgres.admin_exec(&create).await;
    create_connections(&s, n, |i| {
        let mut b =
            DbTarget::Postgres.connection(&format!("{prefix}_{i}"), &format!("bench-pw-{i}"));
        b["display_name"] = json!(format!("bench {i}"));
        b
    })
    .await;
    let ids: Vec<String> = s
        .client(&s.admin_key)
        .list_all_connections(Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids.len(), n);
    let reader = s
        .create_api_key_conn(&s.admin_key, "sk-bench-reader", json!({}))
        .await;

    // A reader fetching a credential for as long as the rotations run.
    let done = Arc::new(AtomicBool::new(false));
    let fetches = {
        let (done, http, base, key) = (
            done.clone(),
            s.http.clone(),
            s.base.clone(),
            s.admin_key.clone(),
        );
        tokio::spawn(async move {
            let mut lat = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let r = http
                    .get(format!("{base}/api/v1/connections/{reader}/credentials"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                lat.push(t0.elapsed());
            }
            lat
        })
    };

    let ctx = rekey_service::Ctx::cli("default");
    let start = Instant::now();
    let outcomes: Vec<String> = futures_util::stream::iter(ids.iter())
        .map(|id| {
            let (rekey, ctx) = (s.rekey.clone(), ctx.clone());
            async move {
                let r = rekey
                    .start_rotation(&ctx, id, Default::default())
                    .await
                    .unwrap();
                rekey
                    .drive_rotation("default", &r.id)
                    .await
                    .unwrap()
                    .state
                    .to_string()
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let wall = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut lat = fetches.await.unwrap();
    let retired = outcomes.iter().filter(|s| *s == "retired").count();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "rotation/{db:?}: {n} rotations ({retired} retired) in {:.1}s = {:.1} rotations/s, {parallel} at a time; \
         credential fetch meanwhile: {} fetches, p50={:.2}ms p99={:.2}ms max={:.2}ms",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        lat.len(),
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(*lat.last().unwrap()),
    );
    assert_eq!(retired, n, "every rotation finishes: {outcomes:?}");
    let drop: String = (0..n)
        .map(|i| format!("DROP ROLE IF EXISTS {prefix}_{i};"))
        .collect();
    DbTarget::Postgres.admin_exec(&drop).await;
    s.stop().await;
}
