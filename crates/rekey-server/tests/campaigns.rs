//! Incident campaigns end to end: a filter selects a mix of connections,
//! the plan says who does what, starting freezes it, and worker passes
//! run it against real targets — a Slack bot token revoked at the fixture
//! provider and proved dead, a REST key revoked by an operator's runbook
//! and reconnected by its owner through the campaign's link (then probed),
//! a PostgreSQL password rotated for real, a connection disabled. Done
//! means verified; progress, links, confirmations and errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::browser::submit;
use rekey_testkit::dbtarget::DbTarget;
use rekey_testkit::provider_fixture::ProviderFixture;
use rekey_testkit::{audit_actions, both_backends, short_unique, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

both_backends!(
    campaign_events_follow_notify,
    a_wrong_key_a_settled_connection_and_the_deadline,
    a_campaign_revokes_rotates_reauthorizes_and_verifies,
    oauth_grants_and_aws_keys_in_one_campaign,
    bad_campaigns_are_refused_clearly,
    cancelling_skips_what_is_left_and_kills_the_links
);

fn deadline_in(secs: i64) -> String {
    rekey_core::time::ms_to_rfc3339(rekey_core::time::now_ms() + secs * 1000)
}

/// Run worker passes (campaign, rotation, revocation verification) until
/// `done` holds for the campaign's view, or fail after 30 s.
async fn run_until(s: &TestServer, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        s.rekey.campaign_due(50).await.unwrap();
        s.rekey.rotate_due(20).await.unwrap();
        s.rekey.verify_due_revocations("w").await.unwrap();
        let v = s.get_admin(&format!("/api/v1/campaigns/{id}")).await.json();
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let plan = s
        .get_admin(&format!("/api/v1/campaigns/{id}/plan"))
        .await
        .json();
    panic!("campaign {id}: {what} never happened: {plan}");
}

/// The URL of `connection`'s link in a campaign's link list.
fn link_url(links: &Value, connection: &str) -> String {
    links["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["connection_id"] == connection)
        .unwrap_or_else(|| panic!("no link for {connection}: {links}"))["url"]
        .as_str()
        .unwrap()
        .to_string()
}

fn item<'a>(plan: &'a Value, connection: &str) -> &'a Value {
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["connection_id"] == connection)
        .unwrap_or_else(|| panic!("{connection} not in {plan}"))
}

