//! A campaign survives a crash at each of its side effects: the real
//! binary is started with `REKEY_FAULT_AFTER=<point>` (debug builds abort
//! right after that side effect, before the campaign writes it down), then
//! started again without it. Afterwards every connection reaches the same
//! end as without the crash and no provider call was made twice: Slack's
//! `auth.revoke` is counted at the fixture, the PostgreSQL role was
//! rotated once (the old password refused, the new one working), the
//! owner's link is the one the campaign lists, the disabled connection is
//! disabled. Every point on SQLite; two on PostgreSQL, where another
//! process takes the crashed one's work over after its lease lapses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Env;
use rekey_client::api::{CampaignItemQuery, CampaignQuery, RotationQuery};
use rekey_client::Client;
use rekey_testkit::dbtarget::DbTarget;
use rekey_testkit::provider_fixture::ProviderFixture;
use rekey_testkit::{short_unique, Db};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const POINTS: [&str; 4] = [
    "campaign_revoked",
    "campaign_rotation_started",
    "campaign_link_made",
    "campaign_disabled",
];

#[tokio::test]
async fn a_campaign_resumes_after_a_crash_at_each_side_effect() {
    for point in POINTS {
        crash_at(Db::Sqlite, point).await;
    }
}

#[tokio::test]
async fn a_campaign_resumes_on_a_postgres_store_after_a_crash() {
    crash_at(Db::Postgres, "campaign_revoked").await;
}

/// On PostgreSQL the item's lease outlives the rotation: the restarted
/// process finishes the rotation the crashed one started long before the
/// item may be taken up again, and the step must then adopt that finished
/// rotation rather than start a second one.
#[tokio::test]
async fn a_rotation_started_before_a_crash_is_adopted_once_it_finished() {
    crash_at(Db::Postgres, "campaign_rotation_started").await;
}

/// A crash after the last item is written but before the campaign is
/// completed leaves nothing to claim: the restarted process completes it
/// on an idle pass (with its audit entry), instead of leaving it running.
#[tokio::test]
async fn a_campaign_whose_items_all_finished_before_a_crash_completes() {
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let (mut server, c) = serve(&env, &key, Some("campaign_items_all_finished")).await;
    let tag = format!("done-{}", short_unique());
    let off = c
        .create_connection(
            &serde_json::from_value(json!({"provider": "custom-rest", "kind": "api_key",
            "display_name": "off", "tags": [tag], "credentials": {"key": "off-1"}}))
            .unwrap(),
        )
        .await
        .unwrap()
        .id;
    let actions = [(off.clone(), vec!["disable".to_string()])]
        .into_iter()
        .collect();
    let id = common::start_campaign(&c, "crash before completion", &tag, actions).await;
    server
        .aborted(Duration::from_secs(60), "campaign_items_all_finished")
        .await;

    let (server, c) = serve(&env, &key, None).await;
    let v = c.get_campaign(&id).await.unwrap();
    assert_eq!(
        v.state, "running",
        "the crash came before completion: {v:?}"
    );
    assert_eq!(v.counts.get("done"), Some(&1), "{v:?}");
    let mut state = v.state;
    for _ in 0..300 {
        state = c.get_campaign(&id).await.unwrap().state;
        if state == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "completed", "{}", server.logs());
    assert_eq!(c.get_connection(&off).await.unwrap().status, "disabled");
    server.stop().await;
}

async fn serve(env: &Env, key: &str, fault: Option<&str>) -> (common::Server, Client) {
    let mut cmd = env.serve_command(&["--worker-tick-ms", "100"], None);
    if let Some(p) = fault {
        cmd.env("REKEY_FAULT_AFTER", p);
    }
    let server = common::start_server(cmd).await;
    let c = Client::new(&server.base, key.to_string()).unwrap();
    (server, c)
}

