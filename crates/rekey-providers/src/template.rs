//! URL templates with `{param}` placeholders for per-tenant hosts
//! (`https://{subdomain}.freshdesk.com/...`), URL shape checks, and safe
//! filling of placeholders with operator-supplied values.
//!
//! Values are restricted to host-and-path-safe characters so that a value
//! can never change the scheme, the registered domain, or the path of the
//! request (no `/`, `?`, `#`, `@`, `:`); placeholders that make up a whole
//! host must be constrained by `allowed` values or `host_suffixes`, so a
//! stored credential can only ever be sent to the provider's own domains.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Documentation of one per-integration parameter (`params`), shown on the
/// Connect page and used to check values.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ParamInfo {
    /// Form label, e.g. "Freshdesk subdomain".
    pub label: String,
    /// Where to find the value.
    #[serde(default)]
    pub help: Option<String>,
    /// A realistic value; URL templates are checked with it filled in.
    pub example: String,
    /// The value must be one of these (e.g. data-centre hosts).
    #[serde(default)]
    pub allowed: Vec<String>,
    /// The value must end with one of these domain suffixes (each starts
    /// with a dot, e.g. `.azuredatabricks.net`).
    #[serde(default)]
    pub host_suffixes: Vec<String>,
}

/// A value could not be put into a URL template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter `{param}`: {reason}")]
pub struct TemplateError {
    pub param: String,
    pub reason: String,
}

fn terr(param: &str, reason: impl Into<String>) -> TemplateError {
    TemplateError {
        param: param.to_string(),
        reason: reason.into(),
    }
}

/// Placeholders `{name}` in a URL template, in order of appearance.
pub fn placeholders(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = url;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else { break };
        out.push(rest[i + 1..i + j].to_string());
        rest = &rest[i + j + 1..];
    }
    out
}

/// Characters a parameter value may contain. Never echoes the value.
fn check_value_shape(name: &str, value: &str) -> Result<(), TemplateError> {
    if value.is_empty() || value.len() > 253 {
        return Err(terr(name, "must be 1–253 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(terr(
            name,
            "may only contain letters, digits, '-', '.' and '_'",
        ));
    }
    if value.starts_with('.') || value.ends_with('.') || value.contains("..") {
        return Err(terr(name, "must not start or end with '.' or contain '..'"));
    }
    Ok(())
}

