//! The evidence export: one row per connection of the filter (what was
//! revoked, how, by whom, what the provider answered when rekey tried the
//! old credential, what replaced it), as CSV a spreadsheet opens safely and
//! as JSON, sealed by its last line with a SHA-256 that the audit chain
//! also holds. Golden shapes (ids, times and fingerprints normalised) live
//! in `tests/golden/`; `UPDATE_GOLDEN=1` rewrites them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_api::EvidenceRow;
use rekey_testkit::provider_fixture::ProviderFixture;
use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

both_backends!(
    export_shows_revocation_verification_and_replacement,
    export_refuses_bad_input,
    export_streams_every_page
);

/// Ids, times and fingerprints replaced by placeholders, so a golden file
/// holds the shape and the stable values only.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    'outer: while !rest.is_empty() {
        // `<prefix>_<32 hex>` ids.
        for p in ["con", "rvk", "evd", "key", "cv", "aud"] {
            let pat = format!("{p}_");
            if let Some(tail) = rest.strip_prefix(&pat) {
                if tail.len() >= 32 && tail[..32].bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.push_str(&format!("{p}_<id>"));
                    rest = &tail[32..];
                    continue 'outer;
                }
            }
        }
        // Loopback fixtures' ports.
        if let Some(tail) = rest.strip_prefix("127.0.0.1:") {
            let n = tail.bytes().take_while(u8::is_ascii_digit).count();
            out.push_str("127.0.0.1:<port>");
            rest = &tail[n..];
            continue;
        }
        // Keyed-hash fingerprints `kh:<hex>` and SHA-256 hex runs.
        if let Some(tail) = rest.strip_prefix("kh:") {
            let n = tail
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
                .count();
            out.push_str("kh:<fp>");
            rest = &tail[n..];
            continue;
        }
        if rest.len() >= 64 && rest[..64].bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push_str("<sha256>");
            rest = &rest[64..];
            continue;
        }
        // RFC 3339 times: `2026-12-03T13:46:08.123Z`.
        let b = rest.as_bytes();
        if b.len() >= 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[..4].iter().all(u8::is_ascii_digit)
        {
            let n = rest
                .bytes()
                .take_while(|c| {
                    c.is_ascii_digit() || matches!(c, b'-' | b'T' | b':' | b'.' | b'Z' | b'+')
                })
                .count();
            out.push_str("<time>");
            rest = &rest[n..];
            continue;
        }
        let ch = rest.chars().next().unwrap();
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

fn golden(name: &str, actual: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        actual, want,
        "golden {name} differs (UPDATE_GOLDEN=1 rewrites it)"
    );
}

/// The file's seal: export id and SHA-256, checked against the content.
fn check_seal(text: &str) -> (String, String) {
    let seal = rekey_api::read_seal(text.as_bytes()).unwrap();
    let actual = format!("{:x}", Sha256::digest(&text.as_bytes()[..seal.sealed_len]));
    assert_eq!(actual, seal.sha256, "the seal covers everything before it");
    (seal.id, seal.sha256)
}

