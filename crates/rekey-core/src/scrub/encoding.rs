//! The spellings of one character: literal, percent-encoded (once or
//! twice), a JSON escape or an HTML character reference. `units` lists every
//! character the text at a position may spell, which is how a known secret
//! is matched in any mix of encodings.

pub(super) fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One percent-encoded byte at the start of `t`: `%HH`, or `%25HH`
/// (encoded twice). Returns each reading (byte, bytes of text used).
pub(super) fn pct_bytes(t: &[u8], out: &mut Vec<(u8, usize)>) {
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
pub(super) fn percent(t: &[u8], out: &mut Vec<(char, usize)>) {
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

pub(super) fn hex4(t: &[u8]) -> Option<u32> {
    if t.len() < 4 {
        return None;
    }
    t[..4]
        .iter()
        .try_fold(0u32, |acc, &b| hex(b).map(|d| (acc << 4) | u32::from(d)))
}

/// A JSON escape at the start of `t` (which starts with `\`).
pub(super) fn json_escape(t: &[u8]) -> Option<(char, usize)> {
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
pub(super) fn entity(t: &[u8]) -> Option<(char, usize)> {
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
pub(super) fn units(t: &str, out: &mut Vec<(char, usize)>) {
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
