//! Connections: kinds, status machine, and validation of their non-secret fields.

use crate::ids::validate_slug;
use crate::Error;
use std::fmt;
use std::str::FromStr;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $code:literal, { $($var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($var),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn as_str(self) -> &'static str { match self { $($name::$var => $s),+ } }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $($s => Ok($name::$var),)+
                    other => Err(Error::invalid($code, format!(
                        "unknown {} `{}`; expected one of: {}",
                        stringify!($name).to_lowercase(),
                        crate::ids::truncate_for_message(other),
                        [$($s),+].join(", ")))),
                }
            }
        }
    };
}

string_enum!(
    /// How a connection authenticates. OAuth kinds are created through connect
    /// sessions (a later capability); the rest take their material directly.
    ConnectionKind, "invalid_kind", {
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
    Status, "invalid_status", {
        Pending => "pending",
        Active => "active",
        Degraded => "degraded",
        NeedsReauth => "needs_reauth",
        RevokePending => "revoke_pending",
        Revoked => "revoked",
        Disabled => "disabled",
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
            (Revoked, _) => false,
            (_, RevokePending) => self != RevokePending,
            (_, Revoked) => true,
            _ => false,
        }
    }

    pub fn transition(self, to: Status) -> Result<Status, Error> {
        if self.can_transition(to) {
            Ok(to)
        } else {
            Err(Error::conflict(
                "invalid_transition",
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

pub fn validate_display_name(s: &str) -> Result<(), Error> {
    let t = s.trim();
    if t.is_empty() || s.chars().count() > 200 || s.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(
            "invalid_field",
            "`display_name` must be 1–200 printable characters",
        ));
    }
    Ok(())
}

/// Normalise a list of slugs (tags, custody places): validated, sorted, unique.
pub fn normalize_slugs(field: &str, items: &[String]) -> Result<Vec<String>, Error> {
    if items.len() > MAX_LIST_ITEMS {
        return Err(Error::invalid(
            "invalid_field",
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
            "invalid_field",
            "`scopes` holds at most 256 items",
        ));
    }
    for s in items {
        if s.is_empty() || s.len() > 256 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(
                "invalid_field",
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
    for (field, v) in [
        ("owner.subject", &o.subject),
        ("owner.email", &o.email),
        ("owner.name", &o.name),
    ] {
        if let Some(v) = v {
            if v.is_empty() || v.chars().count() > 320 || v.chars().any(|c| c.is_control()) {
                return Err(Error::invalid(
                    "invalid_field",
                    format!("`{field}` must be 1–320 printable characters"),
                ));
            }
        }
    }
    if let Some(e) = &o.email {
        let ok = e
            .split_once('@')
            .map(|(l, d)| !l.is_empty() && d.contains('.'))
            .unwrap_or(false);
        if !ok {
            return Err(Error::invalid(
                "invalid_field",
                "`owner.email` is not an email address",
            ));
        }
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
}
