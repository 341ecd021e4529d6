//! Issue 12 (part): owner emails took markup (`<script>`…) and names took
//! bidirectional overrides and other invisible formatting characters
//! (`invoice` U+202E `fdp.exe` shows as `invoiceexe.pdf`) and control characters.
//! Emails must be addr-specs; free text refuses both; 400 `invalid_field`
//! naming the field.

use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

both_backends!(markup_and_invisible_characters_refused);

const BIDI: &[char] = &[
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
];

const BAD_EMAILS: &[&str] = &[
    "<script>alert(1)</script>@example.com",
    "ops@example.com<script>alert(1)</script>",
    "\"ops\"@example.com",
    "o'ps@example.com",
    "ops @example.com",
    "Ops <ops@example.com>",
    "ops@exa\u{202E}mple.com",
    "ops@example",
];

fn connection(extra: Value) -> Value {
    let mut body = json!({"provider": "custom-rest", "kind": "api_key", "display_name": "Payroll API",
                          "credentials": {"key": "k-names-1"}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn markup_and_invisible_characters_refused(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let mut refused: Vec<(Value, &str)> = Vec::new();
    for e in BAD_EMAILS {
        refused.push((json!({"owner": {"email": e}}), "owner.email"));
    }
    for c in BIDI
        .iter()
        .chain(&['\n', '\r', '\0', '\u{1b}', '\u{200B}', '\u{FEFF}'])
    {
        let name = format!("invoice{c}fdp.exe");
        refused.push((json!({"display_name": name}), "display_name"));
        refused.push((json!({"owner": {"name": name}}), "owner.name"));
        refused.push((json!({"owner": {"subject": name}}), "owner.subject"));
    }
    for (extra, field) in &refused {
        let r = s
            .post("/api/v1/connections", k, connection(extra.clone()))
            .await;
        r.assert_error(400, "invalid_field");
        let m = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(m.contains(&format!("`{field}`")), "{extra}: {m}");
        assert!(!m.contains("script") && !m.contains("fdp"), "echoed: {m}");
    }
    assert_eq!(
        s.get("/api/v1/connections", k).await.json()["items"],
        json!([]),
        "nothing was stored"
    );

    // Edits go through the same checks.
    let r = s
        .post("/api/v1/connections", k, connection(json!({})))
        .await;
    let id = r.created_id();
    for (extra, _) in &refused {
        let r = s
            .patch(&format!("/api/v1/connections/{id}"), k, extra.clone())
            .await;
        r.assert_error(400, "invalid_field");
    }

    // Connect links: the owner hint (an email when it has an `@`) and the name.
    let session = |extra: Value| {
        let mut b = json!({"provider": "custom-rest", "kind": "api_key"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for e in BAD_EMAILS {
        let r = s
            .post(
                "/api/v1/connect-sessions",
                k,
                session(json!({"owner_hint": e})),
            )
            .await;
        r.assert_error(400, "invalid_field");
    }
    for c in BIDI {
        for extra in [
            json!({"owner_hint": format!("ops{c}team")}),
            json!({"display_name": format!("invoice{c}fdp.exe")}),
        ] {
            let r = s
                .post("/api/v1/connect-sessions", k, session(extra.clone()))
                .await;
            r.assert_error(400, "invalid_field");
        }
        // Webhook descriptions are shown on the dashboard too.
        let r = s
            .post(
                "/api/v1/webhooks",
                k,
                json!({"url": "http://127.0.0.1:9/hook", "events": ["*"],
                       "description": format!("ops{c}hook")}),
            )
            .await;
        r.assert_error(400, "invalid_field");
    }

    // Real names and addresses still work, and come back as given.
    let good = json!({"display_name": "Zürich payroll – مرحبا 👩\u{200D}💻",
                      "owner": {"email": "jürgen.o_brien+ops@bücher.example", "name": "Jürgen O. Brien"}});
    let r = s
        .post("/api/v1/connections", k, connection(good.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let c = r.json();
    assert_eq!(c["display_name"], good["display_name"]);
    assert_eq!(c["owner"]["email"], good["owner"]["email"]);
    let r = s
        .post(
            "/api/v1/connect-sessions",
            k,
            session(json!({"owner_hint": "ops@example.com", "display_name": "Payroll"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    s.stop().await;
}
