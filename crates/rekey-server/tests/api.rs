//! End-to-end API tests against the real router on an ephemeral port, on
//! SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rekey_testkit::{audit_actions, both_backends, fixture, items, Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

both_backends!(
    connection_lifecycle,
    every_static_kind,
    secrets_never_leave_except_credentials_endpoint,
    plaintext_is_not_stored,
    ciphertext_moved_to_another_row_fails,
    tenants_are_isolated,
    authentication_and_scopes,
    bad_input_is_rejected_clearly,
    optimistic_concurrency,
    filters_and_pagination,
    audit_chain_detects_tampering,
    audit_verify_incremental_reads_only_new_entries,
    disable_and_enable,
    api_keys_endpoints,
    audit_pagination_and_filters,
    audit_verify_reports_only_the_callers_tenant,
);

async fn connection_lifecycle(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let id = s
        .create_api_key_conn(k, "sk-lifecycle-1", json!({"tags": ["prod", "crm"], "custody": ["salesforce"],
            "owner": {"subject": "U123", "email": "ana@example.com", "name": "Ana"}, "scopes": ["read", "write"]}))
        .await;
    let r = s.get(&format!("/api/v1/connections/{id}"), k).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["etag"], "\"1\"");
    let c = r.json();
    assert_eq!(c["status"], "pending");
    assert_eq!(c["tags"], json!(["crm", "prod"]));
    assert_eq!(c["owner"]["email"], "ana@example.com");
    assert_eq!(c["credential"]["name"], "X-Api-Key");
    assert_eq!(
        c["links"]["revoke_runbook"],
        "/api/v1/providers/custom-rest#revoke"
    );

    // Read the secret back.
    let r = s
        .get(&format!("/api/v1/connections/{id}/credentials"), k)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    let cr = r.json();
    assert_eq!(cr["credentials"]["key"], "sk-lifecycle-1");
    assert_eq!(
        cr["credentials"]["apply"]["headers"]["X-Api-Key"],
        "sk-lifecycle-1"
    );
    assert_eq!(cr["version"], 1);

    // Update metadata, then credentials.
    let r = s
        .patch(
            &format!("/api/v1/connections/{id}"),
            k,
            json!({"display_name": "Renamed", "tags": ["prod"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["version"], 2);
    let r = s
        .put(
            &format!("/api/v1/connections/{id}/credentials"),
            k,
            json!({"credentials": {"key": "sk-lifecycle-2"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let c = r.json();
    assert_eq!(c["version"], 3);
    assert!(c["rotated_at"].is_string());
    let cr = s
        .get(&format!("/api/v1/connections/{id}/credentials"), k)
        .await
        .json();
    assert_eq!(cr["credentials"]["key"], "sk-lifecycle-2");
    assert_eq!(cr["version"], 2);
    // The new material replaced the old placement defaults: header `Authorization`.
    assert_eq!(cr["credentials"]["name"], "Authorization");

    // Every read is audited.
    let audit = s
        .get(
            &format!("/api/v1/audit?target={id}&action=credentials.read"),
            k,
        )
        .await
        .json();
    assert_eq!(items(&audit).len(), 2);
    assert!(items(&audit)
        .iter()
        .all(|e| e["outcome"] == "ok" && e["actor"].as_str().unwrap().starts_with("api_key:")));

    // Delete destroys it.
    let r = s.delete(&format!("/api/v1/connections/{id}"), k).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    s.get(&format!("/api/v1/connections/{id}"), k)
        .await
        .assert_error(404, "connection_not_found");
    s.get(&format!("/api/v1/connections/{id}/credentials"), k)
        .await
        .assert_error(404, "connection_not_found");
    let actions = audit_actions(&s.get(&format!("/api/v1/audit?target={id}"), k).await.json());
    for a in [
        "connection.create",
        "connection.update",
        "connection.credentials_update",
        "connection.delete",
    ] {
        assert!(
            actions.contains(&a.to_string()),
            "{a} missing from {actions:?}"
        );
    }
    s.stop().await;
}

async fn every_static_kind(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let sa = json!({"type": "service_account", "project_id": "proj-1", "private_key_id": "kid123",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE-not-a-real-key\n-----END PRIVATE KEY-----\n",
        "client_email": "svc@proj-1.iam.gserviceaccount.com", "client_id": "123"});
    let cases = vec![
        (
            "custom-rest",
            "api_key",
            json!({"key": "qk-1", "placement": "query", "name": "token"}),
            "qk-1",
        ),
        (
            "custom-rest",
            "api_key",
            json!({"key": "bk-1", "placement": "basic", "username": "acct"}),
            "bk-1",
        ),
        (
            "custom-rest",
            "basic",
            json!({"username": "svc", "password": "pw-basic-1"}),
            "pw-basic-1",
        ),
        (
            "custom-rest",
            "headers",
            json!({"headers": {"X-Api-Key": "hk-1", "X-Org": "org-secret-1"}}),
            "org-secret-1",
        ),
        (
            "aws",
            "aws_access_key",
            json!({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "region": "eu-west-1"}),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        (
            "google-cloud",
            "service_account_json",
            json!({"json": sa.to_string()}),
            "MIIE-not-a-real-key",
        ),
        (
            "snowflake",
            "rsa_key_pair",
            json!({"private_key_pem": fixture("test-rsa-2048.pem"), "username": "LOADER"}),
            "BEGIN PRIVATE KEY",
        ),
        (
            "snowflake",
            "rsa_key_pair",
            json!({"private_key_pem": fixture("test-rsa-2048-encrypted.pem"), "passphrase": "correct-horse", "username": "LOADER"}),
            "correct-horse",
        ),
    ];
    let expected_fp = format!("SHA256:{}", fixture("test-rsa-2048.fingerprint").trim());
    for (provider, kind, creds, secret) in cases {
        // Snowflake's probe URL needs the account (a catalog rule at creation).
        let params = if provider == "snowflake" {
            json!({"account": "myorg-acct"})
        } else {
            json!({})
        };
        let r = s.post("/api/v1/connections", k, json!({"provider": provider, "kind": kind, "display_name": kind, "params": params, "credentials": creds})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{kind}: {}", r.text);
        assert!(
            !r.text.contains(secret),
            "{kind}: secret in create response"
        );
        let c = r.json();
        let id = c["id"].as_str().unwrap();
        let shown = s.get(&format!("/api/v1/connections/{id}"), k).await;
        assert!(!shown.text.contains(secret), "{kind}: secret in show");
        let cr = s
            .get(&format!("/api/v1/connections/{id}/credentials"), k)
            .await;
        assert_eq!(cr.status, StatusCode::OK, "{kind}: {}", cr.text);
        assert!(
            cr.text.contains(secret) || kind == "rsa_key_pair",
            "{kind}: secret not returned"
        );
        let cj = cr.json();
        // Read again, now from the hot cache (parsed metadata kept there):
        // the same material.
        let again = s
            .get(&format!("/api/v1/connections/{id}/credentials"), k)
            .await;
        assert_eq!(
            again.json()["credentials"],
            cj["credentials"],
            "{kind}: cached read differs"
        );
        if creds["placement"] == "query" {
            assert_eq!(cj["credentials"]["apply"]["query"]["token"], "qk-1");
        }
        if creds["placement"] == "basic" {
            // "acct:bk-1"
            assert_eq!(
                cj["credentials"]["apply"]["headers"]["Authorization"],
                "Basic YWNjdDpiay0x"
            );
        }
        match kind {
            "rsa_key_pair" => {
                assert_eq!(
                    c["credential"]["public_key_fingerprint"],
                    expected_fp.as_str(),
                    "fingerprint must match openssl's"
                );
                assert!(c["credential"]["public_key_pem"]
                    .as_str()
                    .unwrap()
                    .contains("BEGIN PUBLIC KEY"));
                assert!(cj["credentials"]["private_key_pem"]
                    .as_str()
                    .unwrap()
                    .contains("PRIVATE KEY"));
            }
            "service_account_json" => {
                assert_eq!(
                    c["credential"]["client_email"],
                    "svc@proj-1.iam.gserviceaccount.com"
                );
                assert_eq!(cj["credentials"]["json"]["private_key_id"], "kid123");
            }
            "aws_access_key" => {
                assert_eq!(c["credential"]["access_key_id"], "AKIAIOSFODNN7EXAMPLE")
            }
            "headers" => assert_eq!(
                cj["credentials"]["apply"]["headers"]["X-Org"],
                "org-secret-1"
            ),
            "basic" => assert_eq!(
                cj["credentials"]["apply"]["headers"]["Authorization"],
                "Basic c3ZjOnB3LWJhc2ljLTE="
            ),
            _ => {}
        }
    }
    // Wrong passphrase, and a too-small key, are clear 400s.
    let r = s.post("/api/v1/connections", k, json!({"provider": "snowflake", "kind": "rsa_key_pair", "display_name": "x",
        "params": {"account": "myorg-acct"},
        "credentials": {"private_key_pem": fixture("test-rsa-2048-encrypted.pem"), "passphrase": "wrong-horse", "username": "LOADER"}})).await;
    r.assert_error(400, "invalid_credentials");
    assert!(!r.text.contains("wrong-horse"));
    s.stop().await;
}

async fn secrets_never_leave_except_credentials_endpoint(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let secret = "SUPER-SECRET-never-list-me-42";
    let id = s.create_api_key_conn(k, secret, json!({})).await;
    let pw = "PW-secret-never-list-me-43";
    s.post(
        "/api/v1/connections",
        k,
        json!({"provider": "postgresql", "kind": "basic", "display_name": "db",
        "params": {"host": "db.example.com"},
        "credentials": {"username": "app", "password": pw}}),
    )
    .await;
    s.get(&format!("/api/v1/connections/{id}/credentials"), k)
        .await;
    s.get(
        &format!("/api/v1/connections/{id}/credentials"),
        &s.key("default", &["connections:read"]).await,
    )
    .await;
    for path in [
        "/api/v1/connections".to_string(),
        format!("/api/v1/connections/{id}"),
        "/api/v1/audit?limit=500".to_string(),
        "/api/v1/audit/verify".to_string(),
        "/api/v1/evidence".to_string(),
        "/api/v1/evidence?format=json".to_string(),
        "/metrics".to_string(),
        "/api/v1/api-keys".to_string(),
    ] {
        let r = s.get(&path, k).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        assert!(
            !r.text.contains(secret) && !r.text.contains(pw),
            "{path} leaks a secret"
        );
    }
    s.stop().await;
}

async fn plaintext_is_not_stored(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let secret = "PLAINTEXT-canary-7f3a9c2e";
    let id = s.create_api_key_conn(k, secret, json!({})).await;
    s.put(
        &format!("/api/v1/connections/{id}/credentials"),
        k,
        json!({"credentials": {"key": format!("{secret}-v2")}}),
    )
    .await;
    s.post(
        "/api/v1/connections",
        k,
        json!({"provider": "custom-rest", "kind": "headers", "display_name": "h",
        "credentials": {"headers": {"X-Token": format!("{secret}-hdr")}}}),
    )
    .await;
    // Make sure the data is really there to be found.
    assert_eq!(
        s.get(&format!("/api/v1/connections/{id}/credentials"), k)
            .await
            .json()["credentials"]["key"],
        format!("{secret}-v2")
    );
    let dump = s.dump_database().await;
    assert!(dump.len() > 1000, "dump too small to be meaningful");
    let needle = b"PLAINTEXT-canary";
    assert!(
        !dump.windows(needle.len()).any(|w| w == needle),
        "plaintext secret found in the database"
    );
    // And the dump does contain the non-secret data (the scan reads real rows).
    assert!(dump.windows(id.len()).any(|w| w == id.as_bytes()));
    s.stop().await;
}

async fn ciphertext_moved_to_another_row_fails(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let a = s.create_api_key_conn(k, "secret-of-a", json!({})).await;
    let b = s.create_api_key_conn(k, "secret-of-b", json!({})).await;
    // Copy A's sealed key (ciphertext and wrapped data key) onto B's row.
    s.sql(&[&format!(
        "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE owner_id = '{a}' AND field = 'key'), \
         wrapped_dek = (SELECT wrapped_dek FROM secrets WHERE owner_id = '{a}' AND field = 'key') WHERE owner_id = '{b}' AND field = 'key'"
    )])
    .await;
    let r = s
        .get(&format!("/api/v1/connections/{b}/credentials"), k)
        .await;
    r.assert_error(500, "decryption_failed");
    assert!(!r.text.contains("secret-of-a"));
    // The failed read is audited as an error; A is unaffected.
    let e = s
        .get(
            &format!("/api/v1/audit?target={b}&action=credentials.read"),
            k,
        )
        .await
        .json();
    assert_eq!(e["items"][0]["outcome"], "error");
    assert_eq!(
        s.get(&format!("/api/v1/connections/{a}/credentials"), k)
            .await
            .json()["credentials"]["key"],
        "secret-of-a"
    );
    s.stop().await;
}

async fn tenants_are_isolated(db: Db) {
    let s = TestServer::start(db).await;
    let acme = s.key("acme", &["admin"]).await;
    let globex = s.key("globex", &["admin"]).await;
    let id = s.create_api_key_conn(&acme, "acme-secret", json!({})).await;
    assert_eq!(
        s.get("/api/v1/connections", &globex).await.json()["items"],
        json!([])
    );
    assert_eq!(
        s.get("/api/v1/connections", &acme).await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for (m, p, body) in [
        (Method::GET, format!("/api/v1/connections/{id}"), None),
        (
            Method::GET,
            format!("/api/v1/connections/{id}/credentials"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/connections/{id}"),
            Some(json!({"display_name": "pwned"})),
        ),
        (
            Method::PUT,
            format!("/api/v1/connections/{id}/credentials"),
            Some(json!({"credentials": {"key": "x"}})),
        ),
        (
            Method::POST,
            format!("/api/v1/connections/{id}/disable"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/api/v1/connections/{id}"), None),
    ] {
        s.call(m.clone(), &p, &globex, body)
            .await
            .assert_error(404, "connection_not_found");
    }
    // Audit is per tenant too.
    let audit = s.get("/api/v1/audit", &globex).await.json();
    assert!(items(&audit).iter().all(|e| e["tenant"] == "globex"));
    assert!(items(&audit).iter().all(|e| e["target"] != json!(id)));
    // API keys of another tenant are invisible and cannot be revoked.
    let keys = s.get("/api/v1/api-keys", &globex).await.json();
    assert!(items(&keys).iter().all(|k| k["tenant"] == "globex"));
    let acme_key_id = s.get("/api/v1/api-keys", &acme).await.json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.delete(&format!("/api/v1/api-keys/{acme_key_id}"), &globex)
        .await
        .assert_error(404, "api_key_not_found");
    assert_eq!(
        s.get(&format!("/api/v1/connections/{id}"), &acme)
            .await
            .json()["display_name"],
        "Test API"
    );
    s.stop().await;
}

async fn authentication_and_scopes(db: Db) {
    let s = TestServer::start(db).await;
    let id = s
        .create_api_key_conn(&s.admin_key, "scope-secret", json!({}))
        .await;
    let r = s
        .raw(Method::GET, "/api/v1/connections", None, None, &[])
        .await;
    r.assert_error(401, "unauthorized");
    assert!(r.headers.contains_key("www-authenticate"));
    s.raw(
        Method::GET,
        "/api/v1/connections",
        Some("rk_not-a-real-key"),
        None,
        &[],
    )
    .await
    .assert_error(401, "unauthorized");
    s.raw(
        Method::GET,
        "/api/v1/connections",
        None,
        None,
        &[("authorization", "Basic Zm9vOmJhcg==")],
    )
    .await
    .assert_error(401, "unauthorized");

    let reader = s.key("default", &["connections:read"]).await;
    assert_eq!(
        s.get("/api/v1/connections", &reader).await.status,
        StatusCode::OK
    );
    s.post("/api/v1/connections", &reader, json!({}))
        .await
        .assert_error(403, "missing_scope");
    s.get("/api/v1/api-keys", &reader)
        .await
        .assert_error(403, "missing_scope");
    s.get("/api/v1/audit", &reader)
        .await
        .assert_error(403, "missing_scope");
    let r = s
        .get(&format!("/api/v1/connections/{id}/credentials"), &reader)
        .await;
    r.assert_error(403, "missing_scope");
    assert!(!r.text.contains("scope-secret"));
    // The denied read is in the audit log.
    let e = s
        .get_admin(&format!(
            "/api/v1/audit?target={id}&action=credentials.read"
        ))
        .await
        .json();
    assert_eq!(e["items"][0]["outcome"], "denied");

    let creds = s.key("default", &["credentials:read"]).await;
    assert_eq!(
        s.get(&format!("/api/v1/connections/{id}/credentials"), &creds)
            .await
            .status,
        StatusCode::OK
    );
    s.get("/api/v1/connections", &creds)
        .await
        .assert_error(403, "missing_scope");

    // A revoked key stops working at once.
    let keys = s.get_admin("/api/v1/api-keys").await.json();
    let creds_id = items(&keys)
        .iter()
        .rev()
        .find(|k| k["scopes"] == json!(["credentials:read"]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .delete(&format!("/api/v1/api-keys/{creds_id}"), &s.admin_key)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json()["revoked_at"].is_string());
    s.get(&format!("/api/v1/connections/{id}/credentials"), &creds)
        .await
        .assert_error(401, "unauthorized");
    s.stop().await;
}

async fn bad_input_is_rejected_clearly(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let valid = json!({"provider": "custom-rest", "kind": "api_key", "display_name": "x", "credentials": {"key": "k"}});
    let post = |body: Vec<u8>| {
        s.raw(
            Method::POST,
            "/api/v1/connections",
            Some(k),
            Some(("application/json", body)),
            &[],
        )
    };
    post(b"{not json".to_vec())
        .await
        .assert_error(400, "malformed_json");
    post(b"".to_vec()).await.assert_error(400, "malformed_json");
    let mut unknown = valid.clone();
    unknown["colour"] = json!("red");
    let r = post(serde_json::to_vec(&unknown).unwrap()).await;
    r.assert_error(400, "invalid_body");
    assert!(
        r.text.contains("colour"),
        "names the unknown field: {}",
        r.text
    );
    let mut wrong = valid.clone();
    wrong["tags"] = json!("sk_live_WRONG_PLACE_SECRET");
    let r = post(serde_json::to_vec(&wrong).unwrap()).await;
    r.assert_error(400, "invalid_body");
    assert!(
        !r.text.contains("sk_live_WRONG_PLACE_SECRET"),
        "echoed a value: {}",
        r.text
    );
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("display_name");
    post(serde_json::to_vec(&missing).unwrap())
        .await
        .assert_error(400, "invalid_body");
    let mut wrong_cred = valid.clone();
    wrong_cred["credentials"] = json!({"key": 123456789});
    let r = post(serde_json::to_vec(&wrong_cred).unwrap()).await;
    r.assert_error(400, "invalid_credentials");
    assert!(!r.text.contains("123456789"));
    let mut big = valid.clone();
    big["display_name"] = json!("x".repeat(100 * 1024));
    post(serde_json::to_vec(&big).unwrap())
        .await
        .assert_error(413, "payload_too_large");
    s.raw(
        Method::POST,
        "/api/v1/connections",
        Some(k),
        Some(("text/plain", serde_json::to_vec(&valid).unwrap())),
        &[],
    )
    .await
    .assert_error(415, "unsupported_media_type");
    // The valid body with some fields changed, and the error it gets.
    for (changed, status, code) in [
        (
            json!({"provider": "no-such-provider"}),
            422,
            "unknown_provider",
        ),
        (
            json!({"provider": "aws"}),
            422,
            "kind_not_supported_by_provider",
        ),
        (json!({"kind": "carrier_pigeon"}), 400, "invalid_kind"),
        (
            json!({"kind": "oauth2_authorization_code", "provider": "slack"}),
            422,
            "kind_not_supported",
        ),
        (json!({"tags": ["Not A Slug"]}), 400, "invalid_field"),
        (
            json!({"expires_at": "next tuesday"}),
            400,
            "invalid_timestamp",
        ),
    ] {
        let mut p = valid.clone();
        for (field, value) in changed.as_object().unwrap() {
            p[field] = value.clone();
        }
        s.post("/api/v1/connections", k, p)
            .await
            .assert_error(status, code);
    }
    // Ids, queries, routes, methods.
    s.get("/api/v1/connections/not-an-id", k)
        .await
        .assert_error(400, "invalid_id");
    s.get(
        "/api/v1/connections/con_00000000000000000000000000000000",
        k,
    )
    .await
    .assert_error(404, "connection_not_found");
    s.get("/api/v1/connections?status=sleepy", k)
        .await
        .assert_error(400, "invalid_status");
    s.get("/api/v1/connections?limit=0", k)
        .await
        .assert_error(400, "invalid_limit");
    s.get("/api/v1/connections?limit=abc", k)
        .await
        .assert_error(400, "invalid_query");
    s.get("/api/v1/connections?cursor=%%%", k)
        .await
        .assert_error(400, "invalid_cursor");
    s.get("/api/v1/connections?cursor=bm9wZQ", k)
        .await
        .assert_error(400, "invalid_cursor");
    s.get("/api/v1/connections?frobnicate=1", k)
        .await
        .assert_error(400, "invalid_query");
    s.get("/api/v1/connections?created_before=yesterday", k)
        .await
        .assert_error(400, "invalid_timestamp");
    s.get("/api/v1/nope", k)
        .await
        .assert_error(404, "route_not_found");
    s.put("/api/v1/connections", k, json!({}))
        .await
        .assert_error(405, "method_not_allowed");
    s.get("/api/v1/providers/nope", k)
        .await
        .assert_error(404, "provider_not_found");
    s.get("/api/v1/providers?auth_kind=nope", k)
        .await
        .assert_error(400, "invalid_kind");
    s.post(
        "/api/v1/api-keys",
        k,
        json!({"name": "x", "scopes": ["root"]}),
    )
    .await
    .assert_error(400, "invalid_scope");
    s.post(
        "/api/v1/api-keys",
        k,
        json!({"name": "", "scopes": ["admin"]}),
    )
    .await
    .assert_error(400, "invalid_field");
    s.delete("/api/v1/api-keys/key_zz", k)
        .await
        .assert_error(400, "invalid_id");
    s.get("/api/v1/audit?cursor=-4", k)
        .await
        .assert_error(400, "invalid_cursor");
    // Nothing above created anything.
    assert_eq!(
        s.get("/api/v1/connections", k).await.json()["items"],
        json!([])
    );
    s.stop().await;
}

async fn optimistic_concurrency(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let id = s.create_api_key_conn(k, "occ", json!({})).await;
    let path = format!("/api/v1/connections/{id}");
    let body = serde_json::to_vec(&json!({"display_name": "A"})).unwrap();
    let r = s
        .raw(
            Method::PATCH,
            &path,
            Some(k),
            Some(("application/json", body.clone())),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["etag"], "\"2\"");
    // Stale version loses.
    s.raw(
        Method::PATCH,
        &path,
        Some(k),
        Some(("application/json", body.clone())),
        &[("if-match", "\"1\"")],
    )
    .await
    .assert_error(409, "version_conflict");
    s.patch(&path, k, json!({"display_name": "B", "version": 1}))
        .await
        .assert_error(409, "version_conflict");
    s.put(
        &format!("{path}/credentials"),
        k,
        json!({"credentials": {"key": "n"}, "version": 1}),
    )
    .await
    .assert_error(409, "version_conflict");
    s.raw(
        Method::PATCH,
        &path,
        Some(k),
        Some(("application/json", body)),
        &[("if-match", "garbage")],
    )
    .await
    .assert_error(400, "invalid_if_match");
    s.patch(&path, k, json!({}))
        .await
        .assert_error(400, "nothing_to_update");
    // Concurrent writers: each succeeds or gets a clean 409; versions never repeat.
    let mut handles = Vec::new();
    for i in 0..8 {
        let http = s.http.clone();
        let url = format!("{}{path}", s.base);
        let key = k.clone();
        handles.push(tokio::spawn(async move {
            let r = http
                .patch(url)
                .bearer_auth(key)
                .header("if-match", "\"2\"")
                .json(&json!({"display_name": format!("w{i}")}))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }));
    }
    let mut codes = Vec::new();
    for h in handles {
        codes.push(h.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 409), "{codes:?}");
    assert_eq!(s.get(&path, k).await.json()["version"], 3);
    s.stop().await;
}

async fn filters_and_pagination(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let mut ids = Vec::new();
    for i in 0..7 {
        let tags = if i % 2 == 0 {
            json!(["even"])
        } else {
            json!(["odd"])
        };
        let custody = if i < 3 {
            json!(["salesforce"])
        } else {
            json!(["ci"])
        };
        let owner = json!({"subject": format!("U{i}"), "email": format!("u{i}@example.com")});
        ids.push(
            s.create_api_key_conn(
                k,
                &format!("p{i}"),
                json!({"tags": tags, "custody": custody, "owner": owner}),
            )
            .await,
        );
    }
    s.post(
        "/api/v1/connections",
        k,
        json!({"provider": "aws", "kind": "aws_access_key", "display_name": "aws",
        "credentials": {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "x"}}),
    )
    .await;
    // Pages of 3 over the 8 connections: 3 + 3 + 2, no duplicates, in id order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/connections?limit=3&cursor={c}"),
            None => "/api/v1/connections?limit=3".into(),
        };
        let page = s.get(&path, k).await.json();
        pages += 1;
        for it in items(&page) {
            seen.push(it["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 8);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen);
    async fn count_of(s: &TestServer, q: &str) -> usize {
        s.get_admin(&format!("/api/v1/connections?{q}"))
            .await
            .json()["items"]
            .as_array()
            .unwrap()
            .len()
    }
    assert_eq!(count_of(&s, "tag=even").await, 4);
    assert_eq!(count_of(&s, "tag=odd&custody=salesforce").await, 1);
    assert_eq!(count_of(&s, "custody=ci").await, 4);
    assert_eq!(count_of(&s, "provider=aws").await, 1);
    assert_eq!(count_of(&s, "kind=api_key").await, 7);
    assert_eq!(count_of(&s, "status=pending").await, 8);
    assert_eq!(count_of(&s, "status=active").await, 0);
    assert_eq!(count_of(&s, "owner=u3@example.com").await, 1);
    assert_eq!(count_of(&s, "owner=U4").await, 1);
    assert_eq!(count_of(&s, "created_before=2000-01-01T00:00:00Z").await, 0);
    assert_eq!(count_of(&s, "created_before=2999-01-01T00:00:00Z").await, 8);
    // Rotating one moves it out of "not rotated since now".
    let now = s
        .get(&format!("/api/v1/connections/{}", ids[0]), k)
        .await
        .json()["created_at"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.put(
        &format!("/api/v1/connections/{}/credentials", ids[6]),
        k,
        json!({"credentials": {"key": "r"}}),
    )
    .await;
    let later = s
        .get(&format!("/api/v1/connections/{}", ids[6]), k)
        .await
        .json()["rotated_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(count_of(&s, &format!("rotated_before={later}")).await, 7);
    assert!(count_of(&s, &format!("rotated_before={now}")).await <= 1);
    s.stop().await;
}

async fn audit_chain_detects_tampering(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    for i in 0..3 {
        let id = s.create_api_key_conn(k, &format!("a{i}"), json!({})).await;
        s.get(&format!("/api/v1/connections/{id}/credentials"), k)
            .await;
    }
    let v = s.get("/api/v1/audit/verify", k).await.json();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["checked"].as_u64().unwrap() >= 7);
    // The table refuses edits outright…
    let refused = {
        sqlx::any::install_default_drivers();
        let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&s.database_url())
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET outcome = 'x' WHERE seq = 3")
            .execute(&mut c)
            .await
            .is_err()
    };
    assert!(refused, "audit_log must refuse UPDATE");
    // …and someone who drops the guard is still caught by the chain.
    let drop_guards: &[&str] = match db {
        Db::Sqlite => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
        ],
        Db::Postgres => &["DROP TRIGGER audit_log_no_update ON audit_log"],
    };
    s.sql(drop_guards).await;
    s.sql(&["UPDATE audit_log SET outcome = 'denied' WHERE seq = 4"])
        .await;
    let v = s.get("/api/v1/audit/verify", k).await.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_broken_seq"], 4, "{v}");
    assert!(v["message"].as_str().unwrap().contains("entry 4"));
    s.sql(&["UPDATE audit_log SET outcome = 'ok' WHERE seq = 4"])
        .await;
    assert_eq!(s.get("/api/v1/audit/verify", k).await.json()["ok"], true);
    s.sql(&["DELETE FROM audit_log WHERE seq = 2"]).await;
    let v = s.get("/api/v1/audit/verify", k).await.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_broken_seq"], 3, "{v}");
    s.stop().await;
}

/// `?incremental=true` reads only the entries appended since the last
/// verified one (the checkpoint a walk leaves), yet still counts all of
/// the tenant's; an edit after the checkpoint, or to the checkpoint's own
/// entry, is found; an edit before it only by a full walk, which then
/// moves the checkpoint back so incremental walks see the break too.
async fn audit_verify_incremental_reads_only_new_entries(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let inc = "/api/v1/audit/verify?incremental=true";
    for i in 0..3 {
        s.create_api_key_conn(k, &format!("a{i}"), json!({})).await;
    }
    let total = |v: &Value| v["checked"].as_u64().unwrap();
    // No checkpoint yet: the first incremental walk reads everything.
    let first = s.get(inc, k).await.json();
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["full"], true, "{first}");
    let n = total(&first);
    assert_eq!(first["walked"], n, "{first}");
    let again = s.get(inc, k).await.json();
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(again["full"], false, "{again}");
    assert_eq!(again["walked"], 0, "{again}");
    assert_eq!(
        total(&again),
        n,
        "entries before the checkpoint still count"
    );
    assert_eq!(again["verified_before"], n as i64, "{again}");
    for i in 3..5 {
        s.create_api_key_conn(k, &format!("a{i}"), json!({})).await;
    }
    let more = s.get(inc, k).await.json();
    let added = total(&more) - n;
    assert!(added >= 2, "{more}");
    assert_eq!(more["walked"], added, "{more}");
    assert!(
        more["message"].as_str().unwrap().contains("last full walk"),
        "{more}"
    );
    // A bounded walk (the dashboard's) stops and says so; the next goes on.
    for i in 5..7 {
        s.create_api_key_conn(k, &format!("b{i}"), json!({})).await;
    }
    let bounded = rekey_service::Walk::FromCheckpoint { max: 1 };
    let part = s
        .rekey
        .audit_verify_tenant("default", bounded)
        .await
        .unwrap();
    assert!(part.ok && !part.complete && part.walked == 1, "{part:?}");
    assert!(part.message.contains("later entries"), "{part:?}");
    let rest = s
        .rekey
        .audit_verify_tenant(
            "default",
            rekey_service::Walk::FromCheckpoint { max: 1_000 },
        )
        .await
        .unwrap();
    assert!(rest.ok && rest.complete && rest.walked >= 1, "{rest:?}");
    assert_eq!(rest.from_seq, part.from_seq.map(|s| s + 1), "{rest:?}");
    let more = s.get(inc, k).await.json();
    // The full walk (the default) reads everything and says when.
    let full = s.get("/api/v1/audit/verify", k).await.json();
    assert_eq!(full["full"], true, "{full}");
    assert_eq!(full["walked"], total(&more), "{full}");
    let since = s.get(inc, k).await.json();
    assert!(since["last_full_walk"].is_string(), "{since}");

    let drop_guards: &[&str] = match db {
        Db::Sqlite => &["DROP TRIGGER audit_log_no_update"],
        Db::Postgres => &["DROP TRIGGER audit_log_no_update ON audit_log"],
    };
    s.sql(drop_guards).await;
    let head = total(&more) as i64;
    // An edit after the checkpoint: found by the next incremental walk.
    s.create_api_key_conn(k, "a5", json!({})).await;
    let after = head + 1;
    s.sql(&[&format!(
        "UPDATE audit_log SET outcome = 'denied' WHERE seq = {after}"
    )])
    .await;
    let v = s.get(inc, k).await.json();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_broken_seq"], after, "{v}");
    s.sql(&[&format!(
        "UPDATE audit_log SET outcome = 'ok' WHERE seq = {after}"
    )])
    .await;
    assert_eq!(s.get(inc, k).await.json()["ok"], true);
    // The checkpoint's own entry changed: found.
    let cp = s.get(inc, k).await.json()["verified_before"]
        .as_i64()
        .unwrap();
    s.sql(&[&format!(
        "UPDATE audit_log SET outcome = 'denied' WHERE seq = {cp}"
    )])
    .await;
    let v = s.get(inc, k).await.json();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_broken_seq"], cp, "{v}");
    s.sql(&[&format!(
        "UPDATE audit_log SET outcome = 'ok' WHERE seq = {cp}"
    )])
    .await;
    // An edit well before the checkpoint: incremental walks do not read
    // it (that is their bargain)…
    s.sql(&["UPDATE audit_log SET outcome = 'denied' WHERE seq = 2"])
        .await;
    assert_eq!(s.get(inc, k).await.json()["ok"], true);
    // …a full walk does, and from then on incremental walks report it too.
    let v = s.get("/api/v1/audit/verify", k).await.json();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_broken_seq"], 2, "{v}");
    let v = s.get(inc, k).await.json();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_broken_seq"], 2, "{v}");
    s.stop().await;
}

/// Entries of the caller's tenant, as its own audit listing shows them.
async fn own_audit_seqs(s: &TestServer, key: &str) -> Vec<i64> {
    let r = s.get("/api/v1/audit?limit=500", key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

async fn audit_verify_reports_only_the_callers_tenant(db: Db) {
    let s = TestServer::start(db).await;
    let acme = s.key("acme", &["admin"]).await;
    let globex = s.key("globex", &["admin"]).await;
    for i in 0..4 {
        let id = s
            .create_api_key_conn(&acme, &format!("acme-{i}"), json!({}))
            .await;
        s.get(&format!("/api/v1/connections/{id}/credentials"), &acme)
            .await;
    }
    s.create_api_key_conn(&globex, "globex-0", json!({})).await;
    let acme_seqs = own_audit_seqs(&s, &acme).await;
    let globex_seqs = own_audit_seqs(&s, &globex).await;
    assert!(acme_seqs.len() > globex_seqs.len());
    let all = s.rekey.audit_verify().await.unwrap();
    assert!(all.ok);
    assert!(all.checked as usize > acme_seqs.len() + globex_seqs.len() - 1);

    for (key, tenant, seqs) in [
        (&acme, "acme", &acme_seqs),
        (&globex, "globex", &globex_seqs),
    ] {
        let v = s.get("/api/v1/audit/verify", key).await.json();
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["checked"], seqs.len() as u64, "{tenant}: {v}");
        assert_eq!(v["tenant"], tenant);
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("{} entries of this tenant", seqs.len())),
            "{msg}"
        );
        assert!(!msg.contains(&all.checked.to_string()), "{msg}");
    }

    // Tamper with one of globex's entries: both tenants learn the chain is
    // broken, only globex learns where.
    let victim = *globex_seqs.iter().min().unwrap();
    let drop_guard: &[&str] = match db {
        Db::Sqlite => &["DROP TRIGGER audit_log_no_update"],
        Db::Postgres => &["DROP TRIGGER audit_log_no_update ON audit_log"],
    };
    s.sql(drop_guard).await;
    s.sql(&[&format!(
        "UPDATE audit_log SET outcome = 'denied' WHERE seq = {victim}"
    )])
    .await;
    let g = s.get("/api/v1/audit/verify", &globex).await.json();
    assert_eq!(g["ok"], false);
    assert_eq!(g["first_broken_seq"], victim, "{g}");
    assert_eq!(g["checked"], 0, "{g}");
    let a = s.get("/api/v1/audit/verify", &acme).await.json();
    assert_eq!(a["ok"], false, "{a}");
    assert!(a["first_broken_seq"].is_null(), "{a}");
    assert!(
        !a["message"].as_str().unwrap().contains(&victim.to_string()),
        "{a}"
    );
    assert_eq!(
        a["checked"],
        acme_seqs.iter().filter(|q| **q < victim).count() as u64,
        "{a}"
    );
    s.stop().await;
}

/// POST with no body at all (no `Content-Type` either).
async fn post_without_body(s: &TestServer, path: &str, key: &str) -> rekey_testkit::Resp {
    s.raw(Method::POST, path, Some(key), None, &[]).await
}

async fn disable_and_enable(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let id = s.create_api_key_conn(k, "dis", json!({})).await;
    let r = s
        .post(
            &format!("/api/v1/connections/{id}/disable"),
            k,
            json!({"reason": "breach response"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "disabled");
    s.get(&format!("/api/v1/connections/{id}/credentials"), k)
        .await
        .assert_error(409, "connection_unusable");
    s.post(&format!("/api/v1/connections/{id}/disable"), k, json!({}))
        .await
        .assert_error(409, "invalid_transition");
    // Disable also accepts an empty body.
    let r = post_without_body(&s, &format!("/api/v1/connections/{id}/enable"), k).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "pending");
    post_without_body(&s, &format!("/api/v1/connections/{id}/enable"), k)
        .await
        .assert_error(409, "not_disabled");
    let r = post_without_body(&s, &format!("/api/v1/connections/{id}/disable"), k).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let audit = s
        .get(
            &format!("/api/v1/audit?target={id}&action=connection.disable"),
            k,
        )
        .await
        .json();
    assert_eq!(items(&audit).len(), 2);
    assert_eq!(audit["items"][1]["details"]["reason"], "breach response");
    s.stop().await;
}

async fn api_keys_endpoints(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let r = s
        .post(
            "/api/v1/api-keys",
            k,
            json!({"name": "ci-reader", "scopes": ["connections:read", "credentials:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let created = r.json();
    let new_key = created["key"].as_str().unwrap().to_string();
    assert!(new_key.starts_with("rk_"));
    assert_eq!(created["api_key"]["tenant"], "default");
    assert_eq!(
        s.get("/api/v1/connections", &new_key).await.status,
        StatusCode::OK
    );
    let list = s.get("/api/v1/api-keys", k).await;
    assert!(!list.text.contains(&new_key), "listing shows a key");
    assert!(!list.text.contains("hash"));
    let items: Vec<Value> = list.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    let id = created["api_key"]["id"].as_str().unwrap();
    s.delete(&format!("/api/v1/api-keys/{id}"), k).await;
    s.delete(&format!("/api/v1/api-keys/{id}"), k)
        .await
        .assert_error(409, "already_revoked");
    s.get("/api/v1/connections", &new_key)
        .await
        .assert_error(401, "unauthorized");
    s.stop().await;
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let s = TestServer::start(Db::Sqlite).await;
    let doc = s
        .raw(Method::GET, "/api/v1/openapi.json", None, None, &[])
        .await
        .json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    // The contract: every route the server has must be documented.
    let required = [
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/api/v1/providers"),
        ("get", "/api/v1/providers/{id}"),
        ("get", "/api/v1/connections"),
        ("post", "/api/v1/connections"),
        ("post", "/api/v1/connections/import"),
        ("get", "/api/v1/connections/{id}"),
        ("patch", "/api/v1/connections/{id}"),
        ("delete", "/api/v1/connections/{id}"),
        ("get", "/api/v1/connections/{id}/credentials"),
        ("put", "/api/v1/connections/{id}/credentials"),
        ("post", "/api/v1/connections/{id}/disable"),
        ("post", "/api/v1/connections/{id}/enable"),
        ("get", "/api/v1/api-keys"),
        ("post", "/api/v1/api-keys"),
        ("delete", "/api/v1/api-keys/{id}"),
        ("post", "/api/v1/api-keys/{id}/rotate"),
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/audit/verify"),
        ("get", "/api/v1/evidence"),
        ("get", "/api/v1/evidence/{id}"),
        ("post", "/api/v1/connections/{id}/revoke"),
        ("post", "/api/v1/connections/{id}/revoke/confirm"),
        ("post", "/api/v1/connections/{id}/revoke/verify"),
        ("get", "/api/v1/connections/{id}/revocations"),
        ("get", "/api/v1/connections/{id}/readers"),
        ("post", "/api/v1/connections/{id}/reauthorize"),
        ("post", "/api/v1/connections/{id}/refresh"),
        ("get", "/api/v1/integrations"),
        ("post", "/api/v1/integrations"),
        ("get", "/api/v1/integrations/{id}"),
        ("patch", "/api/v1/integrations/{id}"),
        ("delete", "/api/v1/integrations/{id}"),
        ("post", "/api/v1/integrations/{id}/rotate-secret"),
        ("delete", "/api/v1/integrations/{id}/rotate-secret"),
        ("get", "/api/v1/integrations/{id}/rotate-secret"),
        ("post", "/api/v1/integrations/{id}/rotate-secret/confirm"),
        ("post", "/api/v1/connect-sessions"),
        ("post", "/api/v1/connections/{id}/check"),
        ("post", "/api/v1/connections/{id}/confirm-working"),
        ("get", "/api/v1/connections/{id}/versions"),
        ("post", "/api/v1/connections/{id}/rotate"),
        ("get", "/api/v1/rotations"),
        ("get", "/api/v1/rotations/{id}"),
        ("post", "/api/v1/rotations/{id}/confirm"),
        ("post", "/api/v1/rotations/{id}/cancel"),
        ("post", "/api/v1/campaigns"),
        ("get", "/api/v1/campaigns"),
        ("get", "/api/v1/campaigns/{id}"),
        ("get", "/api/v1/campaigns/{id}/plan"),
        ("post", "/api/v1/campaigns/{id}/start"),
        ("post", "/api/v1/campaigns/{id}/pause"),
        ("post", "/api/v1/campaigns/{id}/resume"),
        ("post", "/api/v1/campaigns/{id}/cancel"),
        ("post", "/api/v1/campaigns/{id}/refresh-plan"),
        (
            "post",
            "/api/v1/campaigns/{id}/items/{connection_id}/confirm",
        ),
        ("post", "/api/v1/campaigns/{id}/items/{connection_id}/skip"),
        ("get", "/api/v1/campaigns/{id}/links"),
        ("post", "/api/v1/campaigns/{id}/links/{connection_id}"),
        ("delete", "/api/v1/campaigns/{id}/links/{connection_id}"),
        ("put", "/api/v1/connections/{id}/rotation-schedule"),
        ("get", "/api/v1/connections/{id}/rotation-schedule"),
        ("delete", "/api/v1/connections/{id}/rotation-schedule"),
        ("get", "/api/v1/webhooks"),
        ("post", "/api/v1/webhooks"),
        ("get", "/api/v1/webhooks/{id}"),
        ("patch", "/api/v1/webhooks/{id}"),
        ("delete", "/api/v1/webhooks/{id}"),
        ("post", "/api/v1/webhooks/{id}/rotate-secret"),
        ("post", "/api/v1/webhooks/{id}/test"),
        ("get", "/api/v1/webhooks/{id}/deliveries"),
        ("get", "/api/v1/webhooks/{id}/deliveries/{delivery_id}"),
        (
            "post",
            "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay",
        ),
        ("get", "/connect/{token}"),
        ("post", "/connect/{token}/start"),
        ("post", "/connect/{token}/submit"),
        ("get", "/oauth/callback"),
        ("get", "/assets/rekey.css"),
    ];
    for (m, p) in required {
        assert!(
            paths.get(p).and_then(|o| o.get(m)).is_some(),
            "{m} {p} is not in the OpenAPI document"
        );
    }
    // And every documented operation is really routed, with the documented error shape.
    let mut n = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let concrete = path
                .replace("{id}", "x")
                .replace("{token}", "x")
                .replace("{delivery_id}", "x");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = s.raw(m, &concrete, Some(&s.admin_key), None, &[]).await;
            let code = serde_json::from_str::<Value>(&r.text)
                .ok()
                .and_then(|j| j["error"]["code"].as_str().map(String::from));
            assert_ne!(
                code.as_deref(),
                Some("route_not_found"),
                "{method} {path} documented but not routed"
            );
            assert_ne!(
                code.as_deref(),
                Some("method_not_allowed"),
                "{method} {path} documented but not routed"
            );
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
            n += 1;
        }
    }
    assert_eq!(
        n,
        required.len(),
        "undocumented extra operations or missing ones"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    s.stop().await;
}

/// Every `$ref` inside `v` (through `oneOf`, `items`, …).
fn refs_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs_in(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs_in(x, out)),
        _ => {}
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// What a schema-driven client needs from the document: the error answers
/// it can get, the shape of ids, the bounds of `limit`, and the closed sets
/// of kinds, scopes, statuses and event types, equal to rekey-core's.
#[tokio::test]
async fn openapi_tells_clients_what_the_server_accepts() {
    use rekey_core::connection::{ConnectionKind, Status};
    use rekey_core::events::{event_filters, event_types};
    use rekey_core::ids;
    use rekey_core::scope::Scope;

    let s = TestServer::start(Db::Sqlite).await;
    let doc = s
        .raw(Method::GET, "/api/v1/openapi.json", None, None, &[])
        .await
        .json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let components = &doc["components"];
    let expected_pattern = |path: &str, name: &str| -> String {
        let collection = path
            .split('/')
            .collect::<Vec<_>>()
            .windows(2)
            .find(|w| w[1] == format!("{{{name}}}"))
            .map(|w| w[0].to_string())
            .unwrap();
        match collection.as_str() {
            "connections" => ids::id_pattern(ids::CONNECTION),
            "api-keys" => ids::id_pattern(ids::API_KEY),
            "integrations" => ids::id_pattern(ids::INTEGRATION),
            "webhooks" => ids::id_pattern(ids::WEBHOOK),
            "deliveries" => ids::id_pattern(ids::DELIVERY),
            "rotations" => ids::id_pattern(ids::ROTATION),
            "evidence" => ids::id_pattern(ids::EVIDENCE),
            "campaigns" => ids::id_pattern(ids::CAMPAIGN),
            "items" | "links" => ids::id_pattern(ids::CONNECTION),
            "providers" => ids::slug_pattern(64),
            "connect" => "^[A-Za-z0-9_-]{43}$".to_string(),
            // Fails the comparison below, naming the path and parameter.
            other => format!("no known id pattern for `{other}`"),
        }
    };
    let (mut secured, mut bodies, mut path_params, mut limits) = (0, 0, 0, 0);
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let what = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            // Every referenced response exists and has the error shape.
            let mut rs = Vec::new();
            refs_in(&op["responses"], &mut rs);
            for r in rs {
                if let Some(name) = r.strip_prefix("#/components/responses/") {
                    let resp = &components["responses"][name];
                    assert_eq!(
                        resp["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{what}: {r}"
                    );
                }
            }
            let security = op["security"].as_array().filter(|a| !a.is_empty());
            if path.starts_with("/api/v1/") {
                assert!(
                    security.is_some_and(|a| a.contains(&json!({"bearer": []}))),
                    "{what}: needs an API key but lists no bearer security"
                );
            }
            if security.is_some() {
                secured += 1;
                for status in ["401", "403"] {
                    assert!(has(status), "{what}: no {status} response");
                }
            }
            if op.get("requestBody").is_some() {
                bodies += 1;
                for status in ["400", "408", "413", "415"] {
                    assert!(has(status), "{what}: takes a body but has no {status}");
                }
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let schema = &p["schema"];
                if p["in"] == "path" {
                    path_params += 1;
                    assert_eq!(
                        schema["pattern"].as_str(),
                        Some(expected_pattern(path, name).as_str()),
                        "{what}: path parameter `{name}`"
                    );
                    assert!(
                        has("404") || !path.starts_with("/api/v1/"),
                        "{what}: no 404"
                    );
                }
                if name == "limit" {
                    limits += 1;
                    let max = if path == "/api/v1/audit" { 500 } else { 200 };
                    assert_eq!(schema["minimum"], 1, "{what}: limit");
                    assert_eq!(schema["maximum"], max, "{what}: limit");
                }
            }
            if path.starts_with("/api/v1/") && method != "get" {
                assert!(has("409"), "{what}: a write without 409");
            }
        }
    }
    assert!(secured >= 37 && bodies >= 10 && path_params >= 30 && limits == 8);

    // The closed sets are rekey-core's, so a new variant needs the docs too.
    let schemas = &components["schemas"];
    let core_kinds: Vec<String> = ConnectionKind::ALL.iter().map(|k| k.to_string()).collect();
    let core_statuses: Vec<String> = Status::ALL.iter().map(|k| k.to_string()).collect();
    let core_scopes: Vec<String> = Scope::ALL.iter().map(|k| k.to_string()).collect();
    let core_events: Vec<String> = event_types().map(|e| e.to_string()).collect();
    let core_codes: Vec<String> = rekey_core::ErrorCode::ALL
        .iter()
        .map(|c| c.to_string())
        .collect();
    for (name, values) in [
        ("ErrorCode", &core_codes),
        ("ConnectionKind", &core_kinds),
        ("ConnectionStatus", &core_statuses),
        ("Scope", &core_scopes),
        ("WebhookEventType", &core_events),
        ("WebhookEventFilter", &event_filters()),
    ] {
        assert_eq!(schemas[name]["type"], "string", "{name}");
        assert_eq!(&strings(&schemas[name]["enum"]), values, "{name}");
    }
    // …and the fields that carry them say so.
    let uses = |schema: &str, field: &str, target: &str| {
        let mut rs = Vec::new();
        refs_in(&schemas[schema]["properties"][field], &mut rs);
        assert_eq!(
            rs,
            vec![format!("#/components/schemas/{target}")],
            "{schema}.{field}"
        );
    };
    for (schema, field, target) in [
        ("CreateConnection", "kind", "ConnectionKind"),
        ("ConnectionView", "kind", "ConnectionKind"),
        ("CredentialsView", "kind", "ConnectionKind"),
        ("ProviderView", "auth_kinds", "ConnectionKind"),
        ("CreateConnectSession", "kind", "ConnectionKind"),
        ("ConnectSessionView", "kind", "ConnectionKind"),
        ("ConnectionView", "status", "ConnectionStatus"),
        ("CheckResult", "status", "ConnectionStatus"),
        ("CheckResult", "status_before", "ConnectionStatus"),
        ("CreateApiKey", "scopes", "Scope"),
        ("ApiKeyView", "scopes", "Scope"),
        ("CreateWebhook", "events", "WebhookEventFilter"),
        ("UpdateWebhook", "events", "WebhookEventFilter"),
        ("WebhookView", "events", "WebhookEventFilter"),
        ("DeliveryView", "event_type", "WebhookEventType"),
        ("ErrorDetail", "code", "ErrorCode"),
    ] {
        uses(schema, field, target);
    }
    let query_ref = |path: &str, name: &str| {
        let p = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone();
        let mut rs = Vec::new();
        refs_in(&p["schema"], &mut rs);
        rs
    };
    assert_eq!(
        query_ref("/api/v1/connections", "kind"),
        ["#/components/schemas/ConnectionKind"]
    );
    assert_eq!(
        query_ref("/api/v1/connections", "status"),
        ["#/components/schemas/ConnectionStatus"]
    );
    assert_eq!(
        query_ref("/api/v1/providers", "auth_kind"),
        ["#/components/schemas/ConnectionKind"]
    );

    // What the document promises for bodies holds for the optional one too.
    let k = &s.admin_key;
    let id = s
        .create_api_key_conn(k, "sk-optional-body", json!({}))
        .await;
    let path = format!("/api/v1/connections/{id}/disable");
    s.raw(
        Method::POST,
        &path,
        Some(k),
        Some(("text/plain", br#"{"reason": "x"}"#.to_vec())),
        &[],
    )
    .await
    .assert_error(415, "unsupported_media_type");
    let r = s.raw(Method::POST, &path, Some(k), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let s = TestServer::start(Db::Sqlite).await;
    let r = s.raw(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.contains_key("x-request-id"));
    assert_eq!(
        s.raw(Method::GET, "/readyz", None, None, &[]).await.json()["status"],
        "ready"
    );
    s.create_api_key_conn(&s.admin_key, "m", json!({})).await;
    // One route, two statuses, counted apart (the second 400 through the
    // handles made by the first).
    s.get_admin("/api/v1/connections/not-an-id").await;
    s.get_admin("/api/v1/connections/not-an-id").await;
    s.get_admin("/api/v1/connections/con_00000000000000000000000000000000")
        .await;
    let m = s.raw(Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.headers["content-type"]
        .to_str()
        .unwrap()
        .contains("openmetrics-text"));
    assert!(
        m.text.contains(
            r#"rekey_http_requests_total{method="POST",route="/api/v1/connections",status="201"} 1"#
        ),
        "{}",
        m.text
    );
    assert!(
        m.text.contains(
            r#"rekey_http_requests_total{method="GET",route="/api/v1/connections/{id}",status="400"} 2"#
        ),
        "{}",
        m.text
    );
    assert!(
        m.text.contains(
            r#"rekey_http_requests_total{method="GET",route="/api/v1/connections/{id}",status="404"} 1"#
        ),
        "{}",
        m.text
    );
    assert!(
        m.text.contains(
            r#"rekey_http_request_duration_seconds_count{method="GET",route="/api/v1/connections/{id}"} 3"#
        ),
        "{}",
        m.text
    );
    assert!(m
        .text
        .contains("rekey_http_request_duration_seconds_bucket"));
    assert!(m.text.contains(r#"rekey_connections{status="pending"} 1"#));
    assert!(m.text.contains(r#"rekey_connections{status="active"} 0"#));
    assert!(
        m.text
            .contains(r#"rekey_webhook_deliveries{status="failed"} 0"#),
        "{}",
        m.text
    );
    // Request ids propagate into the audit log.
    let r = s.raw(Method::POST, "/api/v1/connections", Some(&s.admin_key),
        Some(("application/json", serde_json::to_vec(&json!({"provider": "custom-rest", "kind": "basic", "display_name": "b", "credentials": {"username": "u", "password": "p"}})).unwrap())),
        &[("x-request-id", "req-abc-123")]).await;
    assert_eq!(r.headers["x-request-id"], "req-abc-123");
    let a = s
        .get_admin("/api/v1/audit?action=connection.create&limit=1")
        .await
        .json();
    assert_eq!(a["items"][0]["request_id"], "req-abc-123");
    assert_eq!(a["items"][0]["source"], "127.0.0.1");
    s.stop().await;
}

async fn audit_pagination_and_filters(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let id = s.create_api_key_conn(k, "pg", json!({})).await;
    for _ in 0..4 {
        s.get(&format!("/api/v1/connections/{id}/credentials"), k)
            .await;
    }
    // Newest first, in pages of 2, no entry twice, contiguous sequence numbers.
    let mut seqs = Vec::new();
    let mut path = "/api/v1/audit?limit=2".to_string();
    loop {
        let page = s.get(&path, k).await.json();
        seqs.extend(items(&page).iter().map(|e| e["seq"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/audit?limit=2&cursor={c}"),
            None => break,
        }
    }
    let n = seqs.len() as i64;
    assert!(n >= 6, "{seqs:?}");
    assert_eq!(seqs, (1..=n).rev().collect::<Vec<_>>());
    let reads = s
        .get("/api/v1/audit?action=credentials.read", k)
        .await
        .json();
    assert_eq!(items(&reads).len(), 4);
    let actor = reads["items"][0]["actor"].as_str().unwrap().to_string();
    let by_actor = s
        .get(&format!("/api/v1/audit?actor={actor}&limit=500"), k)
        .await
        .json();
    assert!(items(&by_actor).iter().all(|e| e["actor"] == json!(actor)));
    let future = s
        .get("/api/v1/audit?since=2999-01-01T00:00:00Z", k)
        .await
        .json();
    assert_eq!(future["items"], json!([]));
    // Entries carry their chain hash.
    assert_eq!(reads["items"][0]["hash"].as_str().unwrap().len(), 64);
    s.stop().await;
}
