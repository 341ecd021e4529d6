//! The dashboard over real HTTP: sign-in, cookie flags, sessions, CSRF,
//! roles, and the connections page's tiles. (The browser suite with
//! Chromium comes with the rest of the dashboard.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ui_support;

use rekey_service::{Ctx, Role};
use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
use rekey_testkit::{both_backends, items, Db, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use ui_support::{
    browser, csrf_of, get_with_headers as get, login, post as post_form, status_of, user,
};

both_backends!(
    sign_in_sessions_csrf_and_roles,
    search_filters_and_bulk_actions,
    pages_and_bulk_beyond_one_page,
    unknown_actions_delete_nothing,
    dashboard_actions_are_audited_like_the_api,
    root_leads_to_the_dashboard
);

async fn sign_in(s: &TestServer, user: &str, pw: &str) -> (StatusCode, Option<String>, String) {
    let r = login(s, user, pw, &[]).await;
    let status = r.status();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (status, cookie, r.text().await.unwrap())
}

fn session_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

async fn sign_in_sessions_csrf_and_roles(db: Db) {
    let s = TestServer::start(db).await;
    let ctx = Ctx::cli("default");
    let pw = rekey_core::SecretString::new("correct horse battery".to_string());
    s.rekey
        .create_user(&ctx, "olga", &pw, Role::Operator)
        .await
        .unwrap();
    s.rekey
        .create_user(&ctx, "vic", &pw, Role::Viewer)
        .await
        .unwrap();
    // Bad input is refused clearly.
    let short = rekey_core::SecretString::new("short".to_string());
    assert_eq!(
        s.rekey
            .create_user(&ctx, "x1y", &short, Role::Viewer)
            .await
            .unwrap_err()
            .code(),
        "weak_password"
    );
    assert_eq!(
        s.rekey
            .create_user(&ctx, "olga", &pw, Role::Viewer)
            .await
            .unwrap_err()
            .code(),
        "user_exists"
    );

    // The page asks for a session; wrong passwords and unknown users fail alike.
    let (st, _, h) = get(&s, "/ui/connections", "").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(h["location"], "/ui/login");
    let (st, cookie, html) = sign_in(&s, "olga", "wrong password!!").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());
    assert!(html.contains("Wrong user name or password"));
    let (st2, _, html2) = sign_in(&s, "nobody", "wrong password!!").await;
    assert_eq!(st2, StatusCode::UNAUTHORIZED);
    assert!(html2.contains("Wrong user name or password"));

    // A sign-in posted from another site is refused (login CSRF).
    let r = login(
        &s,
        "olga",
        "correct horse battery",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("set-cookie").is_none());
    let r = login(&s, "olga", "correct horse battery", &[("origin", "null")]).await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "an opaque origin is refused too"
    );
    let r = login(
        &s,
        "olga",
        "correct horse battery",
        &[("origin", s.base.as_str())],
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "same-origin sign-in works"
    );
    // Repeated failures lock the user name out for a while, even for the
    // right password.
    let locked = format!("lock{}", rekey_testkit::uuid_like());
    s.rekey
        .create_user(&ctx, &locked, &pw, Role::Viewer)
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            sign_in(&s, &locked, "wrong password!!").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (st, cookie, html) = sign_in(&s, &locked, "correct horse battery").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{html}");
    assert!(
        cookie.is_none() && html.contains("too many failed sign-ins"),
        "{html}"
    );

    // A connection that breaks.
    let fx = ProviderFixture::start().await;
    let id = s
        .create_api_key_conn(
            &s.admin_key,
            "ui-key-1",
            json!({"display_name": "Acme CRM", "probe_url": fx.rest_url()}),
        )
        .await;
    fx.set_mode(Mode::Unauthorized);

    let (st, cookie, _) = sign_in(&s, "olga", "correct horse battery").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let set = cookie.unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain-http public URL: no Secure flag ({set})"
    );
    let olga = session_of(&set);
    let (st, html, h) = get(&s, "/ui/connections", &olga).await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(
        html.contains("Acme CRM") && html.contains("Pending verification"),
        "{html}"
    );
    assert!(!html.contains("ui-key-1"), "no secret on the page");
    let csrf = csrf_of(&html);

    // A form without its CSRF token is refused and changes nothing.
    let (st, _) = act(&s, &olga, &id, "check", &[]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = act(&s, &olga, &id, "check", &[("csrf", "forged")]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(fx.hits(), 0);
    // With it, the operator's check runs and the tile shows the broken state.
    let (st, html) = act(&s, &olga, &id, "check", &[("csrf", &csrf)]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("needs reauthorization"), "{html}");
    let (_, html, _) = get(&s, "/ui/connections?status=needs_reauth", &olga).await;
    assert!(
        html.contains("Acme CRM")
            && html.contains("<svg class=\"icon\"")
            && html.contains("Broken: needs reauthorization"),
        "{html}"
    );
    assert!(
        html.contains("the provider rejected the credential"),
        "error context on the tile: {html}"
    );
    let (_, html, _) = get(&s, "/ui/connections?status=active", &olga).await;
    assert!(!html.contains("Acme CRM"));
    // The connection page explains the error with its context, health,
    // history and the provider's runbook.
    let (st, html, _) = get(&s, &format!("/ui/connections/{id}"), &olga).await;
    assert_eq!(st, StatusCode::OK);
    for want in [
        "Last error",
        "auth_rejected",
        "HTTP 401",
        "the provider rejected the credential",
        "1 in a row",
        "connection.checked",
        "connection.status_changed",
        "pending → needs_reauth",
        "Delete or disable the credential",
        "Connect new account",
        "/rotate\"",
    ] {
        assert!(html.contains(want), "missing {want:?}: {html}");
    }
    assert!(!html.contains("ui-key-1"), "no secret on the page");
    let (st, _, _) = get(
        &s,
        "/ui/connections/con_0000000000000000000000000000000a",
        &olga,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, _) = get(&s, "/ui/connections/nope", &olga).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, _) = get(&s, &format!("/ui/connections/{id}"), "").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    // The audit page filters the log; only admins see the chain check.
    let (st, html, _) = get(&s, &format!("/ui/audit?target={id}"), &olga).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains("connection.checked") && html.contains("user:olga"),
        "{html}"
    );
    assert!(
        !html.contains("credentials.read") && !html.contains("Hash chain"),
        "{html}"
    );
    s.rekey
        .create_user(&ctx, "ada", &pw, Role::Admin)
        .await
        .unwrap();
    let (_, cookie, _) = sign_in(&s, "ada", "correct horse battery").await;
    let ada = session_of(&cookie.unwrap());
    let (_, html, _) = get(&s, "/ui/audit?action=user.login", &ada).await;
    assert!(html.contains("Hash chain intact"), "{html}");
    assert!(
        html.contains("user.login") && !html.contains("connection.checked"),
        "{html}"
    );
    // The check is audited as the user.
    let a = audit(&s, &format!("action=connection.checked&target={id}")).await;
    assert_eq!(a["items"][0]["actor"], "user:olga");

    // A viewer sees the tiles but cannot act, even with a valid token.
    let (_, cookie, _) = sign_in(&s, "vic", "correct horse battery").await;
    let vic = session_of(&cookie.unwrap());
    let (_, html, _) = get(&s, "/ui/connections", &vic).await;
    assert!(html.contains("Acme CRM") && !html.contains("Check now"));
    let (_, page, _) = get(&s, &format!("/ui/connections/{id}"), &vic).await;
    assert!(
        page.contains("Last error")
            && !page.contains("Connect new account")
            && !page.contains("Check now"),
        "viewers read, without actions: {page}"
    );
    let vcsrf = csrf_of(&html);
    let (st, _) = act(&s, &vic, &id, "check", &[("csrf", &vcsrf)]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // One session's token does not work for another.
    let (st, _) = act(&s, &vic, &id, "check", &[("csrf", &csrf)]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // The three-dot menu's actions: viewers are refused; operators confirm
    // then act, each with a visible result.
    let (st, _) = act(&s, &vic, &id, "disable", &[("csrf", &vcsrf)]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, html, _) = get(&s, &format!("/ui/connections/{id}/confirm/disable"), &olga).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains("Disable Acme CRM") && html.contains("name=\"csrf\""),
        "{html}"
    );
    let (st, _) = act(&s, &olga, &id, "disable", &[]).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "no CSRF token, no action");
    let (st, html) = act(&s, &olga, &id, "disable", &[("csrf", &csrf)]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("is disabled"), "{html}");
    let (_, html, _) = get(&s, "/ui/connections", &olga).await;
    assert!(
        html.contains("Disabled") && html.contains("confirm/enable"),
        "{html}"
    );
    let (_, html) = act(&s, &olga, &id, "enable", &[("csrf", &csrf)]).await;
    assert!(html.contains("enabled"), "{html}");
    let (st, _) = act(&s, &olga, &id, "explode", &[("csrf", &csrf)]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Reauthorize opens the hosted Connect page (a key form for this kind).
    let r = browser()
        .post(format!("{}/ui/connections/{id}/reauthorize", s.base))
        .header("cookie", &olga)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/connect/"),
        "{:?}",
        r.headers()
    );
    // Revoke a key-based connection: the manual steps are shown.
    let (_, html) = act(&s, &olga, &id, "revoke", &[("csrf", &csrf)]).await;
    assert!(
        html.contains("manual revocation") && html.contains("Delete or disable the credential"),
        "{html}"
    );
    // Update credentials through the form: CSRF and role checked, the key
    // never echoed.
    let (st, html, _) = get(&s, &format!("/ui/connections/{id}/update"), &olga).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("type=\"password\""), "{html}");
    let (st, _) = act(&s, &olga, &id, "update", &[("key", "ui-key-new-9")]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = act(
        &s,
        &vic,
        &id,
        "update",
        &[("csrf", &vcsrf), ("key", "ui-key-new-9")],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, html) = act(
        &s,
        &olga,
        &id,
        "update",
        &[("csrf", &csrf), ("key", "ui-key-new-9")],
    )
    .await;
    // (Revocation was only requested: the new key replaces the old one.)
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("pending until the next check"), "{html}");
    assert!(!html.contains("ui-key-new-9"));
    // Delete another one.
    let other = s
        .create_api_key_conn(&s.admin_key, "ui-key-2", json!({"display_name": "Old ETL"}))
        .await;
    let (_, html) = act(&s, &olga, &other, "delete", &[("csrf", &csrf)]).await;
    assert!(html.contains("deleted"), "{html}");
    let (_, html, _) = get(&s, "/ui/connections", &olga).await;
    assert!(!html.contains("Old ETL"));

    // Sign-out ends the session.
    let (st, _) = post_form(&s, "/ui/logout", &olga, &[("csrf", &csrf)]).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (st, _, h) = get(&s, "/ui/connections", &olga).await;
    assert_eq!(
        (st, h["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
    s.stop().await;
}

async fn search_filters_and_bulk_actions(db: Db) {
    let s = TestServer::start(db).await;
    let (olga, csrf) = user(&s, "olga", Role::Operator).await;
    let (vic, vcsrf) = user(&s, "vic", Role::Viewer).await;
    let (as_olga, as_vic) = ((&*olga, &*csrf), (&*vic, &*vcsrf));
    let fx = ProviderFixture::start().await;
    fx.set_mode(Mode::Ok);
    fx.set_valid_credential(Some("bulk-good"));
    let conn = |name: &'static str, key: &'static str, tags: &[&str], custody: &[&str]| json!({"display_name": name, "probe_url": fx.rest_url(), "tags": tags, "custody": custody, "_key": key});
    let mut ids = Vec::new();
    for spec in [
        conn(
            "Billing 100% sync",
            "bulk-good",
            &["billing"],
            &["github-actions"],
        ),
        conn("Billing_ETL", "bulk-bad-1", &["billing"], &[]),
        conn("Marketing feed", "bulk-bad-2", &["marketing"], &["vault"]),
    ] {
        let mut body = spec.clone();
        let key = body.as_object_mut().unwrap().remove("_key").unwrap();
        ids.push(
            s.create_api_key_conn(&s.admin_key, key.as_str().unwrap(), body)
                .await,
        );
    }
    let (good, bad, mkt) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let names = |html: &str| {
        ["Billing 100% sync", "Billing_ETL", "Marketing feed"]
            .into_iter()
            .filter(|n| html.contains(n))
            .collect::<Vec<_>>()
    };

    // Search matches the name as typed: LIKE wildcards are literal.
    let (st, html, _) = get(&s, "/ui/connections?q=100%25", &olga).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(names(&html), ["Billing 100% sync"], "{html}");
    let (_, html, _) = get(&s, "/ui/connections?q=billing_", &olga).await;
    assert_eq!(names(&html), ["Billing_ETL"]);
    let (_, html, _) = get(&s, "/ui/connections?q=BILLING", &olga).await;
    assert_eq!(names(&html), ["Billing 100% sync", "Billing_ETL"]);
    let (_, html, _) = get(&s, &format!("/ui/connections?q={mkt}"), &olga).await;
    assert_eq!(names(&html), ["Marketing feed"], "search by id");
    let (_, html, _) = get(&s, "/ui/connections?tag=marketing", &olga).await;
    assert_eq!(names(&html), ["Marketing feed"]);
    let (_, html, _) = get(&s, "/ui/connections?custody=github-actions", &olga).await;
    assert_eq!(names(&html), ["Billing 100% sync"]);
    let (_, html, _) = get(
        &s,
        "/ui/connections?provider=custom-rest&tag=billing",
        &olga,
    )
    .await;
    assert_eq!(names(&html), ["Billing 100% sync", "Billing_ETL"]);
    assert!(
        html.contains("value=\"billing\""),
        "the form keeps the filter: {html}"
    );
    // Bad filter values: a clear message, not a crash.
    let long = "x".repeat(101);
    let (st, html, _) = get(&s, &format!("/ui/connections?q={long}"), &olga).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(html.contains("at most 100"), "{html}");
    let (st, html, _) = get(&s, "/ui/connections?tag=Not%20A%20Slug", &olga).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{html}");
    // The API takes the same search.
    let l = s.get_admin("/api/v1/connections?q=100%25").await.json();
    assert_eq!(items(&l).len(), 1, "{l}");
    s.get_admin(&format!("/api/v1/connections?q={long}"))
        .await
        .assert_error(400, "invalid_search");

    // Bulk check of picked tiles: one result row per connection.
    let (st, html) = bulk(&s, as_olga, "check", &[("id", &good), ("id", &bad)]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_eq!(names(&html), ["Billing 100% sync", "Billing_ETL"], "{html}");
    assert!(html.contains("1 done, 1 failed"), "{html}");
    assert!(
        html.contains("Broken: needs reauthorization") && html.contains("Active"),
        "{html}"
    );
    assert_eq!(fx.hits(), 2);
    // All matching the filter: the filter is resolved on the server.
    let (st, html) = bulk(
        &s,
        as_olga,
        "check",
        &[
            ("all", "1"),
            ("tag", "marketing"),
            ("q", ""),
            ("status", ""),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_eq!(names(&html), ["Marketing feed"], "{html}");
    assert_eq!(fx.hits(), 3);
    assert_eq!(status_of(&s, &mkt).await, "needs_reauth");
    let a = audit(&s, &format!("action=connection.checked&target={mkt}")).await;
    assert_eq!(
        a["items"][0]["actor"], "user:olga",
        "each row is audited as the user"
    );

    // Revoke asks first, listing exactly what it will touch; nothing changes yet.
    let (st, html) = bulk(
        &s,
        as_olga,
        "revoke",
        &[("all", "1"), ("status", "needs_reauth")],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("Revoke 2 connections?"), "{html}");
    assert_eq!(names(&html), ["Billing_ETL", "Marketing feed"], "{html}");
    assert!(html.contains("name=\"confirmed\" value=\"1\""), "{html}");
    assert_eq!(
        status_of(&s, &mkt).await,
        "needs_reauth",
        "not revoked before confirmation"
    );
    let (st, html) = bulk(&s, as_olga, "revoke", &[("confirmed", "1"), ("id", &mkt)]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(
        html.contains("Revocation pending") && html.contains("Manual steps"),
        "{html}"
    );
    assert!(
        html.contains("0 done, 1 waiting for manual steps, 0 failed"),
        "a pending revocation is not counted done: {html}"
    );
    assert_eq!(status_of(&s, &mkt).await, "revoke_pending");
    // Request reauthorization: a Connect link per connection.
    let reauthorize_bad = [("confirmed", "1"), ("id", bad.as_str())];
    let (st, html) = bulk(&s, as_olga, "reauthorize", &reauthorize_bad).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(
        html.contains("Link made") && html.contains("/connect/"),
        "{html}"
    );
    assert!(!html.contains("bulk-bad-1"), "no secret on the page");
    // Asking again retires the first link: only the newest one works.
    let link_of = |html: &str| {
        let i = html.find("<a href=\"http").unwrap() + "<a href=\"".len();
        html[i..i + html[i..].find('"').unwrap()].to_string()
    };
    let first = link_of(&html);
    assert!(first.contains("/connect/"), "{first}");
    let (_, html) = bulk(&s, as_olga, "reauthorize", &reauthorize_bad).await;
    let second = link_of(&html);
    assert_ne!(first, second);
    let r = browser().get(&first).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Link replaced") && page.contains("connect_session_superseded"),
        "{page}"
    );
    let r = browser().get(&second).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Refusals: nothing picked, unknown action, too many, foreign id,
    // missing CSRF token, viewer.
    let (st, html) = bulk(&s, as_olga, "check", &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(html.contains("Select at least one connection"), "{html}");
    let (st, _) = bulk(&s, as_olga, "explode", &[("id", &good)]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let many: Vec<String> = (0..1001).map(|i| format!("con_{i:032x}")).collect();
    let mut form = vec![("csrf", csrf.as_str()), ("action", "check")];
    form.extend(many.iter().map(|i| ("id", i.as_str())));
    let (st, html) = post_form(&s, "/ui/bulk", &olga, &form).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("at most 1000"), "{html}");
    let (st, _) = bulk(
        &s,
        as_olga,
        "check",
        &[("id", "con_0000000000000000000000000000000a")],
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Another tenant's connection is not found, and nothing runs.
    let other_key = s
        .key("other", &["connections:write", "credentials:read"])
        .await;
    let foreign = s
        .create_api_key_conn(&other_key, "bulk-good", json!({"probe_url": fx.rest_url()}))
        .await;
    let hits = fx.hits();
    let (st, _) = bulk(
        &s,
        as_olga,
        "revoke",
        &[("confirmed", "1"), ("id", &good), ("id", &foreign)],
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(status_of(&s, &good).await, "active", "nothing revoked");
    let (_, html, _) = get(&s, &format!("/ui/connections?q={foreign}"), &olga).await;
    assert!(html.contains("No connections match"), "{html}");
    let (st, _) = post_form(&s, "/ui/bulk", &olga, &[("action", "check"), ("id", &good)]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, html, _) = get(&s, "/ui/connections", &vic).await;
    assert!(
        !html.contains("id=\"bulk\"") && !html.contains("Select Billing"),
        "viewer has no bulk form: {html}"
    );
    let (st, _) = bulk(&s, as_vic, "check", &[("id", &good)]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(fx.hits(), hits, "refused bulk actions ran nothing");

    // htmx asks for the tile alone, with the result on it.
    let r = browser()
        .post(format!("{}/ui/connections/{good}/check", s.base))
        .header("cookie", &olga)
        .header("hx-request", "true")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.trim_start().starts_with("<li class=\"tile ok\""),
        "{html}"
    );
    assert!(
        html.contains("Checked: ok") && !html.contains("<html"),
        "{html}"
    );
    // An expired session: htmx is told to go to the sign-in page, instead of
    // getting a redirect it would follow and swap into the tile.
    let r = browser()
        .post(format!("{}/ui/connections/{good}/check", s.base))
        .header("hx-request", "true")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["hx-redirect"], "/ui/login");
    // A missing form token makes htmx reload the page (fresh token).
    let r = browser()
        .post(format!("{}/ui/connections/{good}/check", s.base))
        .header("cookie", &olga)
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.headers()["hx-refresh"], "true");

    // Dashboard pages may load scripts from rekey only; htmx is ours, pinned.
    let (_, html, h) = get(&s, "/ui/connections", &olga).await;
    let csp = h["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("default-src 'none'")
            && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(
        html.contains("<script src=\"/assets/htmx-2.0.11.min.js\" integrity=\"sha384-"),
        "{html}"
    );
    let r = browser()
        .get(format!("{}/assets/htmx-2.0.11.min.js", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let js = r.bytes().await.unwrap();
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&js)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest, "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717",
        "the served htmx is the pinned htmx.org 2.0.11 (assets/README.md)"
    );

    // Rotate: the provider's runbook and the way to hand over the new key.
    let (st, html, _) = get(&s, &format!("/ui/connections/{good}/rotate"), &olga).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains("Rotate Billing 100% sync")
            && html.contains("type=\"password\"")
            && html.contains("Retire the old credential"),
        "{html}"
    );
    let (st, _, _) = get(&s, &format!("/ui/connections/{good}/rotate"), &vic).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

/// Post the connection `id`'s dashboard `action` form as `cookie`.
async fn act(
    s: &TestServer,
    cookie: &str,
    id: &str,
    action: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    post_form(s, &format!("/ui/connections/{id}/{action}"), cookie, form).await
}

/// Post the bulk form as the signed-in user `(cookie, csrf token)`: the
/// token, the `action`, then `rest` (picked ids, filters, confirmation).
async fn bulk(
    s: &TestServer,
    (cookie, csrf): (&str, &str),
    action: &str,
    rest: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut form = vec![("csrf", csrf), ("action", action)];
    form.extend_from_slice(rest);
    post_form(s, "/ui/bulk", cookie, &form).await
}

/// The audit log's page for this query string, read with the admin key.
async fn audit(s: &TestServer, query: &str) -> serde_json::Value {
    s.get_admin(&format!("/api/v1/audit?{query}")).await.json()
}

/// More connections than one page: the page links to the next one with the
/// filter kept, and "all matching the filter" reaches past the first page.
async fn pages_and_bulk_beyond_one_page(db: Db) {
    let s = TestServer::start(db).await;
    let (olga, csrf) = user(&s, "olga", Role::Operator).await;
    let as_olga = (&*olga, &*csrf);
    let fx = ProviderFixture::start().await;
    fx.set_mode(Mode::Ok);
    for i in 0..205 {
        let tags = if i % 2 == 0 {
            json!(["even"])
        } else {
            json!(["odd"])
        };
        s.create_api_key_conn(
            &s.admin_key,
            "fleet-key",
            json!({"display_name": format!("Fleet {i:03}"), "probe_url": fx.rest_url(), "tags": tags}),
        )
        .await;
    }
    let tiles = |html: &str| html.matches("<li class=\"tile").count();
    let (st, html, _) = get(&s, "/ui/connections", &olga).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tiles(&html), 200);
    assert!(
        html.contains("every connection matching the filter (all pages)"),
        "the bulk form says so"
    );
    let i = html.find("rel=\"next\"").expect("a next-page link");
    let href_at = html[..i].rfind("href=\"").unwrap() + "href=\"".len();
    let next = html[href_at..href_at + html[href_at..].find('"').unwrap()].replace("&#38;", "&");
    assert!(next.starts_with("/ui/connections?cursor="), "{next}");
    let (st, html, _) = get(&s, &next, &olga).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tiles(&html), 5, "the rest on the second page");
    // A page that is exactly full has no next page (no empty last page).
    let l = s
        .get_admin("/api/v1/connections?q=Fleet%2000&limit=10")
        .await
        .json();
    assert_eq!(items(&l).len(), 10, "{l}");
    assert!(l["next_cursor"].is_null(), "{l}");
    let l = s
        .get_admin("/api/v1/connections?q=Fleet%2000&limit=9")
        .await
        .json();
    assert!(l["next_cursor"].is_string(), "{l}");
    assert!(
        html.contains("First page") && !html.contains("rel=\"next\""),
        "{html}"
    );
    // The filter travels with the page link.
    let (_, html, _) = get(&s, "/ui/connections?q=Fleet%200", &olga).await;
    assert_eq!(tiles(&html), 100, "Fleet 000–099");
    assert!(!html.contains("rel=\"next\""));
    let (_, html, _) = get(&s, "/ui/connections?q=fleet&status=pending", &olga).await;
    assert!(
        html.contains("href=\"/ui/connections?q=fleet&#38;status=pending&#38;cursor="),
        "{}",
        &html[html.find("pager").unwrap_or(0)..][..300]
    );
    // All matching the filter, resolved across pages on the server.
    let (st, html) = bulk(&s, as_olga, "check", &[("all", "1")]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains("Check now: 205 connections") && html.contains("205 done, 0 failed"),
        "{}",
        &html[..html.len().min(2000)]
    );
    assert_eq!(fx.hits(), 205);
    s.stop().await;
}

/// The connection menu's actions are a closed set: any other name is
/// refused (404) before anything runs, and above all deletes nothing.
async fn unknown_actions_delete_nothing(db: Db) {
    let s = TestServer::start(db).await;
    let (olga, csrf) = user(&s, "olga", Role::Operator).await;
    let id = s
        .create_api_key_conn(
            &s.admin_key,
            "keep-me-1",
            json!({"display_name": "Keep me"}),
        )
        .await;
    for action in [
        "explode",
        "Delete",
        "DELETE",
        "delete%20",
        "remove",
        "destroy",
        "purge",
    ] {
        let (st, html) = act(&s, &olga, &id, action, &[("csrf", &csrf)]).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{action}: {html}");
        assert!(html.contains("Unknown action"), "{action}: {html}");
        let (st, _, _) = get(&s, &format!("/ui/connections/{id}/confirm/{action}"), &olga).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "confirm/{action}");
    }
    // Still there, unchanged, and nothing but its creation was audited.
    assert_eq!(status_of(&s, &id).await, "pending");
    let a = audit(&s, &format!("target={id}")).await;
    let actions: Vec<&str> = items(&a)
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["connection.create"], "{a}");
    // The real action still works.
    let (st, html) = act(&s, &olga, &id, "delete", &[("csrf", &csrf)]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    s.get_admin(&format!("/api/v1/connections/{id}"))
        .await
        .assert_error(404, "connection_not_found");
    s.stop().await;
}

/// Dashboard actions are audited with the request id and the client
/// address, as API calls are (issue 13, item 5).
async fn dashboard_actions_are_audited_like_the_api(db: Db) {
    let s = TestServer::start(db).await;
    let (olga, csrf) = user(&s, "olga", Role::Operator).await;
    let fx = ProviderFixture::start().await;
    fx.set_mode(Mode::Ok);
    let id = s
        .create_api_key_conn(
            &s.admin_key,
            "audit-key-1",
            json!({"display_name": "Audited", "probe_url": fx.rest_url()}),
        )
        .await;
    let check = format!("/ui/connections/{id}/check");
    let disable = format!("/ui/connections/{id}/disable");
    let enable = format!("/ui/connections/{id}/enable");
    let update = format!("/ui/connections/{id}/update");
    let revoke = format!("/ui/connections/{id}/revoke");
    // (path, form fields besides the token, request id, audit action)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: [Case; 6] = [
        (&check, vec![], "ui-req-check", "connection.checked"),
        (&disable, vec![], "ui-req-disable", "connection.disable"),
        (&enable, vec![], "ui-req-enable", "connection.enable"),
        (
            &update,
            vec![("key", "audit-key-2")],
            "ui-req-update",
            "connection.credentials_update",
        ),
        (
            "/ui/bulk",
            vec![("action", "check"), ("id", &id)],
            "ui-req-bulk",
            "connection.checked",
        ),
        (
            &revoke,
            vec![],
            "ui-req-revoke",
            "connection.revoke_pending",
        ),
    ];
    for (path, extra, request_id, action) in cases {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(extra);
        let r = browser()
            .post(format!("{}{path}", s.base))
            .header("cookie", &olga)
            .header("x-request-id", request_id)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let a = audit(&s, &format!("action={action}&target={id}")).await;
        let e = &a["items"][0];
        assert_eq!(e["actor"], "user:olga", "{path}: {a}");
        assert_eq!(e["request_id"], request_id, "{path}: {a}");
        assert_eq!(e["source"], "127.0.0.1", "{path}: {a}");
    }
    // Without an `X-Request-Id`, the one rekey made (and answered with) is recorded.
    let r = browser()
        .post(format!("{}/ui/connections/{id}/delete", s.base))
        .header("cookie", &olga)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!made.is_empty());
    let a = audit(&s, &format!("action=connection.delete&target={id}")).await;
    assert_eq!(a["items"][0]["request_id"], made.as_str(), "{a}");
    assert_eq!(a["items"][0]["source"], "127.0.0.1", "{a}");
    // The API records the same for its calls.
    let other = s.api_key_conn("audit-key-3").await;
    let a = audit(&s, &format!("action=connection.create&target={other}")).await;
    assert!(a["items"][0]["request_id"].is_string(), "{a}");
    assert_eq!(a["items"][0]["source"], "127.0.0.1", "{a}");
    // Sign-in, refused and accepted, carries the request id too.
    for (pw, outcome, request_id) in [
        ("wrong password", "denied", "ui-req-login-bad"),
        ("correct horse battery", "ok", "ui-req-login-ok"),
    ] {
        let r = login(&s, "olga", pw, &[("x-request-id", request_id)]).await;
        assert!(r.status().is_redirection() || r.status() == StatusCode::UNAUTHORIZED);
        let a = audit(&s, "action=user.login").await;
        let e = &a["items"][0];
        assert_eq!(e["outcome"], outcome, "{a}");
        assert_eq!(e["request_id"], request_id, "{a}");
        assert_eq!(e["source"], "127.0.0.1", "{a}");
    }
    s.stop().await;
}

/// A browser pointed at rekey's bare address lands on the dashboard (the
/// sign-in page when signed out), and the pages have an icon.
async fn root_leads_to_the_dashboard(db: Db) {
    let s = TestServer::start(db).await;
    let r = browser().get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/connections");
    // Followed by a browser: signed out, it ends on the sign-in page.
    let page = reqwest::get(format!("{}/", s.base)).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.url().path().starts_with("/ui/login"), "{}", page.url());
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<link rel="icon" href="/favicon.svg""#),
        "{html}"
    );
    for path in ["/favicon.ico", "/favicon.svg"] {
        let r = browser()
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], "image/svg+xml", "{path}");
        assert!(r.text().await.unwrap().starts_with("<svg"), "{path}");
    }
    s.stop().await;
}
