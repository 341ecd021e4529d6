//! Scrubbing text that came from outside (provider error bodies and error
//! messages, webhook receivers' answers) before it is stored or shown:
//! anything that looks like a secret is replaced, and the result is short.
//!
//! A *known* secret (the credential rekey presented, a client secret, a
//! signing secret) is removed in every spelling a server may echo it in:
//!
//! - as is, and with any mix of its characters written as percent escapes
//!   (`%2B`/`%2b`, each UTF-8 byte; twice-encoded `%252B`; `+` for a
//!   space), JSON escapes (`\"`, `\\`, `\/`, `\n`…, `\uXXXX` with surrogate
//!   pairs) or HTML character references (`&amp;`, `&#43;`, `&#x2B;`…). A
//!   partial encoding (only the reserved characters escaped) is such a mix.
//! - in base64 (standard or URL-safe, padded or not): the whole base64 word
//!   goes when it holds the secret at any of the three byte alignments, so
//!   `Basic base64(user:secret)` or a secret inside a longer base64 value is
//!   covered, as is a form-encoded secret (`client_secret_basic`).
//!
//! Secrets shorter than [`SHORT_SECRET`] bytes would shred text if every
//! occurrence went (a one-letter key is in most words), so for them only
//! *whole values* go: a spelling of the secret with a separator (space,
//! quote, `=`, `&`, `;`, `,`, `:`, brackets, `/`, `+`… or their percent
//! escape) or the text's edge on both sides, which is a query or form
//! parameter's value, a header's value, a JSON string, or a word. Base64
//! words are also decoded and go when their text holds a secret under the
//! same rules (`user:secret`, `api_key=secret`), which is how a short
//! secret inside a longer base64 value is found.
//!
//! Whatever the known secrets, `Basic` credentials (base64 of `user:pass`),
//! JSON fields with secret-like names and long mixed letter-and-digit words
//! (API keys, JWTs) are redacted too, control characters go, and a body is
//! cut short. Text too contrived to scrub within a fixed amount of work is
//! replaced as a whole.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

pub const REDACTED: &str = "[redacted]";

/// Known secrets shorter than this (in bytes) are redacted only as whole
/// values (see the module documentation).
pub const SHORT_SECRET: usize = 4;

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

/// The text was too contrived to scrub within the work allowed.
struct TooComplex;

/// Work allowed for scrubbing one text of `len` bytes (matching steps).
fn budget_for(len: usize) -> u64 {
    (len as u64).saturating_mul(256).saturating_add(1_000_000)
}

