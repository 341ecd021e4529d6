//! Record ids: a short type prefix and a UUIDv7 (time-ordered, so ids sort by
//! creation and make stable pagination cursors).

use crate::Error;
use crate::ErrorCode;

pub const CONNECTION: &str = "con";
pub const API_KEY: &str = "key";
pub const AUDIT: &str = "aud";
pub const WEBHOOK: &str = "whk";
/// Webhook events: `msg_` as in Standard Webhooks message ids.
pub const EVENT: &str = "msg";
pub const DELIVERY: &str = "dlv";
pub const ATTEMPT: &str = "att";
/// OAuth app registrations.
pub const INTEGRATION: &str = "int";
/// A credential version.
pub const CREDENTIAL_VERSION: &str = "cv";
/// A credential rotation.
pub const ROTATION: &str = "rot";
pub const REVOCATION: &str = "rvk";
/// An evidence export (its record in the audit chain).
pub const EVIDENCE: &str = "evd";
/// An incident campaign.
pub const CAMPAIGN: &str = "cmp";

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Validate an id given by a client; rejects anything that is not
/// `<prefix>_<32 lowercase hex>`.
pub fn parse_id(prefix: &str, s: &str) -> Result<String, Error> {
    let ok = s
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .map(|hex| {
            hex.len() == 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .unwrap_or(false);
    if ok {
        Ok(s.to_string())
    } else {
        Err(Error::invalid(
            ErrorCode::InvalidId,
            format!("`{}` is not a valid {prefix}_… id", truncate_for_message(s)),
        ))
    }
}

/// The ids [`parse_id`] accepts, as a regular expression (for the OpenAPI
/// document): the prefix, `_`, and the UUID in simple form (32 lowercase hex
/// digits; [`new_id`] makes UUIDv7s, but any UUID is accepted).
pub fn id_pattern(prefix: &str) -> String {
    format!("^{prefix}_[0-9a-f]{{32}}$")
}

/// The slugs [`validate_slug`] accepts with at most `max` characters, as a
/// regular expression.
pub fn slug_pattern(max: usize) -> String {
    format!("^[a-z0-9][a-z0-9._:-]{{0,{}}}$", max.saturating_sub(1))
}

/// Ids come from URLs; keep error messages short even for absurd input.
pub fn truncate_for_message(s: &str) -> String {
    let mut out: String = s.chars().take(48).filter(|c| !c.is_control()).collect();
    if s.chars().count() > 48 {
        out.push('…');
    }
    out
}

/// Tenants, tags, custody places, provider ids: short slugs.
pub fn validate_slug(field: &str, s: &str, max: usize) -> Result<(), Error> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.' | b':')
        })
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            ErrorCode::InvalidField,
            format!("`{field}` must be 1–{max} characters of a-z, 0-9, '-', '_', '.', ':' starting with a letter or digit"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ids_roundtrip_and_reject_garbage() {
        let id = new_id(CONNECTION);
        assert_eq!(parse_id(CONNECTION, &id).unwrap(), id);
        assert!(parse_id(API_KEY, &id).is_err());
        assert!(parse_id(CONNECTION, "con_xyz").is_err());
        assert!(parse_id(CONNECTION, "../../etc/passwd").is_err());
        assert_eq!(id_pattern(CONNECTION), "^con_[0-9a-f]{32}$");
        assert_eq!(slug_pattern(64), "^[a-z0-9][a-z0-9._:-]{0,63}$");
        let a = new_id(CONNECTION);
        let b = new_id(CONNECTION);
        assert!(a < b, "v7 ids sort by creation");
    }
    #[test]
    fn slugs() {
        assert!(validate_slug("t", "acme-prod", 64).is_ok());
        assert!(validate_slug("t", "Acme", 64).is_err());
        assert!(validate_slug("t", "", 64).is_err());
        assert!(validate_slug("t", "-x", 64).is_err());
    }
}