async fn export(s: &TestServer, query: &str) -> String {
    let r = s.get_admin(&format!("/api/v1/evidence?{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.text
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

async fn export_shows_revocation_verification_and_replacement(db: Db) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    fx.set_valid_credential(Some("Bearer key-1"));
    // The affected one: its copies were in Salesforce; its name would run
    // as a formula in a spreadsheet.
    let hit = s
        .create_api_key_conn(
            &s.admin_key,
            "key-1",
            json!({"probe_url": fx.rest_url(), "display_name": "=HYPERLINK(\"http://x\")",
                   "custody": ["salesforce"], "scopes": ["read", "write"],
                   "credentials": {"key": "key-1", "placement": "header", "name": "Authorization", "prefix": "Bearer "}}),
        )
        .await;
    // Not affected.
    let other = s
        .create_api_key_conn(&s.admin_key, "key-9", json!({"custody": ["vault"]}))
        .await;

    // Revoke, confirm the runbook step with a ticket number; the provider
    // now refuses the old key: verified.
    let r = s.act(&format!("/api/v1/connections/{hit}/revoke")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let old_fp = r.json()["revocation"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    fx.set_valid_credential(Some("Bearer key-2"));
    let r = s
        .post_admin(
            &format!("/api/v1/connections/{hit}/revoke/confirm"),
            json!({"step": 1, "note": "SEC-42"}),
        )
        .await;
    assert_eq!(r.json()["status"], "revoked", "{}", r.text);
    // The replacement.
    let r = s
        .put_admin(&format!("/api/v1/connections/{hit}/credentials"), json!({"credentials": {"key": "key-2", "placement": "header", "name": "Authorization", "prefix": "Bearer "}}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    s.check(&hit).await;
    let versions = s
        .get_admin(&format!("/api/v1/connections/{hit}/versions"))
        .await
        .ok_json();
    let new_fp = versions["items"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_fp, old_fp);
    // Each credential's history: the old one revoked and verified dead.
    let old = &versions["items"][1];
    assert_eq!(old["fingerprint"], old_fp.as_str(), "{versions}");
    assert_eq!(old["verdict"], "verified_rejected", "{versions}");
    assert!(old["revoked_at"].is_string() && old["verified_at"].is_string());
    assert!(old["revocation_id"].as_str().unwrap().starts_with("rvk_"));
    assert!(versions["items"][0].get("verdict").is_none(), "{versions}");
    // The audit entries of the change name both credentials.
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?target={hit}&action=connection.revoke_pending"
        ))
        .await
        .ok_json();
    assert_eq!(
        a["items"][0]["details"]["old_fingerprint"],
        old_fp.as_str(),
        "{a}"
    );
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?target={hit}&action=connection.credentials_update"
        ))
        .await
        .ok_json();
    let d = &a["items"][0]["details"]["versions"];
    assert_eq!(d["old_fingerprint"], old_fp.as_str(), "{a}");
    assert_eq!(d["new_fingerprint"], new_fp.as_str(), "{a}");

    // CSV of the Salesforce-custody connections.
    let text = export(&s, "custody=salesforce").await;
    let (id, sha) = check_seal(&text);
    let rows = csv_rows(&text);
    assert_eq!(rows[0], ["# rekey evidence export", id.as_str()]);
    assert_eq!(rows[3], ["# filter", "custody=salesforce"]);
    assert_eq!(rows[4], EvidenceRow::COLUMNS.to_vec());
    let data: Vec<&Vec<String>> = rows.iter().filter(|r| r[0].starts_with("con_")).collect();
    assert_eq!(data.len(), 1, "only the filter's connection: {text}");
    let cell = |name: &str| {
        let i = EvidenceRow::COLUMNS
            .iter()
            .position(|c| *c == name)
            .unwrap();
        data[0][i].clone()
    };
    assert_eq!(cell("connection_id"), hit);
    assert_eq!(
        cell("display_name"),
        "'=HYPERLINK(\"http://x\")",
        "formula escaped"
    );
    assert_eq!(cell("outcome"), "verified_rejected");
    assert_eq!(cell("verdict"), "verified_rejected");
    assert_eq!(cell("old_fingerprint"), old_fp);
    assert_eq!(cell("new_fingerprint"), new_fp);
    assert_eq!(cell("current_fingerprint"), new_fp);
    assert_eq!(cell("new_credential_source"), "replaced");
    assert_eq!(cell("revocation_method"), "manual");
    assert_eq!(cell("scopes_before"), "read write");
    assert!(cell("revoked_by").starts_with("api_key:"));
    assert!(
        cell("confirmations").contains("SEC-42"),
        "{}",
        cell("confirmations")
    );
    assert!(
        cell("provider_answer").contains("HTTP 401"),
        "{}",
        cell("provider_answer")
    );
    assert!(
        !cell("verified_working_at").is_empty(),
        "the new key was probed"
    );
    assert!(
        !text.contains("key-1") && !text.contains("key-2"),
        "no secret: {text}"
    );
    assert!(text.contains("# verified_rejected,1\n"), "{text}");
    assert!(!text.contains(&other));
    golden("evidence.csv", &normalise(&text));

    // The audit chain holds the same hash, under the export's id.
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?action=evidence.exported&target={id}"
        ))
        .await
        .ok_json();
    let e = &a["items"][0];
    assert_eq!(e["details"]["sha256"], sha.as_str(), "{a}");
    assert_eq!(e["details"]["rows"], 1);
    let rec = s
        .get_admin(&format!("/api/v1/evidence/{id}"))
        .await
        .ok_json();
    assert_eq!(rec["sha256"], sha.as_str());
    assert_eq!(rec["rows"], 1);
    assert_eq!(rec["chain_intact"], true);
    assert_eq!(rec["counts"]["verified_rejected"], 1);
    assert_eq!(rec["filter"]["custody"], "salesforce");

    // JSON: the same row, the whole file one JSON document.
    let text = export(&s, "format=json&custody=salesforce").await;
    let (id2, _) = check_seal(&text);
    assert_ne!(id2, id, "every export has its own id");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["evidence"]["id"], id2.as_str());
    assert_eq!(v["rows"].as_array().unwrap().len(), 1);
    assert_eq!(v["rows"][0]["old_fingerprint"], old_fp.as_str());
    assert_eq!(
        v["rows"][0]["display_name"], "=HYPERLINK(\"http://x\")",
        "JSON is not escaped"
    );
    assert_eq!(v["summary"]["counts"]["verified_rejected"], 1);
    golden("evidence.json", &normalise(&text));

    // Everything: both connections, the other one not revoked.
    let text = export(&s, "").await;
    check_seal(&text);
    assert!(text.contains("# filter,(none: every connection)"));
    assert!(text.contains(&other));
    assert!(text.contains("# not_revoked,1\n"), "{text}");
}

