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

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One percent-encoded byte at the start of `t`: `%HH`, or `%25HH`
/// (encoded twice). Returns each reading (byte, bytes of text used).
fn pct_bytes(t: &[u8], out: &mut Vec<(u8, usize)>) {
    if t.len() >= 3 && t[0] == b'%' {
        if let (Some(h), Some(l)) = (hex(t[1]), hex(t[2])) {
            out.push(((h << 4) | l, 3));
        }
        if t.len() >= 5 && t[1] == b'2' && t[2] == b'5' {
            if let (Some(h), Some(l)) = (hex(t[3]), hex(t[4])) {
                out.push(((h << 4) | l, 5));
            }
        }
    }
}

/// A character spelled as percent escapes of its UTF-8 bytes at the start
/// of `t` (each byte once or twice encoded).
fn percent(t: &[u8], out: &mut Vec<(char, usize)>) {
    let mut first = Vec::new();
    pct_bytes(t, &mut first);
    for (b0, n0) in first {
        let want = match b0 {
            0x00..=0x7f => {
                out.push((char::from(b0), n0));
                continue;
            }
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => continue,
        };
        // Continuation bytes use the same spelling as the first one.
        let mut bytes = vec![b0];
        let mut used = n0;
        let mut ok = true;
        while bytes.len() < want {
            let mut next = Vec::new();
            pct_bytes(&t[used..], &mut next);
            match next.into_iter().find(|(_, n)| *n == n0) {
                Some((b, n)) => {
                    bytes.push(b);
                    used += n;
                }
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            if let Some(c) = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.chars().next())
            {
                out.push((c, used));
            }
        }
    }
}

fn hex4(t: &[u8]) -> Option<u32> {
    if t.len() < 4 {
        return None;
    }
    t[..4]
        .iter()
        .try_fold(0u32, |acc, &b| hex(b).map(|d| (acc << 4) | u32::from(d)))
}

/// A JSON escape at the start of `t` (which starts with `\`).
fn json_escape(t: &[u8]) -> Option<(char, usize)> {
    let c = match t.get(1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let u = hex4(&t[2..])?;
            if (0xd800..0xdc00).contains(&u) {
                if t.get(6) != Some(&b'\\') || t.get(7) != Some(&b'u') {
                    return None;
                }
                let lo = hex4(&t[8..])?;
                if !(0xdc00..0xe000).contains(&lo) {
                    return None;
                }
                let c = char::from_u32(0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00))?;
                return Some((c, 12));
            }
            return char::from_u32(u).map(|c| (c, 6));
        }
        _ => return None,
    };
    Some((c, 2))
}

/// An HTML character reference at the start of `t` (which starts with `&`).
fn entity(t: &[u8]) -> Option<(char, usize)> {
    let end = t.iter().take(34).position(|&b| b == b';')?;
    let name = std::str::from_utf8(&t[1..end]).ok()?;
    let c = if let Some(num) = name.strip_prefix('#') {
        let v = match num.strip_prefix(['x', 'X']) {
            Some(h) if !h.is_empty() && h.len() <= 8 => u32::from_str_radix(h, 16).ok()?,
            Some(_) => return None,
            None if !num.is_empty()
                && num.len() <= 10
                && num.bytes().all(|b| b.is_ascii_digit()) =>
            {
                num.parse::<u32>().ok()?
            }
            None => return None,
        };
        char::from_u32(v)?
    } else {
        match name {
            "amp" | "AMP" => '&',
            "lt" | "LT" => '<',
            "gt" | "GT" => '>',
            "quot" | "QUOT" => '"',
            "apos" => '\'',
            "sol" => '/',
            "bsol" => '\\',
            "plus" => '+',
            "equals" => '=',
            "num" => '#',
            "percnt" => '%',
            "colon" => ':',
            "semi" => ';',
            "comma" => ',',
            "period" => '.',
            "excl" => '!',
            "quest" => '?',
            "commat" => '@',
            "lpar" => '(',
            "rpar" => ')',
            "lsqb" | "lbrack" => '[',
            "rsqb" | "rbrack" => ']',
            "lcub" | "lbrace" => '{',
            "rcub" | "rbrace" => '}',
            "verbar" | "vert" => '|',
            "grave" => '`',
            "Hat" => '^',
            "ast" => '*',
            "dollar" => '$',
            "lowbar" => '_',
            "nbsp" => '\u{a0}',
            "Tab" => '\t',
            "NewLine" => '\n',
            _ => return None,
        }
    };
    Some((c, end + 1))
}

