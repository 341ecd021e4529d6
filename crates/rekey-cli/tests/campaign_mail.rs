//! Owners get their campaign links by e-mail when the server has an SMTP
//! server: the real binary with `REKEY_SMTP_URL` against a real SMTP server
//! on loopback (aiosmtpd, tests/fixtures/smtp_receiver.py). The first
//! message is refused with 451 and sent again; the link in the message is
//! the campaign's and works; an owner known only by a subject gets no
//! message; a resent link reaches the owner again and the old message's
//! link stops working; every message sent is in the audit log. A server
//! given half of the SMTP settings refuses to start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{stderr, Env};
use rekey_client::api::{CampaignItemQuery, CampaignQuery};
use rekey_client::Client;
use rekey_testkit::provider_fixture::ProviderFixture;
use rekey_testkit::smtp::SmtpReceiver;
use rekey_testkit::{short_unique, Db};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test]
async fn owners_get_their_links_by_email_sqlite() {
    owners_get_their_links_by_email(Db::Sqlite).await;
}

#[tokio::test]
async fn owners_get_their_links_by_email_postgres() {
    owners_get_their_links_by_email(Db::Postgres).await;
}

/// The URL in a message's body (the line that is one).
fn link_in(body: &str) -> String {
    body.lines()
        .map(str::trim)
        .find(|l| l.starts_with("http://") || l.starts_with("https://"))
        .unwrap_or_else(|| panic!("no link in {body}"))
        .to_string()
}

