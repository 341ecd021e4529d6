//! Key forms: what the hosted Connect page asks for when a connection uses
//! a static credential kind, and how an `api_key` is sent. Field names are
//! the credential field names rekey's API takes for that kind
//! (`rekey_core::credentials`), so a filled form is the `credentials`
//! object of `POST /api/v1/connections` once [`KeyForm::fixed_fields`] are
//! merged in.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where an `api_key` goes on the wire (mirrors rekey's `placement`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    Header,
    Query,
    Basic,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Header => "header",
            Placement::Query => "query",
            Placement::Basic => "basic",
        }
    }
}

fn yes() -> bool {
    true
}

/// One input on the Connect page.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    /// Credential field name for the kind (`key`, `username`, `password`,
    /// `access_key_id`, `headers.X-Api-Key`, …).
    pub name: String,
    pub label: String,
    /// Masked input, never shown again; must match how rekey stores the field.
    #[serde(default)]
    pub secret: bool,
    #[serde(default = "yes")]
    pub required: bool,
    /// Where to find or create the value at the provider.
    #[serde(default)]
    pub help: Option<String>,
    /// Multi-line input (PEM keys, JSON key files).
    #[serde(default)]
    pub multiline: bool,
    /// Accepted value prefixes (e.g. `ak_` for Salesloft API keys).
    #[serde(default)]
    pub starts_with: Vec<String>,
    #[serde(default)]
    pub min_length: Option<usize>,
    #[serde(default)]
    pub max_length: Option<usize>,
}

impl FormField {
    /// Check a submitted value against the field's rules. The reason
    /// ("must be at least 40 characters") names neither the field nor the
    /// value: callers put the field's wire name or label in front.
    pub fn check(&self, value: &str) -> Result<(), String> {
        if value.is_empty() {
            return if self.required {
                Err("is required".to_string())
            } else {
                Ok(())
            };
        }
        if let Some(min) = self.min_length {
            if value.chars().count() < min {
                return Err(format!("must be at least {min} characters"));
            }
        }
        if let Some(max) = self.max_length {
            if value.chars().count() > max {
                return Err(format!("must be at most {max} characters"));
            }
        }
        if !self.starts_with.is_empty() && !self.starts_with.iter().any(|p| value.starts_with(p)) {
            return Err(format!("must start with {}", self.starts_with.join(" or ")));
        }
        Ok(())
    }
}

/// The Connect-page form for one static auth kind.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyForm {
    /// Short instructions shown above the form.
    #[serde(default)]
    pub help: Option<String>,
    /// `api_key` only: where the key goes (default `header`).
    #[serde(default)]
    pub placement: Option<Placement>,
    /// `api_key` only: header name (placement `header`, default
    /// `Authorization`) or query parameter name (placement `query`).
    #[serde(default)]
    pub name: Option<String>,
    /// `api_key` only, placement `header`: text before the key, e.g. `"Bearer "`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// `api_key` only, placement `basic`: fixed user name sent with the key.
    #[serde(default)]
    pub username: Option<String>,
    pub fields: Vec<FormField>,
}

impl KeyForm {
    /// Non-secret credential fields fixed by the catalog (placement, header
    /// name, prefix, username) to merge into the submitted credentials.
    pub fn fixed_fields(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        if let Some(p) = self.placement {
            m.insert("placement", p.as_str().to_string());
        }
        if let Some(n) = &self.name {
            m.insert("name", n.clone());
        }
        if let Some(p) = &self.prefix {
            m.insert("prefix", p.clone());
        }
        if let Some(u) = &self.username {
            m.insert("username", u.clone());
        }
        m
    }

    pub fn field(&self, name: &str) -> Option<&FormField> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Credential fields rekey accepts per static kind: (name, secret, required).
fn kind_fields(kind: &str) -> Option<&'static [(&'static str, bool, bool)]> {
    Some(match kind {
        "api_key" => &[
            ("key", true, true),
            ("placement", false, false),
            ("name", false, false),
            ("prefix", false, false),
            ("username", false, false),
        ],
        "basic" => &[("username", false, true), ("password", true, true)],
        "aws_access_key" => &[
            ("access_key_id", false, true),
            ("secret_access_key", true, true),
            ("session_token", true, false),
            ("region", false, false),
        ],
        "service_account_json" => &[("json", true, true)],
        "rsa_key_pair" => &[
            ("private_key_pem", true, true),
            ("passphrase", true, false),
            ("username", false, false),
        ],
        "headers" => &[],
        _ => return None,
    })
}

pub(crate) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header a credential may travel in: the same rule rekey applies to
/// submitted credentials (`rekey_core::credentials::header_name_problem`),
/// so a catalog form cannot ask for `Host`, `Content-Length`, `Proxy-*`….
fn credential_header_problem(s: &str) -> Option<&'static str> {
    rekey_core::credentials::header_name_problem(s)
}

