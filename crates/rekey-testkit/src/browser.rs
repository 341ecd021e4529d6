//! A browser as the Connect-page and dashboard tests drive one: no
//! automatic redirects, form posts, the session cookie and the CSRF token of
//! a page.

/// A browser without automatic redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// GET `url` and return the body, whatever the status.
pub async fn get_text(b: &reqwest::Client, url: &str) -> String {
    b.get(url).send().await.unwrap().text().await.unwrap()
}

/// Post a Connect page's key form (`{url}/submit`): status and body.
pub async fn submit(b: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let r = b
        .post(format!("{url}/submit"))
        .form(fields)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The `name=value` of the cookie a sign-in response sets.
pub fn session_cookie(r: &reqwest::Response) -> String {
    r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The CSRF token of a dashboard page's forms.
pub fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[i..i + html[i..].find('"').unwrap()].to_string()
}
