//! Issue 12 item 2: a stored key came back to a caller with only
//! `connections:read` through `last_error.provider_body`, encoded
//! (`api_key=CANARYQ%2B%2F%3D+%26x`). The fixture's echo endpoint answers
//! 400/500 with the whole request quoted as is, percent-encoded, JSON- and
//! HTML-escaped and in base64; after a check, nothing a reader (or the
//! check's caller) sees, and nothing stored in clear, may hold the secret in
//! any of those spellings.

use rekey_testkit::provider_fixture::{ProviderFixture, ECHO_SPELLINGS};
use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

both_backends!(
    echoed_keys_never_reach_a_reader,
    echoed_short_keys_never_reach_a_reader,
);

const STD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 without padding (padding is added by the callers that want it).
fn b64(bytes: &[u8], alphabet: &[u8]) -> String {
    let mut o = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, &b)| a | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            o.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    o
}

fn padded(s: String) -> String {
    let pad = (4 - s.len() % 4) % 4;
    s + &"=".repeat(pad)
}

fn pct(s: &str, keep: impl Fn(u8) -> bool, space_plus: bool, lower: bool) -> String {
    let mut o = String::new();
    for &b in s.as_bytes() {
        if b == b' ' && space_plus {
            o.push('+');
        } else if keep(b) {
            o.push(char::from(b));
        } else if lower {
            o.push_str(&format!("%{b:02x}"));
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// How a form encoder (reqwest's query, `client_secret_basic`) writes it.
fn form(s: &str) -> String {
    pct(
        s,
        |b| b.is_ascii_alphanumeric() || b"*-._".contains(&b),
        true,
        false,
    )
}

/// The secret as a server may echo it.
fn spellings(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap();
    let json = json[1..json.len() - 1].to_string();
    let html_named: String = secret
        .chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect();
    let html_num: String = secret.chars().map(|c| format!("&#{};", c as u32)).collect();
    let u: String = secret
        .encode_utf16()
        .map(|u| format!("\\u{u:04x}"))
        .collect();
    let b = secret.as_bytes();
    let mut v = vec![
        secret.to_string(),
        pct(secret, |_| false, false, false),
        pct(secret, |_| false, false, true),
        pct(secret, unreserved, false, false),
        pct(secret, unreserved, false, true),
        pct(secret, unreserved, true, false),
        form(secret),
        json.clone(),
        json.replace('/', "\\/"),
        u,
        html_named,
        html_num,
        b64(b, STD),
        padded(b64(b, STD)),
        b64(b, URL),
        padded(b64(b, URL)),
    ];
    v.sort();
    v.dedup();
    v
}

/// The base64 characters that encode `secret` (or its form encoding) at
/// each of the three byte alignments, in both alphabets: what is left of
/// it inside a longer base64 value (`Basic base64(user:secret)`).
fn base64_cores(secret: &str) -> Vec<String> {
    let mut v = Vec::new();
    for s in [secret.to_string(), form(secret)] {
        for alphabet in [STD, URL] {
            for o in 0..3 {
                let mut buf = vec![0u8; o];
                buf.extend_from_slice(s.as_bytes());
                let enc = b64(&buf, alphabet);
                let (start, end) = ((8 * o).div_ceil(6), (8 * (o + s.len())) / 6);
                if end >= start + 4 {
                    v.push(enc[start..end].to_string());
                }
            }
        }
    }
    v
}

/// Every string a response holds, raw and JSON-decoded.
fn texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| texts(v, out)),
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            out.push(k.clone());
            texts(v, out);
        }),
        _ => {}
    }
}

fn hexval(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decoding (`plus`: `+` is a space, as in forms).
fn pct_decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut o = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).and_then(|&h| hexval(h)),
            b.get(i + 2).and_then(|&l| hexval(l)),
        ) {
            (b'%', Some(h), Some(l)) => {
                o.push((h << 4) | l);
                i += 3;
            }
            (b'+', _, _) if plus => {
                o.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                o.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&o).into_owned()
}

fn html_decode(s: &str) -> String {
    let mut o = String::new();
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        o.push_str(&rest[..p]);
        rest = &rest[p..];
        let end = rest.bytes().take(12).position(|b| b == b';');
        let c = end.and_then(|e| match &rest[1..e] {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            n => match n.strip_prefix("#x").or_else(|| n.strip_prefix("#X")) {
                Some(h) => u32::from_str_radix(h, 16).ok().and_then(char::from_u32),
                None => n
                    .strip_prefix('#')
                    .and_then(|d| d.parse().ok())
                    .and_then(char::from_u32),
            },
        });
        match (c, end) {
            (Some(c), Some(e)) => {
                o.push(c);
                rest = &rest[e + 1..];
            }
            _ => {
                o.push('&');
                rest = &rest[1..];
            }
        }
    }
    o.push_str(rest);
    o
}

