//! Credential material as sent to `POST /api/v1/connections`, `PUT
//! …/credentials` or the Connect page, for each kind. Parsing must not
//! panic; an error never quotes a value (only field names); accepted
//! material assembles back into the ready-to-send form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_core::connection::ConnectionKind;
use rekey_core::credentials::{assemble, parse};
use serde_json::Value;

/// Every object key in `v`, also inside strings that are themselves JSON
/// (a service account file): error messages may name these.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                keys(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        Value::String(s) => {
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                if !inner.is_string() {
                    keys(&inner, out);
                }
            }
        }
        _ => {}
    }
}

/// String values that look like secrets: token-like (`[A-Za-z0-9_-]`, so
/// that the words and field paths of a message cannot spell one), 12+
/// characters, with a digit.
fn values(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.values().for_each(|v| values(v, out)),
        Value::Array(a) => a.iter().for_each(|v| values(v, out)),
        Value::String(s)
            if s.len() >= 12
                && s.bytes().any(|b| b.is_ascii_digit())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            out.push(s.clone())
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, json)) = data.split_first() else {
        return;
    };
    let all = ConnectionKind::ALL;
    let kind = all[usize::from(sel) % all.len()];
    let Ok(v) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    match parse(kind, v.clone()) {
        Ok(p) => {
            assert!(kind.is_static(), "{kind} material accepted directly");
            let material = assemble(kind, &p.meta, &p.secrets)
                .unwrap_or_else(|e| panic!("accepted {kind} material does not assemble: {e}"));
            assert!(material.is_object());
        }
        Err(e) => {
            let msg = e.public_message();
            let mut ks = Vec::new();
            keys(&v, &mut ks);
            let mut vs = Vec::new();
            values(&v, &mut vs);
            for s in vs {
                if ks.iter().any(|k| k.contains(&s)) {
                    continue;
                }
                assert!(!msg.contains(&s), "error message quotes a value: {msg}");
            }
        }
    }
});
