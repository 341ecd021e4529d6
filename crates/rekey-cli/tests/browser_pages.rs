//! The dashboard's pages in Chromium (tests/e2e/pages.mjs): the connections
//! grid at 1400px, the status summary's filter, the OAuth apps page with a
//! client secret replaced, and the webhooks pages with a delivery, its
//! attempts, a replay and a signing secret shown once. A screenshot per page
//! lands in target/e2e-screenshots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use rekey_testkit::Db;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_pages_in_chromium() {
    use rekey_testkit::oauth2_fixture::OAuth2Fixture;
    use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
    use rekey_testkit::webhook_receiver::WebhookReceiver;
    let mut env = Env::new(Db::Sqlite).await;
    // Checks run when the test asks; webhook retries come quickly.
    env.extra = vec![
        ("REKEY_CHECK_INTERVAL".into(), "0".into()),
        ("REKEY_REFRESH_INTERVAL".into(), "0".into()),
        ("REKEY_WORKER_TICK_MS".into(), "100".into()),
        ("REKEY_WEBHOOK_RETRY_BASE_MS".into(), "100".into()),
    ];
    let pw = "pages e2e password";
    let out = env.create_user("ada", "admin", pw).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let base = server.base.clone();

    // A webhook receiver that fails the first post, so a delivery has two attempts.
    let rx = WebhookReceiver::start(1).await;
    let hook = api_post(
        &base,
        &key,
        "/api/v1/webhooks",
        json!({"url": rx.url(), "events": ["*"], "description": "pager"}),
    )
    .await;
    let hook_id = hook["webhook"]["id"].as_str().unwrap().to_string();

    // Ten connections over four providers: two broken, two active, the
    // rest pending; one broken with a long unbroken error text.
    let fx = ProviderFixture::start().await;
    fx.set_mode(Mode::Ok);
    fx.set_valid_credential(Some("good-key"));
    let mut broken = Vec::new();
    for (i, (name, k)) in [
        ("Billing API", "good-key"),
        ("CRM sync", "bad-key"),
        ("Data warehouse", "good-key"),
        ("Exports", "bad-key"),
        ("Feature flags", "never-checked"),
        ("Geo lookup", "never-checked"),
    ]
    .into_iter()
    .enumerate()
    {
        let c = api_post(&base, &key, "/api/v1/connections", json!({
            "provider": "custom-rest", "kind": "api_key", "display_name": name,
            "tags": [if i % 2 == 0 { "billing" } else { "ops" }], "custody": [if i < 3 { "vault" } else { "github-actions" }],
            "owner": {"email": format!("owner{i}@example.com")},
            "probe_url": fx.rest_url(), "credentials": {"key": k}})).await;
        let id = c["id"].as_str().unwrap().to_string();
        if k != "never-checked" {
            api_post(
                &base,
                &key,
                &format!("/api/v1/connections/{id}/check"),
                json!({}),
            )
            .await;
        }
        if k == "bad-key" {
            broken.push(id);
        }
    }
    // Two small groups next to each other (Mixpanel, Segment).
    for (provider, name) in [
        ("segment", "Payments"),
        ("segment", "Refunds"),
        ("mixpanel", "Product analytics"),
    ] {
        api_post(
            &base,
            &key,
            "/api/v1/connections",
            json!({"provider": provider, "kind": "api_key", "display_name": name,
            "credentials": {"key": "sk_test_abcdefghijklmnop"}}),
        )
        .await;
    }

    // An OAuth app with one machine-to-machine connection made through it.
    let ofx = OAuth2Fixture::start(
        "pages-client",
        "pages-secret-1",
        &format!("{base}/oauth/callback"),
    )
    .await;
    let integ = api_post(&base, &key, "/api/v1/integrations", json!({
        "provider": "custom-oauth2", "display_name": "Acme OAuth app", "client_id": "pages-client", "client_secret": "pages-secret-1",
        "scopes": ["read"], "endpoints": ofx.endpoints()})).await;
    api_post(&base, &key, "/api/v1/connections", json!({"provider": "custom-oauth2", "kind": "oauth2_client_credentials",
        "display_name": "Nightly import", "scopes": ["read"], "credentials": {"integration": integ["id"]}})).await;

    // The events above reach the receiver through the server's delivery
    // worker; the first post fails and is retried (two attempts to show).
    let retried = || {
        let got = rx.received();
        got.iter()
            .filter(|r| r.answered == 500)
            .all(|f| got.iter().any(|r| r.id == f.id && r.answered == 204))
            && got.iter().any(|r| r.answered == 500)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !retried() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(retried(), "no retried delivery: {}", server.logs());
    let before = rx.received().len();

    run_browser_script(
        "pages.mjs",
        &base,
        &[
            ("ADMIN", "ada"),
            ("PASSWORD", pw),
            ("HOOK_ID", &hook_id),
            ("BROKEN", &broken.len().to_string()),
        ],
    )
    .await;
    // Replayed from the browser: the receiver gets it again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.received().len() == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rx.received().len() > before, "the replay was not sent");
    rx.stop().await;
    server.stop().await;
}

