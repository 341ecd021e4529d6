//! Connections: kinds, status machine, and validation of their non-secret fields.

use crate::ids::validate_slug;
use crate::Error;
use crate::ErrorCode;

string_enum!(
    /// How a connection authenticates. OAuth kinds are created through connect
    /// sessions (a later capability); the rest take their material directly.
    ConnectionKind, ErrorCode::InvalidKind, {
        ApiKey => "api_key",
        Basic => "basic",
        Headers => "headers",
        AwsAccessKey => "aws_access_key",
        ServiceAccountJson => "service_account_json",
        RsaKeyPair => "rsa_key_pair",
        OAuth2AuthorizationCode => "oauth2_authorization_code",
        OAuth2ClientCredentials => "oauth2_client_credentials",
    }
);

impl ConnectionKind {
    /// Kinds whose material an operator types in (as opposed to an OAuth flow).
    pub fn is_static(self) -> bool {
        !matches!(
            self,
            ConnectionKind::OAuth2AuthorizationCode | ConnectionKind::OAuth2ClientCredentials
        )
    }
}

string_enum!(
    /// Connection lifecycle. See [`Status::can_transition`].
    Status, ErrorCode::InvalidStatus, {
        Pending => "pending",
        Active => "active",
        Degraded => "degraded",
        NeedsReauth => "needs_reauth",
        RevokePending => "revoke_pending",
        Revoked => "revoked",
        // Revoked, but the provider still accepted the old credential when
        // rekey tried it: an alarm.
        RevocationFailed => "revocation_failed",
        Disabled => "disabled",
    }
);

string_enum!(
    /// A connect link's progress: `created` → `started` (sent to the
    /// provider) → `exchanging` → `completed` | `failed`; `superseded` when a
    /// newer link for the same connection was made.
    ConnectSessionStatus, ErrorCode::InvalidStatus, {
        Created => "created",
        Started => "started",
        Exchanging => "exchanging",
        Completed => "completed",
        Failed => "failed",
        Superseded => "superseded",
    }
);

impl Status {
    /// The legal transitions of the status machine. Anything else is a bug or
    /// a race and is refused with `invalid_transition`.
    pub fn can_transition(self, to: Status) -> bool {
        use Status::*;
        if self == to {
            return false;
        }
        match (self, to) {
            // An operator may disable anything not already gone.
            (Revoked, Disabled) => false,
            (_, Disabled) => true,
            // Re-enabling goes back through verification.
            (Disabled, Pending) => true,
            (Disabled, _) => false,
            // New credential material always starts unverified.
            (_, Pending) => true,
            (Pending | Degraded | NeedsReauth, Active) => true,
            (Active | Pending, Degraded) => true,
            (Pending | Active | Degraded, NeedsReauth) => true,
            // The verdict on a revoked credential moves between these two.
            (Revoked, RevocationFailed) | (RevocationFailed, Revoked) => true,
            (Revoked | RevocationFailed, _) => false,
            (_, RevokePending) => self != RevokePending,
            (_, Revoked) => true,
            _ => false,
        }
    }

    /// Disabled, revoked, or revocation asked for: no credential of it is
    /// handed out, checked or rotated until an operator brings it back.
    pub fn is_out_of_service(self) -> bool {
        self == Status::Disabled || self.is_revoked()
    }

    /// Revocation asked for or done: the current credential belongs to a
    /// revocation record, which alone may send it to the provider again.
    pub fn is_revoked(self) -> bool {
        matches!(
            self,
            Status::Revoked | Status::RevokePending | Status::RevocationFailed
        )
    }

    pub fn transition(self, to: Status) -> Result<Status, Error> {
        if self.can_transition(to) {
            Ok(to)
        } else {
            Err(Error::conflict(
                ErrorCode::InvalidTransition,
                format!("a connection in status `{self}` cannot become `{to}`"),
            ))
        }
    }
}

/// Who authorized a connection at the provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    pub subject: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

pub const MAX_LIST_ITEMS: usize = 64;

