//! Attack tests that need the real binary: open-file limits, slow clients,
//! signals, two processes on one data directory, file modes. The in-process
//! attack tests are in `crates/rekey-server/tests/attack/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use futures_util::future::join_all;
use rekey_testkit::{both_backends, Db};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

both_backends!(offline_admin_beside_a_busy_server);

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// A client that opens a new connection per request (no pool), so each
/// request has to get through the accept queue.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A `POST /api/v1/connections` as `key` announcing a body of `length`
/// bytes, of which only `start` follows.
fn partial_post(key: &str, length: usize, start: &str) -> String {
    format!(
        "POST /api/v1/connections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{start}"
    )
}

/// Assert that `/healthz` and `/readyz` answer 200 on new connections;
/// then `GET /api/v1/connections` as `key`.
async fn health_answers_then_list(base: &str, key: &str) -> reqwest::Response {
    let http = fresh_client();
    for path in ["/healthz", "/readyz"] {
        let r = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} unreachable under load: {e}"));
        assert_eq!(r.status(), 200, "{path}");
    }
    http.get(format!("{base}/api/v1/connections"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// Under `ulimit -n 256`, 400 connections that send half a request head and
/// hold it must not take the service down: new clients still get
/// `/healthz`, `/readyz` and the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_exhaustion_leaves_health_answering() {
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    // A long header timeout, so what keeps the service up here is the cap.
    let server = env
        .serve_with(&["--header-read-timeout", "120"], Some("ulimit -n 256"))
        .await;
    let target = addr(&server.base);
    let mut held = Vec::new();
    for _ in 0..400 {
        match TcpStream::connect(&target).await {
            Ok(mut s) => {
                let _ = s
                    .write_all(b"GET /api/v1/connections HTTP/1.1\r\nHost: x\r\n")
                    .await;
                held.push(s);
            }
            Err(_) => break,
        }
    }
    assert!(held.len() >= 300, "only {} connections opened", held.len());
    let r = health_answers_then_list(&server.base, &key).await;
    assert_eq!(r.status(), 200);
    drop(held);
    server.stop().await;
}

/// When every connection is busy (bodies trickling in), a new connection
/// still gets `/healthz` and `/readyz`; anything else answers 503
/// `overloaded` at once instead of queueing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_connections_busy_leaves_health_answering() {
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let server = env
        .serve_with(&["--max-connections", "4", "--body-timeout", "120"], None)
        .await;
    let target = addr(&server.base);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(&target).await.unwrap();
        let head = partial_post(&key, 500, "{");
        s.write_all(head.as_bytes()).await.unwrap();
        held.push(s);
    }
    // Give the server a moment to take the four requests in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = health_answers_then_list(&server.base, &key).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    drop(held);
    server.stop().await;
}

async fn read_until_closed(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf))
        .await
        .expect("the server kept a slow connection open");
    String::from_utf8_lossy(&buf).to_string()
}

/// Slow heads, trickled bodies and idle kept-alive connections are cut off
/// after their timeouts; a trickled body gets a JSON 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let server = env
        .serve_with(&["--header-read-timeout", "1", "--body-timeout", "1"], None)
        .await;
    let target = addr(&server.base);

    // Half a request head, then nothing: closed without an answer.
    let mut s = TcpStream::connect(&target).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut s).await;
    assert!(!got.contains("200 OK"), "{got}");

    // A body announced as 100 bytes, 10 sent: 408 request_timeout.
    let mut s = TcpStream::connect(&target).await.unwrap();
    let head = partial_post(&key, 100, "{\"provider");
    s.write_all(head.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains(r#""code":"request_timeout""#), "{got}");

    // One request, then idle on a kept-alive connection: closed.
    let mut s = TcpStream::connect(&target).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    server.stop().await;
}

/// SIGTERM while a client holds a request open: the server stops within
/// its shutdown deadline instead of waiting for the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_has_a_deadline() {
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let mut server = env
        .serve_with(&["--shutdown-timeout", "1", "--body-timeout", "300"], None)
        .await;
    let mut s = TcpStream::connect(addr(&server.base)).await.unwrap();
    let head = partial_post(&key, 1000, "{");
    s.write_all(head.as_bytes()).await.unwrap();
    // The request is with the server (waiting for its body) once a second
    // request on another connection has been answered.
    let r = fresh_client()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    server.terminate();
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait())
        .await
        .expect("the server waited for a slow client past its shutdown deadline")
        .unwrap();
    assert!(status.success(), "{status}: {}", server.logs());
    // It did wait for the request in flight, up to the deadline.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "stopped without draining: {:?}",
        started.elapsed()
    );
    drop(s);
}