async fn plan(s: &TestServer, id: &str) -> Value {
    let r = s.get_admin(&format!("/api/v1/campaigns/{id}/plan")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

async fn a_campaign_revokes_rotates_reauthorizes_and_verifies(db: Db) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    let tag = format!("breach-{}", short_unique());
    // A Slack bot token: revoked at the provider (auth.revoke) and tried.
    let slack_token = "xoxb-5555-6666-campaign";
    let slack = s
        .create_connection(
            json!({"provider": "slack", "kind": "api_key", "display_name": "Slack bot",
            "probe_url": fx.slack_url(), "tags": [tag], "credentials": {"key": slack_token},
            "owner": {"email": "ops@example.com"}}),
        )
        .await;
    // A REST key: the operator revokes it by the runbook; its owner then
    // reconnects with a new key through the campaign's link. (The fixture
    // takes any key until told otherwise: Slack's auth.revoke must work.)
    let rest = s
        .create_api_key_conn(
            &s.admin_key,
            "rest-key-1",
            json!({"probe_url": fx.rest_url(), "tags": [tag], "owner": {"email": "dana@example.com"},
                   "display_name": "Billing API",
                   "credentials": {"key": "rest-key-1", "placement": "header", "name": "Authorization", "prefix": "Bearer "}}),
        )
        .await;
    // A PostgreSQL password, rotated for real by rekey's rotator.
    let pg = DbTarget::Postgres;
    let role = pg.create_user("rkcamp", "camp-first-pw-1").await;
    let mut conn = pg.connection(&role, "camp-first-pw-1");
    conn["tags"] = json!([tag]);
    let db_conn = s.create_connection(conn).await;
    // One the campaign only disables.
    let off = s
        .create_api_key_conn(
            &s.admin_key,
            "unused-key",
            json!({"tags": [tag], "display_name": "Old sandbox"}),
        )
        .await;
    // Not in the filter: untouched.
    let other = s.api_key_conn("other-key").await;

    let body = json!({
        "name": "Vendor breach", "reason": "Tokens stored at the vendor were exposed.",
        "filter": {"tag": tag}, "deadline": deadline_in(86_400),
        "actions": {slack.clone(): ["revoke"], rest.clone(): ["revoke", "reauthorize"], off.clone(): ["disable"]},
    });
    let r = s.post_admin("/api/v1/campaigns", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let c = r.json();
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["state"], "draft");
    assert_eq!(c["total"], 0);

    // The plan, before anything happens: who does what.
    let p = plan(&s, &id).await;
    assert_eq!(p["frozen"], false);
    assert_eq!(p["items"].as_array().unwrap().len(), 4, "{p}");
    assert_eq!(
        item(&p, &slack)["steps"],
        json!([{"action": "revoke", "by": "automatic",
        "note": "revoked at the provider by rekey, then tried to prove it dead"}])
    );
    let rs = &item(&p, &rest)["steps"];
    assert_eq!(
        (rs[0]["action"].as_str(), rs[0]["by"].as_str()),
        (Some("revoke"), Some("operator"))
    );
    assert_eq!(
        (rs[1]["action"].as_str(), rs[1]["by"].as_str()),
        (Some("reauthorize"), Some("owner"))
    );
    let ds = &item(&p, &db_conn)["steps"];
    assert_eq!(
        (ds[0]["action"].as_str(), ds[0]["by"].as_str()),
        (Some("rotate"), Some("automatic")),
        "{p}"
    );
    assert_eq!(fx.revocations(), 0, "planning does nothing");

    let r = s.act(&format!("/api/v1/campaigns/{id}/start")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["state"], "running");
    assert_eq!(r.json()["total"], 4);
    s.act(&format!("/api/v1/campaigns/{id}/start"))
        .await
        .assert_error(409, "campaign_state");
    // Frozen: a connection tagged later does not join silently.
    let late = s
        .create_api_key_conn(&s.admin_key, "late-key", json!({"tags": [tag]}))
        .await;
    let r = s
        .post_admin(&format!("/api/v1/campaigns/{id}/refresh-plan"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["items"][0]["connection_id"], late, "{}", r.text);
    assert_eq!(r.json()["added"], 0);
    assert_eq!(plan(&s, &id).await["items"].as_array().unwrap().len(), 4);

    // The automatic parts run; the REST key waits for its operator.
    let v = run_until(&s, &id, "the operator's turn", |v| {
        v["counts"]["waiting_for_operator"] == 1 && v["counts"]["done"] == 3
    })
    .await;
    assert_eq!(v["state"], "running");
    assert_eq!(fx.revocations(), 1, "Slack's auth.revoke called once");
    let p = plan(&s, &id).await;
    assert_eq!(item(&p, &slack)["state"], "done", "{p}");
    assert!(item(&p, &slack)["revocation_id"].is_string());
    assert_eq!(item(&p, &off)["state"], "done");
    let st = s
        .get_admin(&format!("/api/v1/connections/{off}"))
        .await
        .json();
    assert_eq!(st["status"], "disabled");
    // The database: the old password is refused, the new one logs in.
    assert_eq!(item(&p, &db_conn)["state"], "done", "{p}");
    assert!(
        !pg.login(&role, "camp-first-pw-1").await,
        "old password refused"
    );
    let creds = s
        .get_admin(&format!("/api/v1/connections/{db_conn}/credentials"))
        .await
        .json();
    let new_pw = creds["credentials"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(pg.login(&role, &new_pw).await, "new password works");
    let ri = item(&p, &rest);
    assert_eq!(ri["state"], "waiting_for_operator", "{p}");
    assert!(
        ri["detail"].as_str().unwrap().contains("/revoke/confirm"),
        "{ri}"
    );

    // The operator revokes at the provider and confirms: rekey proves the
    // old key dead, then the owner gets a link.
    fx.set_valid_credential(Some("Bearer rest-key-2"));
    let r = s
        .post_admin(
            &format!("/api/v1/connections/{rest}/revoke/confirm"),
            json!({"note": "INC-7"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    run_until(&s, &id, "the owner's turn", |v| {
        v["counts"]["waiting_for_owner"] == 1
    })
    .await;
    let r = s.get_admin(&format!("/api/v1/campaigns/{id}/links")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let links = r.json();
    let link = &links["items"][0];
    assert_eq!(link["connection_id"], rest, "{links}");
    assert_eq!(link["owner"], "dana@example.com");
    assert_eq!(link["status"], "created");
    // Valid until the deadline, not one hour.
    let expires =
        rekey_core::time::parse_rfc3339("x", link["expires_at"].as_str().unwrap()).unwrap();
    assert!(
        expires > rekey_core::time::now_ms() + 20 * 3_600_000,
        "{link}"
    );
    // A reader without connections:write sees no links.
    let reader = s.key("default", &["connections:read"]).await;
    s.get(&format!("/api/v1/campaigns/{id}/links"), &reader)
        .await
        .assert_error(403, "missing_scope");

    // The owner reconnects with the new key; rekey probes it and is done.
    let b = rekey_testkit::oauth2_fixture::browser();
    let (st, page) = submit(&b, link["url"].as_str().unwrap(), &[("key", "rest-key-2")]).await;
    assert_eq!(st, 200, "{page}");
    let v = run_until(&s, &id, "completion", |v| v["state"] == "completed").await;
    assert_eq!(v["counts"]["done"], 4, "{v}");
    assert_eq!(v["percent_done"], 100.0);
    assert_eq!(v["by_provider"].as_array().unwrap().len(), 3, "{v}");
    let p = plan(&s, &id).await;
    let ri = item(&p, &rest);
    assert_eq!(ri["state"], "done", "{p}");
    assert!(ri["detail"].as_str().unwrap().contains("probed"), "{ri}");
    assert_eq!(fx.revocations(), 1, "no provider call repeated");
    // Untouched: outside the filter.
    let o = s
        .get_admin(&format!("/api/v1/connections/{other}"))
        .await
        .json();
    assert_eq!(o["status"], "pending");
    // The run is in the audit log; no link token in the log.
    let a = s.get_admin(&format!("/api/v1/audit?target={id}")).await;
    let actions = audit_actions(&a.json());
    for want in [
        "campaign.create",
        "campaign.start",
        "campaign.step",
        "campaign.links_read",
        "campaign.completed",
    ] {
        assert!(actions.iter().any(|x| x == want), "{want} in {actions:?}");
    }
    let token = link["url"].as_str().unwrap().rsplit('/').next().unwrap();
    assert!(!a.text.contains(token), "a link token in the audit log");
    assert!(!a.text.contains(slack_token));
    // The campaign's evidence: its connections, the campaign, its timeline,
    // sealed and recorded in the audit chain.
    let r = s
        .get_admin(&format!("/api/v1/evidence?campaign={id}&format=json"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ev: Value = serde_json::from_str(&r.text).unwrap();
    assert_eq!(ev["evidence"]["campaign"]["id"], id.as_str(), "{ev}");
    assert_eq!(ev["evidence"]["campaign"]["state"], "completed");
    assert_eq!(
        ev["rows"].as_array().unwrap().len(),
        4,
        "the campaign's four"
    );
    assert!(!r.text.contains(&other), "outside the campaign");
    let timeline: Vec<&str> = ev["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(timeline.first(), Some(&"campaign.create"), "{timeline:?}");
    assert!(timeline.contains(&"campaign.step"), "{timeline:?}");
    assert!(timeline.contains(&"campaign.completed"), "{timeline:?}");
    assert!(!r.text.contains(token) && !r.text.contains(slack_token));
    let eid = ev["evidence"]["id"].as_str().unwrap();
    let rec = s.get_admin(&format!("/api/v1/evidence/{eid}")).await.json();
    assert_eq!(rec["filter"]["campaign"], id.as_str(), "{rec}");
    let csv = s
        .get_admin(&format!("/api/v1/evidence?campaign={id}"))
        .await
        .text;
    assert!(csv.contains("# campaign name,Vendor breach"), "{csv}");
    assert!(csv.contains("# event,"), "{csv}");
    s.get_admin("/api/v1/evidence?campaign=cmp_0123456789abcdef0123456789abcdef")
        .await
        .assert_error(404, "campaign_not_found");
    // Finished: nothing more to control.
    s.act(&format!("/api/v1/campaigns/{id}/cancel"))
        .await
        .assert_error(409, "campaign_state");
    s.act(&format!("/api/v1/campaigns/{id}/pause"))
        .await
        .assert_error(409, "campaign_state");
    pg.drop_user(&role).await;
    s.stop().await;
    fx.stop().await;
}

async fn bad_campaigns_are_refused_clearly(db: Db) {
    let s = TestServer::start(db).await;
    let tag = format!("t-{}", short_unique());
    let a = s
        .create_api_key_conn(&s.admin_key, "k-1", json!({"tags": [tag]}))
        .await;
    let ok =
        |f: Value| json!({"name": "n", "reason": "r", "filter": f, "deadline": deadline_in(3600)});
    let create = |b: Value| s.post_admin("/api/v1/campaigns", b);
    create(ok(json!({})))
        .await
        .assert_error(400, "invalid_field");
    create(ok(json!({"kind": "password"})))
        .await
        .assert_error(400, "invalid_kind");
    create(ok(json!({"providr": "x"})))
        .await
        .assert_error(400, "invalid_body");
    create(ok(json!({"tag": "no-such-tag"})))
        .await
        .assert_error(422, "campaign_empty");
    create(ok(
        json!({"integration": "int_0123456789abcdef0123456789abcdef"}),
    ))
    .await
    .assert_error(404, "integration_not_found");
    let mut past = ok(json!({"tag": tag}));
    past["deadline"] = json!(deadline_in(-60));
    create(past).await.assert_error(400, "invalid_timestamp");
    let mut far = ok(json!({"tag": tag}));
    far["deadline"] = json!(deadline_in(200 * 86_400));
    create(far).await.assert_error(400, "invalid_timestamp");
    let mut bad = ok(json!({"tag": tag}));
    bad["deadline"] = json!("tomorrow");
    create(bad).await.assert_error(400, "invalid_timestamp");
    let mut nameless = ok(json!({"tag": tag}));
    nameless["name"] = json!("  ");
    create(nameless).await.assert_error(400, "invalid_field");
    let mut broken = ok(json!({"tag": tag}));
    broken["name"] = json!("two\nlines");
    create(broken).await.assert_error(400, "invalid_field");
    let mut bidi = ok(json!({"tag": tag}));
    bidi["reason"] = json!("looks fine \u{202e}txt.exe");
    create(bidi).await.assert_error(400, "invalid_field");
    let mut multiline = ok(json!({"tag": tag}));
    multiline["reason"] = json!("line one\nline two");
    assert_eq!(create(multiline).await.status, StatusCode::CREATED);
    create(ok(
        json!({"providers": ["custom-rest", "no-such-provider"]}),
    ))
    .await
    .assert_error(422, "unknown_provider");
    // A provider named by its alias is the catalog's provider (stored by id).
    let r = create(ok(json!({"provider": "rest-api", "tag": tag}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["filter"]["provider"], "custom-rest");
    let r = create(ok(json!({"providers": ["rest-api"], "tag": tag}))).await;
    assert_eq!(r.json()["filter"]["providers"], json!(["custom-rest"]));
    for actions in [
        json!({"api_key": ["rotate", "revoke"]}),
        json!({"api_key": ["explode"]}),
        json!({"oauth2_authorization_code": ["rotate"]}),
        json!({"oauth2_client_credentials": ["reauthorize"]}),
        json!({"not-a-kind": ["revoke"]}),
        json!({"con_nope": ["revoke"]}),
        json!({"api_key": []}),
    ] {
        let mut b = ok(json!({"tag": tag}));
        b["actions"] = actions.clone();
        let r = create(b).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{actions}: {}", r.text);
    }
    // Scopes: a reader cannot create or start.
    let reader = s.key("default", &["connections:read"]).await;
    s.post("/api/v1/campaigns", &reader, ok(json!({"tag": tag})))
        .await
        .assert_error(403, "missing_scope");
    let r = create(ok(json!({"tag": tag}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_string();
    s.post(&format!("/api/v1/campaigns/{id}/start"), &reader, json!({}))
        .await
        .assert_error(403, "missing_scope");
    // Lists and reads.
    let l = s.get("/api/v1/campaigns", &reader).await.ok_json();
    assert_eq!(l["items"][0]["id"], id);
    s.get_admin("/api/v1/campaigns/cmp_0123456789abcdef0123456789abcdef")
        .await
        .assert_error(404, "campaign_not_found");
    s.get_admin("/api/v1/campaigns/con_0123456789abcdef0123456789abcdef")
        .await
        .assert_error(400, "invalid_id");
    s.get_admin(&format!("/api/v1/campaigns/{id}/plan?state=done"))
        .await
        .assert_error(400, "invalid_query");
    s.get_admin(&format!("/api/v1/campaigns/{id}/plan?state=sleeping"))
        .await
        .assert_error(400, "invalid_state");
    // A draft: no resume, no confirmations.
    s.act(&format!("/api/v1/campaigns/{id}/resume"))
        .await
        .assert_error(409, "campaign_state");
    s.post_admin(
        &format!("/api/v1/campaigns/{id}/items/{a}/confirm"),
        json!({"comment": "ok"}),
    )
    .await
    .assert_error(409, "campaign_state");
    // Everything the filter matched was deleted before the start.
    s.delete(&format!("/api/v1/connections/{a}"), &s.admin_key)
        .await;
    s.act(&format!("/api/v1/campaigns/{id}/start"))
        .await
        .assert_error(422, "campaign_empty");
    assert_eq!(
        s.get_admin(&format!("/api/v1/campaigns/{id}")).await.json()["state"],
        "draft"
    );
    s.stop().await;
}

async fn cancelling_skips_what_is_left_and_kills_the_links(db: Db) {
    let s = TestServer::start(db).await;
    let tag = format!("c-{}", short_unique());
    let a = s
        .create_api_key_conn(
            &s.admin_key,
            "k-a",
            json!({"tags": [tag], "owner": {"email": "a@example.com"}}),
        )
        .await;
    let b = s
        .create_api_key_conn(&s.admin_key, "k-b", json!({"tags": [tag]}))
        .await;
    let r = s
        .post_admin("/api/v1/campaigns", json!({"name": "n", "reason": "r", "filter": {"tag": tag}, "deadline": deadline_in(7200),
                   "actions": {"api_key": ["reauthorize"]}}))
        .await;
    let id = r.created_id();
    s.act(&format!("/api/v1/campaigns/{id}/start")).await;
    run_until(&s, &id, "links", |v| v["counts"]["waiting_for_owner"] == 2).await;
    // Pause: nothing moves; resume.
    assert_eq!(
        s.act(&format!("/api/v1/campaigns/{id}/pause")).await.json()["state"],
        "paused"
    );
    s.act(&format!("/api/v1/campaigns/{id}/pause"))
        .await
        .assert_error(409, "campaign_state");
    assert_eq!(
        s.act(&format!("/api/v1/campaigns/{id}/resume"))
            .await
            .json()["state"],
        "running"
    );
    // Resend one link: the old one stops working.
    let links = s
        .get_admin(&format!("/api/v1/campaigns/{id}/links"))
        .await
        .json();
    let old = link_url(&links, &a);
    let r = s.act(&format!("/api/v1/campaigns/{id}/links/{a}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let browser = rekey_testkit::oauth2_fixture::browser();
    let (st, _) = submit(&browser, &old, &[("key", "k-a2")]).await;
    assert_ne!(st, 200, "a resent link retires the old one");
    // The operator decides about b by hand; a comment is required.
    s.post_admin(
        &format!("/api/v1/campaigns/{id}/items/{b}/confirm"),
        json!({"comment": ""}),
    )
    .await
    .assert_error(400, "invalid_field");
    let r = s
        .post_admin(
            &format!("/api/v1/campaigns/{id}/items/{b}/skip"),
            json!({"reason": "decommissioned"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["state"], "skipped");
    s.post_admin(
        &format!("/api/v1/campaigns/{id}/items/{b}/confirm"),
        json!({"comment": "x"}),
    )
    .await
    .assert_error(409, "campaign_state");
    let links = s
        .get_admin(&format!("/api/v1/campaigns/{id}/links"))
        .await
        .json();
    let new = link_url(&links, &a);
    assert_ne!(new, old);
    // A cancelled link: the connection waits for an operator, and stays so.
    let r = s
        .delete(&format!("/api/v1/campaigns/{id}/links/{a}"), &s.admin_key)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["state"], "waiting_for_operator");
    for _ in 0..30 {
        s.rekey.campaign_due(50).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = plan(&s, &id).await;
    assert_eq!(item(&p, &a)["state"], "waiting_for_operator", "{p}");
    let (st, _) = submit(&browser, &new, &[("key", "k-a3")]).await;
    assert_ne!(st, 200, "a cancelled link does not work");
    s.delete(&format!("/api/v1/campaigns/{id}/links/{a}"), &s.admin_key)
        .await
        .assert_error(409, "campaign_state");
    // Resent from there: a fresh link.
    let r = s.act(&format!("/api/v1/campaigns/{id}/links/{a}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["state"], "waiting_for_owner");
    let links = s
        .get_admin(&format!("/api/v1/campaigns/{id}/links"))
        .await
        .json();
    let new = link_url(&links, &a);
    // Cancel: a is skipped and its link no longer works.
    let v = s
        .act(&format!("/api/v1/campaigns/{id}/cancel"))
        .await
        .ok_json();
    assert_eq!(v["state"], "cancelled");
    assert_eq!(v["counts"]["skipped"], 2, "{v}");
    assert_eq!(v["counts"]["pending"], 0, "{v}");
    let (st, _) = submit(&browser, &new, &[("key", "k-a3")]).await;
    assert_ne!(st, 200, "a cancelled campaign's link does not work");
    s.act(&format!("/api/v1/campaigns/{id}/cancel"))
        .await
        .assert_error(409, "campaign_state");
    s.stop().await;
}

/// OAuth grants at a real OpenID provider are revoked there (RFC 7009),
/// proved dead, and reconnected by their owners through the campaign's
/// links; an owner who comes back as someone else is parked for an
/// operator. An AWS access key is rotated at moto (the campaign's rotation
/// options point the rotator there) and the old key refused by STS.
async fn oauth_grants_and_aws_keys_in_one_campaign(db: Db) {
    use rekey_testkit::oidc::{
        authorize_as, code_client, connect_link, finish, start_connect, OidcProvider,
    };
    let s = TestServer::start(db).await;
    let op = OidcProvider::start(json!([code_client(
        &s.base,
        "basic-client",
        "client_secret_basic"
    )]))
    .await;
    let scopes = ["openid", "email", "profile", "read"];
    let integ =
        rekey_testkit::oidc::integration(&s, &op, "basic-client", "client_secret_basic", &scopes)
            .await;
    for login in ["alice", "bob"] {
        let to_idp = start_connect(&connect_link(&s, &integ).await).await;
        let (st, page) = finish(&authorize_as(&to_idp, login, true).await).await;
        assert_eq!(st, 200, "{page}");
    }
    let moto = rekey_testkit::moto::Moto::start_with_setup_calls(3).await;
    let first = moto.create_iam_user("rekey-campaign").await;
    let aws = s
        .create_connection(json!({"provider": "aws", "kind": "aws_access_key", "display_name": "deployer",
            "probe_url": format!("{}/", moto.url),
            "credentials": {"access_key_id": first.0, "secret_access_key": first.1, "region": "us-east-1"}}))
        .await;
    op.reset_stats().await;
    let r = s
        .post_admin(
            "/api/v1/campaigns",
            json!({"name": "IdP breach", "reason": "r", "deadline": deadline_in(86_400),
                   "filter": {"providers": ["custom-oidc", "aws"]},
                   "rotation": {"aws_access_key": {"endpoint": format!("{}/", moto.url)}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.created_id();
    let p = plan(&s, &id).await;
    assert_eq!(p["items"].as_array().unwrap().len(), 3, "{p}");
    assert_eq!(item(&p, &aws)["steps"][0]["action"], "rotate");
    s.act(&format!("/api/v1/campaigns/{id}/start")).await;
    run_until(&s, &id, "links and the rotation", |v| {
        v["counts"]["waiting_for_owner"] == 2 && v["counts"]["done"] == 1
    })
    .await;
    // Each grant revoked once at the provider (its access and refresh token).
    let (_, revocations) = op.stats().await;
    assert_eq!(revocations, 4, "two tokens for each of two grants");
    assert!(!moto.key_works(&first).await, "the old AWS key is refused");
    let creds = s
        .get_admin(&format!("/api/v1/connections/{aws}/credentials"))
        .await
        .json();
    let now = (
        creds["credentials"]["access_key_id"]
            .as_str()
            .unwrap()
            .to_string(),
        creds["credentials"]["secret_access_key"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    assert!(moto.key_works(&now).await, "the new AWS key works");
    let p = plan(&s, &id).await;
    for i in p["items"].as_array().unwrap() {
        if i["connection_id"] != aws {
            assert_eq!(i["state"], "waiting_for_owner", "{i}");
            assert!(i["revocation_id"].is_string(), "{i}");
        }
    }
    // Alice reconnects as herself: verified working, done. Bob's link is
    // used by someone else: parked, for an operator.
    let links = s
        .get_admin(&format!("/api/v1/campaigns/{id}/links"))
        .await
        .json();
    let link_of = |email: &str| {
        links["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["owner"] == email)
            .unwrap_or_else(|| panic!("{email}: {links}"))
            .clone()
    };
    let alice = link_of("alice@example.com");
    let bob = link_of("bob@example.com");
    let to_idp = start_connect(alice["url"].as_str().unwrap()).await;
    let (st, page) = finish(&authorize_as(&to_idp, "alice", true).await).await;
    assert_eq!(st, 200, "{page}");
    let to_idp = start_connect(bob["url"].as_str().unwrap()).await;
    let (_, page) = finish(&authorize_as(&to_idp, "mallory", true).await).await;
    assert!(page.contains("identity_mismatch"), "{page}");
    run_until(&s, &id, "alice done, bob parked", |v| {
        v["counts"]["done"] == 2 && v["counts"]["waiting_for_operator"] == 1
    })
    .await;
    let bob_id = bob["connection_id"].as_str().unwrap();
    let p = plan(&s, &id).await;
    assert!(
        item(&p, bob_id)["detail"]
            .as_str()
            .unwrap()
            .contains("parked"),
        "{p}"
    );
    // The operator accepts the other identity: probed, done.
    let r = s
        .act(&format!(
            "/api/v1/connections/{bob_id}/reauthorize?accept_mismatch=true"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = run_until(&s, &id, "completion", |v| v["state"] == "completed").await;
    assert_eq!(v["counts"]["done"], 3, "{v}");
    let (_, after) = op.stats().await;
    assert!(after >= 4, "{after}");
    s.stop().await;
    moto.stop().await;
}

/// Two replicas on one PostgreSQL database share one campaign's work:
/// each claims items (leases keep them apart), no provider call is made
/// twice, and the per-provider rate holds for both together (slots are
/// reserved in the database): 12 revocations at 5 per second span at
/// least 11 spacings of 200 ms, although both replicas run 4 at once.
#[tokio::test]
async fn two_replicas_share_a_campaign_on_postgres() {
    let s = TestServer::start(Db::Postgres).await;
    let replica = s.replica().await;
    let limits = rekey_service::CampaignSettings {
        per_provider_concurrency: 4,
        per_provider_rate: 5.0,
    };
    s.rekey.set_campaign_settings(limits);
    replica.rekey.set_campaign_settings(limits);
    let fx = ProviderFixture::start().await;
    let tag = format!("rep-{}", short_unique());
    for i in 0..12 {
        s.create_connection(
            json!({"provider": "slack", "kind": "api_key", "display_name": format!("bot {i}"),
            "probe_url": fx.slack_url(), "tags": [tag],
            "credentials": {"key": format!("xoxb-{i}-{}", short_unique())}}),
        )
        .await;
    }
    let r = s
        .post_admin("/api/v1/campaigns", json!({"name": "n", "reason": "r", "filter": {"tag": tag}, "deadline": deadline_in(3600),
                   "actions": {"api_key": ["revoke"]}}))
        .await;
    let id = r.created_id();
    s.act(&format!("/api/v1/campaigns/{id}/start")).await;
    let (mut mine, mut theirs) = (0, 0);
    for _ in 0..200 {
        let (a, b) = tokio::join!(s.rekey.campaign_due(2), replica.rekey.campaign_due(2));
        mine += a.unwrap().claimed;
        theirs += b.unwrap().claimed;
        let v = s.get_admin(&format!("/api/v1/campaigns/{id}")).await.json();
        if v["state"] == "completed" {
            assert_eq!(v["counts"]["done"], 12, "{v}");
            break;
        }
    }
    let v = s.get_admin(&format!("/api/v1/campaigns/{id}")).await.json();
    assert_eq!(v["state"], "completed", "{v}");
    assert!(
        mine > 0 && theirs > 0,
        "both replicas worked: {mine} and {theirs}"
    );
    assert_eq!(fx.revocations(), 12, "each token revoked once");
    let times = fx.revocation_times();
    let spread = times[11].duration_since(times[0]);
    // A limit, not a speed: a slower machine only spreads them further.
    assert!(
        spread >= Duration::from_millis(11 * 200 - 100),
        "12 calls at 5/s took only {spread:?}"
    );
    replica.stop().await;
    s.stop().await;
    fx.stop().await;
}

/// The owner's link: a key the provider refuses sends the connection to
/// an operator at once (a resent link fixes it); a connection settled by
/// hand kills its unused link; after the deadline no link is resent.
async fn a_wrong_key_a_settled_connection_and_the_deadline(db: Db) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    fx.set_valid_credential(Some("Bearer good-2"));
    let tag = format!("w-{}", short_unique());
    let conn = |name: &str, key: &str| {
        json!({"probe_url": fx.rest_url(), "tags": [tag], "display_name": name, "owner": {"email": "o@example.com"},
               "credentials": {"key": key, "placement": "header", "name": "Authorization", "prefix": "Bearer "}})
    };
    let a = s
        .create_api_key_conn(&s.admin_key, "old-1", conn("a", "old-1"))
        .await;
    let b = s
        .create_api_key_conn(&s.admin_key, "old-2", conn("b", "old-2"))
        .await;
    let r = s
        .post_admin(
            "/api/v1/campaigns",
            json!({"name": "n", "reason": "r", "filter": {"tag": tag}, "deadline": deadline_in(300),
                   "actions": {"api_key": ["reauthorize"]}}),
        )
        .await;
    let id = r.created_id();
    s.act(&format!("/api/v1/campaigns/{id}/start")).await;
    run_until(&s, &id, "links", |v| v["counts"]["waiting_for_owner"] == 2).await;
    let links = s
        .get_admin(&format!("/api/v1/campaigns/{id}/links"))
        .await
        .json();
    let browser = rekey_testkit::oauth2_fixture::browser();
    // a: the owner types a wrong key; the provider refuses it.
    let (st, _) = submit(&browser, &link_url(&links, &a), &[("key", "typo")]).await;
    assert_eq!(st, 200);
    run_until(&s, &id, "the operator's turn", |v| {
        v["counts"]["waiting_for_operator"] == 1
    })
    .await;
    let p = plan(&s, &id).await;
    assert!(
        item(&p, &a)["detail"]
            .as_str()
            .unwrap()
            .contains("refuses the new credential"),
        "{p}"
    );
    // Resent, and the right key: done.
    let r = s.act(&format!("/api/v1/campaigns/{id}/links/{a}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let links = s
        .get_admin(&format!("/api/v1/campaigns/{id}/links"))
        .await
        .json();
    let (st, _) = submit(&browser, &link_url(&links, &a), &[("key", "good-2")]).await;
    assert_eq!(st, 200);
    run_until(&s, &id, "a done", |v| v["counts"]["done"] == 1).await;
    let p = plan(&s, &id).await;
    assert!(
        item(&p, &a)["detail"]
            .as_str()
            .unwrap()
            .contains("not revoked"),
        "{p}"
    );
    // b: confirmed by hand; its link dies with it.
    let b_link = link_url(&links, &b);
    let r = s
        .post_admin(
            &format!("/api/v1/campaigns/{id}/items/{b}/confirm"),
            json!({"comment": "fixed in the console"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (st, _) = submit(&browser, &b_link, &[("key", "attacker")]).await;
    assert_ne!(st, 200, "a settled connection's link does not work");
    let creds = s
        .get_admin(&format!("/api/v1/connections/{b}/credentials"))
        .await
        .json();
    assert_eq!(creds["credentials"]["key"], "old-2", "{creds}");
    // The old key typed back in is no new credential.
    let tag2 = format!("same-{}", short_unique());
    let mut same = conn("c", "good-2");
    same["tags"] = json!([tag2]);
    let c = s.create_api_key_conn(&s.admin_key, "good-2", same).await;
    let r = s
        .post_admin("/api/v1/campaigns", json!({"name": "same", "reason": "r", "filter": {"tag": tag2}, "deadline": deadline_in(300),
                   "actions": {"api_key": ["reauthorize"]}}))
        .await;
    let id3 = r.created_id();
    s.act(&format!("/api/v1/campaigns/{id3}/start")).await;
    run_until(&s, &id3, "the link", |v| {
        v["counts"]["waiting_for_owner"] == 1
    })
    .await;
    let links3 = s
        .get_admin(&format!("/api/v1/campaigns/{id3}/links"))
        .await
        .json();
    let (st, _) = submit(&browser, &link_url(&links3, &c), &[("key", "good-2")]).await;
    assert_eq!(st, 200);
    run_until(&s, &id3, "the operator's turn", |v| {
        v["counts"]["waiting_for_operator"] == 1
    })
    .await;
    let p = plan(&s, &id3).await;
    assert!(
        item(&p, &c)["detail"]
            .as_str()
            .unwrap()
            .contains("same fingerprint"),
        "{p}"
    );
    // A draft whose deadline passed does not start.
    let r = s
        .post_admin("/api/v1/campaigns", json!({"name": "late", "reason": "r", "filter": {"tag": tag2}, "deadline": deadline_in(1)}))
        .await;
    let late = r.created_id();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.act(&format!("/api/v1/campaigns/{late}/start"))
        .await
        .assert_error(409, "campaign_state");
    // After the deadline nothing is resent.
    let r = s
        .post_admin(
            "/api/v1/campaigns",
            json!({"name": "n2", "reason": "r", "filter": {"tag": tag}, "deadline": deadline_in(6),
                   "actions": {"api_key": ["reauthorize"]}}),
        )
        .await;
    let id2 = r.created_id();
    let started = std::time::Instant::now();
    s.act(&format!("/api/v1/campaigns/{id2}/start")).await;
    run_until(&s, &id2, "links", |v| v["counts"]["waiting_for_owner"] == 2).await;
    // Halfway to a deadline closer than a day: one reminder per owner's link.
    let reminders = || async {
        s.get_admin(&format!(
            "/api/v1/audit?target={id2}&action=campaign.reminder"
        ))
        .await
        .json()["items"]
            .as_array()
            .unwrap()
            .len()
    };
    while reminders().await < 2 && started.elapsed() < Duration::from_millis(5500) {
        s.rekey.campaign_due(50).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reminders().await, 2, "one reminder for each waiting owner");
    for _ in 0..5 {
        s.rekey.campaign_due(50).await.unwrap();
    }
    assert_eq!(reminders().await, 2, "reminded once");
    tokio::time::sleep(Duration::from_millis(6500).saturating_sub(started.elapsed())).await;
    let v = s
        .get_admin(&format!("/api/v1/campaigns/{id2}"))
        .await
        .json();
    assert_eq!(v["counts"]["overdue"], 2, "{v}");
    let r = s.act(&format!("/api/v1/campaigns/{id2}/links/{a}")).await;
    r.assert_error(409, "campaign_state");
    assert!(r.text.contains("deadline"), "{}", r.text);
    s.stop().await;
    fx.stop().await;
}

/// `campaign.*` webhook events follow `notify.webhooks`: a campaign that
/// asks for them sends started, the owner's link, progress and completed;
/// one that does not sends none of them.
async fn campaign_events_follow_notify(db: Db) {
    use rekey_testkit::webhook_receiver::WebhookReceiver;
    let s = TestServer::start(db).await;
    let rx = WebhookReceiver::start(0).await;
    let r = s
        .post_admin(
            "/api/v1/webhooks",
            json!({"url": rx.url(), "events": ["campaign.*"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut ids = Vec::new();
    for webhooks in [true, false] {
        let tag = format!("ev-{}", short_unique());
        let off = s
            .create_api_key_conn(&s.admin_key, "k-off", json!({"tags": [tag]}))
            .await;
        let owned = s
            .create_api_key_conn(
                &s.admin_key,
                "k-owned",
                json!({"tags": [tag], "owner": {"email": "o@example.com"}}),
            )
            .await;
        let r = s
            .post_admin("/api/v1/campaigns", json!({"name": "n", "reason": "r", "filter": {"tag": tag}, "deadline": deadline_in(3600),
                       "actions": {off.clone(): ["disable"], owned.clone(): ["reauthorize"]},
                       "notify": {"webhooks": webhooks}}))
            .await;
        let id = r.created_id();
        s.act(&format!("/api/v1/campaigns/{id}/start")).await;
        run_until(&s, &id, "one done, one link", |v| {
            v["counts"]["done"] == 1 && v["counts"]["waiting_for_owner"] == 1
        })
        .await;
        let r = s
            .post_admin(
                &format!("/api/v1/campaigns/{id}/items/{owned}/confirm"),
                json!({"comment": "checked"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        ids.push(id);
    }
    let of = |got: &[rekey_testkit::webhook_receiver::Received], id: &str| -> Vec<String> {
        got.iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .filter(|b| b["data"]["campaign_id"] == id)
            .map(|b| b["type"].as_str().unwrap().to_string())
            .collect()
    };
    let want = [
        "campaign.started",
        "campaign.reauth_requested",
        "campaign.progress",
        "campaign.completed",
    ];
    for _ in 0..100 {
        s.rekey.deliver_due("w", 100).await.unwrap();
        let got = rx.delivered();
        if want
            .iter()
            .all(|w| of(&got, &ids[0]).iter().any(|t| t == w))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Everything emitted after A's last event (B's, if any) goes out too.
    for _ in 0..10 {
        s.rekey.deliver_due("w", 100).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = rx.delivered();
    let told = of(&got, &ids[0]);
    for w in want {
        assert!(told.iter().any(|t| t == w), "{w} in {told:?}");
    }
    assert_eq!(
        of(&got, &ids[1]),
        Vec::<String>::new(),
        "notify off: no events"
    );
    s.stop().await;
    rx.stop().await;
}