/// Replace secret-looking words, `Basic` credentials and every spelling of
/// any of `known` (the secrets that were presented) in free text.
pub fn scrub_text(s: &str, known: &[&str]) -> String {
    let Ok(text) = scrub_known(s, known) else {
        return REDACTED.to_string();
    };
    let text = redact_basic(&text);
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

/// Remove every spelling of every known secret (longest first).
fn scrub_known(s: &str, known: &[&str]) -> Result<String, TooComplex> {
    let mut secrets: Vec<&str> = known.iter().copied().filter(|k| !k.is_empty()).collect();
    secrets.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    secrets.dedup();
    if secrets.is_empty() {
        return Ok(s.to_string());
    }
    let mut budget = budget_for(s.len());
    let mut text = s.to_string();
    for k in &secrets {
        let chars: Vec<char> = k.chars().collect();
        text = redact_spellings(&text, &chars, k.len() < SHORT_SECRET, &mut budget)?;
    }
    let ranges = base64_ranges(&text, &secrets, VIEW_DEPTH);
    Ok(replace_ranges(&text, ranges))
}

// ---- spellings: literal, percent, JSON and HTML escapes, mixed ----------

mod encoding;
use encoding::*;

/// Where a spelling of `secret` that starts at `at` ends, for the first end
/// `accept` takes.
fn match_at(
    text: &str,
    at: usize,
    secret: &[char],
    accept: impl Fn(usize) -> bool,
    budget: &mut u64,
) -> Result<Option<usize>, TooComplex> {
    let mut stack = vec![(at, 0usize)];
    let mut alts = Vec::new();
    while let Some((pos, k)) = stack.pop() {
        if k == secret.len() {
            if accept(pos) {
                return Ok(Some(pos));
            }
            continue;
        }
        if *budget == 0 {
            return Err(TooComplex);
        }
        *budget -= 1;
        units(&text[pos..], &mut alts);
        for &(c, n) in &alts {
            if c == secret[k] {
                stack.push((pos + n, k + 1));
            }
        }
    }
    Ok(None)
}

/// Characters that end a value: a short secret is redacted only between two
/// of these (or the text's edges).
fn is_separator(c: char) -> bool {
    c.is_whitespace() || "\"'`=&;,:()[]{}<>?+/\\|#@".contains(c)
}

fn encoded_separator(h: u8, l: u8) -> bool {
    match (hex(h), hex(l)) {
        (Some(h), Some(l)) => is_separator(char::from((h << 4) | l)),
        _ => false,
    }
}

fn boundary_before(text: &str, i: usize) -> bool {
    let b = text.as_bytes();
    i == 0
        || text[..i].chars().next_back().is_some_and(is_separator)
        || (i >= 3 && b[i - 3] == b'%' && encoded_separator(b[i - 2], b[i - 1]))
}

fn boundary_after(text: &str, i: usize) -> bool {
    let b = text.as_bytes();
    i >= text.len()
        || text[i..].chars().next().is_some_and(is_separator)
        || (b.len() >= i + 3 && b[i] == b'%' && encoded_separator(b[i + 1], b[i + 2]))
}

/// Replace every spelling of `secret` in `text`; a `short` secret only as a
/// whole value.
fn redact_spellings(
    text: &str,
    secret: &[char],
    short: bool,
    budget: &mut u64,
) -> Result<String, TooComplex> {
    let Some(&first) = secret.first() else {
        return Ok(text.to_string());
    };
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied) = (0, 0);
    while let Some(c) = text[i..].chars().next() {
        let candidate = c == first || matches!(c, '%' | '\\' | '&' | '+');
        if candidate && (!short || boundary_before(text, i)) {
            let accept = |end: usize| !short || boundary_after(text, end);
            if let Some(end) = match_at(text, i, secret, accept, budget)? {
                out.push_str(&text[copied..i]);
                out.push_str(REDACTED);
                copied = end;
                i = end;
                continue;
            }
        }
        i += c.len_utf8();
    }
    out.push_str(&text[copied..]);
    Ok(out)
}

// ---- base64 -------------------------------------------------------------

fn std_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

fn url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `application/x-www-form-urlencoded` bytes of `s` (as RFC 6749 §2.3.1
/// asks of a client secret before it goes into `Basic`).
fn form_encode(s: &str) -> String {
    let mut o = String::new();
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                o.push(char::from(b))
            }
            b' ' => o.push('+'),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// The base64 characters that encode `secret` whatever bytes surround it:
/// for each alphabet and each of the three byte alignments, the characters
/// whose six bits all come from the secret.
fn base64_cores(secret: &[u8]) -> Vec<(String, bool)> {
    let mut v = Vec::new();
    for (engine, url) in [(&STANDARD_NO_PAD, false), (&URL_SAFE_NO_PAD, true)] {
        for o in 0..3 {
            let mut buf = vec![0u8; o];
            buf.extend_from_slice(secret);
            let enc = engine.encode(&buf);
            let start = (8 * o).div_ceil(6);
            let end = (8 * (o + secret.len())) / 6;
            if end >= start + 4 {
                if let Some(core) = enc.get(start..end) {
                    v.push((core.to_string(), url));
                }
            }
        }
    }
    v.sort();
    v.dedup();
    v
}

/// Replace byte ranges of `text` (merged when they overlap) by `REDACTED`.
fn replace_ranges(text: &str, mut ranges: Vec<(usize, usize)>) -> String {
    if ranges.is_empty() {
        return text.to_string();
    }
    ranges.sort();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut iter = ranges.into_iter().peekable();
    while let Some((s, mut e)) = iter.next() {
        while let Some(&(s2, e2)) = iter.peek() {
            if s2 > e {
                break;
            }
            e = e.max(e2);
            iter.next();
        }
        let s = s.max(copied);
        out.push_str(&text[copied..s]);
        out.push_str(REDACTED);
        copied = e;
    }
    out.push_str(&text[copied..]);
    out
}

/// Whole base64 words holding `secret` (or its form-encoded bytes) at any
/// alignment, as byte ranges of `text`.
fn base64_core_ranges(text: &str, secret: &str) -> Vec<(usize, usize)> {
    let mut variants = vec![secret.to_string()];
    let form = form_encode(secret);
    if form != secret {
        variants.push(form);
    }
    let b = text.as_bytes();
    let mut ranges = Vec::new();
    for v in &variants {
        for (core, url) in base64_cores(v.as_bytes()) {
            let in_word = |c: u8| if url { url_char(c) } else { std_char(c) };
            let mut from = 0;
            while let Some(p) = text[from..].find(&core) {
                let (mut s, mut e) = (from + p, from + p + core.len());
                while s > 0 && in_word(b[s - 1]) {
                    s -= 1;
                }
                while e < b.len() && in_word(b[e]) {
                    e += 1;
                }
                while e < b.len() && b[e] == b'=' {
                    e += 1;
                }
                ranges.push((s, e));
                from = e;
            }
        }
    }
    ranges
}

/// Where the run of base64 characters (either alphabet) from `i` ends,
/// without and with its `=` padding (at most two).
fn base64_run_end(b: &[u8], mut i: usize) -> (usize, usize) {
    while i < b.len() && (std_char(b[i]) || url_char(b[i])) {
        i += 1;
    }
    let e = i;
    while i < b.len() && b[i] == b'=' && i - e < 2 {
        i += 1;
    }
    (e, i)
}

/// Maximal runs of base64 characters (either alphabet) with their `=`
/// padding: (start, end of the characters, end with padding).
fn base64_runs(text: &str) -> Vec<(usize, usize, usize)> {
    let b = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if std_char(b[i]) || url_char(b[i]) {
            let (e, end) = base64_run_end(b, i);
            runs.push((i, e, end));
            i = end;
        } else {
            i += 1;
        }
    }
    runs
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    if s.len() < 2 || s.len() % 4 == 1 {
        return None;
    }
    let url = s.bytes().any(|b| b == b'-' || b == b'_');
    let std = s.bytes().any(|b| b == b'+' || b == b'/');
    match (std, url) {
        (true, true) => None,
        (false, true) => URL_SAFE_NO_PAD.decode(s).ok(),
        _ => STANDARD_NO_PAD.decode(s).ok(),
    }
}

