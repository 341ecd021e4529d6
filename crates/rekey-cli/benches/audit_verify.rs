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
    // The secondary indexes are built once at the end rather than kept up
    // row by row: inserting ten million rows into the (tenant, target, …)
    // index at random places is what made seeding take hours on SQLite.
    let indexes = drop_secondary_indexes(&mut c, db).await;
    match db {
        Db::Sqlite => seed_sqlite(&s.database_url(), n),
        Db::Postgres => seed(&mut c, n).await,
    }
    for sql in &indexes {
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    }
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

/// Drop `audit_log`'s secondary indexes (not its primary key or unique
/// constraint); the statements that create them again.
async fn drop_secondary_indexes(c: &mut sqlx::AnyConnection, db: Db) -> Vec<String> {
    let list = match db {
        Db::Sqlite => {
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_log' \
             AND sql IS NOT NULL"
        }
        Db::Postgres => {
            "SELECT indexname::text, indexdef::text FROM pg_indexes WHERE tablename = 'audit_log' \
             AND indexdef NOT LIKE 'CREATE UNIQUE%'"
        }
    };
    let found: Vec<(String, String)> = sqlx::query_as(list).fetch_all(&mut *c).await.unwrap();
    assert!(!found.is_empty(), "audit_log has secondary indexes");
    for (name, _) in &found {
        sqlx::raw_sql(&format!("DROP INDEX {name}"))
            .execute(&mut *c)
            .await
            .unwrap();
    }
    found.into_iter().map(|(_, sql)| sql).collect()
}

/// An entry of the seeded chain: a credential read of one of 100,000
/// connections.
fn bench_entry(seq: i64, now: i64) -> AuditEntry {
    AuditEntry {
        seq,
        id: format!("aud_bench{seq:010}"),
        at: now,
        tenant: "default".into(),
        actor: "api_key:key_bench".into(),
        action: "credentials.read".into(),
        target: Some(format!("con_bench{:06}", seq % 100_000)),
        request_id: None,
        source: Some("127.0.0.1".into()),
        outcome: "ok".into(),
        details: "{}".into(),
    }
}

/// [`seed`] on SQLite, through rusqlite: one prepared statement, one
/// transaction per 50,000 rows.
fn seed_sqlite(url: &str, n: usize) {
    let path = url.trim_start_matches("sqlite://");
    let mut c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL;")
        .unwrap();
    let (mut seq, mut prev) = c
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .unwrap_or((0, rekey_core::audit::GENESIS.to_string()));
    let now = rekey_core::time::now_ms();
    let mut i = 0;
    while i < n {
        let tx = c.transaction().unwrap();
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO audit_log (seq, id, at, tenant, actor, action, target, request_id, \
                     source, outcome, details, prev_hash, hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .unwrap();
            let end = (i + ROWS_PER_TX).min(n);
            while i < end {
                seq += 1;
                let e = bench_entry(seq, now);
                let hash = e.chain_hash(&prev);
                st.execute(rusqlite::params![
                    e.seq,
                    e.id,
                    e.at,
                    e.tenant,
                    e.actor,
                    e.action,
                    e.target,
                    e.request_id,
                    e.source,
                    e.outcome,
                    e.details,
                    prev,
                    hash
                ])
                .unwrap();
                prev = hash;
                i += 1;
            }
        }
        tx.commit().unwrap();
    }
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
            for _ in 0..rows {
                seq += 1;
                let e = bench_entry(seq, now);
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
