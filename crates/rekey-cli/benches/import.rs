//! Loading an inventory, then listing it: BENCH_CREATES connections
//! created one request each by 16 parallel clients, then BENCH_IMPORT
//! through `POST /api/v1/connections/import` in requests of 1,000 rows
//! (creates/second for each); then, with all of them stored,
//! BENCH_REQUESTS sequential loads each of the API list (first page, a tag
//! filter, a search) and the dashboard's connections and integrations
//! pages (req/s, p50, p99). SQLite, then PostgreSQL.
//!
//! BENCH_CREATES (2000), BENCH_IMPORT (100000), BENCH_REQUESTS (200).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{env_or, on_both_backends, operator_session, pages};

use futures_util::StreamExt;
use rekey_testkit::{Db, TestServer};
use serde_json::{json, Value};
use std::time::Instant;

fn row(i: usize) -> Value {
    json!({"provider": "custom-rest", "kind": "api_key", "display_name": format!("Conn {i:06}"),
           "tags": [if i.is_multiple_of(2) { "even" } else { "odd" }], "custody": ["ci"],
           "credentials": {"key": format!("sk-bench-{i:06}-xxxxxxxxxxxxxxxxxx"), "placement": "header", "name": "X-Api-Key"}})
}

async fn run(db: Db, creates: usize, import: usize, requests: usize) {
    let s = TestServer::start(db).await;
    let start = Instant::now();
    let ok: Vec<bool> = futures_util::stream::iter(0..creates)
        .map(|i| {
            let s = &s;
            async move {
                let r = s.post("/api/v1/connections", &s.admin_key, row(i)).await;
                r.status.as_u16() == 201
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(ok.iter().all(|b| *b));
    let single = creates as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut created = 0;
    let rows: Vec<Value> = (0..import).map(|i| row(creates + i)).collect();
    for chunk in rows.chunks(rekey_api::IMPORT_MAX_ROWS) {
        let r = s
            .post(
                "/api/v1/connections/import",
                &s.admin_key,
                json!({"connections": chunk}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text);
        let v = r.json();
        assert_eq!(v["failed"], 0, "{}", r.text);
        created += v["created"].as_u64().unwrap();
    }
    let wall = start.elapsed();
    assert_eq!(created as usize, import);
    println!(
        "{db:?}: single creates (16 clients): {single:.0}/s over {creates}; \
         import: {import} in {:.2} s = {:.0}/s",
        wall.as_secs_f64(),
        import as f64 / wall.as_secs_f64()
    );

    let total = creates + import;
    let http = reqwest::Client::new();
    let bearer = format!("Bearer {}", s.admin_key);
    for (what, path) in [
        ("API list, first page of 50", "/api/v1/connections?limit=50"),
        (
            "API list, tag filter",
            "/api/v1/connections?tag=odd&limit=50",
        ),
        (
            "API list, search",
            "/api/v1/connections?q=Conn%200999&limit=50",
        ),
    ] {
        let url = format!("{}{path}", s.base);
        let (rps, p50, p99, _) = pages(&http, &url, ("authorization", &bearer), requests).await;
        println!(
            "{db:?}: {total} connections, {what}: {rps:.0} req/s p50={p50:.1}ms p99={p99:.1}ms"
        );
    }
    let (http, cookie) = operator_session(&s).await;
    for (what, path) in [
        ("dashboard connections page", "/ui/connections"),
        ("dashboard integrations page", "/ui/integrations"),
    ] {
        let url = format!("{}{path}", s.base);
        let (rps, p50, p99, bytes) = pages(&http, &url, ("cookie", &cookie), requests).await;
        println!(
            "{db:?}: {total} connections, {what}: {rps:.0} req/s p50={p50:.1}ms p99={p99:.1}ms size={}KiB",
            bytes / 1024
        );
    }
    s.stop().await;
}

fn main() {
    let creates = env_or("BENCH_CREATES", 2000) as usize;
    let import = env_or("BENCH_IMPORT", 100_000) as usize;
    let requests = env_or("BENCH_REQUESTS", 200) as usize;
    on_both_backends(|db| run(db, creates, import, requests));
}
