//! The campaign pages over real HTTP: roles (a viewer follows, an operator
//! runs), CSRF, clear refusals (no filter, a started campaign started
//! again, an unknown action, another tenant's campaign), the audit entries
//! carrying the request id and client address, the live fragment, and the
//! links file (audited, never cached). The whole flow in Chromium is
//! crates/rekey-cli/tests/browser_pages.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ui_support;
use ui_support::*;

use rekey_service::Role;
use rekey_testkit::{both_backends, short_unique, Db, TestServer};
use reqwest::StatusCode;
use serde_json::json;

both_backends!(campaign_pages_roles_refusals_and_links);

fn deadline_day() -> String {
    let ms = rekey_core::time::now_ms() + 3 * 86_400_000;
    rekey_core::time::ms_to_rfc3339(ms)[..10].to_string()
}

async fn campaign_pages_roles_refusals_and_links(db: Db) {
    let s = TestServer::start(db).await;
    let (olga, ocsrf) = user(&s, "olga", Role::Operator).await;
    let (vic, vcsrf) = user(&s, "vic", Role::Viewer).await;
    let tag = format!("ui-{}", short_unique());
    let a = s
        .create_api_key_conn(
            &s.admin_key,
            "k-ui-a",
            json!({"tags": [tag], "owner": {"email": "a@example.com"}}),
        )
        .await;
    s.create_api_key_conn(&s.admin_key, "k-ui-b", json!({"tags": [tag]}))
        .await;

    // The filtered connections page offers a campaign to operators only.
    let (_, html) = get(&s, &format!("/ui/connections?tag={tag}"), &olga).await;
    assert!(html.contains("Start incident campaign"), "{html}");
    let (_, html) = get(&s, &format!("/ui/connections?tag={tag}"), &vic).await;
    assert!(!html.contains("Start incident campaign"));
    let (_, html) = get(&s, "/ui/connections", &olga).await;
    assert!(!html.contains("Start incident campaign"), "not unfiltered");
    let (st, html) = get(&s, &format!("/ui/campaigns/new?tag={tag}"), &vic).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{html}");
    let (st, html) = get(&s, "/ui/campaigns/new", &olga).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(html.contains("Filter first"), "{html}");
    let (st, html) = get(&s, &format!("/ui/campaigns/new?tag={tag}"), &olga).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains(&format!("value=\"{tag}\"")), "{html}");
    assert!(
        html.contains("No e-mail: rekey has no SMTP server"),
        "says there is no e-mail: {html}"
    );

    let day = deadline_day();
    let form = |csrf: &str, tag: &str| {
        vec![
            ("csrf".to_string(), csrf.to_string()),
            ("tag".into(), tag.to_string()),
            ("name".into(), "UI breach".into()),
            ("reason".into(), "A vendor leaked tokens".into()),
            ("deadline".into(), day.clone()),
            ("webhooks".into(), "1".into()),
        ]
    };
    let post_owned = |path: &str, cookie: &str, f: Vec<(String, String)>| {
        let (path, cookie) = (path.to_string(), cookie.to_string());
        let base = s.base.clone();
        async move {
            let r = browser()
                .post(format!("{base}{path}"))
                .header("cookie", cookie)
                .form(&f)
                .send()
                .await
                .unwrap();
            let loc = r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string());
            (r.status(), loc, r.text().await.unwrap())
        }
    };
    // Refused: a viewer, a forged token, a filter that selects nothing.
    let (st, _, _) = post_owned("/ui/campaigns", &vic, form(&vcsrf, &tag)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, html) = post_owned("/ui/campaigns", &olga, form("forged", &tag)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(html.contains("Form expired"), "{html}");
    let (st, _, html) =
        post_owned("/ui/campaigns", &olga, form(&ocsrf, "no-such-tag-anywhere")).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(
        html.contains("UI breach"),
        "the form comes back filled in: {html}"
    );

    // Created: to the draft's plan; audited like an API call.
    let (st, loc, _) = post_owned("/ui/campaigns", &olga, form(&ocsrf, &tag)).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let loc = loc.unwrap();
    let id = loc.rsplit('/').next().unwrap().to_string();
    assert!(id.starts_with("cmp_"), "{loc}");
    let e = last_audit(&s, "campaign.create").await;
    assert_eq!(e.actor, "user:olga");
    assert!(e.request_id.is_some() && e.source.is_some(), "{e:?}");
    let (_, html) = get(&s, &loc, &vic).await;
    assert!(
        html.contains("The plan") && !html.contains("Start the campaign"),
        "a viewer sees the plan, not the button"
    );
    let (_, html) = get(&s, &loc, &olga).await;
    assert!(html.contains("Start the campaign"), "{html}");
    assert!(
        html.contains(">olga (user)</span>"),
        "actors by name: {html}"
    );
    assert!(
        html.contains("<strong id=\"plan-size\">2</strong>"),
        "the draft says how many connections it covers: {html}"
    );
    assert_eq!(html.matches("data-connection=\"con_").count(), 2, "{html}");

    // Started; started again is refused in words.
    let token = vec![("csrf".to_string(), ocsrf.clone())];
    let (st, _, _) = post_owned(
        &format!("{loc}/start"),
        &vic,
        vec![("csrf".into(), vcsrf.clone())],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, l, _) = post_owned(&format!("{loc}/start"), &olga, token.clone()).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(l.as_deref(), Some(loc.as_str()));
    let (st, _, html) = post_owned(&format!("{loc}/start"), &olga, token.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        html.contains("is running") && html.contains("/ui/campaigns"),
        "{html}"
    );
    let (st, _, _) = post_owned(&format!("{loc}/explode"), &olga, token.clone()).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Running: the live part refreshes itself.
    let (st, html) = get(&s, &format!("{loc}/live"), &vic).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains("id=\"campaign-live\"") && html.contains("hx-trigger=\"every 2s\""),
        "{html}"
    );
    let (st, _) = get(&s, &format!("{loc}?state=nonsense"), &vic).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Pause: the live part stops refreshing and offers Resume.
    let (st, _, _) = post_owned(&format!("{loc}/pause"), &olga, token.clone()).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, html) = get(&s, &format!("{loc}/live"), &olga).await;
    assert!(
        !html.contains("hx-trigger") && html.contains(">Resume</button>"),
        "{html}"
    );
    post_owned(&format!("{loc}/resume"), &olga, token.clone()).await;

    // Another tenant's campaign is not found.
    let other = s.key("other", &["admin"]).await;
    let oc = s
        .create_api_key_conn(&other, "k-other", json!({"tags": ["x"]}))
        .await;
    assert!(oc.starts_with("con_"));
    let r = s
        .post(
            "/api/v1/campaigns",
            &other,
            json!({"name": "theirs", "reason": "r", "filter": {"tag": "x"},
                   "deadline": rekey_core::time::ms_to_rfc3339(rekey_core::time::now_ms() + 86_400_000)}),
        )
        .await;
    let theirs = r.created_id();
    let (st, _) = get(&s, &format!("/ui/campaigns/{theirs}"), &olga).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A campaign with owners' links: the links file is audited and never cached.
    let r = s
        .post_admin("/api/v1/campaigns", json!({"name": "links", "reason": "r", "filter": {"tag": tag},
                   "actions": {"api_key": ["reauthorize"]},
                   "deadline": rekey_core::time::ms_to_rfc3339(rekey_core::time::now_ms() + 86_400_000)}))
        .await;
    let lid = r.created_id();
    s.act(&format!("/api/v1/campaigns/{lid}/start")).await;
    for _ in 0..50 {
        s.rekey.campaign_due(50).await.unwrap();
        let v = s
            .get_admin(&format!("/api/v1/campaigns/{lid}"))
            .await
            .json();
        if v["counts"]["waiting_for_owner"] == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (st, _, _) = get_with_headers(&s, &format!("/ui/campaigns/{lid}/links.csv"), &vic).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, csv, h) = get_with_headers(&s, &format!("/ui/campaigns/{lid}/links.csv"), &olga).await;
    assert_eq!(st, StatusCode::OK, "{csv}");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(
        csv.starts_with("connection_id,display_name,owner,url,expires_at,status"),
        "{csv}"
    );
    assert_eq!(csv.matches("/connect/").count(), 2, "{csv}");
    let e = last_audit(&s, "campaign.links_read").await;
    assert_eq!(e.actor, "user:olga");
    // Resend from the connection's page: back to it, a new link.
    let (_, html) = get(&s, &format!("/ui/campaigns/{lid}/items/{a}"), &olga).await;
    assert!(
        html.contains("Resend link") && html.contains("Cancel link"),
        "{html}"
    );
    let (st, l, _) = post_owned(
        &format!("/ui/campaigns/{lid}/items/{a}/resend"),
        &olga,
        token.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(l.unwrap(), format!("/ui/campaigns/{lid}/items/{a}"));
    // Cancelled, the link is gone but a new one can still be sent.
    let (st, _, _) = post_owned(
        &format!("/ui/campaigns/{lid}/items/{a}/cancel-link"),
        &olga,
        token.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, html) = get(&s, &format!("/ui/campaigns/{lid}/items/{a}"), &olga).await;
    assert!(
        html.contains("Resend link")
            && !html.contains("Cancel link")
            && !html.contains("Owner's link"),
        "{html}"
    );
    // A confirmation needs its comment.
    let (st, _, html) = post_owned(
        &format!("/ui/campaigns/{lid}/items/{a}/confirm"),
        &olga,
        token.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("comment"), "{html}");
    s.stop().await;
}