/// Check one value for parameter `name` against its shape and `info`.
/// Error messages never contain the value.
pub fn check_param_value(
    name: &str,
    value: &str,
    info: Option<&ParamInfo>,
) -> Result<(), TemplateError> {
    check_value_shape(name, value)?;
    if let Some(info) = info {
        if !info.allowed.is_empty() && !info.allowed.iter().any(|a| a == value) {
            return Err(terr(
                name,
                format!("must be one of: {}", info.allowed.join(", ")),
            ));
        }
        if !info.host_suffixes.is_empty() {
            let lower = value.to_ascii_lowercase();
            let ok = info.host_suffixes.iter().any(|s| {
                let s = s.to_ascii_lowercase();
                lower.len() > s.len() && lower.ends_with(&s)
            });
            if !ok {
                return Err(terr(
                    name,
                    format!(
                        "must be a host ending in {}",
                        info.host_suffixes.join(" or ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Fill a template. Every placeholder needs a value in `values`; each value
/// is checked with [`check_param_value`].
pub fn render(
    template: &str,
    values: &BTreeMap<String, String>,
    info: &BTreeMap<String, ParamInfo>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else { break };
        let name = &rest[i + 1..i + j];
        let value = values
            .get(name)
            .ok_or_else(|| terr(name, "no value supplied"))?;
        check_param_value(name, value, info.get(name))?;
        out.push_str(&rest[..i]);
        out.push_str(value);
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The authority (host[:port]) of an `https://` URL or template, if any.
pub(crate) fn authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    rest.split(['/', '?', '#']).next()
}

/// Whether the host part of a template pins a registered domain after its
/// last placeholder (`{account}.snowflakecomputing.com` does,
/// `{api_host}` and `api.{region}.com`-style single-label tails do not).
pub(crate) fn host_is_pinned(host_template: &str) -> bool {
    let host = host_template.split(':').next().unwrap_or("");
    let tail = match host.rfind('}') {
        Some(i) => &host[i + 1..],
        None => return true,
    };
    let Some(tail) = tail.strip_prefix('.') else {
        return false;
    };
    let labels: Vec<&str> = tail.split('.').collect();
    labels.len() >= 2 && labels.iter().all(|l| !l.is_empty())
}

/// Shape of a concrete (placeholder-free) https URL. `Err` carries the
/// reason, phrased to follow the field name.
pub(crate) fn check_concrete_url(url: &str, allow_fragment: bool) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("must be an https:// URL".into());
    };
    if url.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    if let Some(c) = url
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"<>\\^`{}|".contains(*c))
    {
        return Err(format!(
            "contains a character not allowed in a URL: {:?}",
            c
        ));
    }
    if !allow_fragment && url.contains('#') {
        return Err("must not contain a #fragment".into());
    }
    let bytes = url.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err("has a '%' not followed by two hex digits".into());
            }
        }
    }
    let auth = rest.split(['/', '?', '#']).next().unwrap_or("");
    if auth.contains('@') {
        return Err("must not contain user info (`user@`)".into());
    }
    let (host, port) = match auth.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (auth, None),
    };
    if let Some(p) = port {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => {}
            _ => return Err("has an invalid port".into()),
        }
    }
    let labels: Vec<&str> = host.split('.').collect();
    if host.is_empty() || labels.len() < 2 {
        return Err("must be an https:// URL with a host".into());
    }
    for l in &labels {
        let ok = !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-');
        if !ok {
            return Err("must be an https:// URL with a valid host name".into());
        }
    }
    if !labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return Err("must use a host name, not an IP address".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(allowed: &[&str], suffixes: &[&str]) -> ParamInfo {
        ParamInfo {
            label: "x".into(),
            help: None,
            example: "x".into(),
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            host_suffixes: suffixes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn values_cannot_escape_the_host() {
        for bad in [
            "evil.com/",
            "a?b",
            "a#b",
            "u@evil.com",
            "a:8080",
            "",
            ".a",
            "a..b",
            "a b",
        ] {
            assert!(check_param_value("subdomain", bad, None).is_err(), "{bad}");
        }
        assert!(check_param_value("account", "xy12345.us-east-2.aws", None).is_ok());
        let e = check_param_value("subdomain", "sekrit/../x", None).unwrap_err();
        assert!(!e.to_string().contains("sekrit"));
    }

    #[test]
    fn allowed_and_suffixes_constrain_hosts() {
        let dcs = info(&["accounts.zoho.com", "accounts.zoho.eu"], &[]);
        assert!(check_param_value("h", "accounts.zoho.eu", Some(&dcs)).is_ok());
        assert!(check_param_value("h", "accounts.evil.eu", Some(&dcs)).is_err());
        let dbx = info(&[], &[".azuredatabricks.net"]);
        assert!(check_param_value("h", "adb-1.2.azuredatabricks.net", Some(&dbx)).is_ok());
        assert!(check_param_value("h", "evilazuredatabricks.net", Some(&dbx)).is_err());
        assert!(check_param_value("h", "azuredatabricks.net", Some(&dbx)).is_err());
    }

    #[test]
    fn render_fills_and_checks() {
        let mut v = BTreeMap::new();
        v.insert("subdomain".to_string(), "acme".to_string());
        let u = render(
            "https://{subdomain}.freshdesk.com/api/v2/agents/me",
            &v,
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(u, "https://acme.freshdesk.com/api/v2/agents/me");
        let e = render("https://{tenant}.x.com", &v, &BTreeMap::new()).unwrap_err();
        assert_eq!(e.param, "tenant");
    }

    #[test]
    fn pinned_hosts() {
        assert!(host_is_pinned("{account}.snowflakecomputing.com"));
        assert!(host_is_pinned("api.example.com"));
        assert!(!host_is_pinned("{api_host}"));
        assert!(!host_is_pinned("{org}.com"));
        assert!(!host_is_pinned("api.{region}"));
    }

    #[test]
    fn concrete_urls() {
        for good in [
            "https://api.slack.com/methods/auth.test",
            "https://x.example.com:8443/a?b=c&d=%20",
        ] {
            assert!(check_concrete_url(good, false).is_ok(), "{good}");
        }
        assert!(check_concrete_url("https://docs.example.com/a#b", true).is_ok());
        for bad in [
            "http://a.example.com",
            "https://localhost/x",
            "https://10.0.0.1/x",
            "https://a.example.com/x#y",
            "https://u@a.example.com",
            "https://a.example.com:99999",
            "https://a.example.com/%zz",
            "https://a..com",
            "https://-a.com",
            "https://a.example.com/ x",
        ] {
            assert!(check_concrete_url(bad, false).is_err(), "{bad}");
        }
    }
}
