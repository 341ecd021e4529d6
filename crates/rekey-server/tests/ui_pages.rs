//! Dashboard pages over real HTTP, beyond sign-in and bulk actions (in
//! `ui.rs`): the connections page's summary line and filters, the header on
//! every signed-in page, readable times and actor names, and the OAuth apps
//! page with its role refusals, CSRF and audit entries (webhooks: in
//! `ui_webhooks.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ui_support;
use ui_support::*;

use rekey_server::views;
use rekey_service::Role;
use rekey_testkit::oauth2_fixture::OAuth2Fixture;
use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::StatusCode;
use serde_json::json;

both_backends!(
    summary_counts_filter_and_tiles_show_owner_custody_and_times,
    every_signed_in_page_keeps_the_header,
    oauth_apps_page_roles_csrf_and_secret_replacement
);

/// Display names of the tiles on a connections page, in page order.
fn tile_names(html: &str) -> Vec<String> {
    html.split("<p class=\"tile-name\"><a href=\"/ui/connections/")
        .skip(1)
        .map(|p| {
            let s = &p[p.find('>').unwrap() + 1..];
            s[..s.find('<').unwrap()].to_string()
        })
        .collect()
}

async fn summary_counts_filter_and_tiles_show_owner_custody_and_times(db: Db) {
    let s = TestServer::start(db).await;
    let (olga, csrf) = user(&s, "olga", Role::Operator).await;
    let fx = ProviderFixture::start().await;
    fx.set_mode(Mode::Ok);
    fx.set_valid_credential(Some("good-key"));
    let mk = |name: &str, key: &str, tags: &[&str], custody: &[&str]| {
        json!({"display_name": name, "probe_url": fx.rest_url(), "tags": tags, "custody": custody,
               "owner": {"email": format!("{}@example.com", name.to_lowercase().replace(' ', "."))}, "_key": key})
    };
    let mut ids = Vec::new();
    for spec in [
        mk("Alpha", "good-key", &["billing"], &["vault"]),
        mk("Bravo", "bad-key", &["billing"], &["github-actions"]),
        mk("Charlie", "bad-key-2", &["ops"], &[]),
        mk("Delta", "never-checked", &[], &[]),
    ] {
        let mut body = spec.clone();
        let key = body.as_object_mut().unwrap().remove("_key").unwrap();
        ids.push(
            s.create_api_key_conn(&s.admin_key, key.as_str().unwrap(), body)
                .await,
        );
    }
    // Another provider, so there are two groups.
    let segment = s
        .post_admin(
            "/api/v1/connections",
            json!({"provider": "segment", "kind": "api_key", "display_name": "Payments",
                   "credentials": {"key": "sk_test_abcdefghijklmnop"}}),
        )
        .await;
    assert_eq!(segment.status, StatusCode::CREATED, "{}", segment.text);
    for id in &ids[..3] {
        let (st, _) = post(
            &s,
            &format!("/ui/connections/{id}/check"),
            &olga,
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(st, StatusCode::OK);
    }

    let (st, html) = get(&s, "/ui/connections", &olga).await;
    assert_eq!(st, StatusCode::OK);
    // The summary counts every connection by status, each count a filter link.
    for (status, n, label) in [
        ("needs_reauth", 2, "broken"),
        ("active", 1, "active"),
        ("pending", 2, "pending"),
    ] {
        let link = format!("href=\"/ui/connections?status={status}\" data-status=\"{status}\"><strong>{n}</strong> {label}</a>");
        assert!(html.contains(&link), "{link} in {html}");
    }
    assert!(html.contains("<strong>5</strong> in all"), "{html}");
    assert!(!html.contains("data-status=\"revoked\""), "no zero counts");
    let (_, broken) = get(&s, "/ui/connections?status=needs_reauth", &olga).await;
    assert_eq!(tile_names(&broken), ["Bravo", "Charlie"]);
    assert!(broken.contains("data-status=\"needs_reauth\" aria-current=\"page\""));
    assert!(
        broken.contains("<strong>5</strong> in all"),
        "the counts stay those of all connections"
    );

    // The filter inputs suggest the values in use.
    assert!(html.contains("list=\"tags-in-use\""));
    assert!(html.contains(
        "<datalist id=\"tags-in-use\"><option value=\"billing\"><option value=\"ops\"></datalist>"
    ), "{html}");
    assert!(html.contains(
        "<datalist id=\"custody-in-use\"><option value=\"github-actions\"><option value=\"vault\"></datalist>"
    ));

    // Groups by display name ("Custom REST API" before "Segment"), tiles by name.
    let g_rest = html.find("id=\"g-custom-rest\"").unwrap();
    let g_stripe = html.find("id=\"g-segment\"").unwrap();
    assert!(g_rest < g_stripe, "groups sorted by display name");
    assert_eq!(
        tile_names(&html),
        ["Alpha", "Bravo", "Charlie", "Delta", "Payments"]
    );
    assert!(
        html.contains("class=\"group many\""),
        "four tiles span the row"
    );
    assert!(html.contains("class=\"group one\""));

    // Owner and custody on the tile; the check time readable, exact on hover.
    assert!(
        html.contains("<dt>Owner</dt><dd>alpha@example.com</dd>"),
        "{html}"
    );
    assert!(html.contains("<dt>Custody</dt><dd>vault</dd>"));
    assert!(html.contains("<dt>Custody</dt><dd>—</dd>"));
    let t = html
        .find("<dt>Checked</dt><dd><time datetime=\"")
        .expect("a time element");
    let tail = &html[t..];
    assert!(
        tail.contains("title=\"20"),
        "exact UTC time on hover: {tail}"
    );
    assert!(
        tail[..200].contains("just now") || tail[..200].contains(" s ago"),
        "{tail}"
    );

    // The connection page shows times and actors the same way.
    let (_, page) = get(&s, &format!("/ui/connections/{}", ids[0]), &olga).await;
    assert!(
        page.contains("<dt>Created</dt><dd><time datetime=\""),
        "{page}"
    );
    assert!(
        page.contains("title=\"user:olga\">olga (user)</span>"),
        "the check is by olga, by name: {page}"
    );
    // API keys by name, the id kept in the title.
    let (_, audit) = get(&s, "/ui/audit", &olga).await;
    let admin_key_id = s.rekey.list_api_keys("default").await.unwrap()[0]
        .id
        .clone();
    let named = s.rekey.list_api_keys("default").await.unwrap()[0]
        .name
        .clone();
    assert!(
        audit.contains(&format!(
            "title=\"api_key:{admin_key_id}\">{named} (API key)</span>"
        )),
        "{audit}"
    );
    assert!(!audit.contains(&format!("<td>api_key:{admin_key_id}</td>")));

    // A long provider message is kept inside the tile (wrapping) and capped.
    assert!(html.contains("class=\"tile-error\""));
    s.stop().await;
}

async fn every_signed_in_page_keeps_the_header(db: Db) {
    let s = TestServer::start(db).await;
    let (olga, csrf) = user(&s, "olga", Role::Operator).await;
    let (vic, vcsrf) = user(&s, "vic", Role::Viewer).await;
    let id = s.create_api_key_conn(&s.admin_key, "k-1", json!({})).await;
    let pages = [
        "/ui/connections".to_string(),
        "/ui/audit".into(),
        "/ui/integrations".into(),
        format!("/ui/connections/{id}"),
        format!("/ui/connections/{id}/rotate"),
        format!("/ui/connections/{id}/update"),
        format!("/ui/connections/{id}/confirm/revoke"),
        // Error pages: unknown connection, unknown action, admin-only page.
        "/ui/connections/con_00000000000000000000000000".into(),
        format!("/ui/connections/{id}/confirm/explode"),
        "/ui/webhooks".into(),
        // An unknown dashboard path: the HTML page, not the API's JSON.
        "/ui/no-such-page".into(),
        format!("/ui/connections/{id}/nope/deeper"),
    ];
    for p in &pages {
        let (st, html) = get(&s, p, &olga).await;
        assert!(has_header(&html, "olga"), "{p} ({st}): {html}");
    }
    let (st, html) = get(&s, "/ui/no-such-page", &olga).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(html.contains("There is no such dashboard page"), "{html}");
    // Without a session: the sign-in page, as for every dashboard page.
    let (st, _) = get(&s, "/ui/no-such-page", "").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    // Bulk confirmation and results, an action's message, a refusal, a
    // stale form: all keep it.
    let (csrf, id) = (csrf.as_str(), id.as_str());
    let disable = format!("/ui/connections/{id}/disable");
    let enable = format!("/ui/connections/{id}/enable");
    let posts = [
        (
            "/ui/bulk",
            vec![("csrf", csrf), ("action", "revoke"), ("id", id)],
            "Revoke 1 connection?",
        ),
        (
            "/ui/bulk",
            vec![("csrf", csrf), ("action", "check"), ("id", id)],
            "done",
        ),
        (&disable, vec![("csrf", csrf)], "is disabled"),
        (&enable, vec![("csrf", "stale")], "Form expired"),
        (
            "/ui/webhooks",
            vec![("csrf", csrf), ("url", "https://x.example")],
            "Not allowed",
        ),
    ];
    for (p, form, want) in &posts {
        let (st, html) = post(&s, p, &olga, form).await;
        assert!(html.contains(want), "{p} ({st}): {html}");
        assert!(has_header(&html, "olga"), "{p} ({st}): {html}");
    }
    // A viewer's refusal too; the sign-in page has no header.
    let (st, html) = post(
        &s,
        &format!("/ui/connections/{id}/enable"),
        &vic,
        &[("csrf", &vcsrf)],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(has_header(&html, "vic"), "{html}");
    let (_, login) = get(&s, "/ui/login", "").await;
    assert!(!login.contains("Sign out"), "{login}");
    // Webhooks are in the menu of admins only (as the API's admin scope).
    assert!(!get(&s, "/ui/connections", &olga)
        .await
        .1
        .contains("href=\"/ui/webhooks\""));
    s.stop().await;
}

async fn oauth_apps_page_roles_csrf_and_secret_replacement(db: Db) {
    let s = TestServer::start(db).await;
    let (ada, acsrf) = user(&s, "ada", Role::Admin).await;
    let (olga, ocsrf) = user(&s, "olga", Role::Operator).await;
    let (vic, _) = user(&s, "vic", Role::Viewer).await;
    let fx = OAuth2Fixture::start(
        "client-1",
        "secret-1",
        &format!("{}/oauth/callback", s.base),
    )
    .await;
    let form = |csrf: &str| {
        vec![
            ("csrf".to_string(), csrf.to_string()),
            ("provider".into(), "custom-oauth2".into()),
            ("display_name".into(), "Acme CRM app".into()),
            ("client_id".into(), "client-1".into()),
            ("client_secret".into(), "secret-1".into()),
            ("scopes".into(), "read, write".into()),
            ("authorize_url".into(), format!("{}/authorize", fx.base)),
            ("token_url".into(), format!("{}/token", fx.base)),
            ("revocation_url".into(), format!("{}/revoke", fx.base)),
            ("identity_url".into(), format!("{}/me", fx.base)),
        ]
    };
    let as_ref = |f: &Vec<(String, String)>| -> Vec<(String, String)> { f.clone() };
    let send = |cookie: String, f: Vec<(String, String)>| {
        let base = s.base.clone();
        async move {
            let r = browser()
                .post(format!("{base}/ui/integrations"))
                .header("cookie", cookie)
                .form(&f)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    // Registering needs the admin scope, as in the API, and the form's token.
    let (st, html) = send(olga.clone(), as_ref(&form(&ocsrf))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("an admin can"), "{html}");
    let (st, html) = send(ada.clone(), as_ref(&form("forged"))).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(html.contains("Form expired"));
    assert!(s
        .rekey
        .list_integrations("default")
        .await
        .unwrap()
        .is_empty());
    // Bad input: the service's message, naming the field.
    let mut bad = form(&acsrf);
    bad[6].1 = "ftp://example.com/authorize".into();
    let (st, html) = send(ada.clone(), bad).await;
    assert!(st.is_client_error(), "{st}: {html}");
    assert!(html.contains("Not registered"), "{html}");
    let (st, html) = send(ada.clone(), form(&acsrf)).await;
    assert_eq!(st, StatusCode::CREATED, "{html}");
    assert!(
        !html.contains("secret-1"),
        "the secret is not shown: {html}"
    );
    let integ = views::integration(&s.rekey.list_integrations("default").await.unwrap()[0]);
    assert_eq!(integ.scopes, ["read", "write"]);

    // A connection made through it is listed under it.
    let conn = s.create_connection(json!({"provider": "custom-oauth2", "kind": "oauth2_client_credentials",
            "display_name": "M2M feed", "scopes": ["read"], "credentials": {"integration": integ.id}})).await;
    for who in [&vic, &olga, &ada] {
        let (st, html) = get(&s, "/ui/integrations", who).await;
        assert_eq!(st, StatusCode::OK);
        assert!(
            html.contains("Acme CRM app") && html.contains("client-1"),
            "{html}"
        );
        assert!(
            html.contains(&format!("<a href=\"/ui/connections/{conn}\">M2M feed</a>")),
            "{html}"
        );
        assert!(html.contains("Connections using it (1)"));
        assert!(!html.contains("secret-1"));
        // Only admins get the forms.
        assert_eq!(
            html.contains("Register an OAuth app"),
            who == &ada,
            "{html}"
        );
        assert_eq!(html.contains("/rotate-secret\""), who == &ada);
    }

    // The connection's page names the app it came from.
    let (_, html) = get(&s, &format!("/ui/connections/{conn}"), &vic).await;
    assert!(
        html.contains(&format!(
            "<dt>OAuth app</dt><dd><a href=\"/ui/integrations#app-{}\">Acme CRM app</a>",
            integ.id
        )),
        "{html}"
    );

    // Replacing the client secret: admin only, never echoed, audited with
    // the request id and client address like every dashboard action.
    let path = format!("/ui/integrations/{}/rotate-secret", integ.id);
    let (st, _) = get(&s, &path, &olga).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = post(
        &s,
        &path,
        &olga,
        &[("csrf", &ocsrf), ("client_secret", "stolen")],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, html) = get(&s, &path, &ada).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains("name=\"client_secret\" type=\"password\""),
        "{html}"
    );
    let (st, html) = post(
        &s,
        &path,
        &ada,
        &[("csrf", "forged"), ("client_secret", "secret-2")],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{html}");
    let (st, html) = post(&s, &path, &ada, &[("csrf", &acsrf)]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{html}");
    let (st, html) = post(
        &s,
        &path,
        &ada,
        &[("csrf", &acsrf), ("client_secret", "secret-2-new")],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("Client secret replaced"), "{html}");
    assert!(html.contains("<a href=\"/ui/integrations\">Back to integrations</a>"));
    assert!(!html.contains("secret-2-new"));
    let after = views::integration(&s.rekey.get_integration("default", &integ.id).await.unwrap());
    assert_eq!(after.version, integ.version + 1);
    let e = &last_audit(&s, "integration.update").await;
    assert_eq!(e.actor, "user:ada");
    assert!(e.request_id.is_some() && e.source.is_some(), "{e:?}");
    assert!(!serde_json::to_string(e).unwrap().contains("secret-2-new"));
    s.stop().await;
}
