//! Credential versions: replacing a credential keeps the old one as
//! `previous` for its grace (readable by dual-key consumers, audited), then
//! retires it; versions list labels and fingerprints, never values; a
//! connection stored before versions existed gets its version on first
//! look; bad graces and labels are refused with nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_api::{Grace, UpdateCredentials};
use rekey_testkit::{assert_api_error, both_backends, Db, TestServer};
use serde_json::json;

both_backends!(replace_keeps_previous_for_its_grace);
both_backends!(zero_grace_retires_at_once_and_bad_input_changes_nothing);
both_backends!(versions_are_recorded_for_connections_stored_before_them);
both_backends!(native_fingerprints_for_aws_keys);

/// Secret rows held for non-current versions.
async fn kept_material(s: &TestServer) -> i64 {
    let mut c = s.rekey.store().read().await.unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE owner_kind = 'credential_version'")
        .fetch_one(&mut *c)
        .await
        .unwrap()
}

fn key(v: &str) -> UpdateCredentials {
    UpdateCredentials {
        credentials: json!({"key": v, "placement": "header", "name": "X-Api-Key"}),
        version: None,
        grace: Some(Grace::Text("1h".into())),
    }
}

async fn replace_keeps_previous_for_its_grace(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let id = s.api_key_conn("sk-version-one").await;
    let v = c.list_versions(&id).await.unwrap().items;
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        (v[0].label.as_str(), v[0].source.as_str()),
        ("current", "created")
    );
    assert!(v[0].fingerprint.starts_with("kh:"), "{v:?}");
    assert_eq!(v[0].fingerprint_kind, "keyed_hash");
    let first_fp = v[0].fingerprint.clone();

    // Nothing to read as previous yet.
    assert_api_error(
        c.read_credentials_version(&id, "previous").await,
        404,
        "no_previous_version",
    );

    c.replace_credentials(&id, &key("sk-version-two"), None)
        .await
        .unwrap();
    let v = c.list_versions(&id).await.unwrap().items;
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0].label, "current");
    assert_eq!(v[0].source, "replaced");
    assert_eq!(v[1].label, "previous");
    assert_eq!(
        v[1].fingerprint, first_fp,
        "a version keeps its fingerprint"
    );
    assert_ne!(v[0].fingerprint, first_fp);
    assert!(v[1].grace_until.is_some(), "{v:?}");
    let listed = serde_json::to_string(&v).unwrap();
    assert!(
        !listed.contains("sk-version"),
        "versions never carry values"
    );

    // Consumers get the new key; dual-key consumers may read the old one.
    let cur = c.read_credentials(&id).await.unwrap();
    assert_eq!(cur.credentials["key"], "sk-version-two");
    let prev = c.read_credentials_version(&id, "previous").await.unwrap();
    assert_eq!(prev.credentials["key"], "sk-version-one");
    assert_eq!(prev.version, v[1].seq);
    assert!(prev.version < cur.version);
    // …audited as a read of the previous version, by fingerprint.
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?target={id}&action=credentials.read"
        ))
        .await
        .json();
    let prev_read = a["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["details"]["label"] == "previous" && e["outcome"] == "ok")
        .unwrap_or_else(|| panic!("no audited read of previous: {a}"));
    assert_eq!(prev_read["details"]["fingerprint"], first_fp.as_str());
    // The change's audit entry names both fingerprints.
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?target={id}&action=connection.credentials_update"
        ))
        .await
        .json();
    let d = &a["items"][0]["details"]["versions"];
    assert_eq!(d["old_fingerprint"], first_fp.as_str(), "{a}");
    assert_eq!(d["new_fingerprint"], v[0].fingerprint.as_str(), "{a}");

    // A third credential retires the first; the second becomes previous.
    c.replace_credentials(&id, &key("sk-version-three"), None)
        .await
        .unwrap();
    let v = c.list_versions(&id).await.unwrap().items;
    let labels: Vec<&str> = v.iter().map(|x| x.label.as_str()).collect();
    assert_eq!(labels, ["current", "previous", "retired"]);
    assert_eq!(v[2].fingerprint, first_fp);
    assert!(v[2].retired_at.is_some() && v[2].retired_by.is_some());
    let prev = c.read_credentials_version(&id, "previous").await.unwrap();
    assert_eq!(prev.credentials["key"], "sk-version-two");

    // When the grace ends the sweeper retires it and deletes its material.
    s.sql(&["UPDATE credential_versions SET grace_until = 1 WHERE label = 'previous'"])
        .await;
    assert_api_error(
        c.read_credentials_version(&id, "previous").await,
        404,
        "no_previous_version",
    );
    assert!(!s.rekey.retire_expired_versions(100).await.unwrap());
    let v = c.list_versions(&id).await.unwrap().items;
    let labels: Vec<&str> = v.iter().map(|x| x.label.as_str()).collect();
    assert_eq!(labels, ["current", "retired", "retired"]);
    assert_eq!(v[1].retired_by.as_deref(), Some("system:versions"));
    assert_eq!(
        kept_material(&s).await,
        0,
        "a retired version keeps no material"
    );
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?target={id}&action=credential.version_retired"
        ))
        .await
        .json();
    assert_eq!(a["items"][0]["details"]["reason"], "grace_ended", "{a}");

    // Deleting the connection deletes every version's material.
    c.replace_credentials(&id, &key("sk-version-four"), None)
        .await
        .unwrap();
    assert_eq!(
        kept_material(&s).await,
        1,
        "the previous key is kept, sealed"
    );
    s.call(
        reqwest::Method::DELETE,
        &format!("/api/v1/connections/{id}"),
        &s.admin_key,
        None,
    )
    .await;
    assert_eq!(kept_material(&s).await, 0);
    assert_api_error(c.list_versions(&id).await, 404, "connection_not_found");
    s.stop().await;
}

