//! Helpers of the dashboard tests (`ui.rs`, `ui_pages.rs`, `ui_webhooks.rs`,
//! `ui_integrations.rs`, `confirm_working.rs`):
//! a browser-like client that does not follow redirects, signed-in users
//! and the header every signed-in page shows.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_service::{Ctx, Role};
use rekey_testkit::TestServer;
use reqwest::StatusCode;

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn get(s: &TestServer, path: &str, cookie: &str) -> (StatusCode, String) {
    let r = browser()
        .get(format!("{}{path}", s.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
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

pub fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[i..i + html[i..].find('"').unwrap()].to_string()
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
    let r = browser()
        .post(format!("{}/ui/login", s.base))
        .form(&[("username", name), ("password", pw)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/ui/connections");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
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