/// The Rotate action in Chromium (tests/e2e/rotate.mjs): a guided rotation
/// of an API key confirmed from the page, then one cancelled. Afterwards
/// the provider sees the new key and rekey hands it out.
#[tokio::test(flavor = "multi_thread")]
async fn rotate_from_the_dashboard_in_chromium() {
    use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
    let mut env = Env::new(Db::Sqlite).await;
    env.extra = vec![
        ("REKEY_CHECK_INTERVAL".into(), "0".into()),
        ("REKEY_WORKER_TICK_MS".into(), "100".into()),
    ];
    let pw = "rotate e2e password";
    let out = env.create_user("grace", "admin", pw).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let base = server.base.clone();
    let fx = ProviderFixture::start().await;
    // The provider already issued the new key (the operator made it there);
    // it answers slowly, so the page shows the test step running.
    let new_key = "sk-browser-new-7f3a9c";
    fx.set_valid_credential(Some(new_key));
    fx.set_mode(Mode::Slow(Duration::from_secs(3)));
    let c = api_post(
        &base,
        &key,
        "/api/v1/connections",
        json!({
        "provider": "custom-rest", "kind": "api_key", "display_name": "Billing API",
        "probe_url": fx.rest_url(),
        "credentials": {"key": "sk-browser-old-1", "placement": "header", "name": "X-Api-Key"}}),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_string();

    run_browser_script(
        "rotate.mjs",
        &base,
        &[
            ("ADMIN", "grace"),
            ("PASSWORD", pw),
            ("CONN", &id),
            ("NEW_KEY", new_key),
        ],
    )
    .await;
    // The key rekey hands out is the one confirmed in the browser, and the
    // provider was asked with it.
    let creds = api_get(
        &base,
        &key,
        &format!("/api/v1/connections/{id}/credentials"),
    )
    .await;
    assert_eq!(creds["credentials"]["key"], new_key, "{creds}");
    // The retired key was then tried at the provider: refused. A check
    // now asks with the new one.
    let mut revs = json!(null);
    for _ in 0..150 {
        revs = api_get(
            &base,
            &key,
            &format!("/api/v1/connections/{id}/revocations"),
        )
        .await;
        if revs["items"][0]["verdict"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(revs["items"][0]["method"], "rotation", "{revs}");
    assert_eq!(revs["items"][0]["verdict"], "verified_rejected", "{revs}");
    let r = api_post(
        &base,
        &key,
        &format!("/api/v1/connections/{id}/check"),
        json!({}),
    )
    .await;
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(fx.last_authorization().as_deref(), Some(new_key));
    let rotations = api_get(&base, &key, &format!("/api/v1/rotations?connection={id}")).await;
    let states: Vec<&str> = rotations["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["rolled_back", "retired"], "{rotations}");
    fx.stop().await;
    server.stop().await;
}

/// Revocation on the dashboard in Chromium (tests/e2e/revoke.mjs): the
/// runbook step marked done with a note, the verification shown, "Verify
/// now", and the evidence export downloaded; the downloaded file passes
/// `rekey evidence verify`.
#[tokio::test(flavor = "multi_thread")]
async fn revoke_verify_and_evidence_in_chromium() {
    use rekey_testkit::provider_fixture::ProviderFixture;
    let mut env = Env::new(Db::Sqlite).await;
    env.extra = vec![("REKEY_CHECK_INTERVAL".into(), "0".into())];
    let pw = "revoke e2e password";
    let out = env.create_user("hedy", "admin", pw).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let base = server.base.clone();
    let fx = ProviderFixture::start().await;
    let c = api_post(
        &base,
        &key,
        "/api/v1/connections",
        json!({"provider": "custom-rest", "kind": "api_key", "display_name": "Leaked key",
               "custody": ["salesforce"], "probe_url": fx.rest_url(),
               "credentials": {"key": "sk-leaked-1", "placement": "header", "name": "X-Api-Key"}}),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_string();
    let r = api_post(
        &base,
        &key,
        &format!("/api/v1/connections/{id}/revoke"),
        json!({}),
    )
    .await;
    assert_eq!(r["revocation"]["state"], "open", "{r}");
    // The operator has revoked it at the provider: the old key is refused.
    fx.set_valid_credential(Some("sk-someone-else"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("evidence.csv");
    run_browser_script(
        "revoke.mjs",
        &base,
        &[
            ("ADMIN", "hedy"),
            ("PASSWORD", pw),
            ("CONN", &id),
            ("OUT", file.to_str().unwrap()),
        ],
    )
    .await;
    let out = env
        .run(
            &["evidence", "verify", file.to_str().unwrap()],
            &[("REKEY_URL", &base), ("REKEY_TOKEN", &key)],
        )
        .await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("generated") && stdout(&out).contains("by user:"),
        "{}",
        stdout(&out)
    );
    fx.stop().await;
    server.stop().await;
}

/// An incident campaign on the dashboard in Chromium (tests/e2e/campaign.mjs):
/// started from the filtered connections page, its plan confirmed, its
/// progress followed live, two connections confirmed by hand and one
/// skipped, and the evidence downloaded; the file passes `rekey evidence
/// verify`, and the API agrees on every connection's end.
#[tokio::test(flavor = "multi_thread")]
async fn incident_campaign_in_chromium() {
    use rekey_testkit::provider_fixture::ProviderFixture;
    let mut env = Env::new(Db::Sqlite).await;
    env.extra = vec![
        ("REKEY_CHECK_INTERVAL".into(), "0".into()),
        ("REKEY_WORKER_TICK_MS".into(), "100".into()),
    ];
    let pw = "campaign e2e password";
    let out = env.create_user("joan", "admin", pw).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let base = server.base.clone();
    let fx = ProviderFixture::start().await;
    let tag = format!("breach-{}", rekey_testkit::short_unique());
    let mut ids = Vec::new();
    for name in ["Billing export", "CRM sync", "Old reporting"] {
        let c = api_post(
            &base,
            &key,
            "/api/v1/connections",
            json!({"provider": "custom-rest", "kind": "api_key", "display_name": name,
                   "tags": [tag], "custody": ["salesforce"], "probe_url": fx.rest_url(),
                   "owner": {"email": "owner@example.com"},
                   "credentials": {"key": format!("sk-{name}"), "placement": "header", "name": "X-Api-Key"}}),
        )
        .await;
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    // A connection outside the filter stays out of the campaign.
    api_post(
        &base,
        &key,
        "/api/v1/connections",
        json!({"provider": "custom-rest", "kind": "api_key", "display_name": "Unrelated",
               "credentials": {"key": "sk-unrelated"}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("campaign-evidence.csv");
    run_browser_script(
        "campaign.mjs",
        &base,
        &[
            ("ADMIN", "joan"),
            ("PASSWORD", pw),
            ("TAG", &tag),
            ("CONFIRM", &format!("{},{}", ids[0], ids[1])),
            ("SKIP", &ids[2]),
            ("OUT", file.to_str().unwrap()),
        ],
    )
    .await;
    let list = api_get(&base, &key, "/api/v1/campaigns").await;
    let c = &list["items"][0];
    assert_eq!(c["state"], "completed", "{list}");
    assert_eq!(c["total"], 3, "{list}");
    assert_eq!(c["counts"]["done"], 2, "{list}");
    assert_eq!(c["counts"]["skipped"], 1, "{list}");
    assert!(
        c["created_by"].as_str().unwrap().starts_with("user:"),
        "{list}"
    );
    let id = c["id"].as_str().unwrap();
    let plan = api_get(&base, &key, &format!("/api/v1/campaigns/{id}/plan")).await;
    let skipped = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["connection_id"] == ids[2].as_str())
        .unwrap();
    assert_eq!(skipped["comment"], "Decommissioned last week", "{plan}");
    let out = env
        .run(
            &["evidence", "verify", file.to_str().unwrap()],
            &[("REKEY_URL", &base), ("REKEY_TOKEN", &key)],
        )
        .await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    fx.stop().await;
    server.stop().await;
}
