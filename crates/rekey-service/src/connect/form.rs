//! The Connect page's form for the key-based kinds: which inputs it shows
//! (the catalog's fields, the URL parameters the probe needs and, on a
//! reauthorization, the connection's current settings prefilled), and how a
//! submitted form becomes the `credentials` and `params` of the API.

use super::{ConnectField, ConnectForm};
use crate::connections::rules;
use rekey_core::connection::ConnectionKind;
use rekey_core::Error;
use rekey_core::ErrorCode;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Non-secret settings of each static kind, kept across a reauthorization
/// (the meta fields `rekey_core::credentials::parse` stores in clear).
fn settings(kind: ConnectionKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        ConnectionKind::ApiKey => &[
            ("placement", "Sent as (header, query or basic)"),
            ("name", "Header or parameter name"),
            ("prefix", "Text before the key"),
            ("username", "User name"),
        ],
        ConnectionKind::Basic => &[("username", "Username")],
        ConnectionKind::AwsAccessKey => &[("access_key_id", "Access key ID"), ("region", "Region")],
        ConnectionKind::RsaKeyPair => &[("username", "User name")],
        _ => &[],
    }
}

fn field(name: &str, label: &str, secret: bool, required: bool, multiline: bool) -> ConnectField {
    ConnectField {
        name: name.into(),
        label: label.into(),
        secret,
        required,
        multiline,
        help: None,
        value: None,
        options: Vec::new(),
    }
}

/// The Connect page form for a key-based kind: the catalog's, else the
/// kind's standard fields.
pub(crate) fn form_for(
    provider: &rekey_providers::Provider,
    kind: ConnectionKind,
) -> Result<ConnectForm, Error> {
    if let Some(kf) = provider.key_form(kind.as_str()) {
        return Ok(ConnectForm {
            kind: kind.as_str().into(),
            help: kf.help.clone(),
            fields: kf
                .fields
                .iter()
                .map(|f| ConnectField {
                    help: f.help.clone(),
                    ..field(&f.name, &f.label, f.secret, f.required, f.multiline)
                })
                .collect(),
        });
    }
    let f = field;
    let fields = match kind {
        ConnectionKind::ApiKey => vec![f("key", "API key", true, true, false)],
        ConnectionKind::Basic => vec![
            f("username", "Username", false, true, false),
            f("password", "Password", true, true, false),
        ],
        ConnectionKind::AwsAccessKey => vec![
            f("access_key_id", "Access key ID", false, true, false),
            f("secret_access_key", "Secret access key", true, true, false),
            f("region", "Region", false, false, false),
        ],
        ConnectionKind::ServiceAccountJson => vec![f(
            "json",
            "Service-account key file (JSON)",
            true,
            true,
            true,
        )],
        ConnectionKind::RsaKeyPair => vec![
            f("private_key_pem", "Private key (PEM)", true, true, true),
            f("passphrase", "Passphrase", true, false, false),
            f("username", "User name", false, false, false),
        ],
        _ => {
            return Err(Error::unprocessable(
                ErrorCode::NoForm,
                format!(
                    "provider `{}` defines no Connect form for kind `{kind}`",
                    provider.id
                ),
            ))
        }
    };
    Ok(ConnectForm {
        kind: kind.as_str().into(),
        help: None,
        fields,
    })
}

/// A connection's current non-secret settings and URL parameters.
#[derive(Debug, Clone, Default)]
pub(crate) struct Current {
    pub meta: Map<String, Value>,
    pub params: BTreeMap<String, String>,
    /// Its own probe URL replaces the catalog's (and its placeholders).
    pub has_probe_url: bool,
}

/// The whole page form: catalog fields, URL parameters, and on a
/// reauthorization the current settings prefilled (secrets never).
pub(crate) fn page_form(
    provider: &rekey_providers::Provider,
    kind: ConnectionKind,
    current: Option<&Current>,
) -> Result<ConnectForm, Error> {
    let mut form = form_for(provider, kind)?;
    let required = rules::required_params(provider, kind, false);
    for p in rules::form_params(provider, kind) {
        let info = provider.param_info.get(&p);
        form.fields.push(ConnectField {
            help: info.and_then(|i| i.help.clone()),
            options: info.map(|i| i.allowed.clone()).unwrap_or_default(),
            ..field(
                &format!("params.{p}"),
                &rules::param_label(provider, &p),
                false,
                required.contains(&p),
                false,
            )
        });
    }
    let Some(cur) = current else {
        return Ok(form);
    };
    // Settings the form does not ask for (a header name set through the
    // API, the catalog's prefix) are shown too, so what is kept is visible.
    for (name, label) in settings(kind) {
        let shown = form.fields.iter().any(|f| f.name == *name);
        if !shown && cur.meta.get(*name).and_then(Value::as_str).is_some() {
            let mut f = field(name, label, false, false, false);
            if *name == "placement" {
                f.options = vec!["header".into(), "query".into(), "basic".into()];
            }
            form.fields.push(f);
        }
    }
    for f in form.fields.iter_mut().filter(|f| !f.secret) {
        f.value = match f.name.strip_prefix("params.") {
            Some(p) => cur.params.get(p).cloned(),
            None => cur
                .meta
                .get(&f.name)
                .and_then(Value::as_str)
                .map(str::to_string),
        };
    }
    Ok(form)
}

