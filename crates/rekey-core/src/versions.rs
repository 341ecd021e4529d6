//! Credential versions: the labels a connection's credentials move through
//! (`pending` → `current` → `previous` → `retired`, like AWS Secrets
//! Manager's staging labels), the grace a previous credential stays
//! readable, and fingerprints that name a credential without revealing it.

use crate::{Error, ErrorCode};
use std::time::Duration;

string_enum!(
    /// Where a credential version stands. Consumers get `current`; dual-key
    /// consumers may read `previous` until its grace ends; `pending` is a
    /// rotation's new secret not yet promoted; `retired` keeps only the
    /// fingerprint and history (the material is deleted).
    VersionLabel, ErrorCode::InvalidVersion, {
        Current => "current",
        Pending => "pending",
        Previous => "previous",
        Retired => "retired",
    }
);

/// How long the previous credential stays readable when none is asked for.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// The longest grace: a previous credential is not kept for longer.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Whole seconds (`"3600"`) or a number with a unit (`"90s"`, `"15m"`,
/// `"1h"`, `"7d"`); None for anything else.
pub fn parse_duration_text(s: &str) -> Option<Duration> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    if num.is_empty() || num.len() > 9 {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// Parse a grace: whole seconds or a number with s, m, h or d, from 0
/// (retire at once) to 30 days.
pub fn parse_grace(s: &str) -> Result<Duration, Error> {
    match parse_duration_text(s) {
        Some(d) if d <= MAX_GRACE => Ok(d),
        _ => Err(Error::invalid(
            ErrorCode::InvalidGrace,
            format!(
                "`grace` must be seconds or a number with s, m, h or d (e.g. 0, 90s, 15m, 1h, 7d), at most 30d; got `{}`",
                crate::ids::truncate_for_message(s)
            ),
        )),
    }
}

/// A grace given as seconds (the API's number form).
pub fn grace_from_secs(secs: i64) -> Result<Duration, Error> {
    if secs < 0 || secs as u64 > MAX_GRACE.as_secs() {
        return Err(Error::invalid(
            ErrorCode::InvalidGrace,
            format!(
                "`grace` must be from 0 to {} seconds (30 days)",
                MAX_GRACE.as_secs()
            ),
        ));
    }
    Ok(Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_forms() {
        assert_eq!(parse_grace("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_grace("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_grace("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_grace("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_grace(" 1h ").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_grace("30d").unwrap(), MAX_GRACE);
        for bad in [
            "",
            "h",
            "-1",
            "1.5h",
            "31d",
            "1w",
            "1 h",
            "99999999999",
            "1hh",
        ] {
            let e = parse_grace(bad).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidGrace, "{bad}");
        }
        assert!(grace_from_secs(-1).is_err());
        assert!(grace_from_secs(30 * 86_400 + 1).is_err());
        assert_eq!(grace_from_secs(0).unwrap(), Duration::ZERO);
    }

    #[test]
    fn labels_round_trip() {
        for l in VersionLabel::ALL {
            assert_eq!(l.as_str().parse::<VersionLabel>().unwrap(), *l);
        }
        assert!("latest".parse::<VersionLabel>().is_err());
    }
}
