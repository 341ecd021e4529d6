//! Rotating rekey's own API keys: a new key with the same name and scopes,
//! the old one working through the grace and refused after it (or at once
//! with grace 0), the chain recorded both ways, audited without key
//! material, and every refusal with its code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::{both_backends, Db, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

both_backends!(rotate_with_grace_and_without);
both_backends!(rotate_refusals);

fn path(id: &str) -> String {
    format!("/api/v1/api-keys/{id}/rotate")
}

/// A new key in the admin's tenant: (id, key).
async fn new_key(s: &TestServer, name: &str, scopes: &[&str]) -> (String, String) {
    let r = s
        .post_admin("/api/v1/api-keys", json!({"name": name, "scopes": scopes}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let b = r.json();
    (
        b["api_key"]["id"].as_str().unwrap().to_string(),
        b["key"].as_str().unwrap().to_string(),
    )
}

async fn works(s: &TestServer, key: &str) -> bool {
    let st = s.get("/api/v1/connections", key).await.status.as_u16();
    assert!(st == 200 || st == 401, "{st}");
    st == 200
}

async fn rotate_with_grace_and_without(db: Db) {
    let s = TestServer::start(db).await;
    let name = "ci deploy";
    let (id1, k1) = new_key(&s, name, &["connections:read", "admin"]).await;

    // A key rotates itself with a short grace: both work meanwhile.
    let r = s.post(&path(&id1), &k1, json!({"grace": "2s"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.headers.get("cache-control").unwrap().to_str().unwrap(),
        "no-store"
    );
    let body = r.json();
    let k2 = body["key"].as_str().unwrap().to_string();
    let id2 = body["api_key"]["id"].as_str().unwrap().to_string();
    assert_ne!(k2, k1);
    assert_eq!(body["api_key"]["name"], name);
    assert_eq!(body["api_key"]["scopes"], body["previous"]["scopes"]);
    assert_eq!(body["api_key"]["scopes"].as_array().unwrap().len(), 2);
    assert_eq!(body["api_key"]["rotated_from"], id1.as_str());
    assert_eq!(body["previous"]["id"], id1.as_str());
    assert_eq!(body["previous"]["rotated_to"], id2.as_str());
    assert!(body["previous"]["revoked_at"].is_null());
    assert!(body["previous"]["expires_at"].is_string());
    assert!(works(&s, &k1).await, "the old key works during the grace");
    assert!(works(&s, &k2).await);
    // After the grace the old key is refused (waiting well past it).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        !works(&s, &k1).await,
        "the old key is refused after the grace"
    );
    assert!(works(&s, &k2).await);
    // An expired key cannot be rotated again.
    s.post_admin(&path(&id1), json!({}))
        .await
        .assert_error(409, "api_key_expired");

    // Grace 0: the old key stops in the same transaction.
    let r = s.post_admin(&path(&id2), json!({"grace": 0})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let body = r.json();
    let k3 = body["key"].as_str().unwrap().to_string();
    assert!(body["previous"]["revoked_at"].is_string());
    assert!(!works(&s, &k2).await, "grace 0 revokes at once");
    assert!(works(&s, &k3).await);
    s.post_admin(&path(&id2), json!({}))
        .await
        .assert_error(409, "already_revoked");

    // Audited with ids, never a key.
    let a = s
        .get_admin(&format!("/api/v1/audit?action=api_key.rotate&target={id2}"))
        .await;
    let entries = a.json()["items"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1, "{}", a.text);
    assert_eq!(entries[0]["details"]["grace_secs"], 0, "{}", a.text);
    for k in [&k1, &k2, &k3] {
        assert!(!a.text.contains(k.as_str()));
    }
    s.stop().await;
}

async fn rotate_refusals(db: Db) {
    let s = TestServer::start(db).await;
    let (id, k) = new_key(&s, "sync job", &["admin"]).await;
    let before: Value = s.get_admin("/api/v1/api-keys").await.json();
    for (body, status, code) in [
        (json!({"grace": "soon"}), 400, "invalid_grace"),
        (json!({"grace": "31d"}), 400, "invalid_grace"),
        (json!({"grace": -1}), 400, "invalid_grace"),
        (json!({"grace": "1h", "extra": true}), 400, "invalid_body"),
    ] {
        s.post_admin(&path(&id), body.clone())
            .await
            .assert_error(status, code);
    }
    // Bad and unknown ids; another tenant's key is not found.
    s.post_admin(&path("nope"), json!({}))
        .await
        .assert_error(400, "invalid_id");
    s.post_admin(&path("key_00000000000000000000000000000000"), json!({}))
        .await
        .assert_error(404, "api_key_not_found");
    let other = s.key("other", &["admin"]).await;
    let ro = s.key("default", &["connections:read"]).await;
    s.post(&path(&id), &other, json!({}))
        .await
        .assert_error(404, "api_key_not_found");
    // Not an admin: refused.
    s.post(&path(&id), &ro, json!({}))
        .await
        .assert_error(403, "missing_scope");
    // Nothing changed by the refusals (the read-only key is in the list now).
    let after: Value = s.get_admin("/api/v1/api-keys").await.json();
    let mine = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id.as_str())
            .cloned()
            .unwrap()
    };
    let (b, a) = (mine(&before), mine(&after));
    assert_eq!(
        (&b["rotated_to"], &b["expires_at"], &b["revoked_at"]),
        (&a["rotated_to"], &a["expires_at"], &a["revoked_at"])
    );
    assert_eq!(
        after["items"].as_array().unwrap().len(),
        before["items"].as_array().unwrap().len() + 1
    );
    assert!(works(&s, &k).await);
    // Rotated once (default grace 1h): a second rotation of the old key is
    // refused, the new one rotates.
    let r = s.post_admin(&path(&id), json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let body = r.json();
    let exp = body["previous"]["expires_at"].as_str().unwrap();
    let created = body["api_key"]["created_at"].as_str().unwrap();
    assert!(exp > created, "{exp} after {created}");
    assert!(works(&s, &k).await, "the old key works for the hour");
    s.post_admin(&path(&id), json!({}))
        .await
        .assert_error(409, "already_rotated");
    let new_id = body["api_key"]["id"].as_str().unwrap();
    let r = s.post_admin(&path(new_id), json!({"grace": "15m"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // A revoked key cannot be rotated.
    let (gone, _) = new_key(&s, "gone", &["connections:read"]).await;
    assert_eq!(
        s.delete(&format!("/api/v1/api-keys/{gone}"), &s.admin_key)
            .await
            .status,
        200
    );
    s.post_admin(&path(&gone), json!({}))
        .await
        .assert_error(409, "already_revoked");
    s.stop().await;
}