async fn zero_grace_retires_at_once_and_bad_input_changes_nothing(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let id = s.api_key_conn("sk-zero-one").await;
    for (grace, why) in [
        (json!("31d"), "over 30 days"),
        (json!(-5), "negative"),
        (json!("soon"), "not a duration"),
        (json!(true), "not a number or text"),
    ] {
        let r = s
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/connections/{id}/credentials"),
                &s.admin_key,
                Some(json!({"credentials": {"key": "sk-zero-bad", "placement": "header", "name": "X-Api-Key"}, "grace": grace})),
            )
            .await;
        assert!(
            r.status == 400 || r.status == 422,
            "{why}: {} {}",
            r.status,
            r.text
        );
        assert!(!r.text.contains("sk-zero-bad"), "{}", r.text);
    }
    // Nothing changed.
    assert_eq!(c.list_versions(&id).await.unwrap().items.len(), 1);
    assert_eq!(
        c.read_credentials(&id).await.unwrap().credentials["key"],
        "sk-zero-one"
    );
    let mut req = key("sk-zero-two");
    req.grace = Some(Grace::Seconds(0));
    c.replace_credentials(&id, &req, None).await.unwrap();
    let v = c.list_versions(&id).await.unwrap().items;
    let labels: Vec<&str> = v.iter().map(|x| x.label.as_str()).collect();
    assert_eq!(labels, ["current", "retired"]);
    assert_api_error(
        c.read_credentials_version(&id, "previous").await,
        404,
        "no_previous_version",
    );
    // Only current and previous are handed out.
    for bad in ["pending", "retired", "latest"] {
        let r = s
            .get_admin(&format!(
                "/api/v1/connections/{id}/credentials?version={bad}"
            ))
            .await;
        r.assert_error(400, "invalid_version");
    }
    // A reader without credentials:read is refused and audited for previous too.
    let reader = s.key("default", &["connections:read"]).await;
    assert_api_error(
        s.client(&reader)
            .read_credentials_version(&id, "previous")
            .await,
        403,
        "missing_scope",
    );
    // Disabled connections hand out no previous credential either.
    let mut req = key("sk-zero-three");
    req.grace = Some(Grace::Text("2h".into()));
    c.replace_credentials(&id, &req, None).await.unwrap();
    s.post_admin(&format!("/api/v1/connections/{id}/disable"), json!({}))
        .await;
    assert_api_error(
        c.read_credentials_version(&id, "previous").await,
        409,
        "connection_unusable",
    );
    s.stop().await;
}

async fn versions_are_recorded_for_connections_stored_before_them(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let id = s.api_key_conn("sk-legacy-one").await;
    let fp = c.list_versions(&id).await.unwrap().items[0]
        .fingerprint
        .clone();
    // As if stored by an earlier rekey: no version rows.
    s.sql(&["DELETE FROM credential_versions"]).await;
    let v = c.list_versions(&id).await.unwrap().items;
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].label.as_str(), v[0].source.as_str()),
        ("current", "backfill")
    );
    assert_eq!(v[0].fingerprint, fp, "the same key, the same fingerprint");
    s.sql(&["DELETE FROM credential_versions"]).await;
    // A replacement records the outgoing credential first.
    c.replace_credentials(&id, &key("sk-legacy-two"), None)
        .await
        .unwrap();
    let v = c.list_versions(&id).await.unwrap().items;
    let got: Vec<(&str, &str)> = v
        .iter()
        .map(|x| (x.label.as_str(), x.source.as_str()))
        .collect();
    assert_eq!(got, [("current", "replaced"), ("previous", "backfill")]);
    assert_eq!(v[1].fingerprint, fp);
    s.stop().await;
}

async fn native_fingerprints_for_aws_keys(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let r = s
        .post_admin("/api/v1/connections", json!({"provider": "aws", "kind": "aws_access_key", "display_name": "AWS CI",
                "credentials": {"access_key_id": "AKIAVERSIONTEST0001", "secret_access_key": "aws-secret-one", "region": "us-east-1"}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let v = c.list_versions(&id).await.unwrap().items;
    assert_eq!(v[0].fingerprint, "AKIAVERSIONTEST0001");
    assert_eq!(v[0].fingerprint_kind, "aws_access_key_id");
    s.stop().await;
}

/// Three replicas' sweepers racing over the same ended graces (on one
/// PostgreSQL) retire each version once: one audit entry each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_retire_each_version_once() {
    let s = TestServer::start(Db::Postgres).await;
    let (b, r3) = (s.replica().await, s.replica().await);
    let c = s.client(&s.admin_key);
    let mut ids = Vec::new();
    for i in 0..10 {
        let id = s.api_key_conn(&format!("sk-race-one-{i}")).await;
        c.replace_credentials(&id, &key(&format!("sk-race-two-{i}")), None)
            .await
            .unwrap();
        ids.push(id);
    }
    s.sql(&["UPDATE credential_versions SET grace_until = 1 WHERE label = 'previous'"])
        .await;
    for _ in 0..3 {
        let (x, y, z) = tokio::join!(
            s.rekey.retire_expired_versions(100),
            b.rekey.retire_expired_versions(100),
            r3.rekey.retire_expired_versions(100),
        );
        x.unwrap();
        y.unwrap();
        z.unwrap();
    }
    for id in &ids {
        let a = s
            .get_admin(&format!(
                "/api/v1/audit?target={id}&action=credential.version_retired"
            ))
            .await
            .json();
        assert_eq!(a["items"].as_array().map(Vec::len), Some(1), "{id}: {a}");
    }
    r3.stop().await;
    b.stop().await;
    s.stop().await;
}