async fn owners_get_their_links_by_email(db: Db) {
    let smtp = SmtpReceiver::start_failing(1).await;
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let mut cmd = env.serve_command(&["--worker-tick-ms", "100"], None);
    cmd.env("REKEY_SMTP_URL", smtp.url())
        .env("REKEY_SMTP_FROM", "rekey <rekey@example.com>")
        .env("REKEY_SMTP_RETRY_BASE_MS", "200");
    let server = common::start_server(cmd).await;
    let c = Client::new(&server.base, key.clone()).unwrap();
    let fx = ProviderFixture::start().await;
    let tag = format!("mail-{}", short_unique());
    let mut conns = Vec::new();
    for (name, owner) in [
        ("Billing sync", json!({"email": "ada@example.com"})),
        ("CRM export", json!({"email": "grace@example.com"})),
        ("Legacy job", json!({"subject": "idp|12345"})),
    ] {
        let body = json!({"provider": "custom-rest", "kind": "api_key", "display_name": name,
            "probe_url": fx.rest_url(), "tags": [tag], "owner": owner,
            "credentials": {"key": format!("{name}-1"), "placement": "header", "name": "Authorization", "prefix": "Bearer "}});
        conns.push(
            c.create_connection(&serde_json::from_value(body).unwrap())
                .await
                .unwrap()
                .id,
        );
    }
    let actions = BTreeMap::from([("api_key".to_string(), vec!["reauthorize".to_string()])]);
    let id = common::start_campaign(&c, "Vendor breach", &tag, actions).await;

    // Two messages (the owner known by a subject has no address); the
    // first try of one was refused and it came again.
    let mails = smtp.wait_for(2, 60).await;
    assert_eq!(mails.len(), 2, "{mails:?}\n{}", server.logs());
    assert_eq!(smtp.refused(), 1, "one message was refused first");
    // The retry is the same message (same Message-ID), so that a copy
    // delivered twice (a crash after the relay took it) reads as one.
    let refused = smtp.refused_ids();
    assert!(
        mails.iter().any(|m| m.message_id == refused[0]),
        "{refused:?} {mails:?}"
    );
    let mut to: Vec<&str> = mails.iter().map(|m| m.rcpt[0].as_str()).collect();
    to.sort();
    assert_eq!(to, ["ada@example.com", "grace@example.com"]);
    let ada = mails
        .iter()
        .find(|m| m.rcpt[0] == "ada@example.com")
        .unwrap()
        .clone();
    assert_eq!(ada.mail_from, "rekey@example.com");
    assert!(ada.from.contains("rekey@example.com"), "{ada:?}");
    assert_eq!(ada.subject, "Please reconnect Billing sync");
    assert!(
        ada.message_id.starts_with("<mail_") && ada.message_id.ends_with("@example.com>"),
        "{ada:?}"
    );
    assert_eq!(ada.mime_version, "1.0");
    // A `[reauthorize]` campaign revokes nothing: the message does not say so.
    assert!(!ada.body.contains("revoked"), "{}", ada.body);
    assert!(ada.body.contains("Vendor breach"), "{}", ada.body);
    // The owner known only by a subject: the operator is told no e-mail went.
    let plan = c
        .campaign_plan(&id, &CampaignItemQuery::default())
        .await
        .unwrap();
    let legacy = plan
        .items
        .iter()
        .find(|i| i.connection_id == conns[2])
        .unwrap();
    assert!(
        legacy
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("no e-mail was sent"),
        "{legacy:?}"
    );
    // The message's link is the one the campaign lists for that connection.
    let links = c
        .campaign_links(&id, &CampaignQuery::default())
        .await
        .unwrap();
    let listed = links
        .items
        .iter()
        .find(|l| l.connection_id == conns[0])
        .unwrap();
    let mailed = link_in(&ada.body);
    assert_eq!(mailed, listed.url);

    // Resend Grace's link: a second message with a new link; the first
    // message's link no longer works.
    let grace_first = link_in(
        &mails
            .iter()
            .find(|m| m.rcpt[0] == "grace@example.com")
            .unwrap()
            .body,
    );
    c.campaign_link(&id, &conns[1], true).await.unwrap();
    let mails = smtp.wait_for(3, 30).await;
    assert_eq!(mails.len(), 3, "{mails:?}");
    let grace_second = link_in(&mails[2].body);
    assert_ne!(grace_first, grace_second);
    let browser = rekey_testkit::oauth2_fixture::browser();
    let (st, _) = rekey_testkit::browser::submit(&browser, &grace_first, &[("key", "crm-2")]).await;
    assert_ne!(st, 200, "the replaced link does not work");

    // Ada reconnects through the link she was mailed: her connection is done.
    let (st, page) =
        rekey_testkit::browser::submit(&browser, &mailed, &[("key", "billing-2")]).await;
    assert_eq!(st, 200, "{page}");
    let mut done = false;
    for _ in 0..300 {
        let plan = c
            .campaign_plan(&id, &CampaignItemQuery::default())
            .await
            .unwrap();
        if plan
            .items
            .iter()
            .any(|i| i.connection_id == conns[0] && i.state == "done")
        {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "{}", server.logs());

    // Each message that left is audited (to whom, which connection).
    let audit = common::api_get(
        &server.base,
        &key,
        &format!("/api/v1/audit?action=campaign.mail&target={id}"),
    )
    .await;
    let entries = audit["items"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{audit}");
    assert!(entries.iter().all(|e| e["outcome"] == "ok"), "{audit}");
    // No secret in the server's log: neither link's token.
    let logs = server.logs();
    for l in [&mailed, &grace_second] {
        let token = l.rsplit('/').next().unwrap();
        assert!(!logs.contains(token), "a link token reached the log");
    }
    server.stop().await;
    fx.stop().await;
}

/// An SMTP server that never answers: the message is tried 8 times, then
/// given up; the operator sees it on the connection (its detail), in the
/// audit log (`campaign.mail`, outcome error) and in the server's log.
#[tokio::test]
async fn an_email_that_cannot_be_sent_is_reported() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let mut cmd = env.serve_command(&["--worker-tick-ms", "50"], None);
    cmd.env("REKEY_SMTP_URL", format!("smtp://127.0.0.1:{closed}"))
        .env("REKEY_SMTP_FROM", "rekey@example.com")
        .env("REKEY_SMTP_RETRY_BASE_MS", "10");
    let server = common::start_server(cmd).await;
    let c = Client::new(&server.base, key.clone()).unwrap();
    let tag = format!("nomail-{}", short_unique());
    let body = json!({"provider": "custom-rest", "kind": "api_key", "display_name": "Orders",
        "tags": [tag], "owner": {"email": "o@example.com"}, "credentials": {"key": "o-1"}});
    let conn = c
        .create_connection(&serde_json::from_value(body).unwrap())
        .await
        .unwrap()
        .id;
    let actions = BTreeMap::from([("api_key".to_string(), vec!["reauthorize".to_string()])]);
    let id = common::start_campaign(&c, "No mail", &tag, actions).await;
    let mut detail = String::new();
    for _ in 0..300 {
        let plan = c
            .campaign_plan(&id, &CampaignItemQuery::default())
            .await
            .unwrap();
        detail = plan.items[0].detail.clone().unwrap_or_default();
        if detail.contains("e-mail to o@example.com with the link failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        detail.contains("e-mail to o@example.com with the link failed"),
        "{detail}\n{}",
        server.logs()
    );
    let audit = common::api_get(
        &server.base,
        &key,
        &format!("/api/v1/audit?action=campaign.mail&target={id}"),
    )
    .await;
    let e = &audit["items"][0];
    assert_eq!(e["outcome"], "error", "{audit}");
    assert_eq!(e["details"]["attempts"], 8, "{audit}");
    assert_eq!(e["details"]["connection"], conn.as_str(), "{audit}");
    assert!(
        server.logs().contains("campaign e-mail not sent"),
        "{}",
        server.logs()
    );
    server.stop().await;
}

#[tokio::test]
async fn half_the_smtp_settings_is_refused_at_start() {
    let env = Env::new(Db::Sqlite).await;
    for (vars, says) in [
        (
            vec![("REKEY_SMTP_URL", "smtp://127.0.0.1:2525")],
            "REKEY_SMTP_FROM is not",
        ),
        (
            vec![("REKEY_SMTP_FROM", "rekey@example.com")],
            "REKEY_SMTP_URL is not",
        ),
        (
            vec![
                ("REKEY_SMTP_URL", "http://mail.example.com"),
                ("REKEY_SMTP_FROM", "rekey@example.com"),
            ],
            "must start with smtps://",
        ),
        (
            vec![
                ("REKEY_SMTP_URL", "smtp://127.0.0.1:2525"),
                ("REKEY_SMTP_FROM", "not an address"),
            ],
            "REKEY_SMTP_FROM is not an e-mail address",
        ),
    ] {
        let out = env.run(&["serve", "--listen", "127.0.0.1:0"], &vars).await;
        assert!(!out.status.success(), "{vars:?} started");
        let err = stderr(&out);
        assert!(err.contains(says), "{vars:?}: {err}");
    }
}