async fn export_refuses_bad_input(db: Db) {
    let s = TestServer::start(db).await;
    for (q, status, code) in [
        ("format=xml", 400, "invalid_format"),
        ("status=bogus", 400, "invalid_status"),
        ("created_before=yesterday", 400, "invalid_timestamp"),
        ("integration=nope", 400, "invalid_id"),
        (
            "integration=int_0123456789abcdef0123456789abcdef",
            404,
            "integration_not_found",
        ),
        ("bogus=1", 400, "invalid_query"),
    ] {
        s.get_admin(&format!("/api/v1/evidence?{q}"))
            .await
            .assert_error(status, code);
    }
    s.get_admin("/api/v1/evidence/evd_0123456789abcdef0123456789abcdef")
        .await
        .assert_error(404, "evidence_not_found");
    s.get_admin("/api/v1/evidence/nope")
        .await
        .assert_error(400, "invalid_id");
    // Reading connections is not enough: evidence is the audit log's.
    let reader = s.key("default", &["connections:read"]).await;
    s.get("/api/v1/evidence", &reader)
        .await
        .assert_error(403, "missing_scope");
    // HEAD runs no export and records nothing.
    let r = s
        .raw(
            reqwest::Method::HEAD,
            "/api/v1/evidence",
            Some(&s.admin_key),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("rekey-evidence-evd_"));
    assert_ne!(
        r.headers.get("content-length").map(|v| v.to_str().unwrap()),
        Some("0")
    );
    let a = s
        .get_admin("/api/v1/audit?action=evidence.exported")
        .await
        .ok_json();
    assert!(a["items"].as_array().unwrap().is_empty(), "{a}");
    // Another tenant sees neither the rows nor the record.
    let text = export(&s, "").await;
    let (id, _) = check_seal(&text);
    let stranger = s.key("other", &["audit:read"]).await;
    s.get(&format!("/api/v1/evidence/{id}"), &stranger)
        .await
        .assert_error(404, "evidence_not_found");
}

async fn export_streams_every_page(db: Db) {
    let s = TestServer::start(db).await;
    // More than one page of the export (200 connections a page).
    let n = rekey_service::EVIDENCE_PAGE as usize + 5;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            s.create_api_key_conn(
                &s.admin_key,
                &format!("secret-{i}"),
                json!({"tags": ["bulk"]}),
            )
            .await,
        );
    }
    let text = export(&s, "tag=bulk").await;
    check_seal(&text);
    let got: Vec<String> = csv_rows(&text)
        .into_iter()
        .filter(|r| r[0].starts_with("con_"))
        .map(|r| r[0].clone())
        .collect();
    ids.sort();
    assert_eq!(got, ids, "every connection once, in id order");
    assert!(text.contains(&format!("# rows,{n}\n")));
}