/// A submitted form as the API's `credentials` and `params`. On a
/// reauthorization the current settings and parameters are the base, so
/// a field left as it was (or emptied) keeps its value; secrets are only
/// ever what was typed.
pub(crate) fn gather(
    form: &ConnectForm,
    kind: ConnectionKind,
    values: &BTreeMap<String, String>,
    current: Option<&Current>,
) -> (Map<String, Value>, BTreeMap<String, String>) {
    let mut creds = Map::new();
    let mut params = BTreeMap::new();
    if let Some(cur) = current {
        for (name, _) in settings(kind) {
            if let Some(v) = cur.meta.get(*name).and_then(Value::as_str) {
                creds.insert((*name).to_string(), Value::String(v.to_string()));
            }
        }
        params = cur.params.clone();
    }
    for f in &form.fields {
        let v = values
            .get(&f.name)
            .map(|v| v.trim_end_matches(['\r', '\n']))
            .unwrap_or_default();
        if v.is_empty() {
            continue;
        }
        let v = v.to_string();
        if let Some(p) = f.name.strip_prefix("params.") {
            params.insert(p.to_string(), v);
        } else if let Some(h) = f.name.strip_prefix("headers.") {
            let headers = creds
                .entry("headers")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = headers {
                m.insert(h.to_string(), Value::String(v));
            }
        } else {
            creds.insert(f.name.clone(), Value::String(v));
        }
    }
    (creds, params)
}

/// An API message with the wire names of the form's fields (`credentials.key`,
/// `params.api_host`, "parameter `api_host`") replaced by their labels.
pub(crate) fn page_message(message: &str, form: &ConnectForm) -> String {
    let mut m = message.to_string();
    for f in &form.fields {
        let label = &f.label;
        match f.name.strip_prefix("params.") {
            Some(p) => {
                m = m.replace(&format!("`params`: parameter `{p}`:"), label);
                m = m.replace(&format!("`params.{p}`"), label);
            }
            None => m = m.replace(&format!("`credentials.{}`", f.name), label),
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> rekey_providers::Catalog {
        rekey_providers::Catalog::embedded().unwrap()
    }

    #[test]
    fn reauthorization_prefills_settings_never_secrets() {
        let c = catalog();
        let p = c.get("intercom").unwrap();
        let mut cur = Current::default();
        cur.meta.insert("placement".into(), "header".into());
        cur.meta.insert("name".into(), "X-Token".into());
        cur.meta.insert("prefix".into(), "Bearer ".into());
        cur.params
            .insert("api_host".into(), "api.eu.intercom.io".into());
        let f = page_form(p, ConnectionKind::ApiKey, Some(&cur)).unwrap();
        let get = |n: &str| f.fields.iter().find(|x| x.name == n).unwrap();
        assert!(get("key").secret && get("key").value.is_none());
        assert_eq!(get("name").value.as_deref(), Some("X-Token"));
        assert_eq!(
            get("params.api_host").value.as_deref(),
            Some("api.eu.intercom.io")
        );
        assert_eq!(get("params.api_host").label, "Intercom region");
        assert_eq!(get("params.api_host").options.len(), 3);
        // Only the secret typed: the settings and parameters stay.
        let values = BTreeMap::from([("key".to_string(), "tok-1".to_string())]);
        let (creds, params) = gather(&f, ConnectionKind::ApiKey, &values, Some(&cur));
        assert_eq!(creds["name"], "X-Token");
        assert_eq!(creds["prefix"], "Bearer ");
        assert_eq!(creds["key"], "tok-1");
        assert_eq!(params["api_host"], "api.eu.intercom.io");
        // A first connection asks for the region, with nothing prefilled.
        let f = page_form(p, ConnectionKind::ApiKey, None).unwrap();
        assert!(f.fields.iter().all(|x| x.value.is_none()));
        assert!(f
            .fields
            .iter()
            .any(|x| x.name == "params.api_host" && x.required));
        assert!(!f.fields.iter().any(|x| x.name == "name"));
    }

    #[test]
    fn messages_use_labels() {
        let c = catalog();
        let f = page_form(c.get("intercom").unwrap(), ConnectionKind::ApiKey, None).unwrap();
        assert_eq!(
            page_message("`credentials.key` must be a string", &f),
            "Access token must be a string"
        );
        assert_eq!(
            page_message("`params`: parameter `api_host`: must be one of: a, b", &f),
            "Intercom region must be one of: a, b"
        );
    }
}