/// Validate the form for `kind`. Returns `(field, reason)` relative to the form.
pub(crate) fn validate_form(kind: &str, f: &KeyForm) -> Result<(), (String, String)> {
    let err = |field: &str, reason: &str| Err((field.to_string(), reason.to_string()));
    let Some(spec) = kind_fields(kind) else {
        return err("", "key forms are only for static kinds (not oauth2_*)");
    };
    if kind != "api_key" {
        for (name, set) in [
            ("placement", f.placement.is_some()),
            ("name", f.name.is_some()),
            ("prefix", f.prefix.is_some()),
            ("username", f.username.is_some()),
        ] {
            if set {
                return err(name, "only applies to api_key forms");
            }
        }
    } else {
        let placement = f.placement.unwrap_or(Placement::Header);
        if let Some(n) = &f.name {
            if placement == Placement::Header {
                if let Some(why) = credential_header_problem(n) {
                    return err("name", why);
                }
            }
            let ok = match placement {
                Placement::Header => true,
                Placement::Query => {
                    !n.is_empty()
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                }
                Placement::Basic => false,
            };
            if !ok {
                return err(
                    "name",
                    match placement {
                        Placement::Basic => "does not apply to placement `basic`",
                        Placement::Query => {
                            "must be a query parameter name (a-z, 0-9, '-', '_', '.')"
                        }
                        Placement::Header => "must be a valid HTTP header name",
                    },
                );
            }
        } else if placement == Placement::Query {
            return err("name", "placement `query` needs the parameter name");
        }
        if let Some(p) = &f.prefix {
            if placement != Placement::Header {
                return err("prefix", "only applies to placement `header`");
            }
            if p.len() > 64 || p.chars().any(char::is_control) {
                return err("prefix", "must be at most 64 printable characters");
            }
        }
        if let Some(u) = &f.username {
            if placement != Placement::Basic {
                return err("username", "only applies to placement `basic`");
            }
            if u.is_empty() || u.len() > 256 || u.chars().any(char::is_control) {
                return err("username", "must be 1–256 printable characters");
            }
        }
    }
    if f.fields.is_empty() {
        return err("fields", "must list at least one field");
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, field) in f.fields.iter().enumerate() {
        let at = format!("fields[{i}]");
        if !seen.insert(field.name.as_str()) {
            return Err((
                format!("{at}.name"),
                format!("`{}` is listed twice", field.name),
            ));
        }
        if field.label.trim().is_empty() {
            return Err((format!("{at}.label"), "must not be empty".into()));
        }
        if let (Some(a), Some(b)) = (field.min_length, field.max_length) {
            if a > b {
                return Err((
                    format!("{at}.min_length"),
                    "is greater than max_length".into(),
                ));
            }
        }
        if field.max_length == Some(0) {
            return Err((format!("{at}.max_length"), "must be at least 1".into()));
        }
        if field.starts_with.iter().any(String::is_empty) {
            return Err((
                format!("{at}.starts_with"),
                "must not contain an empty prefix".into(),
            ));
        }
        let (secret, required_by_kind) = if kind == "headers" && field.name == "headers" {
            // A free-form map of header name → value.
            (true, false)
        } else if kind == "headers" {
            let Some(h) = field.name.strip_prefix("headers.") else {
                return Err((
                    format!("{at}.name"),
                    "headers forms name each field `headers.<Header-Name>` (or `headers` for a free-form map)".into(),
                ));
            };
            if let Some(why) = credential_header_problem(h) {
                return Err((format!("{at}.name"), why.into()));
            }
            (true, false)
        } else {
            match spec.iter().find(|(n, _, _)| *n == field.name) {
                Some((_, s, r)) => (*s, *r),
                None => {
                    let names: Vec<&str> = spec.iter().map(|(n, _, _)| *n).collect();
                    return Err((
                        format!("{at}.name"),
                        format!(
                            "`{}` is not a credential field of kind `{kind}`; expected one of: {}",
                            field.name,
                            names.join(", ")
                        ),
                    ));
                }
            }
        };
        if field.secret != secret {
            return Err((
                format!("{at}.secret"),
                if secret {
                    "must be true: rekey stores this field as a secret".into()
                } else {
                    "must be false: rekey stores this field in clear".into()
                },
            ));
        }
        if required_by_kind && !field.required {
            return Err((
                format!("{at}.required"),
                format!("`{}` is required for kind `{kind}`", field.name),
            ));
        }
        if kind == "api_key" {
            let fixed = match field.name.as_str() {
                "placement" => f.placement.is_some(),
                "name" => f.name.is_some(),
                "prefix" => f.prefix.is_some(),
                _ => false,
            };
            if fixed {
                return Err((
                    format!("{at}.name"),
                    format!("`{}` is already fixed by the form", field.name),
                ));
            }
        }
        if kind == "api_key" && field.name == "username" {
            let chosen_by_user = f.placement.is_none() && f.field("placement").is_some();
            if f.placement != Some(Placement::Basic) && !chosen_by_user {
                return Err((
                    format!("{at}.name"),
                    "a `username` field only applies to placement `basic`".into(),
                ));
            }
            if f.username.is_some() {
                return Err((
                    format!("{at}.name"),
                    "the username is already fixed by `username`".into(),
                ));
            }
        }
    }
    for (name, _, required) in spec {
        if *required && !f.fields.iter().any(|x| x.name == *name) {
            return Err((
                "fields".into(),
                format!("must include `{name}` for kind `{kind}`"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, secret: bool) -> FormField {
        FormField {
            name: name.into(),
            label: name.into(),
            secret,
            required: true,
            help: None,
            multiline: false,
            starts_with: vec![],
            min_length: None,
            max_length: None,
        }
    }

    fn form(fields: Vec<FormField>) -> KeyForm {
        KeyForm {
            help: None,
            placement: None,
            name: None,
            prefix: None,
            username: None,
            fields,
        }
    }

    #[test]
    fn forms_match_credential_kinds() {
        assert!(validate_form("api_key", &form(vec![field("key", true)])).is_ok());
        assert!(validate_form(
            "basic",
            &form(vec![field("username", false), field("password", true)])
        )
        .is_ok());
        let e = validate_form("basic", &form(vec![field("password", true)])).unwrap_err();
        assert_eq!(e.0, "fields");
        let e = validate_form("api_key", &form(vec![field("key", false)])).unwrap_err();
        assert_eq!(e.0, "fields[0].secret");
        let e = validate_form("api_key", &form(vec![field("token", true)])).unwrap_err();
        assert_eq!(e.0, "fields[0].name");
        let e = validate_form("oauth2_client_credentials", &form(vec![])).unwrap_err();
        assert!(e.1.contains("static"));
        assert!(validate_form("headers", &form(vec![field("headers.X-Api-Key", true)])).is_ok());
        assert!(validate_form("headers", &form(vec![field("X-Api-Key", true)])).is_err());
    }

    #[test]
    fn api_key_placement_rules() {
        let mut f = form(vec![field("key", true)]);
        f.placement = Some(Placement::Query);
        assert_eq!(validate_form("api_key", &f).unwrap_err().0, "name");
        f.name = Some("api_token".into());
        assert!(validate_form("api_key", &f).is_ok());
        f.prefix = Some("Bearer ".into());
        assert_eq!(validate_form("api_key", &f).unwrap_err().0, "prefix");
        let mut f = form(vec![field("key", true)]);
        f.name = Some("Bad Header".into());
        assert_eq!(validate_form("api_key", &f).unwrap_err().0, "name");
        for name in ["Host", "content-length", "Proxy-Authorization", "TE"] {
            let mut f = form(vec![field("key", true)]);
            f.name = Some(name.into());
            let e = validate_form("api_key", &f).unwrap_err();
            assert_eq!(e.0, "name");
            assert!(e.1.contains("hop-by-hop"), "{e:?}");
            let e = validate_form(
                "headers",
                &form(vec![field(&format!("headers.{name}"), true)]),
            )
            .unwrap_err();
            assert_eq!(e.0, "fields[0].name", "{e:?}");
        }
        let mut f = form(vec![field("key", true)]);
        f.username = Some("X".into());
        assert_eq!(validate_form("api_key", &f).unwrap_err().0, "username");
        let mut f = form(vec![field("username", false)]);
        f.placement = Some(Placement::Basic);
        assert!(validate_form("basic", &f).is_err());
    }

    #[test]
    fn field_checks_never_echo() {
        let mut f = field("key", true);
        f.starts_with = vec!["ak_".into()];
        f.min_length = Some(5);
        assert!(f.check("ak_12345").is_ok());
        let e = f.check("sekrit-value").unwrap_err();
        assert!(!e.contains("sekrit"));
        assert!(f.check("ak_").is_err());
        assert!(f.check("").is_err());
    }

    #[test]
    fn fixed_fields_map_onto_credentials() {
        let mut f = form(vec![field("key", true)]);
        f.placement = Some(Placement::Header);
        f.name = Some("Authorization".into());
        f.prefix = Some("Token ".into());
        let m = f.fixed_fields();
        assert_eq!(m["placement"], "header");
        assert_eq!(m["prefix"], "Token ");
    }
}
