//! API key scopes.

use crate::Error;
use crate::ErrorCode;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    ConnectionsRead,
    ConnectionsWrite,
    CredentialsRead,
    AuditRead,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::ConnectionsRead,
        Scope::ConnectionsWrite,
        Scope::CredentialsRead,
        Scope::AuditRead,
        Scope::Admin,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ConnectionsRead => "connections:read",
            Scope::ConnectionsWrite => "connections:write",
            Scope::CredentialsRead => "credentials:read",
            Scope::AuditRead => "audit:read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Scope::ALL
            .into_iter()
            .find(|sc| sc.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    ErrorCode::InvalidScope,
                    format!(
                        "unknown scope `{}`; known scopes: {}",
                        crate::ids::truncate_for_message(s),
                        Scope::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })
    }
}

/// A set of scopes held by a key. `admin` implies every other scope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Scopes, Error> {
        if items.is_empty() {
            return Err(Error::invalid(
                ErrorCode::InvalidScope,
                "at least one scope is required",
            ));
        }
        let mut v = items
            .iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<Scope>, _>>()?;
        v.sort();
        v.dedup();
        Ok(Scopes(v))
    }
    pub fn allows(&self, needed: Scope) -> bool {
        self.0.contains(&Scope::Admin) || self.0.contains(&needed)
    }
    pub fn as_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.as_str().to_string()).collect()
    }
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn admin_implies_all() {
        let s = Scopes::parse(&["admin"]).unwrap();
        assert!(s.allows(Scope::CredentialsRead));
        let r = Scopes::parse(&["connections:read"]).unwrap();
        assert!(r.allows(Scope::ConnectionsRead));
        assert!(!r.allows(Scope::CredentialsRead));
        assert!(Scopes::parse(&["root"]).is_err());
        assert!(Scopes::parse::<&str>(&[]).is_err());
    }
}
