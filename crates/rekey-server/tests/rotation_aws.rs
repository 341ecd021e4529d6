//! AWS IAM access key rotation against moto in server mode, with SigV4
//! signature checking on: after a rotation the key rekey holds as current
//! works for STS GetCallerIdentity, the old key is gone (the user holds
//! exactly one key), and the two-keys-per-user limit is handled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_api::{Grace, StartRotation};
use rekey_client::Client;
use rekey_testkit::dbtarget::{rotate_to, rotations_of, wait_for_rotation};
use rekey_testkit::moto::Moto;
use rekey_testkit::{assert_api_error, both_backends, Db, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

both_backends!(aws_key_rotation);
both_backends!(aws_grace_keeps_the_old_key_working);
both_backends!(aws_two_key_limit);
both_backends!(aws_revocation_is_verified_with_sts);

const USER: &str = "rekey-rotated";

/// moto with one IAM user (allowed every action) and its first key.
async fn moto_user() -> (Moto, (String, String)) {
    let moto = Moto::start_with_setup_calls(3).await;
    let key = moto.create_iam_user(USER).await;
    (moto, key)
}

async fn aws_conn(s: &TestServer, moto: &Moto, key: &(String, String)) -> String {
    let r = s
        .post_admin("/api/v1/connections", json!({"provider": "aws", "kind": "aws_access_key", "display_name": "deployer",
                   "probe_url": format!("{}/", moto.url),
                   "credentials": {"access_key_id": key.0, "secret_access_key": key.1, "region": "us-east-1"}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_string()
}

fn request(moto: &Moto, grace: i64) -> StartRotation {
    StartRotation {
        grace: Some(Grace::Seconds(grace)),
        endpoint: Some(format!("{}/", moto.url)),
        ..Default::default()
    }
}

/// The key rekey holds as current.
async fn current(c: &Client, id: &str) -> (String, String) {
    let v = c.read_credentials(id).await.unwrap();
    (
        v.credentials["access_key_id"].as_str().unwrap().to_string(),
        v.credentials["secret_access_key"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

async fn aws_key_rotation(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let (moto, first) = moto_user().await;
    let id = aws_conn(&s, &moto, &first).await;
    let r = c.start_rotation(&id, &request(&moto, 0)).await.unwrap();
    assert_eq!(
        (r.state.as_str(), r.rotator.as_str()),
        ("created", "aws_iam")
    );
    let done = wait_for_rotation(&c, &r.id, "retired").await;
    assert_eq!(done.state, "retired", "{done:?}");
    let now = current(&c, &id).await;
    assert_ne!(now.0, first.0);
    assert!(now.0.starts_with("AKIA"), "{}", now.0);
    assert!(moto.key_works(&now).await, "the new key works");
    assert!(!moto.key_works(&first).await, "the old key is gone");
    let keys = moto.access_keys(&now, USER).await;
    assert_eq!(keys, [(now.0.clone(), "Active".to_string())]);
    // Versions: the new key current, the first retired, named by key id.
    let v = c.list_versions(&id).await.unwrap().items;
    let got: Vec<(&str, &str, &str)> = v
        .iter()
        .map(|x| {
            (
                x.label.as_str(),
                x.fingerprint.as_str(),
                x.fingerprint_kind.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("current", now.0.as_str(), "aws_access_key_id"),
            ("retired", first.0.as_str(), "aws_access_key_id"),
        ]
    );
    // The old key was then tried at STS: refused (it was deleted).
    let mut rev = None;
    for _ in 0..100 {
        let items = c.list_revocations(&id).await.unwrap().items;
        if items.first().is_some_and(|r| r.verdict.is_some()) {
            rev = items.into_iter().next();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rev = rev.expect("a verdict on the retired key");
    assert_eq!(rev.method, "rotation");
    assert_eq!(rev.fingerprint.as_deref(), Some(first.0.as_str()));
    assert_eq!(rev.verdict.as_deref(), Some("verified_rejected"), "{rev:?}");
    // Every step audited with the key ids, never a secret.
    let a = s
        .get_admin(&format!("/api/v1/audit?target={id}&limit=200"))
        .await;
    assert!(a.text.contains(&now.0) && a.text.contains(&first.0));
    assert!(!a.text.contains(&now.1) && !a.text.contains(&first.1));
    let steps: Vec<Value> = a.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "rotation.step")
        .cloned()
        .collect();
    assert_eq!(steps.len(), 4, "set, tested, promoted, retired");
    for e in &steps {
        let d = &e["details"]["versions"];
        assert_eq!(d["new_fingerprint"], now.0.as_str(), "{e}");
        assert_eq!(d["old_fingerprint"], first.0.as_str(), "{e}");
    }
    let rot = s.get_admin(&format!("/api/v1/rotations/{}", r.id)).await;
    assert!(!rot.text.contains(&now.1));
    // The connection's check uses the new key.
    let r = s.check(&id).await;
    assert_eq!(r["outcome"], "ok", "{r}");
    moto.stop().await;
    s.stop().await;
}

async fn aws_grace_keeps_the_old_key_working(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let (moto, first) = moto_user().await;
    let id = aws_conn(&s, &moto, &first).await;
    let promoted = rotate_to(&c, &id, &request(&moto, 2), "promoted").await;
    let now = current(&c, &id).await;
    assert!(moto.key_works(&now).await);
    // During the grace the old key is active and handed out as previous.
    let prev = c.read_credentials_version(&id, "previous").await.unwrap();
    assert_eq!(prev.credentials["access_key_id"], first.0.as_str());
    assert_eq!(prev.credentials["secret_access_key"], first.1.as_str());
    assert!(moto.key_works(&first).await, "the old key still works");
    let mut keys = moto.access_keys(&now, USER).await;
    keys.sort();
    let mut want = vec![
        (first.0.clone(), "Active".to_string()),
        (now.0.clone(), "Active".to_string()),
    ];
    want.sort();
    assert_eq!(keys, want);
    s.retire_after_grace(&promoted.id).await;
    assert!(!moto.key_works(&first).await);
    assert_eq!(
        moto.access_keys(&now, USER).await,
        [(now.0.clone(), "Active".to_string())]
    );
    assert_api_error(
        c.read_credentials_version(&id, "previous").await,
        404,
        "no_previous_version",
    );
    moto.stop().await;
    s.stop().await;
}

async fn aws_two_key_limit(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let (moto, first) = moto_user().await;
    let id = aws_conn(&s, &moto, &first).await;
    let xml = moto
        .iam_as(&first, &[("Action", "CreateAccessKey"), ("UserName", USER)])
        .await;
    let second = rekey_testkit::moto::xml_values(&xml, "AccessKeyId").remove(0);
    let mut before = moto.access_keys(&first, USER).await;
    before.sort();
    // Two keys: refused, rolled back, nothing created or deleted.
    let done = rotate_to(&c, &id, &request(&moto, 0), "rolled_back").await;
    let err = done.last_error.clone().unwrap();
    assert_eq!(err["code"], "aws_key_limit", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("two access keys"),
        "{err}"
    );
    assert!(
        done.next_action
            .as_deref()
            .unwrap()
            .contains("delete the user's unused access key"),
        "{done:?}"
    );
    let mut after = moto.access_keys(&first, USER).await;
    after.sort();
    assert_eq!(before, after);
    assert_eq!(current(&c, &id).await, first);
    // The second key inactive, and the option: it makes room.
    moto.iam_as(
        &first,
        &[
            ("Action", "UpdateAccessKey"),
            ("UserName", USER),
            ("AccessKeyId", &second),
            ("Status", "Inactive"),
        ],
    )
    .await;
    let r = c
        .start_rotation(
            &id,
            &StartRotation {
                delete_inactive_key: true,
                ..request(&moto, 0)
            },
        )
        .await
        .unwrap();
    let done = wait_for_rotation(&c, &r.id, "retired").await;
    assert_eq!(done.state, "retired", "{done:?}");
    let now = current(&c, &id).await;
    assert!(moto.key_works(&now).await);
    assert_eq!(
        moto.access_keys(&now, USER).await,
        [(now.0.clone(), "Active".to_string())]
    );
    // A key AWS does not accept: refused when the rotation starts, nothing
    // written, and the secret is in no error.
    let wrong = (
        now.0.clone(),
        "wrong-secret-0123456789abcdefghijklmnopq".to_string(),
    );
    let bad = aws_conn(&s, &moto, &wrong).await;
    let err = c.start_rotation(&bad, &request(&moto, 0)).await;
    assert_api_error(err, 422, "rotation_failed");
    let r = s
        .post_admin(
            &format!("/api/v1/connections/{bad}/rotate"),
            json!({"endpoint": format!("{}/", moto.url)}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(!r.text.contains(&wrong.1), "{}", r.text);
    let list = rotations_of(&c, &bad).await.unwrap();
    assert!(list.items.is_empty());
    assert_eq!(
        moto.access_keys(&now, USER).await,
        [(now.0.clone(), "Active".to_string())]
    );
    moto.stop().await;
    s.stop().await;
}

/// A revoked AWS key is tried at STS GetCallerIdentity: while the key
/// still exists STS accepts it (the alarm, `revocation_failed`); once it
/// is deleted at AWS, STS refuses it and the revocation is verified.
/// (moto 5 authenticates inactive keys as well as active ones, unlike
/// AWS, so the test deletes the key: the runbook's last step.)
async fn aws_revocation_is_verified_with_sts(db: Db) {
    let s = TestServer::start(db).await;
    let (moto, first) = moto_user().await;
    let id = aws_conn(&s, &moto, &first).await;
    let r = s.act(&format!("/api/v1/connections/{id}/revoke")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["revocation"]["method"], "manual", "{}", r.text);
    assert_eq!(
        r.json()["revocation"]["fingerprint"],
        first.0.as_str(),
        "AWS's own key id"
    );

    // The operator says it is done, but the key still works.
    let r = s
        .post_admin(
            &format!("/api/v1/connections/{id}/revoke/confirm"),
            json!({"note": "INC-7"}),
        )
        .await;
    assert_eq!(r.json()["status"], "revocation_failed", "{}", r.text);

    // Deleted at AWS (by another key of the user): STS refuses it now.
    let xml = moto
        .iam_as(&first, &[("Action", "CreateAccessKey"), ("UserName", USER)])
        .await;
    let other = (
        rekey_testkit::moto::xml_values(&xml, "AccessKeyId").remove(0),
        rekey_testkit::moto::xml_values(&xml, "SecretAccessKey").remove(0),
    );
    moto.iam_as(
        &other,
        &[
            ("Action", "DeleteAccessKey"),
            ("UserName", USER),
            ("AccessKeyId", &first.0),
        ],
    )
    .await;
    assert!(!moto.key_works(&first).await);
    let r = s
        .act(&format!("/api/v1/connections/{id}/revoke/verify"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v: Value = r.json();
    let rev = &v;
    assert_eq!(rev["verdict"], "verified_rejected", "{v}");
    let c = s
        .get_admin(&format!("/api/v1/connections/{id}"))
        .await
        .ok_json();
    assert_eq!(c["status"], "revoked", "{c}");
    let check = &rev["checks"][0];
    assert_eq!(check["result"], "rejected", "{v}");
    assert_eq!(check["http_status"], 403, "{v}");
    assert!(
        check["body"]
            .as_str()
            .unwrap_or_default()
            .contains("InvalidClientTokenId"),
        "STS's own answer is kept: {v}"
    );
    assert!(!r.text.contains(&first.1), "no secret in the evidence");
}
