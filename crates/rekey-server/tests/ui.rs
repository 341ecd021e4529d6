//! The dashboard over real HTTP: sign-in, cookie flags, sessions, CSRF,
//! roles, and the integrations page's tiles. (The browser suite with
//! Chromium comes with the rest of the dashboard.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_service::{Ctx, Role};
use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::StatusCode;
use serde_json::json;

both_backends!(sign_in_sessions_csrf_and_roles);

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sign_in(s: &TestServer, user: &str, pw: &str) -> (StatusCode, Option<String>, String) {
    let r = browser()
        .post(format!("{}/ui/login", s.base))
        .form(&[("username", user), ("password", pw)])
        .send()
        .await
        .unwrap();
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

fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[i..i + html[i..].find('"').unwrap()].to_string()
}

async fn get(
    s: &TestServer,
    path: &str,
    cookie: &str,
) -> (StatusCode, String, reqwest::header::HeaderMap) {
    let r = browser()
        .get(format!("{}{path}", s.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let (st, h) = (r.status(), r.headers().clone());
    (st, r.text().await.unwrap(), h)
}

async fn post_form(
    s: &TestServer,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    let r = browser()
        .post(format!("{}{path}", s.base))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
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
    let (st, _, h) = get(&s, "/ui/integrations", "").await;
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
    let r = browser()
        .post(format!("{}/ui/login", s.base))
        .header("origin", "https://evil.example")
        .form(&[("username", "olga"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("set-cookie").is_none());
    let r = browser()
        .post(format!("{}/ui/login", s.base))
        .header("origin", "null")
        .form(&[("username", "olga"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "an opaque origin is refused too"
    );
    let r = browser()
        .post(format!("{}/ui/login", s.base))
        .header("origin", &s.base)
        .form(&[("username", "olga"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
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
    let (st, html, h) = get(&s, "/ui/integrations", &olga).await;
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
    let (st, _) = post_form(&s, &format!("/ui/connections/{id}/check"), &olga, &[]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = post_form(
        &s,
        &format!("/ui/connections/{id}/check"),
        &olga,
        &[("csrf", "forged")],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(fx.hits(), 0);
    // With it, the operator's check runs and the tile shows the broken state.
    let (st, html) = post_form(
        &s,
        &format!("/ui/connections/{id}/check"),
        &olga,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("needs reauthorization"), "{html}");
    let (_, html, _) = get(&s, "/ui/integrations?status=needs_reauth", &olga).await;
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
    let (_, html, _) = get(&s, "/ui/integrations?status=active", &olga).await;
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
    let a = s
        .get(
            &format!("/api/v1/audit?action=connection.checked&target={id}"),
            &s.admin_key,
        )
        .await
        .json();
    assert_eq!(a["items"][0]["actor"], "user:olga");

    // A viewer sees the tiles but cannot act, even with a valid token.
    let (_, cookie, _) = sign_in(&s, "vic", "correct horse battery").await;
    let vic = session_of(&cookie.unwrap());
    let (_, html, _) = get(&s, "/ui/integrations", &vic).await;
    assert!(html.contains("Acme CRM") && !html.contains("Check now"));
    let vcsrf = csrf_of(&html);
    let (st, _) = post_form(
        &s,
        &format!("/ui/connections/{id}/check"),
        &vic,
        &[("csrf", &vcsrf)],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // One session's token does not work for another.
    let (st, _) = post_form(
        &s,
        &format!("/ui/connections/{id}/check"),
        &vic,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // The three-dot menu's actions: viewers are refused; operators confirm
    // then act, each with a visible result.
    let (st, _) = post_form(
        &s,
        &format!("/ui/connections/{id}/disable"),
        &vic,
        &[("csrf", &vcsrf)],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, html, _) = get(&s, &format!("/ui/connections/{id}/confirm/disable"), &olga).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains("Disable Acme CRM") && html.contains("name=\"csrf\""),
        "{html}"
    );
    let (st, _) = post_form(&s, &format!("/ui/connections/{id}/disable"), &olga, &[]).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "no CSRF token, no action");
    let (st, html) = post_form(
        &s,
        &format!("/ui/connections/{id}/disable"),
        &olga,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("is disabled"), "{html}");
    let (_, html, _) = get(&s, "/ui/integrations", &olga).await;
    assert!(
        html.contains("Disabled") && html.contains("confirm/enable"),
        "{html}"
    );
    let (_, html) = post_form(
        &s,
        &format!("/ui/connections/{id}/enable"),
        &olga,
        &[("csrf", &csrf)],
    )
    .await;
    assert!(html.contains("enabled"), "{html}");
    let (st, _) = post_form(
        &s,
        &format!("/ui/connections/{id}/explode"),
        &olga,
        &[("csrf", &csrf)],
    )
    .await;
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
    let (_, html) = post_form(
        &s,
        &format!("/ui/connections/{id}/revoke"),
        &olga,
        &[("csrf", &csrf)],
    )
    .await;
    assert!(
        html.contains("manual revocation") && html.contains("Delete or disable the credential"),
        "{html}"
    );
    // Update credentials through the form: CSRF and role checked, the key
    // never echoed.
    let (st, html, _) = get(&s, &format!("/ui/connections/{id}/update"), &olga).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("type=\"password\""), "{html}");
    let (st, _) = post_form(
        &s,
        &format!("/ui/connections/{id}/update"),
        &olga,
        &[("key", "ui-key-new-9")],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = post_form(
        &s,
        &format!("/ui/connections/{id}/update"),
        &vic,
        &[("csrf", &vcsrf), ("key", "ui-key-new-9")],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, html) = post_form(
        &s,
        &format!("/ui/connections/{id}/update"),
        &olga,
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
    let (_, html) = post_form(
        &s,
        &format!("/ui/connections/{other}/delete"),
        &olga,
        &[("csrf", &csrf)],
    )
    .await;
    assert!(html.contains("deleted"), "{html}");
    let (_, html, _) = get(&s, "/ui/integrations", &olga).await;
    assert!(!html.contains("Old ETL"));

    // Sign-out ends the session.
    let (st, _) = post_form(&s, "/ui/logout", &olga, &[("csrf", &csrf)]).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (st, _, h) = get(&s, "/ui/integrations", &olga).await;
    assert_eq!(
        (st, h["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
    s.stop().await;
}
