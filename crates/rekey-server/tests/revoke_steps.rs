//! `POST …/revoke` answers with the manual steps for the connection's kind:
//! a Jira API token (`basic`) is revoked under API tokens, not by removing
//! an OAuth app's access. Confirming takes a note, kept as evidence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::{both_backends, items, Db, TestServer};
use reqwest::StatusCode;
use serde_json::json;

both_backends!(revoke_gives_the_steps_for_the_kind);

async fn revoke_gives_the_steps_for_the_kind(db: Db) {
    let s = TestServer::start(db).await;
    let id = s
        .create_connection(
            json!({"provider": "jira", "kind": "basic", "display_name": "Jira bot",
                "params": {"site": "acme"},
                "credentials": {"username": "bot@example.com", "password": "api-token-1"}}),
        )
        .await;
    let r = s.act(&format!("/api/v1/connections/{id}/revoke")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let steps = r.json()["manual_steps"].to_string();
    assert!(steps.contains("API tokens"), "{steps}");
    assert!(!steps.contains("Connected apps"), "{steps}");

    // The note is the evidence in the audit entry.
    let r = s
        .post_admin(
            &format!("/api/v1/connections/{id}/revoke/confirm"),
            json!({"note": "SEC-7: token revoked"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "revoked");
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?target={id}&action=connection.revoked"
        ))
        .await
        .json();
    assert_eq!(
        a["items"][0]["details"]["note"], "SEC-7: token revoked",
        "{a}"
    );
    // Asked-for status changes are not recorded as failures.
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?target={id}&action=connection.status_changed"
        ))
        .await
        .json();
    let outcomes: Vec<&str> = items(&a)
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert!(
        !outcomes.is_empty() && outcomes.iter().all(|o| *o == "ok"),
        "{a}"
    );
    // A note with a control character is refused, naming the field.
    let id2 = s.create_api_key_conn(&s.admin_key, "k-2", json!({})).await;
    s.act(&format!("/api/v1/connections/{id2}/revoke")).await;
    s.post_admin(
        &format!("/api/v1/connections/{id2}/revoke/confirm"),
        json!({"note": "bad\u{7}"}),
    )
    .await
    .assert_error(400, "invalid_field");
    s.stop().await;
}
