//! Single creates that arrive together are written together (group
//! commit, `rekey-service`'s `connections::group`): each caller still gets
//! its own connection, with its own material, version and audit entry,
//! and a create that cannot be written fails alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::{both_backends, items, Db, Resp, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;

both_backends!(
    concurrent_creates_each_get_their_own_connection,
    a_create_that_cannot_be_written_fails_alone,
);

const N: usize = 48;

fn body(i: usize) -> Value {
    json!({
        "provider": "custom-rest", "kind": "api_key",
        "display_name": format!("grouped {i}"),
        "tags": [format!("t{}", i % 5)],
        "credentials": {"key": format!("sk-grouped-{i}"), "placement": "header", "name": "X-Api-Key"},
    })
}

async fn create_all(s: &Arc<TestServer>, bodies: Vec<Value>) -> Vec<Resp> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let s = s.clone();
            tokio::spawn(async move { s.post_admin("/api/v1/connections", b).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// What a created connection holds, read back: (name, key, versions).
async fn read_back(s: &TestServer, id: &str) -> (String, String, usize) {
    let k = &s.admin_key;
    let conn = s
        .get(&format!("/api/v1/connections/{id}"), k)
        .await
        .ok_json();
    let creds = s
        .get(&format!("/api/v1/connections/{id}/credentials"), k)
        .await
        .ok_json();
    let versions = s
        .get(&format!("/api/v1/connections/{id}/versions"), k)
        .await
        .ok_json();
    (
        conn["display_name"].as_str().unwrap().to_string(),
        creds["credentials"]["key"].as_str().unwrap().to_string(),
        items(&versions).len(),
    )
}

async fn concurrent_creates_each_get_their_own_connection(db: Db) {
    let s = Arc::new(TestServer::start(db).await);
    let got = create_all(&s, (0..N).map(body).collect()).await;
    let mut ids = std::collections::BTreeSet::new();
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let v = r.json();
        // The answer is this request's connection, not a neighbour's.
        assert_eq!(v["display_name"], format!("grouped {i}"), "{v}");
        assert_eq!(v["tags"], json!([format!("t{}", i % 5)]));
        let id = v["id"].as_str().unwrap().to_string();
        let (name, key, versions) = read_back(&s, &id).await;
        assert_eq!(name, format!("grouped {i}"));
        assert_eq!(key, format!("sk-grouped-{i}"));
        assert_eq!(versions, 1);
        let audit = s
            .get(
                &format!("/api/v1/audit?target={id}&action=connection.create"),
                &s.admin_key,
            )
            .await
            .ok_json();
        assert_eq!(items(&audit).len(), 1, "{id}: {audit}");
        ids.insert(id);
    }
    assert_eq!(ids.len(), N);
    let listed = s
        .get("/api/v1/connections?limit=200", &s.admin_key)
        .await
        .ok_json();
    assert_eq!(items(&listed).len(), N);
    let v = s.get("/api/v1/audit/verify", &s.admin_key).await.ok_json();
    assert_eq!(v["ok"], true, "{v}");
}

async fn a_create_that_cannot_be_written_fails_alone(db: Db) {
    let s = Arc::new(TestServer::start(db).await);
    // A row every check passes but the database refuses.
    match db {
        Db::Sqlite => {
            s.sql(&["CREATE TRIGGER poison BEFORE INSERT ON connections \
                     WHEN NEW.display_name = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END"])
                .await
        }
        Db::Postgres => {
            s.sql(&[
                "ALTER TABLE connections ADD CONSTRAINT poison CHECK (display_name <> 'poison')",
            ])
            .await
        }
    }
    let bodies: Vec<Value> = (0..N)
        .map(|i| {
            let mut b = body(i);
            if i % 16 == 7 {
                b["display_name"] = json!("poison");
            }
            b
        })
        .collect();
    let got = create_all(&s, bodies).await;
    let mut created = 0;
    for (i, r) in got.iter().enumerate() {
        if i % 16 == 7 {
            r.assert_error(500, "internal");
            assert!(!r.text.contains("sk-grouped"), "{}", r.text);
        } else {
            let id = r.created_id();
            let (name, key, _) = read_back(&s, &id).await;
            assert_eq!(
                (name, key),
                (format!("grouped {i}"), format!("sk-grouped-{i}"))
            );
            created += 1;
        }
    }
    let listed = s
        .get("/api/v1/connections?limit=200", &s.admin_key)
        .await
        .ok_json();
    assert_eq!(items(&listed).len(), created);
    let v = s.get("/api/v1/audit/verify", &s.admin_key).await.ok_json();
    assert_eq!(v["ok"], true, "{v}");
}