async fn crash_at(db: Db, point: &str) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let fx = ProviderFixture::start().await;
    let pg = DbTarget::Postgres;
    let role = pg.create_user("rkcc", "crash-first-pw-1").await;
    let tag = format!("crash-{}", short_unique());

    let (mut server, c) = serve(&env, &key, Some(point)).await;
    let create = |body: serde_json::Value| {
        let c = c.clone();
        async move {
            c.create_connection(&serde_json::from_value(body).unwrap())
                .await
                .unwrap()
                .id
        }
    };
    // A token of its own per run: the fixture remembers revoked ones.
    let token = format!("xoxb-9-{}", short_unique());
    let slack = create(
        json!({"provider": "slack", "kind": "api_key", "display_name": "bot",
        "probe_url": fx.slack_url(), "tags": [tag], "credentials": {"key": token}}),
    )
    .await;
    let mut pgc = pg.connection(&role, "crash-first-pw-1");
    pgc["tags"] = json!([tag]);
    let db_conn = create(pgc).await;
    let rest = create(json!({"provider": "custom-rest", "kind": "api_key", "display_name": "rest",
        "probe_url": fx.rest_url(), "tags": [tag], "owner": {"email": "o@example.com"},
        "credentials": {"key": "rest-1", "placement": "header", "name": "Authorization", "prefix": "Bearer "}}))
    .await;
    let off = create(
        json!({"provider": "custom-rest", "kind": "api_key", "display_name": "off",
        "tags": [tag], "credentials": {"key": "off-1"}}),
    )
    .await;
    let actions: BTreeMap<String, Vec<String>> = [
        (slack.clone(), vec!["revoke".to_string()]),
        (rest.clone(), vec!["reauthorize".to_string()]),
        (off.clone(), vec!["disable".to_string()]),
    ]
    .into_iter()
    .collect();
    let id = common::start_campaign(&c, &format!("crash at {point}"), &tag, actions).await;
    server.aborted(Duration::from_secs(60), point).await;

    let (server, c) = serve(&env, &key, None).await;
    // On PostgreSQL the crashed process's lease lapses after a minute.
    let mut submitted = false;
    let mut last = None;
    for _ in 0..1200 {
        let v = c.get_campaign(&id).await.unwrap();
        if v.state == "completed" {
            last = Some(v);
            break;
        }
        if !submitted && v.counts.get("waiting_for_owner") == Some(&1) {
            let links = c
                .campaign_links(&id, &CampaignQuery::default())
                .await
                .unwrap();
            assert_eq!(links.items.len(), 1, "{point}: one link: {links:?}");
            let browser = rekey_testkit::oauth2_fixture::browser();
            let (st, page) =
                rekey_testkit::browser::submit(&browser, &links.items[0].url, &[("key", "rest-2")])
                    .await;
            assert_eq!(st, 200, "{point}: {page}");
            submitted = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(v) = last else {
        let plan = c.campaign_plan(&id, &CampaignItemQuery::default()).await;
        panic!(
            "{point}: the campaign did not finish after the restart: {plan:?}\n{}",
            server.logs()
        );
    };
    assert_eq!(v.counts.get("done"), Some(&4), "{point}: {v:?}");
    assert_eq!(fx.revocations(), 1, "{point}: auth.revoke called once");
    let rotations = c
        .list_rotations(&RotationQuery {
            connection: Some(db_conn.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        rotations.items.len(),
        1,
        "{point}: one rotation: {rotations:?}"
    );
    assert!(
        !pg.login(&role, "crash-first-pw-1").await,
        "{point}: the old password is refused"
    );
    let creds = c.read_credentials(&db_conn).await.unwrap();
    let creds = serde_json::to_value(&creds.credentials).unwrap();
    assert!(
        pg.login(&role, creds["password"].as_str().unwrap()).await,
        "{point}: the new password works"
    );
    assert_eq!(c.get_connection(&off).await.unwrap().status, "disabled");
    let plan = c
        .campaign_plan(&id, &CampaignItemQuery::default())
        .await
        .unwrap();
    for i in &plan.items {
        assert_eq!(i.state, "done", "{point}: {i:?}");
    }
    server.stop().await;
    fx.stop().await;
    pg.drop_user(&role).await;
}