/// With `--shutdown-delay`, SIGTERM first turns `/readyz` to 503 while
/// every other request is still answered (a load balancer takes the
/// replica out), then the server closes and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_turns_readiness_off_first() {
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let mut server = env.serve_with(&["--shutdown-delay", "3"], None).await;
    let http = fresh_client();
    let ready = http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    server.terminate();
    // Not ready within moments of the signal; still serving meanwhile.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let body = loop {
        let r = http
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            break r.text().await.unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "/readyz still 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    let health = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let list = http
        .get(format!("{}/api/v1/connections", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait())
        .await
        .expect("no exit after the shutdown delay")
        .unwrap();
    assert!(status.success(), "{status}: {}", server.logs());
}

/// A second `rekey serve` on a SQLite data dir is refused with a message
/// that says why and what to do; on PostgreSQL replicas share the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_per_sqlite_database() {
    let env = Env::new(Db::Sqlite).await;
    let first = env.serve().await;
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        env.serve_command(&[], None).stdout(Stdio::piped()).output(),
    )
    .await
    .expect("second server neither started nor stopped")
    .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("another rekey server") && err.contains("PostgreSQL"),
        "{err}"
    );
    assert!(!stdout(&out).contains("listening"));
    // The first keeps serving.
    let r = fresh_client()
        .get(format!("{}/readyz", first.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    first.stop().await;
    // Once it has stopped, a new server may start.
    env.serve().await.stop().await;

    let pg = Env::new(Db::Postgres).await;
    let a = pg.serve().await;
    let b = pg.serve().await;
    for s in [&a, &b] {
        let r = fresh_client()
            .get(format!("{}/readyz", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    a.stop().await;
    b.stop().await;
}

/// `admin create-key` and `admin create-user` run while the server is busy
/// writing (credential reads are audited writes): both the offline commands
/// and every server request succeed.
async fn offline_admin_beside_a_busy_server(db: Db) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/v1/connections", server.base))
        .bearer_auth(&key)
        .json(
            &json!({"provider": "custom-rest", "kind": "api_key", "display_name": "busy",
            "credentials": {"key": "sk-busy"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = (0..8).map(|_| {
        let (http, base, key, id, stop) = (
            http.clone(),
            server.base.clone(),
            key.clone(),
            id.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = http
                    .get(format!("{base}/api/v1/connections/{id}/credentials"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                assert_eq!(status, 200, "{}", r.text().await.unwrap());
                n += 1;
            }
            n
        })
    });
    let load: Vec<_> = load.collect();
    for i in 0..6 {
        let out = env
            .run(
                &[
                    "admin",
                    "create-key",
                    "--name",
                    &format!("k{i}"),
                    "--scope",
                    "admin",
                ],
                &[],
            )
            .await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).starts_with("rk_"));
    }
    let out = env
        .create_user("ops", "operator", "correct horse battery staple")
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads: usize = join_all(load).await.into_iter().map(|r| r.unwrap()).sum();
    assert!(reads > 0);
    server.stop().await;
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Another process that opens and closes the SQLite file beside a running
/// server (an offline `rekey admin` command, say) must not act as the
/// file's last user: the server's POSIX locks on the file hold (nothing in
/// the server closes a descriptor of it behind SQLite's back), so closing
/// leaves the server's write-ahead log in place. When the WAL thread
/// synced the file through a descriptor of its own, closing that
/// descriptor dropped those locks, and such a process checkpointed and
/// deleted the log and its index under the server ("database disk image
/// is malformed" followed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_leaves_the_servers_log_alone() {
    let env = Env::new(Db::Sqlite).await;
    env.admin_key("default", "admin").await;
    let server = env.serve().await;
    // The WAL thread's first passes (every 100 ms) have run.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let dir = env.data_dir();
    let (wal, shm) = (dir.join("rekey.db-wal"), dir.join("rekey.db-shm"));
    assert!(wal.exists() && shm.exists());
    // This test's process is the other one: a connection closed in full,
    // which is when SQLite checks whether it was the file's last user.
    let c = rusqlite::Connection::open(dir.join("rekey.db")).unwrap();
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    assert!(n > 0);
    c.close().unwrap();
    assert!(
        wal.exists() && shm.exists(),
        "another process removed the running server's log"
    );
    server.stop().await;
}

/// The database, its -wal/-shm files and the lock file are created 0600 in
/// a 0700 directory; a data dir left readable by others is tightened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_private() {
    let env = Env::new(Db::Sqlite).await;
    // Under the common umask, so the modes come from rekey, not the umask.
    let server = env.serve_with(&[], Some("umask 022")).await;
    let dir = env.data_dir();
    assert_eq!(mode(&dir), 0o700);
    for f in [
        "rekey.db",
        "rekey.db-wal",
        "rekey.db-shm",
        "rekey.lock",
        "keyring.json",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    server.stop().await;

    // Someone loosened them: the next start tightens them again.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("rekey.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = env.serve_with(&[], Some("umask 022")).await;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("rekey.db")), 0o600);
    server.stop().await;
}
