//! Verifying the audit hash chain at scale: N chained entries are written
//! straight into a fresh store (hashed exactly as rekey chains them), then
//! a full walk (`Rekey::audit_verify`, what `rekey audit verify --offline`
//! and the API's default run) is timed, then an incremental one after
//! 1,000 more entries (what the dashboard's audit page runs on every view,
//! and `?incremental=true`). Prints the times and the peak resident memory
//! the full walk added. SQLite, then PostgreSQL.
//!
//! `cargo bench -p rekey-cli --bench audit_verify`
//! Env: BENCH_AUDIT_ENTRIES (default 10,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{env_or, on_both_backends};
use rekey_core::audit::AuditEntry;
use rekey_service::Walk;
use rekey_testkit::{Db, TestServer};
use sqlx::Connection;
use std::time::Instant;

fn main() {
    on_both_backends(bench);
}

/// Rows per INSERT (13 parameters each) and per transaction.
const ROWS_PER_INSERT: usize = 1_000;
const ROWS_PER_TX: usize = 50_000;

async fn bench(db: Db) {
    let n = env_or("BENCH_AUDIT_ENTRIES", 10_000_000) as usize;
    let s = TestServer::start(db).await;
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&s.database_url())
        .await
        .unwrap();
    let t0 = Instant::now();
    seed(&mut c, n).await;
    let seeded = t0.elapsed();

    reset_peak_rss();
    let rss0 = peak_rss_kib();
    let t0 = Instant::now();
    let full = s.rekey.audit_verify().await.unwrap();
    let took = t0.elapsed();
    let rss = peak_rss_kib().saturating_sub(rss0);
    assert!(full.ok, "{}", full.message);
    assert!(full.checked as usize > n, "{}", full.message);
    println!(
        "audit_verify {db:?}: full walk over {} entries in {:.1} s ({:.0}/s), peak RSS +{:.1} MiB (seeding took {:.1} s)",
        full.checked,
        took.as_secs_f64(),
        full.checked as f64 / took.as_secs_f64(),
        rss as f64 / 1024.0,
        seeded.as_secs_f64(),
    );

    seed(&mut c, 1_000).await;
    let t0 = Instant::now();
    let inc = s
        .rekey
        .audit_verify_tenant("default", Walk::FromCheckpoint { max: u64::MAX })
        .await
        .unwrap();
    let took = t0.elapsed();
    assert!(inc.ok && !inc.full && inc.walked == 1_000, "{inc:?}");
    println!(
        "audit_verify {db:?}: incremental walk, {} new of {} entries, in {:.1} ms",
        inc.walked,
        inc.checked,
        took.as_secs_f64() * 1000.0
    );
    c.close().await.unwrap();
    s.stop().await;
}

/// `n` more entries chained after the log's head, several INSERTs to a
/// transaction.
async fn seed(c: &mut sqlx::AnyConnection, n: usize) {
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *c)
            .await
            .unwrap();
    let (mut seq, mut prev) = head.unwrap_or((0, rekey_core::audit::GENESIS.to_string()));
    let cols = "seq, id, at, tenant, actor, action, target, request_id, source, outcome, details, prev_hash, hash";
    let now = rekey_core::time::now_ms();
    let mut i = 0;
    while i < n {
        let mut tx = c.begin().await.unwrap();
        let tx_end = (i + ROWS_PER_TX).min(n);
        while i < tx_end {
            let rows = ROWS_PER_INSERT.min(tx_end - i);
            let values = (0..rows)
                .map(|r| {
                    let b = r * 13;
                    let p: Vec<String> = (1..=13).map(|k| format!("${}", b + k)).collect();
                    format!("({})", p.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("INSERT INTO audit_log ({cols}) VALUES {values}");
            let mut entries = Vec::with_capacity(rows);
            for k in 0..rows {
                seq += 1;
                let e = AuditEntry {
                    seq,
                    id: format!("aud_bench{seq:010}"),
                    at: now,
                    tenant: "default".into(),
                    actor: "api_key:key_bench".into(),
                    action: "credentials.read".into(),
                    target: Some(format!("con_bench{:06}", (i + k) % 100_000)),
                    request_id: None,
                    source: Some("127.0.0.1".into()),
                    outcome: "ok".into(),
                    details: "{}".into(),
                };
                let hash = e.chain_hash(&prev);
                entries.push((e, prev.clone(), hash.clone()));
                prev = hash;
            }
            let mut q = sqlx::query(&sql);
            for (e, p, h) in &entries {
                q = q
                    .bind(e.seq)
                    .bind(&e.id)
                    .bind(e.at)
                    .bind(&e.tenant)
                    .bind(&e.actor)
                    .bind(&e.action)
                    .bind(&e.target)
                    .bind(&e.request_id)
                    .bind(&e.source)
                    .bind(&e.outcome)
                    .bind(&e.details)
                    .bind(p)
                    .bind(h);
            }
            q.execute(&mut *tx).await.unwrap();
            i += rows;
        }
        tx.commit().await.unwrap();
    }
}

/// Linux: forget the process's peak RSS so far (`VmHWM`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Linux: the process's peak RSS (`VmHWM`) in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
