//! Shared by the benches that fill a server with API-key connections.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::StreamExt;
use rekey_testkit::{Db, TestServer};
use serde_json::Value;

/// Run `run` on SQLite, then on PostgreSQL, in a multi-threaded runtime.
pub fn on_both_backends<F: std::future::Future<Output = ()>>(run: impl Fn(Db) -> F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        run(Db::Sqlite).await;
        run(Db::Postgres).await;
    });
}

/// A numeric setting from the environment, or its default.
pub fn env_or(name: &str, d: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Create `n` connections through the API, 32 at a time; `body(i)` is the
/// request body of the i-th. Panics unless every one was created.
pub async fn create_connections(s: &TestServer, n: usize, body: impl Fn(usize) -> Value) {
    let created: Vec<bool> = futures_util::stream::iter(0..n)
        .map(|i| {
            let b = body(i);
            async move {
                let r = s.post("/api/v1/connections", &s.admin_key, b).await;
                r.status.as_u16() == 201
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(created.iter().all(|ok| *ok));
}

/// The `p` quantile (0–1) of sorted durations, in milliseconds.
pub fn pct(sorted: &[std::time::Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// `requests` sequential GETs of `url` with the header `auth` (a session
/// cookie or a bearer key): (req/s, p50 ms, p99 ms, bytes of the last).
pub async fn pages(
    http: &reqwest::Client,
    url: &str,
    auth: (&str, &str),
    requests: usize,
) -> (f64, f64, f64, usize) {
    let mut times = Vec::with_capacity(requests);
    let mut bytes = 0;
    let start = std::time::Instant::now();
    for _ in 0..requests {
        let t = std::time::Instant::now();
        let r = http.get(url).header(auth.0, auth.1).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        bytes = r.bytes().await.unwrap().len();
        times.push(t.elapsed());
    }
    let wall = start.elapsed();
    times.sort();
    (
        requests as f64 / wall.as_secs_f64(),
        pct(&times, 0.5),
        pct(&times, 0.99),
        bytes,
    )
}

/// A dashboard operator `bench`, signed in: the browser-like client and
/// its session cookie.
pub async fn operator_session(s: &TestServer) -> (reqwest::Client, String) {
    use rekey_service::{Ctx, Role};
    let pw = rekey_core::SecretString::new("bench operator password".to_string());
    s.rekey
        .create_user(&Ctx::cli("default"), "bench", &pw, Role::Operator)
        .await
        .unwrap();
    let http = rekey_testkit::browser::browser();
    let login = http
        .post(format!("{}/ui/login", s.base))
        .form(&[("username", "bench"), ("password", pw.expose())])
        .send()
        .await
        .unwrap();
    let cookie = rekey_testkit::browser::session_cookie(&login);
    (http, cookie)
}
