//! Verified revocation of static credentials: after the runbook's steps
//! are confirmed (one at a time, each with who, when and a note), rekey
//! tries the old credential at the provider (the fixture API) and records
//! what it answered. A provider that still accepts it raises the alarm
//! (`revocation_failed`) until a later try is refused. A new credential
//! submitted meanwhile never closes the old one's revocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ui_support;

use rekey_service::Role;
use rekey_testkit::provider_fixture::ProviderFixture;
use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

both_backends!(
    static_revocation_is_confirmed_step_by_step_and_verified,
    a_new_credential_keeps_the_old_revocation_open,
    dashboard_confirms_steps_and_verifies,
    slack_bot_tokens_are_revoked_with_auth_revoke,
    verification_goes_where_the_credential_was_used,
    a_revocation_racing_a_replacement_names_what_it_holds
);

async fn rest_conn(s: &TestServer, fx: &ProviderFixture, key: &str) -> String {
    s.bearer_key_conn(&fx.rest_url(), key).await
}

async fn revocations(s: &TestServer, id: &str) -> Vec<Value> {
    let r = s
        .get_admin(&format!("/api/v1/connections/{id}/revocations"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["items"].as_array().unwrap().clone()
}

async fn audit(s: &TestServer, id: &str, action: &str) -> Vec<Value> {
    s.get_admin(&format!("/api/v1/audit?target={id}&action={action}"))
        .await
        .json()["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn static_revocation_is_confirmed_step_by_step_and_verified(db: Db) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    fx.set_valid_credential(Some("Bearer key-1"));
    let id = rest_conn(&s, &fx, "key-1").await;
    let verify = format!("/api/v1/connections/{id}/revoke/verify");
    let confirm = format!("/api/v1/connections/{id}/revoke/confirm");

    // Nothing revoked yet: nothing to verify.
    s.act(&verify).await.assert_error(409, "not_revoked");
    assert!(revocations(&s, &id).await.is_empty());

    let r = s.act(&format!("/api/v1/connections/{id}/revoke")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = r.json();
    assert_eq!(r["connection"]["status"], "revoke_pending");
    let rev = &r["revocation"];
    assert_eq!(rev["state"], "open", "{r}");
    assert_eq!(rev["method"], "manual");
    assert!(
        rev["fingerprint"].as_str().is_some_and(|f| !f.is_empty()),
        "{r}"
    );
    let steps = rev["steps"].as_array().unwrap();
    assert_eq!(steps.len(), r["manual_steps"].as_array().unwrap().len());
    assert_eq!(steps[0]["step"], 1);
    assert!(steps[0]["done_at"].is_null());
    // Still open: verification waits for the operator.
    s.act(&verify).await.assert_error(409, "not_revoked");

    // A step that is not in the runbook.
    s.post_admin(&confirm, json!({"step": 9}))
        .await
        .assert_error(400, "invalid_step");
    s.post_admin(&confirm, json!({"step": 0}))
        .await
        .assert_error(400, "invalid_step");
    s.post_admin(&confirm, json!({"step": "one"}))
        .await
        .assert_error(400, "invalid_body");

    // The operator says it is done, but the provider still takes the key.
    let r = s
        .post_admin(&confirm, json!({"step": 1, "note": "SEC-9"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "revocation_failed", "{}", r.text);
    let rv = revocations(&s, &id).await;
    assert_eq!(rv.len(), 1);
    let rev = &rv[0];
    assert_eq!(rev["state"], "revoked");
    assert_eq!(rev["verdict"], "still_accepted", "{rev}");
    assert!(rev["next_verification_at"].is_string(), "retried: {rev}");
    assert_eq!(rev["checks"][0]["tried"], "credential");
    assert_eq!(rev["checks"][0]["result"], "accepted");
    let step = &rev["steps"][0];
    assert_eq!(step["note"], "SEC-9");
    assert!(step["done_by"].as_str().unwrap().starts_with("api_key:"));
    assert!(step["done_at"].is_string());
    // Nothing is left to confirm.
    s.post_admin(&confirm, json!({"step": 1}))
        .await
        .assert_error(409, "not_revoke_pending");

    // Now the provider refuses it: a verification on demand is the proof.
    fx.set_valid_credential(Some("Bearer someone-else"));
    let r = s.act(&verify).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rev = r.json();
    assert_eq!(rev["verdict"], "verified_rejected", "{rev}");
    assert_eq!(rev["checks"][0]["result"], "rejected");
    assert_eq!(rev["checks"][0]["http_status"], 401);
    assert!(rev["next_verification_at"].is_null(), "final: {rev}");
    assert_eq!(rev["verification_attempts"], 2);
    assert_eq!(ui_support::status_of(&s, &id).await, "revoked");

    // The evidence in the audit chain: the step with its note, each try.
    let steps = audit(&s, &id, "revocation.step_confirmed").await;
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["details"]["note"], "SEC-9");
    assert_eq!(steps[0]["details"]["steps"], json!([1]));
    let tries = audit(&s, &id, "revocation.verified").await;
    assert_eq!(tries.len(), 2);
    assert_eq!(tries[0]["details"]["verdict"], "verified_rejected");
    assert_eq!(tries[0]["outcome"], "ok");
    assert_eq!(tries[1]["details"]["verdict"], "still_accepted");
    assert_eq!(tries[1]["outcome"], "error");
    assert_eq!(
        tries[0]["details"]["fingerprint"], rv[0]["fingerprint"],
        "the revoked credential is named by its fingerprint"
    );
    // The key itself appears nowhere.
    for body in [
        s.get_admin(&format!("/api/v1/connections/{id}/revocations"))
            .await
            .text,
        s.get_admin(&format!("/api/v1/audit?target={id}"))
            .await
            .text,
    ] {
        assert!(!body.contains("key-1"), "{body}");
    }
    // Revoking twice is refused.
    s.act(&format!("/api/v1/connections/{id}/revoke"))
        .await
        .assert_error(409, "already_revoked");
    s.stop().await;
    fx.stop().await;
}

async fn a_new_credential_keeps_the_old_revocation_open(db: Db) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    fx.set_valid_credential(Some("Bearer key-2"));
    let id = rest_conn(&s, &fx, "key-1").await;
    let r = s.act(&format!("/api/v1/connections/{id}/revoke")).await;
    assert_eq!(r.json()["connection"]["status"], "revoke_pending");

    // The owner hands over a new key before the old one is confirmed gone.
    let r = s
        .put_admin(&format!("/api/v1/connections/{id}/credentials"), json!({"credentials": {"key": "key-2", "placement": "header", "name": "Authorization", "prefix": "Bearer "}}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "pending");
    let rv = revocations(&s, &id).await;
    assert_eq!(rv.len(), 1);
    assert_eq!(
        rv[0]["state"], "open",
        "the old key's revocation stays open"
    );

    // Confirming it proves the old key dead and leaves the new one alone.
    let r = s
        .post_admin(
            &format!("/api/v1/connections/{id}/revoke/confirm"),
            json!({"note": "old key deleted"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_ne!(r.json()["status"], "revoked", "{}", r.text);
    let rv = revocations(&s, &id).await;
    assert_eq!(rv[0]["state"], "revoked");
    assert_eq!(rv[0]["verdict"], "verified_rejected", "{}", rv[0]);
    let c = s
        .get_admin(&format!("/api/v1/connections/{id}/credentials"))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    assert_eq!(c.json()["credentials"]["key"], "key-2");
    // The revoked key is not handed out as `previous` during a grace.
    s.get_admin(&format!(
        "/api/v1/connections/{id}/credentials?version=previous"
    ))
    .await
    .assert_error(404, "no_previous_version");
    s.stop().await;
    fx.stop().await;
}

/// The connection page lists the revocation with a button per runbook
/// step and, once revoked, the verdict in words and a Verify now button;
/// a viewer sees neither button.
async fn dashboard_confirms_steps_and_verifies(db: Db) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    fx.set_valid_credential(Some("Bearer key-1"));
    let id = rest_conn(&s, &fx, "key-1").await;
    s.act(&format!("/api/v1/connections/{id}/revoke")).await;
    let (ada, csrf) = ui_support::user(&s, "ada", Role::Operator).await;
    let (vic, _) = ui_support::user(&s, "vic", Role::Viewer).await;
    let page = format!("/ui/connections/{id}");

    let (st, html) = ui_support::get(&s, &page, &ada).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("Waiting for the runbook steps"), "{html}");
    assert!(html.contains("Mark step 1 done"), "{html}");
    let (_, html) = ui_support::get(&s, &page, &vic).await;
    assert!(html.contains("Waiting for the runbook steps"), "{html}");
    assert!(html.contains("Who read the credential"), "{html}");
    assert!(!html.contains("Mark step 1 done"), "viewers get no button");

    // The provider still takes the key: the alarm, in words.
    let confirm = format!("/ui/connections/{id}/confirm-revocation");
    let (st, html) = ui_support::post(
        &s,
        &confirm,
        &ada,
        &[("csrf", &csrf), ("step", "1"), ("note", "CHG-42")],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("STILL ACCEPTS"), "{html}");
    let (_, html) = ui_support::get(&s, &page, &ada).await;
    assert!(html.contains("Alarm: the provider still accepts"), "{html}");
    assert!(
        html.contains("CHG-42") && html.contains("Verify now"),
        "{html}"
    );
    let e = ui_support::last_audit(&s, "revocation.step_confirmed").await;
    assert_eq!(e.actor, "user:ada");
    assert!(e.request_id.is_some() && e.source.is_some(), "{e:?}");

    // A forged form does nothing; the real one verifies.
    let verify = format!("/ui/connections/{id}/verify-revocation");
    let (st, _) = ui_support::post(&s, &verify, &ada, &[("csrf", "forged")]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    fx.set_valid_credential(Some("Bearer key-2"));
    let (st, html) = ui_support::post(&s, &verify, &ada, &[("csrf", &csrf)]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("revocation verified"), "{html}");
    let (_, html) = ui_support::get(&s, &page, &ada).await;
    assert!(html.contains("Verified: the provider refuses"), "{html}");
    assert!(!html.contains("key-1"), "no secret on the page");
    s.stop().await;
    fx.stop().await;
}

/// Slack bot tokens (`api_key`) revoke themselves: rekey calls
/// `auth.revoke` with the token as the bearer (the request Slack
/// documents), then proves it dead with `auth.test` (`invalid_auth`). When
/// Slack refuses the revocation, the runbook is handed to an operator.
async fn slack_bot_tokens_are_revoked_with_auth_revoke(db: Db) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    let token = "xoxb-1111-2222-abcdef";
    let slack = |display: &str, key: &str| {
        json!({"provider": "slack", "kind": "api_key", "display_name": display,
               "probe_url": fx.slack_url(), "credentials": {"key": key}})
    };
    let id = s.create_connection(slack("Bot", token)).await;
    let r = s.act(&format!("/api/v1/connections/{id}/revoke")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = r.json();
    assert_eq!(r["revoked_at_provider"], true, "{r}");
    assert_eq!(r["connection"]["status"], "revoked");
    assert_eq!(fx.revocations(), 1);
    assert_eq!(
        fx.last_authorization().as_deref(),
        Some(format!("Bearer {token}").as_str()),
        "the verification's auth.test came last, with the old token"
    );
    let rev = &r["revocation"];
    assert_eq!(rev["method"], "provider");
    assert_eq!(rev["verdict"], "verified_rejected", "{r}");
    assert_eq!(rev["checks"][0]["code"], "auth_rejected", "{r}");
    assert!(!r.to_string().contains(token));
    let a = s
        .get_admin(&format!(
            "/api/v1/audit?target={id}&action=connection.provider_revocation"
        ))
        .await
        .json();
    assert_eq!(a["items"][0]["outcome"], "ok", "{a}");

    // Slack refuses (a token it does not know): the operator's runbook.
    fx.set_valid_credential(Some("Bearer xoxb-someone-else"));
    let id = s
        .create_connection(slack("Bot 2", "xoxb-3333-4444-zz"))
        .await;
    let r = s
        .act(&format!("/api/v1/connections/{id}/revoke"))
        .await
        .json();
    assert_eq!(r["revoked_at_provider"], false, "{r}");
    assert_eq!(r["connection"]["status"], "revoke_pending");
    // The operator's way only, not "rekey calls auth.revoke" to confirm.
    let remove =
        "In Slack: open the app in the sidebar → About → Configuration → scroll down → Remove App.";
    assert_eq!(r["manual_steps"], json!([remove]), "{r}");
    assert_eq!(r["revocation"]["steps"][0]["text"], remove, "{r}");
    assert_eq!(r["revocation"]["state"], "open");
    assert_eq!(fx.revocations(), 2);
    s.stop().await;
    fx.stop().await;
}

/// The old credential is tried where it was used when revoked: pointing
/// the connection at another server afterwards neither sends the old
/// secret there nor lets that server vouch for the revocation.
async fn verification_goes_where_the_credential_was_used(db: Db) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    fx.set_valid_credential(Some("Bearer key-1"));
    let id = rest_conn(&s, &fx, "key-1").await;
    s.act(&format!("/api/v1/connections/{id}/revoke")).await;
    let r = s
        .post_admin(
            &format!("/api/v1/connections/{id}/revoke/confirm"),
            json!({}),
        )
        .await;
    assert_eq!(r.json()["status"], "revocation_failed", "{}", r.text);

    // Another server, which refuses everything, as the probe URL now.
    let other = ProviderFixture::start().await;
    other.set_valid_credential(Some("Bearer nobody"));
    let r = s
        .patch_admin(
            &format!("/api/v1/connections/{id}"),
            json!({"probe_url": other.rest_url()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s
        .act(&format!("/api/v1/connections/{id}/revoke/verify"))
        .await;
    assert_eq!(r.json()["verdict"], "still_accepted", "{}", r.text);
    assert_eq!(
        other.last_authorization(),
        None,
        "the old key went nowhere new"
    );
    assert_eq!(ui_support::status_of(&s, &id).await, "revocation_failed");
    let text = s.get_admin("/api/v1/evidence").await.text;
    assert!(
        text.contains(&fx.rest_url()),
        "the evidence names where it was tried: {text}"
    );
    other.stop().await;
    fx.stop().await;
}

/// A revocation and a replacement at the same moment: the revocation
/// either holds the very credential it names, or refuses with 409
/// `version_conflict`. Each provider accepts only the second key, so a
/// record naming the first key must be refused there, and one naming the
/// second accepted: a record that names one and holds the other shows.
async fn a_revocation_racing_a_replacement_names_what_it_holds(db: Db) {
    let s = TestServer::start(db).await;
    let mut conns = Vec::new();
    for i in 0..8 {
        let fx = ProviderFixture::start().await;
        fx.set_valid_credential(Some(&format!("Bearer race-{i}-two")));
        let id = rest_conn(&s, &fx, &format!("race-{i}-one")).await;
        conns.push((id, fx));
    }
    let results = futures_util::future::join_all(conns.iter().enumerate().map(|(i, (id, _))| {
        let s = &s;
        async move {
            let revoke_path = format!("/api/v1/connections/{id}/revoke");
            let put_path = format!("/api/v1/connections/{id}/credentials");
            let key = format!("race-{i}-two");
            let body = json!({"credentials": {"key": key, "placement": "header", "name": "Authorization", "prefix": "Bearer "}});
            let revoke = s.act(&revoke_path);
            let replace = s.put_admin(&put_path, body);
            tokio::join!(revoke, replace).0
        }
    }))
    .await;
    for ((id, fx), r) in conns.into_iter().zip(results) {
        if r.status != StatusCode::OK {
            r.assert_error(409, "version_conflict");
            fx.stop().await;
            continue;
        }
        s.post_admin(
            &format!("/api/v1/connections/{id}/revoke/confirm"),
            json!({}),
        )
        .await;
        let rev = &revocations(&s, &id).await[0];
        let second = rev["credential_version"] == 2;
        let accepted = rev["verdict"] == "still_accepted";
        assert_eq!(
            second, accepted,
            "the record names one key and holds another: {rev}"
        );
        fx.stop().await;
    }
}
