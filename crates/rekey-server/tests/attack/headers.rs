//! Issue 12 item 3: header injection through stored credentials. CR, LF,
//! NUL and other control characters in header-placed secrets, and framing
//! or hop-by-hop header names (`Host`, `Content-Length: 100` hung the
//! probe), were stored and handed back in `apply`. They are refused at
//! input (API and Connect page) with a 400 that names the field and never
//! the value; material stored before is reported as `probe_misconfigured`
//! and never sent.

use rekey_testkit::provider_fixture::ProviderFixture;
use rekey_testkit::{both_backends, items, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

both_backends!(
    injection_refused_at_input,
    stored_unusable_headers_are_never_sent,
    connect_page_refuses_injection,
);

const SECRET: &str = "INJECT-SECRET-77";

fn bad_credentials() -> Vec<(&'static str, Value, &'static str)> {
    let crlf = format!("{SECRET}\r\nX-Evil: 1");
    vec![
        ("api_key", json!({"key": crlf}), "credentials.key"),
        (
            "api_key",
            json!({"key": format!("{SECRET}\n")}),
            "credentials.key",
        ),
        (
            "api_key",
            json!({"key": format!("{SECRET}\r")}),
            "credentials.key",
        ),
        (
            "api_key",
            json!({"key": format!("{SECRET}\0")}),
            "credentials.key",
        ),
        (
            "api_key",
            json!({"key": format!("{SECRET}\u{7f}")}),
            "credentials.key",
        ),
        (
            "api_key",
            json!({"key": format!("{SECRET}\u{85}")}),
            "credentials.key",
        ),
        (
            "api_key",
            json!({"key": crlf, "name": "X-Api-Key", "prefix": "Token "}),
            "credentials.key",
        ),
        (
            "api_key",
            json!({"key": SECRET, "prefix": "Bearer\r\nX-Evil: 1 "}),
            "credentials.prefix",
        ),
        (
            "api_key",
            json!({"key": "100", "name": "Content-Length"}),
            "credentials.name",
        ),
        (
            "api_key",
            json!({"key": SECRET, "name": "Host"}),
            "credentials.name",
        ),
        (
            "api_key",
            json!({"key": SECRET, "name": "transfer-encoding"}),
            "credentials.name",
        ),
        (
            "api_key",
            json!({"key": SECRET, "name": "Proxy-Authorization"}),
            "credentials.name",
        ),
        (
            "api_key",
            json!({"key": SECRET, "name": "Expect"}),
            "credentials.name",
        ),
        (
            "headers",
            json!({"headers": {"X-Auth": crlf}}),
            "credentials.headers.X-Auth",
        ),
        (
            "headers",
            json!({"headers": {"X-Auth": format!("{SECRET}\0")}}),
            "credentials.headers.X-Auth",
        ),
        (
            "headers",
            json!({"headers": {"Content-Length": "100"}}),
            "credentials.headers.Content-Length",
        ),
        (
            "headers",
            json!({"headers": {"X-Auth": SECRET, "Connection": "close"}}),
            "credentials.headers.Connection",
        ),
        (
            "headers",
            json!({"headers": {"Keep-Alive": SECRET}}),
            "credentials.headers.Keep-Alive",
        ),
        (
            "headers",
            json!({"headers": {"Upgrade": SECRET}}),
            "credentials.headers.Upgrade",
        ),
        (
            "headers",
            json!({"headers": {"TE": SECRET}}),
            "credentials.headers.TE",
        ),
        (
            "headers",
            json!({"headers": {"Trailer": SECRET}}),
            "credentials.headers.Trailer",
        ),
        (
            "headers",
            json!({"headers": {"Proxy-Connection": SECRET}}),
            "credentials.headers.Proxy-Connection",
        ),
    ]
}

async fn injection_refused_at_input(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let id = s.create_api_key_conn(k, "good-key", json!({})).await;
    for (kind, credentials, field) in bad_credentials() {
        let r = s
            .post(
                "/api/v1/connections",
                k,
                json!({"provider": "custom-rest", "kind": kind, "display_name": "x", "credentials": credentials}),
            )
            .await;
        r.assert_error(400, "invalid_credentials");
        let m = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(m.contains(&format!("`{field}`")), "{credentials}: {m}");
        assert!(
            !r.text.contains(SECRET) && !r.text.contains("Evil"),
            "{}",
            r.text
        );
        // The same through a credential update (api_key connection).
        if kind == "api_key" {
            let r = s
                .put(
                    &format!("/api/v1/connections/{id}/credentials"),
                    k,
                    json!({"credentials": credentials}),
                )
                .await;
            r.assert_error(400, "invalid_credentials");
            assert!(!r.text.contains(SECRET), "{}", r.text);
        }
    }
    // Nothing was stored: only the first connection exists, unchanged.
    let list = s.get("/api/v1/connections", k).await.json();
    assert_eq!(items(&list).len(), 1, "{list}");
    let cr = s
        .get(&format!("/api/v1/connections/{id}/credentials"), k)
        .await
        .json();
    assert_eq!(
        cr["credentials"]["apply"]["headers"]["X-Api-Key"],
        "good-key"
    );
    // A tab is legal in a value; `host` is a fine query parameter name; a
    // CR/LF outside a header (query, Basic) is encoded on the wire.
    for credentials in [
        json!({"key": "a\tb"}),
        json!({"key": "a\r\nb", "placement": "query", "name": "host"}),
        json!({"key": "a\r\nb", "placement": "basic"}),
    ] {
        let r = s
            .post(
                "/api/v1/connections",
                k,
                json!({"provider": "custom-rest", "kind": "api_key", "display_name": "ok", "credentials": credentials}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{credentials}: {}", r.text);
    }
    s.stop().await;
}

/// Material stored before the rules (written here with raw SQL into the
/// clear-text meta: a framing header name, a prefix with CR/LF) is
/// reported as `probe_misconfigured`, never sent, and gets no `apply`.
async fn stored_unusable_headers_are_never_sent(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let fx = ProviderFixture::start().await;
    for meta in [
        r#"{"placement":"header","name":"Content-Length"}"#,
        r#"{"placement":"header","name":"Host"}"#,
        r#"{"placement":"header","name":"Proxy-Authorization"}"#,
        r#"{"placement":"header","name":"Authorization","prefix":"Bearer\r\nContent-Length: 100\r\n\r\n"}"#,
        r#"{"placement":"header","name":"X-Api-Key","prefix":"\u0000"}"#,
    ] {
        let id = s
            .create_api_key_conn(k, SECRET, json!({"probe_url": fx.rest_url()}))
            .await;
        s.sql(&[&format!(
            "UPDATE connections SET credential_meta = '{meta}' WHERE id = '{id}'"
        )])
        .await;
        let hits = fx.hits();
        let r = s
            .post(&format!("/api/v1/connections/{id}/check"), k, json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let c = r.json();
        assert_eq!(fx.hits(), hits, "{meta}: the header was sent");
        assert_eq!(c["outcome"], "unexpected", "{c}");
        assert_eq!(c["last_error"]["code"], "probe_misconfigured", "{c}");
        assert_ne!(c["last_error"]["code"], "connection_failed");
        assert_eq!(c["status"], "degraded", "{c}");
        let msg = c["last_error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("cannot be sent as an HTTP header") && !msg.contains(SECRET),
            "{msg}"
        );
        let view = s.get(&format!("/api/v1/connections/{id}"), k).await.json();
        assert_eq!(view["last_error"]["code"], "probe_misconfigured");
        // The material is still readable, without a ready-to-send form.
        let cr = s
            .get(&format!("/api/v1/connections/{id}/credentials"), k)
            .await;
        assert_eq!(cr.status, StatusCode::OK, "{}", cr.text);
        let cr = cr.json();
        assert_eq!(cr["credentials"]["key"], SECRET);
        assert!(cr["credentials"].get("apply").is_none(), "{cr}");
    }
    s.stop().await;
}

async fn connect_page_refuses_injection(db: Db) {
    let s = TestServer::start(db).await;
    let b = rekey_testkit::oauth2_fixture::browser();
    let r = s
        .post_admin(
            "/api/v1/connect-sessions",
            json!({"provider": "custom-rest", "kind": "api_key"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let url = r.json()["url"].as_str().unwrap().to_string();
    let submit = |fields: Vec<(&'static str, String)>| {
        let b = b.clone();
        let url = url.clone();
        async move {
            let r = b
                .post(format!("{url}/submit"))
                .form(&fields)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let crlf = format!("{SECRET}\r\nX-Evil: 1");
    for (fields, field) in [
        (vec![("key", crlf.clone())], "API key or token"),
        (
            vec![("key", crlf.clone()), ("name", "X-Api-Key".into())],
            "API key or token",
        ),
        (
            vec![("key", SECRET.into()), ("name", "Content-Length".into())],
            "Header or query parameter name",
        ),
        (
            vec![("key", SECRET.into()), ("name", "Transfer-Encoding".into())],
            "Header or query parameter name",
        ),
        (
            vec![
                ("key", SECRET.into()),
                ("prefix", "Bearer\r\nHost: evil ".into()),
            ],
            "Prefix",
        ),
    ] {
        let (st, page) = submit(fields.clone()).await;
        assert_eq!(st, 400, "{fields:?}: {page}");
        // Named by the form's label, not the wire name.
        assert!(page.contains(field), "{fields:?}: {page}");
        assert!(!page.contains("credentials."), "{fields:?}: {page}");
        assert!(!page.contains(SECRET) && !page.contains("Evil"), "{page}");
    }
    // The link was not spent: a good submission still connects.
    let (st, page) = submit(vec![("key", SECRET.into()), ("name", "X-Api-Key".into())]).await;
    assert_eq!(st, 200, "{page}");
    let list = s.get_admin("/api/v1/connections").await.json();
    assert_eq!(items(&list).len(), 1, "{list}");
    s.stop().await;
}
