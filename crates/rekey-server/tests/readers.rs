//! "Which of our systems fetched this credential?": `GET …/readers` groups
//! the audit log's reads of one connection by API key, client address and
//! outcome (refused reads apart), with counts and first/last times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ui_support;

use rekey_service::Role;
use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

both_backends!(readers_of_a_credential);

async fn readers_of_a_credential(db: Db) {
    let s = TestServer::start(db).await;
    let id = s
        .create_api_key_conn(&s.admin_key, "sk-readers-1", json!({}))
        .await;
    let creds = format!("/api/v1/connections/{id}/credentials");
    let readers = format!("/api/v1/connections/{id}/readers");
    let etl = s.key("default", &["credentials:read"]).await;
    let bi = s.key("default", &["credentials:read"]).await;
    let nosy = s.key("default", &["connections:read"]).await;
    for _ in 0..3 {
        assert_eq!(s.get(&creds, &etl).await.status, StatusCode::OK);
    }
    assert_eq!(s.get(&creds, &bi).await.status, StatusCode::OK);
    s.get(&creds, &nosy)
        .await
        .assert_error(403, "missing_scope");

    let r = s.get_admin(&readers).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let items: Vec<Value> = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 3, "{items:?}");
    let mut reads: Vec<(i64, String)> = items
        .iter()
        .map(|i| {
            (
                i["reads"].as_i64().unwrap(),
                i["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    reads.sort();
    assert_eq!(
        reads,
        [(1, "denied".into()), (1, "ok".into()), (3, "ok".into())]
    );
    for i in &items {
        assert!(i["actor"].as_str().unwrap().starts_with("api_key:"), "{i}");
        assert_eq!(i["api_key_name"], "test");
        assert_eq!(i["source"], "127.0.0.1", "{i}");
        let t = |k: &str| {
            time::OffsetDateTime::parse(
                i[k].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        assert!(t("first_read_at") <= t("last_read_at"), "{i}");
    }
    assert!(!r.text.contains("sk-readers-1"));

    // The list filter: read (successfully) since a time.
    let unread = s
        .create_api_key_conn(&s.admin_key, "sk-readers-2", json!({}))
        .await;
    s.get(&format!("/api/v1/connections/{unread}/credentials"), &nosy)
        .await
        .assert_error(403, "missing_scope");
    let read_ids = |l: Value| -> Vec<String> {
        l["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let l = s
        .get_admin("/api/v1/connections?last_read_after=2020-01-01T00:00:00Z")
        .await
        .json();
    assert_eq!(read_ids(l), vec![id.clone()], "a refused read is no read");
    let l = s
        .get_admin("/api/v1/connections?last_read_after=2999-01-01T00:00:00Z")
        .await
        .json();
    assert!(read_ids(l).is_empty());
    s.get_admin("/api/v1/connections?last_read_after=soon")
        .await
        .assert_error(400, "invalid_timestamp");
    // The dashboard's filter (a date input) and its bulk form carry it.
    let (ada, _) = ui_support::user(&s, "ada", Role::Operator).await;
    let (st, html) = ui_support::get(&s, "/ui/connections?last_read_after=2020-01-01", &ada).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains(&id) && !html.contains(&unread), "{html}");
    assert!(
        html.contains(r#"<input type="hidden" name="last_read_after" value="2020-01-01">"#),
        "{html}"
    );

    // `since` narrows; a future one finds nobody.
    let r = s
        .get_admin(&format!("{readers}?since=2999-01-01T00:00:00Z"))
        .await;
    assert_eq!(r.json()["items"], json!([]));
    s.get_admin(&format!("{readers}?since=yesterday"))
        .await
        .assert_error(400, "invalid_timestamp");
    s.get_admin(&format!("{readers}?when=now"))
        .await
        .assert_error(400, "invalid_query");
    // Auditors only; other tenants see no such connection.
    s.get(&readers, &nosy)
        .await
        .assert_error(403, "missing_scope");
    let other = s.key("other", &["admin"]).await;
    s.get(&readers, &other)
        .await
        .assert_error(404, "connection_not_found");
    s.get_admin("/api/v1/connections/con_00000000000000000000000000000000/readers")
        .await
        .assert_error(404, "connection_not_found");
    s.stop().await;
}