fn json_decode(s: &str) -> String {
    match serde_json::from_str::<String>(&format!("\"{s}\"")) {
        Ok(d) => d,
        // Not a valid JSON string body: undo the simple escapes only.
        Err(_) => s
            .replace("\\/", "/")
            .replace("\\\"", "\"")
            .replace("\\\\", "\\"),
    }
}

/// The text decoded once or twice over, every way.
fn decodings(s: &str) -> Vec<String> {
    let mut v = vec![s.to_string()];
    for _ in 0..2 {
        let mut next = Vec::new();
        for t in &v {
            next.extend([
                pct_decode(t, false),
                pct_decode(t, true),
                html_decode(t),
                json_decode(t),
            ]);
        }
        v.extend(next);
        v.sort();
        v.dedup();
    }
    v
}

fn assert_no_long_secret(secret: &str, what: &str, text: &str) {
    for sp in spellings(secret).into_iter().chain(base64_cores(secret)) {
        assert!(
            !text.contains(&sp),
            "{what}: the secret {secret:?} is there as {sp:?}: {text}"
        );
    }
    // However the text is decoded, it holds neither the secret nor its base64.
    for d in decodings(text) {
        for sp in std::iter::once(secret.to_string()).chain(base64_cores(secret)) {
            assert!(
                !d.contains(&sp),
                "{what}: the secret {secret:?} is there as {sp:?} once decoded: {d} (from {text})"
            );
        }
    }
}

/// Characters a short secret is delimited by when it is a whole value.
fn is_sep(c: char) -> bool {
    c.is_whitespace() || "\"'`=&;,:()[]{}<>?+/\\|#@".contains(c)
}

/// A short secret shows as a whole value: a spelling with a separator (or
/// the text's edge) on both sides.
fn assert_no_short_secret(secret: &str, sent: &[String], what: &str, text: &str) {
    // However the text is decoded, the secret is not a whole value in it.
    for d in decodings(text) {
        assert_no_whole_value(secret, &format!("{what} (decoded)"), &d);
    }
    assert_no_whole_value(secret, what, text);
    // Inside a longer value that was sent (the query, the header) in base64.
    for v in sent {
        for enc in [b64(v.as_bytes(), STD), b64(v.as_bytes(), URL)] {
            assert!(!text.contains(&enc), "{what}: {v:?} in base64: {text}");
        }
    }
}

fn assert_no_whole_value(secret: &str, what: &str, text: &str) {
    for sp in spellings(secret) {
        let mut from = 0;
        while let Some(p) = text[from..].find(&sp) {
            let (s, e) = (from + p, from + p + sp.len());
            let before = text[..s].chars().next_back().is_none_or(is_sep)
                || text[..s].ends_with("%3D")
                || text[..s].ends_with("%26");
            let after = text[e..].chars().next().is_none_or(is_sep);
            assert!(
                !(before && after),
                "{what}: the secret {secret:?} is there as {sp:?}: {text}"
            );
            from = s + 1;
        }
    }
}

struct Case {
    name: &'static str,
    kind: &'static str,
    credentials: Value,
    /// Echo format: text or JSON, and the status the echo answers.
    json: bool,
    status: u16,
}

fn cases(secret: &str) -> Vec<Case> {
    vec![
        Case {
            name: "api_key in the query",
            kind: "api_key",
            credentials: json!({"key": secret, "placement": "query", "name": "api_key"}),
            json: false,
            status: 400,
        },
        Case {
            name: "api_key in the query, JSON echo",
            kind: "api_key",
            credentials: json!({"key": secret, "placement": "query", "name": "api_key"}),
            json: true,
            status: 500,
        },
        Case {
            name: "api_key in a header",
            kind: "api_key",
            credentials: json!({"key": secret, "placement": "header", "name": "X-Api-Key", "prefix": "Token "}),
            json: false,
            status: 500,
        },
        Case {
            name: "api_key as Basic",
            kind: "api_key",
            credentials: json!({"key": secret, "placement": "basic", "username": "svc"}),
            json: true,
            status: 400,
        },
        Case {
            name: "basic password",
            kind: "basic",
            credentials: json!({"username": "svc", "password": secret}),
            json: false,
            status: 400,
        },
        Case {
            name: "headers",
            kind: "headers",
            credentials: json!({"headers": {"X-Auth": secret}}),
            json: true,
            status: 403,
        },
    ]
}

