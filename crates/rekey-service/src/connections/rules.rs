//! The catalog's rules for a connection's material, applied the same way
//! whichever way it comes in (API, CLI, Connect page, credential
//! replacement): the key form's value rules (prefixes, lengths, required
//! fields), its fixed settings as defaults (placement, header name, prefix,
//! user name), and the URL parameters its probe cannot do without.
//!
//! Pure: no I/O, so it is unit-tested here. Messages name the field and its
//! catalog label and never contain a value.

use rekey_core::connection::ConnectionKind;
use rekey_core::Error;
use rekey_core::ErrorCode;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Where a problem is: the wire name (`credentials.key`, `params.api_host`),
/// the catalog's label ("API token") and the reason, without the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub label: String,
    pub reason: String,
}

impl FieldProblem {
    /// The API's error: the wire name first, the label to recognise it.
    pub fn to_error(&self) -> Error {
        let msg = if self.label.is_empty() {
            format!("`{}` {}", self.field, self.reason)
        } else {
            format!("`{}` ({}) {}", self.field, self.label, self.reason)
        };
        if self.field.starts_with("params.") {
            Error::invalid(ErrorCode::InvalidField, msg)
        } else {
            Error::invalid(ErrorCode::InvalidCredentials, msg)
        }
    }

    /// What a person filling in the Connect page reads: the label only.
    pub fn to_page_error(&self) -> Error {
        let who = if self.label.is_empty() {
            self.field.as_str()
        } else {
            self.label.as_str()
        };
        Error::invalid(
            ErrorCode::InvalidCredentials,
            format!("{who} {}", self.reason),
        )
    }
}

