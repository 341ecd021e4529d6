//! The Connect page in Chromium: a key-based reauthorization link shows the
//! connection's settings prefilled, asks only for the secret, and keeps the
//! settings when submitted (checked through the API afterwards).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use rekey_testkit::Db;
use serde_json::{json, Value};

async fn api(
    base: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut r = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let st = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(st.is_success(), "{path}: {st} {v}");
    v
}

#[tokio::test]
async fn connect_reauthorization_in_chromium() {
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let base = server.base.clone();
    let name = "EU support inbox";
    let c = api(&base, &key, reqwest::Method::POST, "/api/v1/connections", Some(json!({
        "provider": "intercom", "kind": "api_key", "display_name": name,
        "params": {"api_host": "api.eu.intercom.io"},
        "credentials": {"key": "old-intercom-token", "name": "X-Intercom-Token", "prefix": "Token "}}))).await;
    let id = c["id"].as_str().unwrap().to_string();
    let r = api(
        &base,
        &key,
        reqwest::Method::POST,
        &format!("/api/v1/connections/{id}/reauthorize"),
        Some(json!({})),
    )
    .await;
    let url = r["session"]["url"].as_str().unwrap();
    // The link on this server, whatever public URL it was configured with.
    let path = &url[url.find("/connect/").unwrap()..];
    let connect_url = format!("{base}{path}");
    let first = api(
        &base,
        &key,
        reqwest::Method::POST,
        "/api/v1/connect-sessions",
        Some(
            json!({"provider": "intercom", "kind": "api_key", "display_name": "US support inbox"}),
        ),
    )
    .await;
    let first_url = first["url"].as_str().unwrap();
    let first_url = format!(
        "{base}{}",
        &first_url[first_url.find("/connect/").unwrap()..]
    );
    run_browser_script(
        "connect.mjs",
        &base,
        &[
            ("FIRST_URL", &first_url),
            ("FIRST_NAME", "US support inbox"),
            ("CONNECT_URL", &connect_url),
            ("CONN_NAME", name),
            ("NEW_KEY", "new-intercom-token"),
        ],
    )
    .await;
    let c = api(
        &base,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/connections/{id}"),
        None,
    )
    .await;
    assert_eq!(c["params"]["api_host"], "api.eu.intercom.io", "{c}");
    assert_eq!(c["credential"]["name"], "X-Intercom-Token", "{c}");
    assert_eq!(c["credential"]["prefix"], "Token ", "{c}");
    let cr = api(
        &base,
        &key,
        reqwest::Method::GET,
        &format!("/api/v1/connections/{id}/credentials"),
        None,
    )
    .await;
    assert_eq!(
        cr["credentials"]["apply"]["headers"]["X-Intercom-Token"], "Token new-intercom-token",
        "{cr}"
    );
    // The first connection, as the browser made it.
    let list = api(
        &base,
        &key,
        reqwest::Method::GET,
        "/api/v1/connections?provider=intercom",
        None,
    )
    .await;
    let made = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["display_name"] == "US support inbox")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(made["params"]["api_host"], "api.intercom.io", "{made}");
    assert_eq!(made["credential"]["prefix"], "Bearer ", "{made}");
    server.stop().await;
}