/// Characters that change how text around them is shown without being
/// seen: bidirectional embeddings, overrides, isolates and marks (a name
/// could show `gpj.exe` as `exe.jpg`), zero-width spaces and joiners that
/// are never needed between words, line and paragraph separators, the BOM
/// and Unicode tag characters. (ZWJ and ZWNJ stay: scripts and emoji need
/// them.)
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}'                // ARABIC LETTER MARK
        | '\u{180E}'              // MONGOLIAN VOWEL SEPARATOR
        | '\u{200B}'              // ZERO WIDTH SPACE
        | '\u{200E}' | '\u{200F}' // LRM, RLM
        | '\u{2028}' | '\u{2029}' // LINE / PARAGRAPH SEPARATOR
        | '\u{202A}'..='\u{202E}' // LRE, RLE, PDF, LRO, RLO
        | '\u{2060}'..='\u{2064}' // WORD JOINER, invisible operators
        | '\u{2066}'..='\u{2069}' // LRI, RLI, FSI, PDI
        | '\u{FEFF}'              // BOM / ZERO WIDTH NO-BREAK SPACE
        | '\u{E0000}'..='\u{E007F}' // tag characters
    )
}

/// Free text shown to people (names, descriptions, hints): 1–`max`
/// characters, none of them control or invisible formatting characters.
/// `code` is the error code (`invalid_field` for connection fields).
/// An operator's note (evidence for the audit log: a ticket number, what
/// was seen): trimmed, empty means none, at most 500 printable characters.
pub fn validate_note(note: Option<&str>) -> Result<Option<String>, Error> {
    match note.map(str::trim) {
        None | Some("") => Ok(None),
        Some(n) => {
            validate_text(ErrorCode::InvalidField, "note", n, 500)?;
            Ok(Some(n.to_string()))
        }
    }
}

pub fn validate_text(code: ErrorCode, field: &str, s: &str, max: usize) -> Result<(), Error> {
    if s.trim().is_empty() || s.chars().count() > max {
        return Err(Error::invalid(
            code,
            format!("`{field}` must be 1–{max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(
            code,
            format!("`{field}` must not contain control characters (line breaks, tabs, escapes)"),
        ));
    }
    if s.chars().any(is_invisible_format) {
        return Err(Error::invalid(
            code,
            format!(
                "`{field}` must not contain invisible formatting characters \
                 (bidirectional overrides, isolates or marks, zero-width spaces)"
            ),
        ));
    }
    Ok(())
}

/// Drop control and invisible formatting characters from text that comes
/// from a provider (an identity's name), where refusing is not an option.
pub fn strip_invisible(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .collect()
}

pub fn validate_display_name(s: &str) -> Result<(), Error> {
    validate_text(ErrorCode::InvalidField, "display_name", s, 200)
}

/// An email address as an addr-spec (`local@domain`), strict enough to be
/// shown anywhere: no quoted local parts, comments, brackets, quotes or
/// whitespace (`<script>`, `"a b"@x`, `a@x' onmouseover=…` are refused).
/// Non-ASCII letters are allowed (internationalised addresses).
pub fn is_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.chars().count() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    local_ok && domain_ok && !e.chars().any(|c| c.is_control() || is_invisible_format(c))
}

/// Check an email field (`owner.email`, `owner_hint`).
pub fn validate_email(field: &str, e: &str) -> Result<(), Error> {
    if e.chars().count() > 320 || !is_email(e) {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            format!(
                "`{field}` is not an email address (local@domain, without spaces, quotes or <>)"
            ),
        ));
    }
    Ok(())
}

/// Normalise a list of slugs (tags, custody places): validated, sorted, unique.
pub fn normalize_slugs(field: &str, items: &[String]) -> Result<Vec<String>, Error> {
    if items.len() > MAX_LIST_ITEMS {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            format!("`{field}` holds at most {MAX_LIST_ITEMS} items"),
        ));
    }
    for s in items {
        validate_slug(field, s, 64)?;
    }
    let mut v = items.to_vec();
    v.sort();
    v.dedup();
    Ok(v)
}

/// OAuth-style scopes granted to a connection: free-form but bounded.
pub fn normalize_scopes(items: &[String]) -> Result<Vec<String>, Error> {
    if items.len() > 256 {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            "`scopes` holds at most 256 items",
        ));
    }
    for s in items {
        if s.is_empty() || s.len() > 256 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(
                ErrorCode::InvalidField,
                "each scope must be 1–256 characters without spaces",
            ));
        }
    }
    let mut v = items.to_vec();
    v.sort();
    v.dedup();
    Ok(v)
}