/// Create the connection, check it against the echo spelling the request
/// `spell`'s way, and return what the checker and a `connections:read`
/// caller get back: whole bodies and every string in them.
async fn probe(
    s: &TestServer,
    fx: &ProviderFixture,
    reader: &str,
    c: &Case,
    spell: &str,
) -> Vec<(String, String)> {
    let mut url = format!("{}?spell={spell}", fx.echo_url(c.status));
    if c.json {
        url.push_str("&format=json");
    }
    let name = format!("{} ({spell})", c.name);
    let r = s
        .post_admin(
            "/api/v1/connections",
            json!({"provider": "custom-rest", "kind": c.kind, "display_name": name,
                   "probe_url": url, "credentials": c.credentials}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let hits = fx.hits();
    let check = s.act(&format!("/api/v1/connections/{id}/check")).await;
    assert_eq!(check.status, StatusCode::OK, "{name}: {}", check.text);
    assert_eq!(fx.hits(), hits + 1, "{name}: the probe reached the echo");
    let view = s.get(&format!("/api/v1/connections/{id}"), reader).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    let body = view.json()["last_error"]["provider_body"]
        .as_str()
        .map(str::to_string);
    assert!(body.is_some(), "{name}: no provider_body: {}", view.text);
    let body = body.unwrap();
    // The echo was kept (so the test can fail), with the secret cut out.
    assert!(
        body.contains("echo") && body.contains("[redacted]"),
        "{name}: {body}"
    );
    let mut out = vec![
        (format!("{name}: check response"), check.text.clone()),
        (format!("{name}: connection view"), view.text.clone()),
    ];
    for (what, r) in [("check", &check), ("view", &view)] {
        let mut t = Vec::new();
        texts(&r.json(), &mut t);
        for (i, t) in t.into_iter().enumerate() {
            out.push((format!("{name}: {what} string {i}"), t));
        }
    }
    out
}

/// The spellings of the echo that apply to a case.
fn spells(c: &Case) -> Vec<&'static str> {
    ECHO_SPELLINGS
        .iter()
        .copied()
        .filter(|s| *s != "basic" || c.name.contains("asic"))
        .collect()
}

/// Everything a reader lists, every string in it.
async fn listing(s: &TestServer, reader: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let list = s
            .get(&format!("/api/v1/connections?limit=200{cursor}"), reader)
            .await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        let j = list.json();
        let mut t = Vec::new();
        texts(&j, &mut t);
        out.push(("listing".to_string(), list.text.clone()));
        out.extend(t.into_iter().map(|t| ("listing string".to_string(), t)));
        match j["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

async fn echoed_keys_never_reach_a_reader(db: Db) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    let reader = s.key("default", &["connections:read"]).await;
    for secret in ["CANARYQ+/= &x", "CANÄRY\"Q\\ü'<b>-%41 ✓"] {
        for c in cases(secret) {
            for spell in spells(&c) {
                for (what, text) in probe(&s, &fx, &reader, &c, spell).await {
                    assert_no_long_secret(secret, &what, &text);
                }
            }
        }
        for (what, text) in listing(&s, &reader).await {
            assert_no_long_secret(secret, &what, &text);
        }
        // Nothing in clear in the database either (audit details, events).
        let dump = String::from_utf8_lossy(&s.dump_database().await).into_owned();
        assert_no_long_secret(secret, "database", &dump);
    }
    s.stop().await;
}

async fn echoed_short_keys_never_reach_a_reader(db: Db) {
    let s = TestServer::start(db).await;
    let fx = ProviderFixture::start().await;
    let reader = s.key("default", &["connections:read"]).await;
    for secret in ["Q&", "k", "Zq9"] {
        for c in cases(secret) {
            for spell in spells(&c) {
                // Whole values sent with the secret inside, which the echo
                // may spell in base64 as a whole.
                let f = form(secret);
                let sent = [
                    format!("spell={spell}&api_key={f}"),
                    format!("spell={spell}&format=json&api_key={f}"),
                    format!("Token {secret}"),
                    format!(
                        "Basic {}",
                        padded(b64(format!("svc:{secret}").as_bytes(), STD))
                    ),
                    secret.to_string(),
                ];
                for (what, text) in probe(&s, &fx, &reader, &c, spell).await {
                    assert_no_short_secret(secret, &sent, &what, &text);
                }
            }
        }
        for (what, text) in listing(&s, &reader).await {
            assert_no_short_secret(secret, &[], &what, &text);
        }
    }
    s.stop().await;
}
