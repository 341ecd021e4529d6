//! Group commit never hands out a secret whose read is not in the audit
//! chain: readers fetch credentials as fast as they can, each request
//! with an id of its own, and the server is killed with SIGKILL in the
//! middle of it. After a restart, every fetch that was answered 200 has
//! its `credentials.read` entry (found by its request id), and the chain
//! verifies. Reads that were waiting for their batch when the process
//! died got no answer, so losing their entries loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{create_conns, Env};
use rekey_testkit::Db;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn answered_reads_survive_a_kill_on_sqlite() {
    kill_while_reading(Db::Sqlite).await;
}

#[tokio::test]
async fn answered_reads_survive_a_kill_on_postgres() {
    kill_while_reading(Db::Postgres).await;
}

/// Answered fetches to see before the kill.
const ANSWERED: usize = 300;
const READERS: usize = 16;

async fn kill_while_reading(db: Db) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let mut server = env.serve().await;
    let ids = create_conns(&server.base, &key, 4, |i, h| format!("secret-{i}-{h}")).await;

    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let http = reqwest::Client::new();
    let mut readers = tokio::task::JoinSet::new();
    for r in 0..READERS {
        let (http, base, key) = (http.clone(), server.base.clone(), key.clone());
        let (ids, answered) = (ids.clone(), answered.clone());
        readers.spawn(async move {
            for n in 0.. {
                let rid = format!("crash-read-{r}-{n}");
                let id = &ids[n % ids.len()];
                let res = http
                    .get(format!("{base}/api/v1/connections/{id}/credentials"))
                    .bearer_auth(&key)
                    .header("x-request-id", &rid)
                    .send()
                    .await;
                // Killed: connection refused or reset, or a body cut off.
                let Ok(res) = res else { return };
                let status = res.status();
                let Ok(body) = res.json::<Value>().await else {
                    return;
                };
                assert_eq!(status, 200, "{body}");
                assert!(body["credentials"]["headers"]["X-A"].is_string(), "{body}");
                answered.lock().unwrap().push(rid);
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        while answered.lock().unwrap().len() < ANSWERED {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("readers made no progress");
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    while readers.join_next().await.transpose().unwrap().is_some() {}
    let answered: Vec<String> = answered.lock().unwrap().clone();
    assert!(answered.len() >= ANSWERED);

    let server = env.serve().await;
    let audited = read_request_ids(&server.base, &key).await;
    let missing: Vec<&String> = answered.iter().filter(|r| !audited.contains(*r)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered reads have no audit entry, e.g. {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
    let v = common::api_get(&server.base, &key, "/api/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    server.stop().await;
}

/// The request ids of every `credentials.read` entry, through the API.
async fn read_request_ids(base: &str, key: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/audit?action=credentials.read&limit=500".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = common::api_get(base, key, &path).await;
        let items = page["items"].as_array().unwrap_or_else(|| panic!("{page}"));
        for e in items {
            if let Some(r) = e["request_id"].as_str() {
                ids.insert(r.to_string());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}
