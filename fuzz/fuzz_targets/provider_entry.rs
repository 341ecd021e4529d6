//! A provider catalog file (`providers/*.toml` or an operator's
//! `--providers-dir`): TOML parse and validation must not panic, and an
//! accepted entry's URL templates render or refuse without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The file's stem must be the entry's id: name the file after it so
    // that validation goes past that check.
    let id = toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| t.get("id").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_else(|| "fuzz".to_string());
    let file = format!("{id}.toml");
    let Ok(p) = rekey_providers::parse_entry(&file, text) else {
        return;
    };
    assert_eq!(p.id, id);
    let c = rekey_providers::Catalog::from_files(vec![(file, text.to_string())])
        .expect("an entry parse_entry accepts is a valid catalog");
    assert!(c.get(&id).is_some());
    let params: BTreeMap<String, String> = p
        .params
        .iter()
        .map(|n| {
            let v = p
                .param_info
                .get(n)
                .map(|i| i.example.clone())
                .unwrap_or_else(|| "x".to_string());
            (n.clone(), v)
        })
        .collect();
    let mut templates: Vec<&String> = p.probes.iter().filter_map(|pr| pr.url.as_ref()).collect();
    if let Some(o) = &p.oauth {
        templates.extend(
            [
                &o.authorize_url,
                &o.token_url,
                &o.revocation_url,
                &o.issuer,
                &o.identity_url,
            ]
            .into_iter()
            .flatten(),
        );
    }
    for t in templates {
        // Examples were checked at validation: every template renders with them.
        if let Err(e) = p.render_url(t, &params) {
            panic!("template {t:?} does not render with the examples: {e}");
        }
    }
    for kind in &p.auth_kinds {
        let _ = p.revoke_for(kind);
        let _ = p.rotate_for(kind);
        let _ = p.key_form(kind);
        let _ = p.probe_for(kind);
    }
});