/// Base64 may be nested this deep (`base64("Basic " + base64(user:secret))`).
const BASE64_DEPTH: u8 = 2;

/// Whether decoded text holds a secret: in any spelling, under the same
/// rules as plain text (a short secret only as a whole value:
/// `user:secret`, `api_key=secret`…), in base64 at any alignment, or in
/// base64 nested `depth` more times. Text that is too contrived counts.
fn holds_secret(t: &str, secrets: &[&str], depth: u8) -> bool {
    let spelled = secrets.iter().any(|k| {
        let chars: Vec<char> = k.chars().collect();
        let mut budget = budget_for(t.len());
        let short = k.len() < SHORT_SECRET;
        match redact_spellings(t, &chars, short, &mut budget) {
            Ok(r) => r != t || (!short && !base64_core_ranges(t, k).is_empty()),
            Err(TooComplex) => true,
        }
    });
    spelled || (depth > 0 && !base64_word_ranges(t, secrets, depth - 1).is_empty())
}

/// Base64 words whose text holds a secret (short ones included, as whole
/// values): this covers a short secret inside a longer base64 value, at
/// its own alignment, which `base64_cores` cannot, and base64 nested in
/// base64. At the top, a word is also tried from just after each `/`,
/// `+`, `-` or `_` in it, in case the base64 follows a name (`token_…`,
/// `path/…`).
fn base64_word_ranges(text: &str, secrets: &[&str], depth: u8) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut ranges = Vec::new();
    let tails = if depth == BASE64_DEPTH { 16 } else { 0 };
    for (s, e, pe) in base64_runs(text) {
        let starts = std::iter::once(s).chain(
            (s + 1..e)
                .filter(|&i| matches!(b[i - 1], b'/' | b'+' | b'-' | b'_'))
                .take(tails),
        );
        for st in starts {
            let holds = decode_base64(&text[st..e])
                .is_some_and(|d| holds_secret(&String::from_utf8_lossy(&d), secrets, depth));
            if holds {
                ranges.push((st, pe));
                break;
            }
        }
    }
    ranges
}

/// Escaped text may be decoded this many times over to find base64
/// (`Basic%20dXNl…%3D`, `dXNl\/…`, HTML inside a URL…).
const VIEW_DEPTH: u8 = 2;