/// URL parameters the kind's probe needs (`{api_host}` in its URL, headers
/// or database host), unless a `probe_url` replaces the catalog URL. Port
/// and database have defaults, so they are not required.
pub fn required_params(
    provider: &rekey_providers::Provider,
    kind: ConnectionKind,
    has_probe_url: bool,
) -> Vec<String> {
    let Some(probe) = provider.probe_for(kind.as_str()) else {
        return Vec::new();
    };
    let mut templates: Vec<&str> = probe.headers.values().map(String::as_str).collect();
    if !has_probe_url {
        templates.extend(probe.url.as_deref());
    }
    templates.extend(probe.host.as_deref());
    let mut out: Vec<String> = Vec::new();
    for t in templates {
        for p in rekey_providers::placeholders(t) {
            if provider.params.contains(&p) && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Every URL parameter a form for `kind` may set: the required ones first,
/// then the probe's optional ones (database port and name).
pub fn form_params(provider: &rekey_providers::Provider, kind: ConnectionKind) -> Vec<String> {
    let mut out = required_params(provider, kind, false);
    if let Some(probe) = provider.probe_for(kind.as_str()) {
        for t in [probe.port.as_deref(), probe.database.as_deref()]
            .into_iter()
            .flatten()
        {
            for p in rekey_providers::placeholders(t) {
                if provider.params.contains(&p) && !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// The label of a URL parameter (its `param_info` label, else its name).
pub fn param_label(provider: &rekey_providers::Provider, name: &str) -> String {
    provider
        .param_info
        .get(name)
        .map(|i| i.label.clone())
        .unwrap_or_else(|| name.to_string())
}

/// Check that every parameter the probe needs is there.
pub fn check_required_params(
    provider: &rekey_providers::Provider,
    kind: ConnectionKind,
    params: &BTreeMap<String, String>,
    has_probe_url: bool,
) -> Result<(), FieldProblem> {
    for p in required_params(provider, kind, has_probe_url) {
        if params.get(&p).is_none_or(|v| v.is_empty()) {
            let hint = match provider.param_info.get(&p) {
                Some(i) if !i.allowed.is_empty() => format!(": one of {}", i.allowed.join(", ")),
                Some(i) => format!(", e.g. {}", i.example),
                None => String::new(),
            };
            return Err(FieldProblem {
                field: format!("params.{p}"),
                label: param_label(provider, &p),
                reason: format!(
                    "is required for {} `{kind}` connections{hint}",
                    provider.display_name
                ),
            });
        }
    }
    Ok(())
}

/// Apply the key form of `kind` (if the catalog has one) to `credentials`:
/// fill the form's fixed settings where the caller left them out, then
/// check each form field's rules. Returns the credentials to parse.
pub fn apply_key_form(
    provider: &rekey_providers::Provider,
    kind: ConnectionKind,
    credentials: Value,
) -> Result<Value, FieldProblem> {
    let Some(form) = provider.key_form(kind.as_str()) else {
        return Ok(credentials);
    };
    // Not an object: the kind's parser says so in its own words.
    let Value::Object(mut creds) = credentials else {
        return Ok(credentials);
    };
    fill_defaults(form, &mut creds);
    for field in &form.fields {
        let value = match field.name.strip_prefix("headers.") {
            Some(h) if kind == ConnectionKind::Headers => creds
                .get("headers")
                .and_then(Value::as_object)
                .and_then(|m| m.get(h)),
            _ => creds.get(&field.name),
        };
        let text = match value {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            // A JSON key file given as an object, a wrong type: left to the parser.
            Some(_) => continue,
        };
        if field.name == "headers" {
            continue;
        }
        field.check(text).map_err(|reason| FieldProblem {
            field: format!("credentials.{}", field.name),
            label: field.label.clone(),
            reason,
        })?;
    }
    Ok(Value::Object(creds))
}

/// The catalog's placement, header name, prefix and user name are defaults:
/// a caller may send their own, but only a caller keeping the catalog's
/// placement gets its name and prefix (they would not fit another).
fn fill_defaults(form: &rekey_providers::KeyForm, creds: &mut Map<String, Value>) {
    let fixed = form.fixed_fields();
    if let (Some(want), Some(Value::String(got))) = (fixed.get("placement"), creds.get("placement"))
    {
        if want != got {
            return;
        }
    }
    for (k, v) in fixed {
        creds.entry(k).or_insert(Value::String(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> rekey_providers::Catalog {
        rekey_providers::Catalog::embedded().unwrap()
    }

    #[test]
    fn key_form_rules_name_field_and_label_never_the_value() {
        let c = catalog();
        let p = c.get("sixsense").unwrap();
        let e =
            apply_key_form(p, ConnectionKind::ApiKey, json!({"key": "short-sekrit"})).unwrap_err();
        assert_eq!(e.field, "credentials.key");
        assert_eq!(e.label, "API token");
        assert!(e.reason.contains("at least 40"), "{e:?}");
        let api = e.to_error();
        assert_eq!(api.code(), "invalid_credentials");
        assert!(api.to_string().contains("`credentials.key` (API token)"));
        let page = e.to_page_error().to_string();
        assert!(page.starts_with("API token "), "{page}");
        assert!(!page.contains("credentials.key") && !page.contains("sekrit"));
        let slack = c.get("slack").unwrap();
        let e =
            apply_key_form(slack, ConnectionKind::ApiKey, json!({"key": "nope-123"})).unwrap_err();
        assert!(e.reason.contains("must start with xoxb-"), "{e:?}");
        let e = apply_key_form(slack, ConnectionKind::ApiKey, json!({})).unwrap_err();
        assert!(e.reason.contains("required"), "{e:?}");
    }

    #[test]
    fn fixed_settings_are_defaults() {
        let c = catalog();
        let p = c.get("sixsense").unwrap();
        let key = "k".repeat(40);
        let v = apply_key_form(p, ConnectionKind::ApiKey, json!({ "key": key })).unwrap();
        assert_eq!(v["placement"], "header");
        assert_eq!(v["name"], "Authorization");
        assert_eq!(v["prefix"], "Token ");
        // The caller's own values win; another placement takes none of the form's.
        let v = apply_key_form(
            p,
            ConnectionKind::ApiKey,
            json!({"key": key, "prefix": "Bearer "}),
        )
        .unwrap();
        assert_eq!(v["prefix"], "Bearer ");
        let v = apply_key_form(
            p,
            ConnectionKind::ApiKey,
            json!({"key": key, "placement": "query"}),
        )
        .unwrap();
        assert!(v.get("prefix").is_none() && v.get("name").is_none(), "{v}");
        // Providers without a form: untouched.
        let r = c.get("custom-rest").unwrap();
        let v = apply_key_form(r, ConnectionKind::ApiKey, json!({"key": "x"})).unwrap();
        assert_eq!(v, json!({"key": "x"}));
    }

    #[test]
    fn probe_placeholders_are_required_params() {
        let c = catalog();
        let p = c.get("intercom").unwrap();
        assert_eq!(
            required_params(p, ConnectionKind::ApiKey, false),
            ["api_host"]
        );
        let e =
            check_required_params(p, ConnectionKind::ApiKey, &BTreeMap::new(), false).unwrap_err();
        assert_eq!(e.field, "params.api_host");
        assert_eq!(e.label, "Intercom region");
        assert!(e.reason.contains("api.eu.intercom.io"), "{e:?}");
        assert_eq!(e.to_error().code(), "invalid_field");
        let ok = BTreeMap::from([("api_host".to_string(), "api.intercom.io".to_string())]);
        assert!(check_required_params(p, ConnectionKind::ApiKey, &ok, false).is_ok());
        // A probe_url of its own replaces the catalog URL and its placeholder.
        assert!(check_required_params(p, ConnectionKind::ApiKey, &BTreeMap::new(), true).is_ok());
        // A database's host is required, its port and name are optional.
        let pg = c.get("postgresql").unwrap();
        assert_eq!(required_params(pg, ConnectionKind::Basic, true), ["host"]);
        let all = form_params(pg, ConnectionKind::Basic);
        assert_eq!(all[0], "host");
        assert!(all.len() >= 2, "{all:?}");
        // Providers without params need none.
        let s = c.get("sixsense").unwrap();
        assert!(required_params(s, ConnectionKind::ApiKey, false).is_empty());
    }
}
