//! Open-loop load at a fixed rate, for `bench/run`'s "p99 at half of the
//! peak rate" rows (what wrk2 does; Debian has no wrk2 package). Request
//! `i` is due at `start + i / RATE`, requests go round-robin over
//! CONNECTIONS keep-alive connections, and a request held back because its
//! connection was still waiting for the previous answer is charged that
//! wait: a stall counts against every request it delays (no coordinated
//! omission). A request this program itself sends late (its timer's
//! millisecond granularity) is not charged for that.
//!
//! Usage: `bench-rate URL RATE SECONDS CONNECTIONS [BEARER_TOKEN]`. Prints
//! one line of `key=value` pairs: the rate asked and achieved, answers
//! (2xx and other), transport errors, and p50/p90/p99/p99.9/max in ms.
//! With `BENCH_RATE_TIMELINE=FILE`, also writes FILE: per 10 ms of the
//! run (by due time), the requests due and their worst latency, to see
//! when the slow ones happen (a stall every 500 ms, every second…).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, Uri};
use tokio::net::TcpStream;

struct Args {
    uri: Uri,
    rate: f64,
    seconds: f64,
    connections: u64,
    token: Option<String>,
}

fn args() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 4 {
        return Err("usage: bench-rate URL RATE SECONDS CONNECTIONS [BEARER_TOKEN]".into());
    }
    let num = |s: &str, what: &str| -> Result<f64, String> {
        s.parse::<f64>()
            .ok()
            .filter(|n| *n > 0.0)
            .ok_or_else(|| format!("{what} must be a positive number, not {s:?}"))
    };
    Ok(Args {
        uri: a[0]
            .parse()
            .map_err(|e| format!("bad URL {:?}: {e}", a[0]))?,
        rate: num(&a[1], "RATE")?,
        seconds: num(&a[2], "SECONDS")?,
        connections: num(&a[3], "CONNECTIONS")? as u64,
        token: a.get(4).cloned(),
    })
}

/// What one connection saw: latencies in µs, non-2xx answers, errors.
#[derive(Default)]
struct Seen {
    latencies: Vec<u64>,
    /// (due time since start, latency), both in µs.
    timeline: Vec<(u64, u64)>,
    non_2xx: u64,
    errors: u64,
}

async fn connection(a: &Args, k: u64, total: u64, start: Instant) -> Seen {
    let mut seen = Seen::default();
    let authority = a.uri.authority().map(|x| x.to_string()).unwrap_or_default();
    let path = a
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let stream = match TcpStream::connect(&authority).await {
        Ok(s) => s,
        Err(_) => {
            seen.errors = (total - k).div_ceil(a.connections);
            return seen;
        }
    };
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let Ok((mut send, conn)) = hyper::client::conn::http1::handshake::<_, Body>(io).await else {
        seen.errors = (total - k).div_ceil(a.connections);
        return seen;
    };
    tokio::spawn(conn);
    // When the previous answer on this connection came back.
    let mut free_at = start;
    let mut i = k;
    while i < total {
        let due = start + Duration::from_secs_f64(i as f64 / a.rate);
        tokio::time::sleep_until(due.into()).await;
        let sent = Instant::now();
        // Held back by the server (the connection busy past the due time):
        // that wait is part of this request's latency.
        let held = free_at.saturating_duration_since(due);
        let mut req = Request::get(&path).header(header::HOST, &authority);
        if let Some(t) = &a.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let Ok(req) = req.body(Body::empty()) else {
            seen.errors += 1;
            break;
        };
        match send.send_request(req).await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                // Read the whole body: the answer is done when it is in.
                let body = http_body_util::BodyExt::collect(resp.into_body()).await;
                free_at = Instant::now();
                if body.is_err() {
                    seen.errors += 1;
                    break;
                }
                if !ok {
                    seen.non_2xx += 1;
                }
                let latency = (free_at.duration_since(sent) + held).as_micros() as u64;
                seen.latencies.push(latency);
                seen.timeline
                    .push((due.duration_since(start).as_micros() as u64, latency));
            }
            Err(_) => {
                seen.errors += 1;
                break;
            }
        }
        i += a.connections;
    }
    seen
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => std::sync::Arc::new(a),
        Err(e) => {
            eprintln!("bench-rate: {e}");
            return ExitCode::from(2);
        }
    };
    let total = (a.rate * a.seconds) as u64;
    // Connections open before the clock starts.
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..a.connections {
        let a = a.clone();
        tasks.spawn(async move { connection(&a, k, total, start).await });
    }
    let mut all = Seen::default();
    while let Some(r) = tasks.join_next().await {
        if let Ok(s) = r {
            all.latencies.extend(s.latencies);
            all.timeline.extend(s.timeline);
            all.non_2xx += s.non_2xx;
            all.errors += s.errors;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let lat = &mut all.latencies;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    println!(
        "rate={:.0} achieved={:.0} answers={} non_2xx={} errors={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} p999_ms={:.2} max_ms={:.2}",
        a.rate,
        lat.len() as f64 / elapsed,
        lat.len(),
        all.non_2xx,
        all.errors,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        pct(1.0),
    );
    if let Some(file) = std::env::var_os("BENCH_RATE_TIMELINE") {
        if let Err(e) = std::fs::write(&file, timeline(&all.timeline)) {
            eprintln!("bench-rate: cannot write {}: {e}", file.to_string_lossy());
        }
    }
    if all.errors > 0 || lat.is_empty() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Per 10 ms bucket of due time: `start_ms requests worst_ms`, one line each.
fn timeline(points: &[(u64, u64)]) -> String {
    let mut buckets: std::collections::BTreeMap<u64, (u64, u64)> = Default::default();
    for &(due, latency) in points {
        let b = buckets.entry(due / 10_000).or_default();
        b.0 += 1;
        b.1 = b.1.max(latency);
    }
    let mut out = String::from("start_ms requests worst_ms\n");
    for (k, (n, worst)) in buckets {
        out.push_str(&format!("{} {n} {:.2}\n", k * 10, worst as f64 / 1000.0));
    }
    out
}
