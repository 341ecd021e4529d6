//! `rekey keys rotate` over many secrets: N sealed secret rows are written
//! straight into a fresh store, sealed under the data dir's KEK exactly as
//! rekey seals them, then the release binary re-wraps them all. Prints the
//! wall time, secrets/s and the command's peak resident memory (its
//! `ru_maxrss`, read by a python3 wrapper). SQLite, then PostgreSQL.
//!
//! `cargo bench -p rekey-cli --bench keys_rotate`
//! Env: BENCH_SECRETS (default 1,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{env_or, on_both_backends};
use rekey_crypto::{Aad, Keyring};
use rekey_testkit::{Db, PgDb};
use sqlx::Connection;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn main() {
    on_both_backends(bench);
}

/// Rows per INSERT statement (8 parameters each) and per transaction.
const ROWS_PER_INSERT: usize = 500;
const ROWS_PER_TX: usize = 20_000;

/// Runs argv[1..] and prints its peak RSS in KiB (Linux `ru_maxrss`).
const MAXRSS: &str = "import resource, subprocess, sys\n\
r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)\n\
sys.stdout.write(r.stdout.decode())\n\
print('maxrss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
sys.exit(r.returncode)";

fn rekey(data: &Path, pg: Option<&PgDb>, args: &[&str], via: Option<&str>) -> Command {
    let bin = env!("CARGO_BIN_EXE_rekey");
    let mut c = match via {
        Some(script) => {
            let mut c = Command::new("python3");
            c.args(["-c", script, bin]);
            c
        }
        None => Command::new(bin),
    };
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REKEY_DATA_DIR", data)
        .env("REKEY_LOG", "warn");
    if let Some(pg) = pg {
        c.env("REKEY_DATABASE_URL", pg.url());
    }
    c
}

async fn bench(db: Db) {
    let n = env_or("BENCH_SECRETS", 1_000_000) as usize;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pg = match db {
        Db::Postgres => Some(PgDb::create().await),
        Db::Sqlite => None,
    };
    // A rekey data dir (keyring and schema) made by rekey itself.
    let out = rekey(
        &data,
        pg.as_ref(),
        &[
            "admin",
            "create-key",
            "--name",
            "bench",
            "--scope",
            "admin",
            "--tenant",
            "default",
        ],
        None,
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let kr = Keyring::load(&data.join("keyring.json")).unwrap();
    let url = match &pg {
        Some(pg) => pg.url(),
        None => format!("sqlite://{}", data.join("rekey.db").display()),
    };
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
    let t0 = Instant::now();
    seed(&mut c, &kr, n).await;
    c.close().await.unwrap();
    let seeded = t0.elapsed();

    let t0 = Instant::now();
    let out = rekey(&data, pg.as_ref(), &["keys", "rotate"], Some(MAXRSS))
        .output()
        .unwrap();
    let took = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rewrapped: usize = field(&stdout, "re-wrapped data keys: ");
    let maxrss: u64 = field(&stdout, "maxrss_kib ");
    assert!(rewrapped >= n, "{stdout}");
    println!(
        "keys_rotate {db:?}: {rewrapped} secrets re-wrapped in {:.1} s ({:.0}/s), peak RSS {:.1} MiB (seeding took {:.1} s)",
        took.as_secs_f64(),
        rewrapped as f64 / took.as_secs_f64(),
        maxrss as f64 / 1024.0,
        seeded.as_secs_f64(),
    );
}

fn field<T: std::str::FromStr>(out: &str, prefix: &str) -> T {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}` in {out}"))
}

/// `n` sealed secrets, several INSERTs to a transaction.
async fn seed(c: &mut sqlx::AnyConnection, kr: &Keyring, n: usize) {
    let cols = "owner_kind, owner_id, field, tenant, version, kek_id, wrapped_dek, ciphertext";
    let mut i = 0;
    while i < n {
        let mut tx = c.begin().await.unwrap();
        let tx_end = (i + ROWS_PER_TX).min(n);
        while i < tx_end {
            let rows = ROWS_PER_INSERT.min(tx_end - i);
            let values = (0..rows)
                .map(|r| {
                    let b = r * 8;
                    let p: Vec<String> = (1..=8).map(|k| format!("${}", b + k)).collect();
                    format!("({})", p.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("INSERT INTO secrets ({cols}) VALUES {values}");
            let sealed: Vec<(String, rekey_crypto::Sealed)> = (i..i + rows)
                .map(|k| {
                    let id = format!("conn_bench{k:08}");
                    let aad = Aad {
                        tenant: "default".into(),
                        record_kind: "connection".into(),
                        record_id: id.clone(),
                        field: "key".into(),
                        version: 1,
                    };
                    let s = kr.seal(&aad, format!("sk-bench-{k}").as_bytes());
                    (id, s)
                })
                .collect();
            let mut q = sqlx::query(&sql);
            for (id, s) in &sealed {
                q = q
                    .bind("connection")
                    .bind(id)
                    .bind("key")
                    .bind("default")
                    .bind(1i64)
                    .bind(&s.kek_id)
                    .bind(&s.wrapped_dek)
                    .bind(&s.ciphertext);
            }
            q.execute(&mut *tx).await.unwrap();
            i += rows;
        }
        tx.commit().await.unwrap();
    }
}
