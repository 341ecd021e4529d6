//! The baseline of `bench/run`: what axum and tokio answer with nothing
//! behind them. `GET /` is "hello"; `POST /token` answers an OAuth token
//! request with a token valid for a day, so rekey's OAuth credential fetch
//! can be measured with a token it never needs to refresh.
//!
//! `GET /durable` is the floor under any audited read: "hello" answered
//! only after a 400-byte record for the request is on disk (written and
//! `fdatasync`ed, group-committed by one thread, as rekey's audit writer
//! does). No database, no chain, no check: what the disk and the hand-off
//! between threads cost alone. Its file is `BENCH_DURABLE_FILE` (or
//! `bench-durable.log` in the working directory), preallocated so a sync
//! flushes data, not the file's size.
//!
//! Usage: `bench-hello 127.0.0.1:PORT`.

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use std::io::Write;
use std::os::unix::fs::FileExt;
use tokio::sync::{mpsc, oneshot};

/// Bytes per durable record: about one audit entry.
const RECORD: usize = 400;
/// The file's size; records wrap around in it.
const FILE_BYTES: u64 = 64 << 20;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let path = std::env::var("BENCH_DURABLE_FILE").unwrap_or_else(|_| "bench-durable.log".into());
    let durable = start_durable(&path)?;
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/durable",
            get(move || {
                let queue = durable.clone();
                async move {
                    let (done, answer) = oneshot::channel();
                    if queue.send(done).await.is_err() {
                        return (StatusCode::SERVICE_UNAVAILABLE, "writer stopped");
                    }
                    match answer.await {
                        Ok(true) => (StatusCode::OK, "hello"),
                        _ => (StatusCode::INTERNAL_SERVER_ERROR, "write failed"),
                    }
                }
            }),
        )
        .route(
            "/token",
            post(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"access_token":"bench-access-token","token_type":"Bearer","expires_in":86400}"#,
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bench-hello listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}

/// The durable writer: a thread that takes every request waiting, writes
/// one record each in one `write`, syncs, then answers them all.
fn start_durable(path: &str) -> std::io::Result<mpsc::Sender<oneshot::Sender<bool>>> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    // Written out once (not sparse), so later syncs carry no allocation.
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(FILE_BYTES >> 20) {
        file.write_all(&zeros)?;
    }
    file.sync_all()?;
    let (tx, mut rx) = mpsc::channel::<oneshot::Sender<bool>>(4096);
    std::thread::Builder::new()
        .name("bench-durable".into())
        .spawn(move || {
            let mut at = 0u64;
            let mut waiting = Vec::new();
            let mut buf = Vec::new();
            while let Some(first) = rx.blocking_recv() {
                waiting.push(first);
                while let Ok(more) = rx.try_recv() {
                    waiting.push(more);
                }
                buf.clear();
                for n in 0..waiting.len() {
                    let mut record = [b'.'; RECORD];
                    record[..8].copy_from_slice(&(at + n as u64).to_le_bytes());
                    record[RECORD - 1] = b'\n';
                    buf.extend_from_slice(&record);
                }
                if at + buf.len() as u64 > FILE_BYTES {
                    at = 0;
                }
                let ok = file.write_all_at(&buf, at).is_ok() && file.sync_data().is_ok();
                at += buf.len() as u64;
                for w in waiting.drain(..) {
                    let _ = w.send(ok);
                }
            }
        })?;
    Ok(tx)
}