pub fn validate_owner(o: &Owner) -> Result<(), Error> {
    for (field, v) in [("owner.subject", &o.subject), ("owner.name", &o.name)] {
        if let Some(v) = v {
            validate_text(ErrorCode::InvalidField, field, v, 320)?;
        }
    }
    if let Some(e) = &o.email {
        validate_email("owner.email", e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn status_machine_legal_and_illegal() {
        assert!(Pending.can_transition(Active));
        assert!(Active.can_transition(Degraded));
        assert!(Degraded.can_transition(Active));
        assert!(Active.can_transition(NeedsReauth));
        assert!(NeedsReauth.can_transition(Pending));
        assert!(Active.can_transition(Disabled));
        assert!(Disabled.can_transition(Pending));
        assert!(!Disabled.can_transition(Active));
        assert!(!Revoked.can_transition(Active));
        assert!(!Revoked.can_transition(Disabled));
        assert!(
            Revoked.can_transition(Pending),
            "reauthorized with new material"
        );
        assert!(!Active.can_transition(Active));
        assert!(NeedsReauth.transition(Degraded).is_err());
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(
            "api_key".parse::<ConnectionKind>().unwrap(),
            ConnectionKind::ApiKey
        );
        let e = "apikey".parse::<ConnectionKind>().unwrap_err();
        assert_eq!(e.code(), "invalid_kind");
        assert!(!ConnectionKind::OAuth2AuthorizationCode.is_static());
    }

    #[test]
    fn slugs_normalize() {
        let v = normalize_slugs("tags", &["b".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(v, vec!["a", "b"]);
        assert!(normalize_slugs("tags", &["Bad Tag".into()]).is_err());
    }

    #[test]
    fn owner_email_checked() {
        let o = Owner {
            email: Some("nope".into()),
            ..Default::default()
        };
        assert!(validate_owner(&o).is_err());
    }

    #[test]
    fn emails_are_addr_specs_without_markup() {
        for ok in [
            "a@example.com",
            "first.last+tag@sub.example.co.uk",
            "o_brien-1@x.io",
            "jürgen@bücher.de",
        ] {
            assert!(validate_email("owner.email", ok).is_ok(), "{ok}");
        }
        for bad in [
            "<script>alert(1)</script>@x.com",
            "a@x.com<script>",
            "\"a b\"@x.com",
            "a'@x.com",
            "a@x.com' onmouseover='x",
            "a b@x.com",
            "a@x .com",
            "a@@x.com",
            "a@x",
            "@x.com",
            "a@.x.com",
            "a@x..com",
            ".a@x.com",
            "a..b@x.com",
            "a@-x.com",
            "a\n@x.com",
            "a\u{202E}@x.com",
            "Name <a@x.com>",
        ] {
            let e = validate_email("owner.email", bad).unwrap_err();
            assert_eq!(e.code(), "invalid_field", "{bad}");
            assert!(e.to_string().contains("owner.email"), "{bad}");
        }
    }

    #[test]
    fn names_refuse_controls_and_invisible_formatting() {
        for c in [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{200B}',
            '\u{FEFF}',
            '\u{2028}',
            '\u{E0041}',
            '\n',
            '\r',
            '\t',
            '\0',
            '\u{1b}',
            '\u{85}',
        ] {
            let name = format!("invoice{c}fdp.exe");
            let e = validate_display_name(&name).unwrap_err();
            assert_eq!(e.code(), "invalid_field");
            assert!(e.to_string().contains("display_name"), "{e}");
            for (subject, owner_name) in [(Some(name.clone()), None), (None, Some(name.clone()))] {
                let o = Owner {
                    subject,
                    name: owner_name,
                    email: None,
                };
                assert_eq!(validate_owner(&o).unwrap_err().code(), "invalid_field");
            }
            assert_eq!(strip_invisible(&name), "invoicefdp.exe");
        }
        // Letters of any script, emoji with joiners, and ZWNJ are fine.
        for ok in [
            "Payroll – Zürich",
            "مرحبا بالعالم",
            "👩\u{200D}💻 team",
            "می\u{200C}خواهم",
        ] {
            assert!(validate_display_name(ok).is_ok(), "{ok}");
        }
        assert!(validate_display_name("  ").is_err());
        assert!(validate_display_name(&"x".repeat(201)).is_err());
    }
}
