//! A provider's token endpoint (and discovery document) answer: any status,
//! any body. Parsing must not panic; a parsed token set keeps nothing
//! token-like in `extra`; error text is bounded and free of control
//! characters (it ends up in `last_error`, logs and the dashboard).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_oauth::fuzzing::{discovery, error_response, token_response};
use rekey_oauth::OAuthError;
use serde_json::Value;

const STATUSES: [u16; 8] = [200, 200, 200, 400, 401, 429, 500, 503];

fn no_token_like_keys(v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let k = k.to_ascii_lowercase();
                assert!(
                    !(k.contains("token")
                        || k.contains("secret")
                        || k.contains("password")
                        || k == "code"),
                    "token-like key `{k}` kept in extra"
                );
                no_token_like_keys(v);
            }
        }
        Value::Array(a) => a.iter().for_each(no_token_like_keys),
        _ => {}
    }
}

fn check_error(e: &OAuthError) {
    let text = e.to_string();
    assert!(
        !text.chars().any(char::is_control),
        "control character in error text {text:?}"
    );
    assert!(
        text.chars().count() <= 600,
        "error text too long: {}",
        text.len()
    );
    let _ = e.severity();
    let _ = e.code();
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let status = match STATUSES.get(usize::from(sel % 9)) {
        Some(s) => *s,
        None => 100 + u16::from(sel) * 2,
    };
    match token_response(status, body) {
        Ok(t) => {
            assert!(!t.access_token.expose().is_empty());
            assert!(!t.token_type.is_empty());
            if let Some(n) = t.expires_in {
                assert!((0..=10 * 365 * 86_400).contains(&n));
            }
            no_token_like_keys(&t.extra);
            let _ = rekey_oauth::granted_scopes(&t, None, " ");
            let _ = rekey_oauth::granted_scopes(&t, Some("authed_user.scope"), ",");
        }
        Err(e) => check_error(&e),
    }
    check_error(&error_response(status, body));
    match discovery(body, "https://issuer.example") {
        Ok(d) => assert_eq!(d.issuer, "https://issuer.example"),
        Err(e) => check_error(&e),
    }
});
