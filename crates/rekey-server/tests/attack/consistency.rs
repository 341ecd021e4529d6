//! Concurrency faults: torn reads of a connection and its secrets (500
//! `decryption_failed`), writes without `If-Match` refused as conflicts on
//! PostgreSQL, and a revocation-pending credential still handed out.

use futures_util::future::join_all;
use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

both_backends!(
    reads_racing_credential_changes_never_fail,
    writes_without_if_match_apply_to_the_latest_version,
    revocation_pending_credentials_are_not_handed_out,
);

/// 16 readers (spread over two servers on one database: replicas on
/// PostgreSQL) against a connection whose key is replaced in a loop. Every
/// read must answer 200 with one of the keys written, never a 5xx.
async fn reads_racing_credential_changes_never_fail(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.admin_key.clone();
    let id = s.create_api_key_conn(&k, "sk-torn-0", json!({})).await;
    let replica = match db {
        Db::Postgres => Some(s.replica().await),
        Db::Sqlite => None,
    };
    let bases: Vec<String> = std::iter::once(s.base.clone())
        .chain(replica.as_ref().map(|r| r.base.clone()))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::new();

    let writer = {
        let (http, base, k, id, done) = (
            http.clone(),
            s.base.clone(),
            k.clone(),
            id.clone(),
            done.clone(),
        );
        tokio::spawn(async move {
            for i in 1..=120 {
                let r = http
                    .put(format!("{base}/api/v1/connections/{id}/credentials"))
                    .bearer_auth(&k)
                    .json(&json!({"credentials": {"key": format!("sk-torn-{i}")}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let readers = (0..16).map(|n| {
        let (http, base, k, id, done) = (
            http.clone(),
            bases[n % bases.len()].clone(),
            k.clone(),
            id.clone(),
            done.clone(),
        );
        async move {
            let mut reads = 0;
            let mut seen = std::collections::HashSet::new();
            while !done.load(Ordering::SeqCst) || reads < 5 {
                let r = http
                    .get(format!("{base}/api/v1/connections/{id}/credentials"))
                    .bearer_auth(&k)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(status, StatusCode::OK, "read {reads}: {body}");
                let key = body["credentials"]["key"].as_str().unwrap().to_string();
                assert!(key.starts_with("sk-torn-"), "{key}");
                seen.insert(key);
                reads += 1;
            }
            seen
        }
    });
    let seen = join_all(readers).await;
    writer.await.unwrap();
    // The reads really raced the writes: they saw many versions.
    let versions: std::collections::HashSet<String> = seen.into_iter().flatten().collect();
    assert!(versions.len() >= 10, "{versions:?}");
    if let Some(r) = replica {
        r.stop().await;
    }
    s.stop().await;
}

/// 40 concurrent PATCHes, disables/enables and webhook updates without a
/// version all apply; a stale `If-Match` is still refused.
async fn writes_without_if_match_apply_to_the_latest_version(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.admin_key.clone();
    let id = s.create_api_key_conn(&k, "sk-cas", json!({})).await;
    let patches = (0..40).map(|i| {
        let (s, k, id) = (&s, &k, &id);
        async move {
            s.patch(
                &format!("/api/v1/connections/{id}"),
                k,
                json!({"tags": [format!("t{i}")]}),
            )
            .await
        }
    });
    for r in join_all(patches).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let c = s.get(&format!("/api/v1/connections/{id}"), &k).await.json();
    assert_eq!(c["version"], 41, "every PATCH applied once: {c}");

    // A stale version is still a conflict.
    s.raw(
        reqwest::Method::PATCH,
        &format!("/api/v1/connections/{id}"),
        Some(&k),
        Some(("application/json", br#"{"display_name":"x"}"#.to_vec())),
        &[("if-match", "\"3\"")],
    )
    .await
    .assert_error(409, "version_conflict");

    // Disable and enable race each other: each answers 200 or a clear 409
    // `invalid_transition` / `not_disabled`, never `version_conflict`.
    let toggles = (0..20).map(|i| {
        let (s, k, id) = (&s, &k, &id);
        async move {
            let action = if i % 2 == 0 { "disable" } else { "enable" };
            s.post(&format!("/api/v1/connections/{id}/{action}"), k, json!({}))
                .await
        }
    });
    for r in join_all(toggles).await {
        if r.status != StatusCode::OK {
            let code = r.json()["error"]["code"].as_str().unwrap().to_string();
            assert!(
                matches!(code.as_str(), "invalid_transition" | "not_disabled"),
                "{}",
                r.text
            );
        }
    }

    // Webhook subscriptions: the same rule.
    let w = s
        .post(
            "/api/v1/webhooks",
            &k,
            json!({"url": "https://127.0.0.1:9/hook", "events": ["connection.created"]}),
        )
        .await;
    assert_eq!(w.status, StatusCode::CREATED, "{}", w.text);
    let wid = w.json()["webhook"]["id"].as_str().unwrap().to_string();
    let updates = (0..20).map(|i| {
        let (s, k, wid) = (&s, &k, &wid);
        async move {
            s.patch(
                &format!("/api/v1/webhooks/{wid}"),
                k,
                json!({"description": format!("d{i}")}),
            )
            .await
        }
    });
    for r in join_all(updates).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let v = s.get(&format!("/api/v1/webhooks/{wid}"), &k).await.json();
    assert_eq!(v["version"], 21, "{v}");
    s.stop().await;
}

/// After `POST …/revoke` leaves a static credential `revoke_pending` (the
/// operator still has to delete it at the provider), rekey stops handing
/// it out at once, and audits the refusal.
async fn revocation_pending_credentials_are_not_handed_out(db: Db) {
    let s = TestServer::start(db).await;
    let k = s.admin_key.clone();
    let id = s.create_api_key_conn(&k, "sk-pending", json!({})).await;
    let path = format!("/api/v1/connections/{id}/credentials");
    assert_eq!(s.get(&path, &k).await.status, StatusCode::OK);
    let r = s
        .post(&format!("/api/v1/connections/{id}/revoke"), &k, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["connection"]["status"], "revoke_pending");
    let r = s.get(&path, &k).await;
    r.assert_error(409, "connection_unusable");
    assert!(!r.text.contains("sk-pending"));
    let audit = s
        .get(
            &format!("/api/v1/audit?action=credentials.read&target={id}"),
            &k,
        )
        .await
        .json();
    assert_eq!(audit["items"][0]["outcome"], "denied", "{audit}");
    assert_eq!(audit["items"][0]["details"]["reason"], "revoke_pending");
    s.stop().await;
}
