//! Rotations with an operator: RSA key pairs in two public-key slots (the
//! operator runs the statements rekey shows, against a Snowflake stand-in
//! that checks key-pair JWTs the way Snowflake documents), and the guided
//! rotation of a kind rekey has no rotator for (an API key, tested with the
//! probe against the provider fixture). Confirmations, cancellation and the
//! errors around them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_api::{CancelRotation, ConfirmRotation, Grace, RotationView, StartRotation};
use rekey_client::Client;
use rekey_testkit::dbtarget::wait_for_rotation;
use rekey_testkit::provider_fixture::ProviderFixture;
use rekey_testkit::snowflake::SnowflakeFixture;
use rekey_testkit::{assert_api_error, both_backends, fixture, Db, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

both_backends!(key_pair_two_slots_twice);
both_backends!(key_pair_untested_key_fails_without_touching_current);
both_backends!(guided_api_key_rotation);
both_backends!(cancel_and_confirm_errors);

/// Poll until the rotation waits for `step` (or finishes: then it fails
/// the test, with what it is).
async fn wait_awaiting(c: &Client, id: &str, step: &str) -> RotationView {
    for _ in 0..300 {
        let r = c.get_rotation(id).await.unwrap();
        if r.awaiting.as_deref() == Some(step) {
            return r;
        }
        assert!(
            !r.finished,
            "rotation finished instead of waiting for {step}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rotation {id} did not wait for {step}");
}

fn confirm(step: &str) -> ConfirmRotation {
    ConfirmRotation {
        step: step.into(),
        note: Some("CHG-42".into()),
        credentials: None,
    }
}

fn zero_grace() -> StartRotation {
    StartRotation {
        grace: Some(Grace::Seconds(0)),
        ..Default::default()
    }
}

async fn key_pair_connection(s: &TestServer, sf: &SnowflakeFixture, user: &str) -> String {
    let r = s
        .post_admin("/api/v1/connections", json!({"provider": "snowflake", "kind": "rsa_key_pair", "display_name": format!("sf {user}"),
                   "params": {"account": sf.account}, "probe_url": sf.statements_url(),
                   "credentials": {"private_key_pem": fixture("test-rsa-2048.pem"), "username": user}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_string()
}

/// The current key's fingerprint and private key, as rekey hands them out.
async fn current_key(c: &Client, id: &str) -> (String, String) {
    let v = c.read_credentials(id).await.unwrap();
    let creds = serde_json::to_value(&v.credentials).unwrap();
    let pem = creds["private_key_pem"].as_str().unwrap().to_string();
    let versions = c.list_versions(id).await.unwrap().items;
    let cur = versions.iter().find(|v| v.label == "current").unwrap();
    (cur.fingerprint.clone(), pem)
}

/// Slot 1 → 2 → 1: each rotation shows the statements for the free slot,
/// the operator runs them, and the key rekey holds as current is the one in
/// the slot that stays.
async fn key_pair_two_slots_twice(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let sf = SnowflakeFixture::start("myorg-acct").await;
    let id = key_pair_connection(&s, &sf, "svc_user").await;
    let (fp_a, pem_a) = current_key(&c, &id).await;
    let jwk: Value = serde_json::from_str(&fixture("test-rsa-2048.jwk.json")).unwrap();
    assert!(jwk["n"].is_string());
    // The user starts with the fixture key in slot 1 (as set up by hand).
    sf.exec(&format!(
        "ALTER USER svc_user SET RSA_PUBLIC_KEY = '{}'",
        public_body(&s, &c, &id).await
    ));
    assert_eq!(sf.slots("svc_user"), [Some(fp_a.clone()), None]);
    assert_eq!(s.check(&id).await["status"], "active");

    let mut old_fp = fp_a.clone();
    let mut old_pem = pem_a.clone();
    for (round, (new_col, old_col, new_slot)) in [
        ("RSA_PUBLIC_KEY_2", "RSA_PUBLIC_KEY", 1usize),
        ("RSA_PUBLIC_KEY", "RSA_PUBLIC_KEY_2", 0usize),
    ]
    .into_iter()
    .enumerate()
    {
        let r = c.start_rotation(&id, &zero_grace()).await.unwrap();
        assert_eq!(r.rotator, "rsa_second_slot", "{r:?}");
        let w = wait_awaiting(&c, &r.id, "set").await;
        assert_eq!(w.state, "created");
        let i = w.instructions.clone().unwrap();
        assert_eq!(i.statements.len(), 1, "{i:?}");
        let set = &i.statements[0];
        assert!(
            set.starts_with(&format!("ALTER USER svc_user SET {new_col} = 'MII")),
            "round {round}: {set}"
        );
        assert!(!set.contains("PRIVATE"), "{set}");
        // Nothing changed yet: rekey still hands out the old key.
        assert_eq!(current_key(&c, &id).await.1, old_pem);
        sf.exec(set);
        let after = c.confirm_rotation(&r.id, &confirm("set")).await.unwrap();
        assert!(after.awaiting.is_none(), "{after:?}");
        // Tested with a key-pair JWT signed by the new key, promoted, then
        // (zero grace) waiting for the old slot to be unset.
        let w = wait_awaiting(&c, &r.id, "retired").await;
        assert_eq!(w.state, "promoted", "{w:?}");
        let (fp_new, pem_new) = current_key(&c, &id).await;
        assert_ne!(fp_new, old_fp);
        assert_ne!(pem_new, old_pem);
        assert_eq!(
            sf.slots("svc_user")[new_slot].as_deref(),
            Some(fp_new.as_str())
        );
        let unset = &w.instructions.clone().unwrap().statements[0];
        assert_eq!(unset, &format!("ALTER USER svc_user UNSET {old_col};"));
        sf.exec(unset);
        c.confirm_rotation(&r.id, &confirm("retired"))
            .await
            .unwrap();
        let done = wait_for_rotation(&c, &r.id, "retired").await;
        assert_eq!(done.state, "retired", "{done:?}");
        assert_eq!(
            done.confirmations
                .iter()
                .map(|c| c.step.as_str())
                .collect::<Vec<_>>(),
            ["set", "retired"]
        );
        let mut expect = [None, None];
        expect[new_slot] = Some(fp_new.clone());
        assert_eq!(sf.slots("svc_user"), expect, "round {round}");
        // The retired key's revocation says who confirmed it gone, and the note.
        let rev = &c.list_revocations(&id).await.unwrap().items[0];
        assert_eq!(rev.method, "rotation");
        assert_eq!(rev.fingerprint.as_deref(), Some(old_fp.as_str()));
        assert_eq!(rev.steps.len(), 1, "{rev:?}");
        assert_eq!(rev.steps[0].note.as_deref(), Some("CHG-42"));
        assert!(
            rev.revoked_by
                .as_deref()
                .unwrap_or_default()
                .starts_with("api_key:"),
            "{rev:?}"
        );
        // The connection works with the key that stayed.
        let chk = s.check(&id).await;
        assert_eq!(chk["status"], "active", "{chk}");
        old_fp = fp_new;
        old_pem = pem_new;
    }
    // Audited: the operator's confirmations and the waits, with no key.
    let a = s
        .get_admin(&format!("/api/v1/audit?target={id}&limit=200"))
        .await;
    let text = a.text.clone();
    for action in [
        "rotation.awaiting_operator",
        "rotation.confirm",
        "rotation.succeeded",
    ] {
        assert!(text.contains(action), "{action} missing");
    }
    assert!(text.contains("CHG-42"));
    assert!(
        !text.contains("PRIVATE KEY"),
        "no key material in the audit log"
    );
    sf.stop().await;
    s.stop().await;
}

/// The connection's public key body, as the operator first set it.
async fn public_body(_s: &TestServer, c: &Client, id: &str) -> String {
    let v = c.read_credentials(id).await.unwrap();
    let creds = serde_json::to_value(&v.credentials).unwrap();
    let pem = creds["public_key_pem"]
        .as_str()
        .expect("the public key is part of the credential");
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// The operator confirms `set` without running the statement: the new key
/// is refused by the stand-in, so nothing is promoted and the current key
/// still works.
async fn key_pair_untested_key_fails_without_touching_current(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let sf = SnowflakeFixture::start("myorg-acct").await;
    let id = key_pair_connection(&s, &sf, "other_user").await;
    sf.exec(&format!(
        "ALTER USER other_user SET RSA_PUBLIC_KEY = '{}'",
        public_body(&s, &c, &id).await
    ));
    let (fp, pem) = current_key(&c, &id).await;
    let r = c.start_rotation(&id, &zero_grace()).await.unwrap();
    wait_awaiting(&c, &r.id, "set").await;
    c.confirm_rotation(&r.id, &confirm("set")).await.unwrap();
    let done = wait_for_rotation(&c, &r.id, "failed").await;
    assert!(
        done.state == "failed" || done.state == "rolled_back",
        "{done:?}"
    );
    assert_eq!(
        done.last_error.as_ref().unwrap()["step"],
        "tested",
        "{done:?}"
    );
    assert!(
        done.next_action
            .as_deref()
            .unwrap_or_default()
            .contains("UNSET RSA_PUBLIC_KEY_2"),
        "{done:?}"
    );
    assert_eq!(current_key(&c, &id).await, (fp, pem));
    assert_eq!(s.check(&id).await["status"], "active");
    sf.stop().await;
    s.stop().await;
}

/// An API key (no rotator): the operator makes the new key at the
/// provider and submits it with the confirmation of `set`; the probe tests
/// it; after promotion rekey waits for the old key to be revoked.
async fn guided_api_key_rotation(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let api = ProviderFixture::start().await;
    api.set_valid_credential(Some("sk-old-key-1"));
    let id = s
        .create_api_key_conn(
            &s.admin_key,
            "sk-old-key-1",
            json!({"probe_url": api.rest_url()}),
        )
        .await;
    let r = c.start_rotation(&id, &zero_grace()).await.unwrap();
    assert_eq!(r.rotator, "manual");
    let w = wait_awaiting(&c, &r.id, "set").await;
    let i = w.instructions.unwrap();
    assert!(i.needs_credentials && !i.summary.is_empty(), "{i:?}");
    // The confirmation of `set` needs the new credential, and not the old one.
    assert_api_error(
        c.confirm_rotation(&r.id, &confirm("set")).await,
        400,
        "invalid_field",
    );
    let with = |key: &str| ConfirmRotation {
        credentials: Some(json!({"key": key, "placement": "header", "name": "X-Api-Key"})),
        ..confirm("set")
    };
    assert_api_error(
        c.confirm_rotation(&r.id, &with("sk-old-key-1")).await,
        422,
        "invalid_credentials",
    );
    assert_api_error(
        c.confirm_rotation(&r.id, &confirm("retired")).await,
        409,
        "rotation_not_awaiting",
    );
    // The provider issued a new key (the old one still works until revoked).
    api.set_valid_credential(Some("sk-new-key-2"));
    let after = c
        .confirm_rotation(&r.id, &with("sk-new-key-2"))
        .await
        .unwrap();
    assert!(after.awaiting.is_none());
    // A second confirmation of the same step is refused.
    assert_api_error(
        c.confirm_rotation(&r.id, &with("sk-new-key-2")).await,
        409,
        "rotation_not_awaiting",
    );
    let w = wait_awaiting(&c, &r.id, "retired").await;
    assert_eq!(w.state, "promoted");
    assert_eq!(api.last_authorization().as_deref(), Some("sk-new-key-2"));
    let v = c.read_credentials(&id).await.unwrap();
    assert_eq!(
        serde_json::to_value(&v.credentials).unwrap()["key"],
        "sk-new-key-2"
    );
    c.confirm_rotation(&r.id, &confirm("retired"))
        .await
        .unwrap();
    let done = wait_for_rotation(&c, &r.id, "retired").await;
    assert_eq!(done.state, "retired", "{done:?}");
    // A wrong new key: the probe refuses it, the current key stays.
    let r = c.start_rotation(&id, &zero_grace()).await.unwrap();
    wait_awaiting(&c, &r.id, "set").await;
    c.confirm_rotation(&r.id, &with("sk-typo-key-3"))
        .await
        .unwrap();
    let done = wait_for_rotation(&c, &r.id, "failed").await;
    assert!(done.finished && done.state != "retired", "{done:?}");
    let v = c.read_credentials(&id).await.unwrap();
    assert_eq!(
        serde_json::to_value(&v.credentials).unwrap()["key"],
        "sk-new-key-2"
    );
    api.stop().await;
    s.stop().await;
}

/// Cancelling before anything is current leaves the connection as it was;
/// a finished rotation can be neither cancelled nor confirmed; an explicit
/// `api` method on a kind without a rotator is refused.
async fn cancel_and_confirm_errors(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let id = s.api_key_conn("sk-cancel-me-1").await;
    let versions_before = c.list_versions(&id).await.unwrap().items.len();
    let r = c
        .start_rotation(&id, &StartRotation::default())
        .await
        .unwrap();
    wait_awaiting(&c, &r.id, "set").await;
    assert_api_error(
        c.start_rotation(&id, &StartRotation::default()).await,
        409,
        "rotation_in_progress",
    );
    let cancelled = c
        .cancel_rotation(
            &r.id,
            &CancelRotation {
                note: Some("wrong connection".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(cancelled.state, "rolled_back");
    assert!(cancelled.finished && cancelled.awaiting.is_none());
    let v = c.read_credentials(&id).await.unwrap();
    assert_eq!(
        serde_json::to_value(&v.credentials).unwrap()["key"],
        "sk-cancel-me-1"
    );
    let versions = c.list_versions(&id).await.unwrap().items;
    assert_eq!(versions.len(), versions_before + 1);
    assert_eq!(versions.iter().filter(|v| v.label == "current").count(), 1);
    assert_api_error(
        c.cancel_rotation(&r.id, &CancelRotation::default()).await,
        409,
        "rotation_not_cancellable",
    );
    assert_api_error(
        c.confirm_rotation(&r.id, &confirm("set")).await,
        409,
        "rotation_not_awaiting",
    );
    // Bad bodies and ids.
    for (body, status, code) in [
        (json!({}), 400, "invalid_body"),
        (
            json!({"step": "set", "note": "x".repeat(501)}),
            400,
            "invalid_field",
        ),
        (json!({"step": "set", "surprise": 1}), 400, "invalid_body"),
        // serde would build the struct from an array of its fields.
        (json!(["set", null, null]), 400, "invalid_body"),
    ] {
        s.post_admin(&format!("/api/v1/rotations/{}/confirm", r.id), body.clone())
            .await
            .assert_error(status, code);
    }
    assert_api_error(
        c.confirm_rotation("rot_nope", &confirm("set")).await,
        400,
        "invalid_id",
    );
    // Optional bodies too: only an object (found by API fuzzing).
    for body in [json!([null, null]), json!("x"), json!(7)] {
        s.post_admin(&format!("/api/v1/connections/{id}/rotate"), body)
            .await
            .assert_error(400, "invalid_body");
    }
    // A read-only key cannot confirm.
    let ro = s.key("default", &["connections:read"]).await;
    s.post(
        &format!("/api/v1/rotations/{}/cancel", r.id),
        &ro,
        json!({}),
    )
    .await
    .assert_error(403, "missing_scope");
    s.stop().await;
}