/// Every character the text at the start of `t` may spell, each with the
/// bytes of text it takes: the character itself or one of its encodings.
fn units(t: &str, out: &mut Vec<(char, usize)>) {
    out.clear();
    let Some(c) = t.chars().next() else {
        return;
    };
    out.push((c, c.len_utf8()));
    let b = t.as_bytes();
    match c {
        '+' => out.push((' ', 1)),
        '%' => percent(b, out),
        '\\' => out.extend(json_escape(b)),
        '&' => out.extend(entity(b)),
        _ => {}
    }
    // An escaped `+` (`%2B`, `&#43;`…) is a form-encoded space escaped again.
    if let Some(&(_, n)) = out.iter().find(|(c, n)| *c == '+' && *n > 1) {
        out.push((' ', n));
    }
}

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

/// Maximal runs of base64 characters (either alphabet) with their `=`
/// padding: (start, end of the characters, end with padding).
fn base64_runs(text: &str) -> Vec<(usize, usize, usize)> {
    let b = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if std_char(b[i]) || url_char(b[i]) {
            let s = i;
            while i < b.len() && (std_char(b[i]) || url_char(b[i])) {
                i += 1;
            }
            let e = i;
            while i < b.len() && b[i] == b'=' && i - e < 2 {
                i += 1;
            }
            runs.push((s, e, i));
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
        while i < b.len() && (std_char(b[i]) || url_char(b[i])) {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i] == b'=' && i - e < 2 {
            i += 1;
        }
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
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

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
    fn numeric_secret_echoed_as_a_json_number_is_removed() {
        // Found by the scrub fuzz target: a body that is (or holds) a JSON
        // number kept a numeric secret, since only strings were scrubbed.
        let s = scrub_body(b"66662666666666", &["666666"], 1024);
        assert!(!s.contains("666666"), "{s}");
        let s = scrub_body(
            br#"{"error":"bad key","key_id":123456789012}"#,
            &["123456789012"],
            1024,
        );
        assert!(!s.contains("123456789012"), "{s}");
        assert!(s.contains("bad key"), "{s}");
        let s = scrub_body(br#"{"n":[7,3141592653]}"#, &["3141592653"], 1024);
        assert_eq!(s, r#"{"n":[7,"[redacted]"]}"#);
        // Numbers that are not the secret stay numbers.
        assert_eq!(scrub_body(br#"{"n":42}"#, &["4242"], 1024), r#"{"n":42}"#);
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

    // ---- every spelling of every canary ---------------------------------

    /// Secrets with the characters encoders treat specially, and short ones.
    const CANARIES: &[&str] = &[
        "CANARYQ+/= &x",
        "CANÄRY-ünï✓😀 ké",
        "CAN\"ARY'Q\"<b>&amp;",
        r"C\AN\\ARY\/Q\u0041",
        "CANARY%41%2B+~",
        "x",
        "é",
        "q&",
        "+/",
        "a b",
        "Zz9",
    ];

    /// Percent-encode the characters `keep` (asked with the first UTF-8
    /// byte) does not keep.
    fn pct(s: &str, keep: impl Fn(u8) -> bool, space_plus: bool, lower: bool) -> String {
        let mut o = String::new();
        for c in s.chars() {
            let mut buf = [0u8; 4];
            let bytes = c.encode_utf8(&mut buf).as_bytes();
            if c == ' ' && space_plus {
                o.push('+');
            } else if keep(bytes[0]) {
                o.push(c);
            } else {
                for b in bytes.iter() {
                    if lower {
                        o.push_str(&format!("%{b:02x}"));
                    } else {
                        o.push_str(&format!("%{b:02X}"));
                    }
                }
            }
        }
        o
    }

    fn unreserved(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"-._~".contains(&b)
    }

    /// Only RFC 3986 reserved characters (and space) escaped.
    fn reserved_only(s: &str) -> String {
        pct(s, |b| !b":/?#[]@!$&'()*+,;= %".contains(&b), true, false)
    }

    fn json_all_u(s: &str) -> String {
        let mut o = String::new();
        for u in s.encode_utf16() {
            o.push_str(&format!("\\u{u:04x}"));
        }
        o
    }

    fn json_escaped(s: &str) -> String {
        let j = serde_json::to_string(s).unwrap();
        j[1..j.len() - 1].to_string()
    }

    fn html(s: &str, mode: u8) -> String {
        s.chars()
            .map(|c| match (mode, c) {
                (0, '&') => "&amp;".into(),
                (0, '<') => "&lt;".into(),
                (0, '>') => "&gt;".into(),
                (0, '"') => "&quot;".into(),
                (0, '\'') => "&#39;".into(),
                (0, c) => c.to_string(),
                (1, c) => format!("&#{};", c as u32),
                (_, c) => format!("&#x{:X};", c as u32),
            })
            .collect()
    }

    /// (name, spelling, also expected for short secrets)
    fn spellings(s: &str) -> Vec<(&'static str, String, bool)> {
        let b = s.as_bytes();
        vec![
            ("raw", s.to_string(), true),
            ("pct-all-upper", pct(s, |_| false, false, false), true),
            ("pct-all-lower", pct(s, |_| false, false, true), true),
            ("pct-rfc3986", pct(s, unreserved, false, false), true),
            ("form", pct(s, unreserved, true, false), true),
            ("form-lower", pct(s, unreserved, true, true), true),
            ("reserved-only", reserved_only(s), true),
            (
                "pct-twice",
                pct(&pct(s, unreserved, false, false), unreserved, false, false),
                true,
            ),
            // Form-encoded, then escaped again (a URL quoted in a URL, or
            // in HTML): the `+` for a space becomes `%2B` or `&#43;`.
            (
                "form-then-pct",
                pct(&form_encode(s), unreserved, false, false),
                true,
            ),
            (
                "form-then-pct-lower",
                pct(&form_encode(s), unreserved, false, true),
                true,
            ),
            ("form-then-html", form_encode(s).replace('+', "&#43;"), true),
            ("json", json_escaped(s), true),
            ("json-all-u", json_all_u(s), true),
            ("json-solidus", json_escaped(s).replace('/', "\\/"), true),
            ("html-named", html(s, 0), true),
            ("html-dec", html(s, 1), true),
            ("html-hex", html(s, 2), true),
            ("b64", STANDARD.encode(b), true),
            ("b64-nopad", STANDARD_NO_PAD.encode(b), true),
            ("b64url", URL_SAFE.encode(b), true),
            ("b64url-nopad", URL_SAFE_NO_PAD.encode(b), true),
            ("basic-0", STANDARD.encode(format!(":{s}")), true),
            ("basic-1", STANDARD.encode(format!("u:{s}")), true),
            ("basic-2", STANDARD.encode(format!("us:{s}")), true),
            ("basic-pass-first", STANDARD.encode(format!("{s}:")), true),
            (
                "basic-form",
                STANDARD.encode(format!("client:{}", form_encode(s))),
                true,
            ),
            // Base64 escaped again.
            (
                "b64-pct",
                pct(&STANDARD.encode(b), unreserved, false, false),
                true,
            ),
            (
                "b64-json-solidus",
                STANDARD.encode(b).replace('/', "\\/"),
                true,
            ),
            (
                "b64-html",
                STANDARD
                    .encode(b)
                    .replace('+', "&#43;")
                    .replace('/', "&#x2F;")
                    .replace('=', "&#61;"),
                true,
            ),
            (
                "basic-pct",
                pct(
                    &format!("Basic {}", STANDARD.encode(format!("u:{s}"))),
                    unreserved,
                    false,
                    false,
                ),
                true,
            ),
            // Inside a longer base64 value, at each alignment.
            (
                "b64-embedded-0",
                STANDARD.encode(format!("{{\"k\":\"{s}\",\"n\":1}}")),
                true,
            ),
            (
                "b64-embedded-1",
                URL_SAFE.encode(format!("ab{s}cdef")),
                false,
            ),
            (
                "b64-embedded-2",
                URL_SAFE_NO_PAD.encode(format!("abc{s}d")),
                false,
            ),
        ]
    }

    /// Places a provider echoes a credential in.
    fn contexts() -> Vec<(&'static str, &'static str)> {
        vec![
            ("GET /v1/me?api_key=", "&next=1 HTTP/1.1"),
            ("{\"echo\": \"", "\"}"),
            ("Authorization: Basic ", "\r\nHost: x"),
            ("Authorization: Bearer ", ""),
            ("<p>", "</p>"),
            ("invalid key (", ")"),
            ("", ""),
        ]
    }

    /// The scrubbed text must hold the secret in none of its spellings: for
    /// a long secret nowhere (nor the base64 characters that encode it at
    /// any alignment); for a short one not as the value it was sent as.
    fn assert_gone(secret: &str, out: &str, ctx: (&str, &str), what: &str) {
        let long = secret.len() >= SHORT_SECRET;
        for (name, sp, _) in spellings(secret) {
            let found = if long {
                out.contains(&sp) && !sp.is_empty()
            } else {
                out.contains(&format!("{}{sp}{}", ctx.0, ctx.1))
            };
            assert!(!found, "{what}: {secret:?} still spelled {name} in {out:?}");
        }
        if long {
            // Decoded once or twice over, any way, the text holds neither
            // the secret nor its base64.
            for d in decodings(out) {
                assert!(
                    !d.contains(secret),
                    "{what}: {secret:?} in {d:?} (from {out:?})"
                );
                for (core, _) in base64_cores(secret.as_bytes()) {
                    assert!(
                        !d.contains(&core),
                        "{what}: base64 of {secret:?} ({core}) in {d:?} (from {out:?})"
                    );
                }
            }
        }
    }

    /// Decode every escape of one kind (the scrubber's own decoders).
    fn decode(s: &str, kind: u8, plus: bool) -> String {
        match view(s, kind) {
            Some((v, _)) if plus => v.replace('+', " "),
            Some((v, _)) => v,
            None if plus => s.replace('+', " "),
            None => s.to_string(),
        }
    }

    fn decodings(s: &str) -> Vec<String> {
        let mut v = vec![s.to_string()];
        for _ in 0..2 {
            let mut next = Vec::new();
            for t in &v {
                for kind in 0..3 {
                    next.push(decode(t, kind, false));
                    next.push(decode(t, kind, true));
                }
            }
            v.extend(next);
            v.sort();
            v.dedup();
        }
        v
    }

    #[test]
    fn every_spelling_of_every_canary_goes() {
        for secret in CANARIES {
            for (name, sp, short_too) in spellings(secret) {
                if secret.len() < SHORT_SECRET && !short_too {
                    continue;
                }
                for ctx in contexts() {
                    let text = format!("{}{sp}{}", ctx.0, ctx.1);
                    let what = format!("{name} in {ctx:?}");
                    let out = scrub_text(&text, &[secret]);
                    assert_gone(secret, &out, ctx, &format!("text, {what}"));
                    let out = scrub_body(text.as_bytes(), &[secret], 4096);
                    assert_gone(secret, &out, ctx, &format!("body, {what}"));
                    // As a JSON string value, and as a JSON name.
                    let j = serde_json::json!({ "detail": text, "n": 1 }).to_string();
                    let out = scrub_body(j.as_bytes(), &[secret], 4096);
                    let out: Value = serde_json::from_str(&out).unwrap();
                    let d = out["detail"].as_str().unwrap();
                    assert_gone(secret, d, ctx, &format!("json value, {what}"));
                    let j = serde_json::json!({ text.clone(): 1 }).to_string();
                    let out = scrub_body(j.as_bytes(), &[secret], 4096);
                    let out: Value = serde_json::from_str(&out).unwrap();
                    for k in out.as_object().unwrap().keys() {
                        assert_gone(secret, k, ctx, &format!("json name, {what}"));
                    }
                }
            }
        }
    }

    #[test]
    fn the_leak_from_the_attack_is_closed() {
        let out = scrub_text(
            "unknown parameter in /v1/me?api_key=CANARYQ%2B%2F%3D+%26x",
            &["CANARYQ+/= &x"],
        );
        assert_eq!(out, "unknown parameter in /v1/me?api_key=[redacted]");
        // Several secrets at once, mixed case hex.
        let out = scrub_text(
            "a=CANARYQ%2b%2f%3d%20%26x b=c2VjcmV0LXR3bzpDQU5BUllR",
            &["CANARYQ+/= &x", "secret-two"],
        );
        assert!(!out.contains("%2b") && !out.contains("c2Vj"), "{out}");
    }

    #[test]
    fn short_secrets_go_as_values_but_do_not_shred_text() {
        assert_eq!(
            scrub_text("the x-ray of box x was at x%26y", &["x"]),
            "the x-ray of box [redacted] was at [redacted]%26y"
        );
        assert_eq!(
            scrub_text("a cat ate at the gate; key=at", &["at"]),
            "a cat ate [redacted] the gate; key=[redacted]"
        );
        assert_eq!(scrub_text("q&a is fine", &["q&"]), "q&a is fine");
        assert_eq!(
            scrub_text("token=%71%26 end", &["q&"]),
            "token=[redacted] end"
        );
        let s = scrub_body(
            br#"{"error":"bad","got":"Zz9","hint":"Zz9a"}"#,
            &["Zz9"],
            500,
        );
        assert_eq!(s, r#"{"error":"bad","got":"[redacted]","hint":"Zz9a"}"#);
    }

    #[test]
    fn base64_inside_base64_goes() {
        for secret in ["k", "Q&", "CANARYQ+/= &x"] {
            let inner = STANDARD.encode(format!("svc:{secret}"));
            let outer = STANDARD.encode(format!("Basic {inner}"));
            let twice = URL_SAFE.encode(format!("{{\"h\":\"{outer}\"}}"));
            for word in [outer, twice] {
                // The known-secret pass alone (long base64 words also look
                // like tokens to the generic pass).
                let out = scrub_known(&format!("echo: {word}\n"), &[secret]).ok();
                assert_eq!(out.as_deref(), Some("echo: [redacted]\n"), "{secret}");
            }
        }
    }

    #[test]
    fn basic_credentials_go_whoever_they_belong_to() {
        let b = STANDARD.encode("svc:hunter2");
        let out = scrub_text(&format!("got Authorization: Basic {b} from you"), &[]);
        assert_eq!(out, "got Authorization: Basic [redacted] from you");
        // Not a credential: left alone.
        assert_eq!(scrub_text("basic auth failed", &[]), "basic auth failed");
    }

    #[test]
    fn base64_cores_are_alignment_independent() {
        for secret in ["CANARYQ+/= &x", "abcd", "ünï✓"] {
            for o in 0..3 {
                for pre in [[0u8; 3], [0xffu8; 3], *b"xyz"] {
                    let mut buf = pre[..o].to_vec();
                    buf.extend_from_slice(secret.as_bytes());
                    buf.extend_from_slice(b"tail");
                    let enc = STANDARD.encode(&buf);
                    assert!(
                        base64_cores(secret.as_bytes())
                            .iter()
                            .any(|(c, _)| enc.contains(c.as_str())),
                        "{secret} at {o}"
                    );
                }
            }
        }
    }

    #[test]
    fn contrived_text_is_replaced_whole_not_scrubbed_slowly() {
        let secret = format!("{}b", "a".repeat(2000));
        let text = "a".repeat(60_000);
        let started = std::time::Instant::now();
        let out = scrub_text(&text, &[&secret]);
        assert_eq!(out, REDACTED);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
