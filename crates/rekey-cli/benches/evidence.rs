//! Evidence export over a large set: N connections, every one revoked (a
//! manual revocation with its runbook step confirmed), exported as CSV and
//! as JSON through the API; prints rows/s, the file size, and how much the
//! process's peak memory (VmHWM, server and client in this one process)
//! grew during the export, which stays flat as N grows because the export
//! streams page by page. Runs on the SQLite store, then on PostgreSQL.
//!
//! `cargo bench -p rekey-cli --bench evidence`
//! Env: BENCH_CONNECTIONS (default 5000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{create_connections, env_or, on_both_backends};
use futures_util::StreamExt;
use rekey_api::EvidenceQuery;
use rekey_testkit::{Db, TestServer};
use serde_json::json;
use std::time::Instant;

fn main() {
    on_both_backends(bench);
}

/// The process's peak resident memory so far, in KiB.
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Counts what the export writes, keeping none of it.
struct Count(u64);

impl std::io::Write for Count {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn bench(db: Db) {
    let n = env_or("BENCH_CONNECTIONS", 5000) as usize;
    let s = TestServer::start(db).await;
    create_connections(&s, n, |i| {
        json!({"provider": "custom-rest", "kind": "api_key", "display_name": format!("bench {i}"),
               "custody": ["salesforce"], "tags": ["bench"],
               "credentials": {"key": format!("sk-bench-{i}"), "placement": "header", "name": "X-Api-Key"}})
    })
    .await;
    let c = s.client(&s.admin_key);
    let ids: Vec<String> = c
        .list_all_connections(Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let revoked: Vec<bool> = futures_util::stream::iter(ids.iter())
        .map(|id| {
            let s = &s;
            async move {
                let r = s.act(&format!("/api/v1/connections/{id}/revoke")).await;
                let ok = r.status.is_success();
                let r = s
                    .post(
                        &format!("/api/v1/connections/{id}/revoke/confirm"),
                        &s.admin_key,
                        json!({"note": "BENCH-1"}),
                    )
                    .await;
                ok && r.status.is_success()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(revoked.iter().all(|ok| *ok));
    println!("{db:?}: {n} connections, each revoked and confirmed");
    println!("format  rows    seconds  rows/s   MiB     peak memory growth (MiB)");
    for format in ["csv", "json"] {
        let q = EvidenceQuery {
            format: Some(format.into()),
            custody: Some("salesforce".into()),
            ..Default::default()
        };
        let before = peak_kib();
        let mut out = Count(0);
        let t = Instant::now();
        c.export_evidence(&q, &mut out).await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        let grew = peak_kib().saturating_sub(before);
        println!(
            "{format:<7} {n:<7} {secs:<8.2} {:<8.0} {:<7.1} {:.1}",
            n as f64 / secs,
            out.0 as f64 / 1_048_576.0,
            grew as f64 / 1024.0
        );
    }
    s.stop().await;
}
