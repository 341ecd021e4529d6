//! The webhooks pages over real HTTP: admin only (as the API), CSRF, the
//! signing secret shown once, deliveries with their attempts, replay
//! (audited with request id and client address) and delete.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ui_support;
use ui_support::*;

use rekey_service::Role;
use rekey_testkit::webhook_receiver::WebhookReceiver;
use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

both_backends!(
    webhooks_pages_roles_deliveries_and_replay,
    dashboard_layout_does_not_overflow
);

/// Layout rules found by a 1400px browser trial: the webhooks form's label
/// column took the events fieldset's one-line width (page 2118px wide);
/// long ids overflowed error boxes; a group's count wrapped away from a long
/// provider name; the custody filter's placeholder was cut.
async fn dashboard_layout_does_not_overflow(db: Db) {
    let s = TestServer::start(db).await;
    let css = reqwest::get(format!("{}/assets/rekey.css", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for rule in [
        "grid-template-columns: fit-content(14rem) minmax(0, 32rem)",
        ".form-grid > * { min-width: 0; max-width: 100%; }",
        "fieldset.events { border: 1px solid #d9e2ec; border-radius: 6px; min-width: 0;",
        ".alert { padding: .6rem .8rem; border-radius: 4px; overflow-wrap: anywhere; }",
        ".group h2 .n { white-space: nowrap;",
        "table.audit th { overflow-wrap: normal; white-space: nowrap; }",
    ] {
        assert!(css.contains(rule), "missing: {rule}");
    }
    let (ada, _) = user(&s, "ada", Role::Admin).await;
    let (_, html) = get(&s, "/ui/webhooks", &ada).await;
    assert!(html.contains("class=\"form-grid\""), "{html}");
    s.create_api_key_conn(&s.admin_key, "k-layout", json!({}))
        .await;
    let (_, html) = get(&s, "/ui/connections", &ada).await;
    assert!(html.contains("placeholder=\"e.g. vault\""), "{html}");
    assert!(
        html.contains("<span class=\"muted n\">(1)</span>"),
        "{html}"
    );
    s.stop().await;
}

async fn webhooks_pages_roles_deliveries_and_replay(db: Db) {
    let s = TestServer::start(db).await;
    let (ada, acsrf) = user(&s, "ada", Role::Admin).await;
    let (olga, ocsrf) = user(&s, "olga", Role::Operator).await;
    let (vic, _) = user(&s, "vic", Role::Viewer).await;
    let rx = WebhookReceiver::start(1).await;
    let url = rx.url();
    // Admin only, as the API: reading included.
    for who in [&olga, &vic] {
        let (st, html) = get(&s, "/ui/webhooks", who).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{html}");
    }
    let (st, _) = post(
        &s,
        "/ui/webhooks",
        &olga,
        &[("csrf", &ocsrf), ("url", &url), ("event", "*")],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, html) = post(
        &s,
        "/ui/webhooks",
        &ada,
        &[("csrf", "forged"), ("url", &url), ("event", "*")],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(html.contains("Form expired"));
    let (st, html) = post(
        &s,
        "/ui/webhooks",
        &ada,
        &[("csrf", &acsrf), ("url", "ftp://nope"), ("event", "*")],
    )
    .await;
    assert!(st.is_client_error(), "{html}");
    assert!(html.contains("Not created"));

    // Created: the signing secret is shown once, never on the other pages.
    let (st, html) = post(
        &s,
        "/ui/webhooks",
        &ada,
        &[
            ("csrf", &acsrf),
            ("url", &url),
            ("event", "connection.*"),
            ("event", "webhook.test"),
            ("description", "ops pager"),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{html}");
    let secret_at = html.find("id=\"signing-secret\">").unwrap() + "id=\"signing-secret\">".len();
    let secret = html[secret_at..secret_at + html[secret_at..].find('<').unwrap()].to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let hook = s
        .rekey
        .list_webhooks("default", &Default::default())
        .await
        .unwrap()
        .items[0]
        .clone();
    assert_eq!(hook.events, ["connection.*", "webhook.test"]);
    let (_, list) = get(&s, "/ui/webhooks", &ada).await;
    assert!(list.contains(&url) && list.contains("ops pager"), "{list}");
    assert!(!list.contains(&secret[6..]));

    // A test event: the first post fails, the retry is delivered.
    let r = s.act(&format!("/api/v1/webhooks/{}/test", hook.id)).await;
    assert!(r.status.is_success(), "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.delivered().is_empty() && Instant::now() < deadline {
        s.rekey.fan_out_events(100).await.unwrap();
        s.rekey.deliver_due("w", 100).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rx.delivered().len(), 1);
    let detail = format!("/ui/webhooks/{}", hook.id);
    let (st, html) = get(&s, &detail, &ada).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("<strong>webhook.test</strong>"), "{html}");
    assert!(html.contains(">delivered</span>"), "{html}");
    assert!(html.contains("2 attempt(s)"), "{html}");
    assert!(
        html.contains("<td>500</td>") && html.contains("<td>204</td>"),
        "both attempts: {html}"
    );
    assert!(!html.contains(&secret[6..]));
    let delivery = s
        .rekey
        .list_deliveries("default", &hook.id, &Default::default())
        .await
        .unwrap()
        .items[0]
        .id
        .clone();

    // Replay: admin only, with the form's token; audited with request id and address.
    let replay = format!("/ui/webhooks/{}/deliveries/{delivery}/replay", hook.id);
    let (st, _) = post(&s, &replay, &olga, &[("csrf", &ocsrf)]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, html) = post(&s, &replay, &ada, &[("csrf", &acsrf)]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("Replay queued"));
    s.rekey.deliver_due("w", 100).await.unwrap();
    assert_eq!(rx.delivered().len(), 2, "sent again");
    let e = &last_audit(&s, "webhook.delivery_replayed").await;
    assert_eq!(e.actor, "user:ada");
    assert!(e.request_id.is_some() && e.source.is_some(), "{e:?}");

    // A new signing secret, shown once; then delete.
    let (st, html) = post(
        &s,
        &format!("{detail}/rotate-secret"),
        &ada,
        &[("csrf", &acsrf)],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains("whsec_") && !html.contains(&secret[6..]),
        "{html}"
    );
    let (st, _) = post(&s, &format!("{detail}/delete"), &olga, &[("csrf", &ocsrf)]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, html) = post(&s, &format!("{detail}/delete"), &ada, &[("csrf", &acsrf)]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    let (st, _) = get(&s, &detail, &ada).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    rx.stop().await;
    s.stop().await;
}
