//! Scrubbing text that came from outside (provider error bodies, webhook
//! receiver answers) before it is stored or shown: anything that looks like
//! a secret is replaced, and the result is short.

use serde_json::Value;

const REDACTED: &str = "[redacted]";

/// JSON keys whose values are never kept.
fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "key",
        "authorization",
        "credential",
        "signature",
        "cookie",
        "session",
        "assertion",
        "code",
    ]
    .iter()
    .any(|s| k.contains(s))
        // `error_code`-style fields are diagnostics, not secrets.
        && !matches!(k.as_str(), "error_code" | "status_code" | "code" | "errorcode")
}

/// A run of token characters long enough, and mixed enough, to be a
/// credential (API keys, JWTs, bearer tokens), rather than a word.
fn looks_secret(w: &str) -> bool {
    if w.len() < 20 {
        return false;
    }
    let digits = w.bytes().filter(u8::is_ascii_digit).count();
    let letters = w.bytes().filter(u8::is_ascii_alphabetic).count();
    digits >= 2 && letters >= 4
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '+' | '/' | '~')
}

/// Replace secret-looking words and any of `known` (the credential that
/// was presented) in free text.
pub fn scrub_text(s: &str, known: &[&str]) -> String {
    let mut text = s.to_string();
    for k in known.iter().filter(|k| k.len() >= 4) {
        text = text.replace(k, REDACTED);
    }
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if looks_secret(word) {
            out.push_str(REDACTED);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_token_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn scrub_json(v: &mut Value, known: &[&str]) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if secret_key(k) && !v.is_null() && !v.is_boolean() {
                    *v = Value::String(REDACTED.into());
                } else {
                    scrub_json(v, known);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| scrub_json(v, known)),
        Value::String(s) => *s = scrub_text(s, known),
        _ => {}
    }
}

/// Scrub a response body for storage: JSON bodies keep their shape with
/// secret-named fields and secret-looking strings replaced; other bodies are
/// scrubbed as text. At most `max` characters are kept (`…` marks a cut).
pub fn scrub_body(body: &[u8], known: &[&str], max: usize) -> String {
    let raw = String::from_utf8_lossy(body);
    let scrubbed = match serde_json::from_str::<Value>(&raw) {
        Ok(mut v) => {
            scrub_json(&mut v, known);
            v.to_string()
        }
        Err(_) => scrub_text(&raw, known),
    };
    let cleaned: String = scrubbed
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cleaned.chars().count() > max {
        let mut t: String = cleaned.chars().take(max).collect();
        t.push('…');
        t
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_secret_fields_and_token_strings_go() {
        let body = br#"{"ok":false,"error":"invalid_auth","access_token":"abc","detail":"token xoxb-1234567890-abcdefghij was revoked","n":3}"#;
        let s = scrub_body(body, &[], 500);
        assert!(s.contains("invalid_auth"), "{s}");
        assert!(!s.contains("abc\""), "{s}");
        assert!(!s.contains("xoxb-1234567890"), "{s}");
        assert!(s.contains("was revoked"), "{s}");
        assert!(s.contains("\"n\":3"), "{s}");
    }

    #[test]
    fn known_credential_is_removed_even_if_short_and_plain() {
        let s = scrub_body(b"bad key: hunter22", &["hunter22"], 500);
        assert_eq!(s, "bad key: [redacted]");
    }

    #[test]
    fn words_and_error_codes_survive_and_long_bodies_are_cut() {
        let s = scrub_text("The access token is invalid_or_expired", &[]);
        assert_eq!(s, "The access token is invalid_or_expired");
        let s = scrub_body(br#"{"code":"E42","error_code":"rate"}"#, &[], 500);
        assert!(s.contains("E42") && s.contains("rate"), "{s}");
        let long = "a ".repeat(1000);
        let s = scrub_body(long.as_bytes(), &[], 100);
        assert_eq!(s.chars().count(), 101);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn control_characters_are_flattened() {
        let s = scrub_body(b"line1\nline2\x1b[31m", &[], 100);
        assert!(!s.chars().any(char::is_control), "{s:?}");
    }
}
