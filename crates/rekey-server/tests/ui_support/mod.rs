//! Helpers of the dashboard tests (`ui.rs`, `ui_pages.rs`, `ui_webhooks.rs`,
//! `ui_integrations.rs`, `confirm_working.rs`):
//! a browser-like client that does not follow redirects, signed-in users
//! and the header every signed-in page shows.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_api::AuditQuery;
use rekey_service::{Ctx, Role};
use rekey_testkit::browser::session_cookie;
pub use rekey_testkit::browser::{browser, csrf_of};
use rekey_testkit::TestServer;
use reqwest::StatusCode;

pub async fn get(s: &TestServer, path: &str, cookie: &str) -> (StatusCode, String) {
    let (st, html, _) = get_with_headers(s, path, cookie).await;
    (st, html)
}

/// [`get`], with the response's headers.
pub async fn get_with_headers(
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

/// The default tenant's newest audit entry with this action.
pub async fn last_audit(s: &TestServer, action: &str) -> rekey_api::AuditEntryView {
    let query = AuditQuery {
        action: Some(action.into()),
        ..Default::default()
    };
    let page = s.rekey.audit_list("default", &query).await.unwrap();
    rekey_server::views::audit_entry(&page.items[0])
}

/// The connection `id`'s status, read with the admin key.
pub async fn status_of(s: &TestServer, id: &str) -> String {
    let c = s.get_admin(&format!("/api/v1/connections/{id}")).await;
    c.json()["status"].as_str().unwrap().to_string()
}

pub async fn post(
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

/// Post the sign-in form, with these extra request headers.
pub async fn login(
    s: &TestServer,
    name: &str,
    pw: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = browser().post(format!("{}/ui/login", s.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let form = [("username", name), ("password", pw)];
    req.form(&form).send().await.unwrap()
}

/// Session cookie and CSRF token of a new signed-in user with this role.
pub async fn user(s: &TestServer, name: &str, role: Role) -> (String, String) {
    let pw = "correct horse battery";
    s.rekey
        .create_user(
            &Ctx::cli("default"),
            name,
            &rekey_core::SecretString::new(pw.to_string()),
            role,
        )
        .await
        .unwrap();
    let r = login(s, name, pw, &[]).await;
    assert_eq!(r.headers()["location"], "/ui/connections");
    let cookie = session_cookie(&r);
    let (_, html) = get(s, "/ui/connections", &cookie).await;
    (cookie, csrf_of(&html))
}

/// The header of a signed-in page: the user, the menu and Sign out.
pub fn has_header(html: &str, who: &str) -> bool {
    html.contains(&format!("<span class=\"who\">{who} ("))
        && html.contains(">Sign out</button>")
        && html.contains("href=\"/ui/connections\">Connections</a>")
        && html.contains("Integrations (OAuth apps)</a>")
}
