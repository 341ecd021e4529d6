//! Provider answers stored as error context and webhook receivers' answers:
//! `scrub_body` and `scrub_text` with a known secret. They must never
//! panic, must keep within `max`, must leave no control characters in a
//! stored body, and must remove a known secret of 4+ characters (here
//! alphanumeric, so that it cannot straddle the `[redacted]` marker).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_core::scrub::{scrub_body, scrub_text, REDACTED};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 48).min(rest.len());
    let (secret, body) = rest.split_at(n);
    let Ok(secret) = std::str::from_utf8(secret) else {
        return;
    };
    let known: &[&str] = if secret.is_empty() { &[] } else { &[secret] };
    let checkable = secret.len() >= 4
        && secret.bytes().all(|b| b.is_ascii_alphanumeric())
        && !REDACTED.contains(secret);

    let max = 1024;
    let stored = scrub_body(body, known, max);
    assert!(stored.chars().count() <= max + 1, "longer than max");
    assert!(
        !stored.chars().any(char::is_control),
        "control character kept: {stored:?}"
    );
    if checkable {
        assert!(
            !stored.contains(secret),
            "secret kept by scrub_body: {stored:?}"
        );
    }

    let text = String::from_utf8_lossy(body);
    let t = scrub_text(&text, known);
    if checkable {
        assert!(!t.contains(secret), "secret kept by scrub_text: {t:?}");
    }
});
