//! Credential-fetch throughput and latency against a warmed, in-process
//! server on SQLite (loopback only).
//!
//! `cargo bench -p rekey-cli --bench credential_fetch`
//! Env: BENCH_REQUESTS (default 20000), BENCH_CONCURRENCY (default 32),
//! BENCH_CONNECTIONS (default 100).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WARMUP: usize = 500;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().expect("env var must be a positive integer"),
        Err(_) => default,
    }
    .max(1)
}

#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    failures: usize,
    first_error: Option<String>,
    wall: Duration,
}

/// Send exactly `total` GETs, `concurrency` at a time; `url_for(i)` picks the
/// URL of request `i`. Every request counts; non-200 answers are failures.
async fn run(
    client: &reqwest::Client,
    token: &str,
    total: usize,
    concurrency: usize,
    url_for: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> Phase {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.min(total) {
        let (client, next, url_for) = (client.clone(), next.clone(), url_for.clone());
        let auth = format!("Bearer {token}");
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut failures, mut first_error) = (0, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t0 = Instant::now();
                let res = client
                    .get(url_for(i))
                    .header("authorization", &auth)
                    .send()
                    .await;
                let outcome = match res {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(_) if status == reqwest::StatusCode::OK => Ok(()),
                            Ok(body) => {
                                Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))
                            }
                            Err(e) => Err(format!("reading body: {e}")),
                        }
                    }
                    Err(e) => Err(format!("request: {e}")),
                };
                lat.push(t0.elapsed());
                if let Err(e) = outcome {
                    failures += 1;
                    first_error.get_or_insert(e);
                }
            }
            (lat, failures, first_error)
        }));
    }
    let mut phase = Phase::default();
    for w in workers {
        let (lat, failures, err) = w.await.expect("worker task panicked");
        phase.latencies.extend(lat);
        phase.failures += failures;
        if phase.first_error.is_none() {
            phase.first_error = err;
        }
    }
    phase.wall = start.elapsed();
    phase
}

fn report(name: &str, backend: &str, concurrency: usize, p: &mut Phase) {
    p.latencies.sort_unstable();
    let n = p.latencies.len();
    let pct = |q: f64| -> f64 {
        let idx = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        p.latencies[idx].as_secs_f64() * 1e3
    };
    let max = p.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    println!(
        "{name:<12} backend={backend} requests={n} concurrency={concurrency} failures={} wall={:.2}s \
         rps={:.0} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={max:.2}ms",
        p.failures,
        p.wall.as_secs_f64(),
        n as f64 / p.wall.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
    );
    if let Some(e) = &p.first_error {
        println!("{name:<12} first error: {e}");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let requests = env_usize("BENCH_REQUESTS", 20_000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    let n_conns = env_usize("BENCH_CONNECTIONS", 100);

    // 1. Data dir, admin key, connections.
    let dir = tempfile::tempdir().expect("tempdir");
    let opened = rekey_service::OpenOptions {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    }
    .open(rekey_service::LockMode::Shared)
    .await
    .expect("open data dir");
    let rekey = opened.rekey.clone();
    let backend = format!("{:?}", rekey.store().backend());
    let ctx = rekey_service::Ctx::cli("default");
    let key = rekey
        .create_api_key(
            &ctx,
            &rekey_api::CreateApiKey {
                name: "bench".into(),
                scopes: vec!["admin".into()],
            },
        )
        .await
        .expect("create API key")
        .key
        .to_string();
    let mut ids = Vec::with_capacity(n_conns);
    for i in 0..n_conns {
        let req: rekey_api::CreateConnection = serde_json::from_value(serde_json::json!({
            "provider": "sixsense", "kind": "api_key", "display_name": format!("bench {i}"),
            "tags": ["bench"], "credentials": {"key": format!("bench-secret-{i:05}-0123456789abcdef")},
        }))
        .expect("CreateConnection");
        let created = rekey.create_connection(&ctx, req).await;
        ids.push(created.expect("create connection").row.id);
    }
    let ids = Arc::new(ids);
    println!("setup        backend={backend} connections={n_conns} warm-up={WARMUP} requests");

    // 2. The real router on an ephemeral loopback port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rekey_server::serve(listener, rekey.clone(), async move {
        let _ = stop_rx.await;
    }));

    // 3. Warm up, then measure. One shared keep-alive client, no proxies.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let cred_url: Arc<dyn Fn(usize) -> String + Send + Sync> = {
        let (base, ids) = (base.clone(), ids.clone());
        Arc::new(move |i| {
            format!(
                "{base}/api/v1/connections/{}/credentials",
                ids[i % ids.len()]
            )
        })
    };
    let list_url: Arc<dyn Fn(usize) -> String + Send + Sync> = {
        let base = base.clone();
        Arc::new(move |_| format!("{base}/api/v1/connections?limit=50"))
    };
    let warm = run(&client, &key, WARMUP, concurrency, cred_url.clone()).await;
    let mut failures = warm.failures;
    if let Some(e) = &warm.first_error {
        println!("warm-up      first error: {e}");
    }
    let mut creds = run(&client, &key, requests, concurrency, cred_url).await;
    report("credentials", &backend, concurrency, &mut creds);
    let list_n = (requests / 4).max(1);
    let mut list = run(&client, &key, list_n, concurrency, list_url).await;
    report("list", &backend, concurrency, &mut list);
    failures += creds.failures + list.failures;

    // Shut down cleanly: close client connections first so draining is quick.
    drop(client);
    let _ = stop_tx.send(());
    server.await.expect("server task").expect("server");
    rekey.store().close().await;
    drop(opened);
    if failures > 0 {
        println!("FAILED: {failures} request(s) did not return 200 (incl. warm-up)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
