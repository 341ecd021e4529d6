//! The query string a browser brings to `/oauth/callback`. When it carries
//! `error`, the page shows `denial_message`: it must not panic, and must
//! stay short, free of control characters and of token-like words.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut error = None;
    let mut description = None;
    for (k, v) in url::form_urlencoded::parse(data) {
        match &*k {
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    let Some(error) = error else {
        return;
    };
    let m = rekey_oauth::denial_message(&error, description.as_deref());
    assert!(m.starts_with("the provider answered `"));
    assert!(
        !m.chars().any(char::is_control),
        "control character in {m:?}"
    );
    // Fixed text (29) + 64 for the code + ": " + 300 for the description.
    assert!(
        m.chars().count() <= 29 + 64 + 2 + 300,
        "too long: {}",
        m.len()
    );
    let code = &m["the provider answered `".len()..];
    let code = code.split('`').next().unwrap_or_default();
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
});