/// `text` with every escape of one kind (0: percent, 1: HTML character
/// references, 2: JSON) replaced by its character, and for each byte of the
/// result the offset of the text it came from (plus the end). None when
/// there is nothing to decode.
fn view(text: &str, kind: u8) -> Option<(String, Vec<usize>)> {
    let intro = [b'%', b'&', b'\\'][usize::from(kind)];
    if !text.as_bytes().contains(&intro) {
        return None;
    }
    let (mut out, mut from) = (String::with_capacity(text.len()), Vec::new());
    let mut changed = false;
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let rest = &text.as_bytes()[i..];
        let decoded = match (kind, c) {
            (0, '%') => {
                let mut v = Vec::new();
                percent(rest, &mut v);
                // Decode once: `%2541` is `%41` here, `A` in the next view.
                v.into_iter()
                    .filter(|(_, n)| *n % 3 == 0)
                    .min_by_key(|(_, n)| *n)
            }
            (1, '&') => entity(rest),
            (2, '\\') => json_escape(rest),
            _ => None,
        };
        let (ch, n) = decoded.unwrap_or((c, c.len_utf8()));
        changed |= decoded.is_some();
        from.extend(std::iter::repeat_n(i, ch.len_utf8()));
        out.push(ch);
        i += n;
    }
    from.push(text.len());
    changed.then_some((out, from))
}

/// Byte ranges of `text` that are base64 holding a secret: the base64
/// characters of a long secret at any alignment, words whose decoded text
/// holds a secret, and either of those behind `depth` layers of escaping.
fn base64_ranges(text: &str, secrets: &[&str], depth: u8) -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = secrets
        .iter()
        .filter(|k| k.len() >= SHORT_SECRET)
        .flat_map(|k| base64_core_ranges(text, k))
        .collect();
    ranges.extend(base64_word_ranges(text, secrets, BASE64_DEPTH));
    if depth > 0 {
        for kind in 0..3 {
            if let Some((v, from)) = view(text, kind) {
                for (s, e) in base64_ranges(&v, secrets, depth - 1) {
                    ranges.push((from[s], from[e]));
                }
            }
        }
    }
    ranges
}

/// `Basic <base64 of user:password>` is a credential whoever's it is.
fn redact_basic(text: &str) -> String {
    let b = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(p) = lower[from..].find("basic") {
        let mut i = from + p + 5;
        from = i;
        let mut gap = 0;
        loop {
            if b.get(i) == Some(&b' ') || b.get(i) == Some(&b'+') {
                i += 1;
            } else if lower[i..].starts_with("%20") {
                i += 3;
            } else {
                break;
            }
            gap += 1;
        }
        if gap == 0 {
            continue;
        }
        let s = i;
        let (e, end) = base64_run_end(b, s);
        i = end;
        let pair = decode_base64(&text[s..e])
            .and_then(|d| String::from_utf8(d).ok())
            .is_some_and(|d| d.contains(':') && !d.chars().any(char::is_control));
        if pair {
            ranges.push((s, i));
            from = i;
        }
    }
    replace_ranges(text, ranges)
}

// ---- bodies -------------------------------------------------------------

fn scrub_json(v: &mut Value, known: &[&str]) {
    match v {
        Value::Object(m) => {
            let old = std::mem::take(m);
            for (k, mut v) in old {
                if secret_key(&k) && !v.is_null() && !v.is_boolean() {
                    v = Value::String(REDACTED.into());
                } else {
                    scrub_json(&mut v, known);
                }
                // Names can echo a secret too (`{"<key>": …}`).
                let mut name = scrub_text(&k, known);
                let mut n = 1;
                while m.contains_key(&name) {
                    n += 1;
                    name = format!("{}#{n}", scrub_text(&k, known));
                }
                m.insert(name, v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| scrub_json(v, known)),
        Value::String(s) => *s = scrub_text(s, known),
        // A numeric secret (a PIN, an account key) echoed as a JSON number.
        Value::Number(n) => {
            let text = n.to_string();
            let scrubbed = scrub_text(&text, known);
            if scrubbed != text {
                *v = Value::String(scrubbed);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

fn flatten_controls(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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
    let mut cleaned = flatten_controls(&scrubbed);
    if cleaned != scrubbed {
        // Flattening can join what a secret's spelling was split by.
        cleaned = match scrub_known(&cleaned, known) {
            Ok(t) => t,
            Err(TooComplex) => REDACTED.to_string(),
        };
    }
    if cleaned.chars().count() > max {
        let mut t: String = cleaned.chars().take(max).collect();
        t.push('…');
        t
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests;
