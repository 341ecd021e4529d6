//! Credential material per connection kind.
//!
//! Input is parsed by hand (not with serde derive) so that error messages can
//! name the field without ever echoing a value: a secret typed into the wrong
//! field must not come back in a 400 body.
//!
//! Parsed material is split in two: `meta` (non-secret: placement, username,
//! access key id…) stored in clear, and `secrets` (one entry per secret field)
//! which the service encrypts one by one.

use crate::connection::ConnectionKind;
use crate::ErrorCode;
use crate::{Error, SecretString};
use base64::Engine;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct ParsedCredentials {
    pub meta: Map<String, Value>,
    pub secrets: BTreeMap<String, SecretString>,
}

fn err(msg: impl Into<String>) -> Error {
    Error::invalid(ErrorCode::InvalidCredentials, msg)
}

struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    fn new(v: Value, allowed: &[&str]) -> Result<Fields, Error> {
        let Value::Object(map) = v else {
            return Err(err("`credentials` must be a JSON object"));
        };
        for k in map.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(err(format!(
                    "unknown field `credentials.{}`; expected one of: {}",
                    crate::ids::truncate_for_message(k),
                    allowed.join(", ")
                )));
            }
        }
        Ok(Fields { map })
    }

    fn take_str(&mut self, name: &str) -> Result<Option<String>, Error> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(err(format!("`credentials.{name}` must be a string"))),
        }
    }

    fn req_str(&mut self, name: &str) -> Result<String, Error> {
        match self.take_str(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(err(format!(
                "`credentials.{name}` is required and must be a non-empty string"
            ))),
        }
    }

    fn req_secret(&mut self, name: &str, max: usize) -> Result<SecretString, Error> {
        let s = SecretString::new(self.req_str(name)?);
        if s.len() > max {
            return Err(err(format!(
                "`credentials.{name}` is longer than {max} bytes"
            )));
        }
        Ok(s)
    }
}

fn short_plain(field: &str, s: &str, max: usize) -> Result<(), Error> {
    if s.len() > max || s.chars().any(|c| c.is_control()) {
        return Err(err(format!(
            "`credentials.{field}` must be at most {max} printable characters"
        )));
    }
    Ok(())
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Header names a credential may not use: they frame the message or
/// concern one hop (`Proxy-*` too), so a stored one could smuggle a
/// request, reach a proxy or hang the probe (`Content-Length: 100`).
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
];

const FORBIDDEN_REASON: &str = "names a framing or hop-by-hop header, which rekey never sends \
     (Host, Content-Length, Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer, \
     Expect, Proxy-*)";

/// Why `name` cannot carry a credential, if it cannot: not an HTTP token,
/// or a framing / hop-by-hop header (case-insensitive).
pub fn header_name_problem(name: &str) -> Option<&'static str> {
    if !is_header_name(name) {
        return Some("must be a valid HTTP header name");
    }
    let l = name.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&l.as_str()) || l.starts_with("proxy-") {
        return Some(FORBIDDEN_REASON);
    }
    None
}

/// A header value may hold no control character but tab: no CR or LF (a
/// second header or a second request), no NUL, no DEL, no C1 controls.
pub fn header_value_ok(v: &str) -> bool {
    !v.chars().any(|c| c.is_control() && c != '\t')
}

/// Check one header that carries a credential. `field` names it in the
/// error (`credentials.key`, `credentials.headers.X-Api-Key`); the value is
/// never shown.
pub fn check_header(field: &str, name: &str, value: &str) -> Result<(), Error> {
    if let Some(why) = header_name_problem(name) {
        return Err(err(format!("`{field}` {why}")));
    }
    if !header_value_ok(value) {
        return Err(err(format!(
            "`{field}` must not contain control characters (CR, LF, NUL…) in a header value"
        )));
    }
    Ok(())
}

/// Check stored material as it would be sent in headers. Material stored
/// before these rules may hold a header that must never be sent: the probe
/// reports it (`probe_misconfigured`) and `assemble` leaves `apply` out.
pub fn check_stored_headers(
    kind: ConnectionKind,
    meta: &Map<String, Value>,
    secrets: &BTreeMap<String, SecretString>,
) -> Result<(), Error> {
    match kind {
        ConnectionKind::ApiKey => {
            let placement = meta
                .get("placement")
                .and_then(Value::as_str)
                .unwrap_or("header");
            if placement != "header" {
                return Ok(());
            }
            let name = meta
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("Authorization");
            if let Some(why) = header_name_problem(name) {
                return Err(err(format!("`credentials.name` {why}")));
            }
            let prefix = meta.get("prefix").and_then(Value::as_str).unwrap_or("");
            if !header_value_ok(prefix) {
                return Err(err(
                    "`credentials.prefix` must not contain control characters (CR, LF, NUL…)",
                ));
            }
            if let Some(k) = secrets.get("key") {
                check_header("credentials.key", name, k.expose())?;
            }
            Ok(())
        }
        ConnectionKind::Headers => {
            for (k, v) in secrets {
                if let Some(name) = k.strip_prefix("header:") {
                    let field = format!(
                        "credentials.headers.{}",
                        crate::ids::truncate_for_message(name)
                    );
                    check_header(&field, name, v.expose())?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

const MAX_SECRET: usize = 16 * 1024;

pub fn parse(kind: ConnectionKind, v: Value) -> Result<ParsedCredentials, Error> {
    let mut out = ParsedCredentials::default();
    match kind {
        ConnectionKind::ApiKey => {
            let mut f = Fields::new(v, &["key", "placement", "name", "prefix", "username"])?;
            out.secrets
                .insert("key".into(), f.req_secret("key", MAX_SECRET)?);
            let placement = f.take_str("placement")?.unwrap_or_else(|| "header".into());
            let name = f.take_str("name")?;
            let prefix = f.take_str("prefix")?;
            let username = f.take_str("username")?;
            match placement.as_str() {
                "header" => {
                    let name = name.unwrap_or_else(|| "Authorization".into());
                    if let Some(why) = header_name_problem(&name) {
                        return Err(err(format!("`credentials.name` {why}")));
                    }
                    if let Some(k) = out.secrets.get("key") {
                        check_header("credentials.key", &name, k.expose())?;
                    }
                    out.meta.insert("name".into(), name.into());
                    if let Some(p) = prefix {
                        short_plain("prefix", &p, 64)?;
                        out.meta.insert("prefix".into(), p.into());
                    }
                }
                "query" => {
                    let name = name.unwrap_or_else(|| "api_key".into());
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                        return Err(err("`credentials.name` must be a query parameter name (a-z, 0-9, '-', '_', '.')"));
                    }
                    out.meta.insert("name".into(), name.into());
                }
                "basic" => {
                    if let Some(u) = username {
                        short_plain("username", &u, 256)?;
                        out.meta.insert("username".into(), u.into());
                    }
                }
                _ => {
                    return Err(err(
                        "`credentials.placement` must be one of: header, query, basic",
                    ))
                }
            }
            if placement != "header" && out.meta.contains_key("prefix") {
                return Err(err("`credentials.prefix` only applies to placement `header`"));
            }
            out.meta.insert("placement".into(), placement.into());
        }
        ConnectionKind::Basic => {
            let mut f = Fields::new(v, &["username", "password"])?;
            let u = f.req_str("username")?;
            short_plain("username", &u, 256)?;
            out.meta.insert("username".into(), u.into());
            out.secrets
                .insert("password".into(), f.req_secret("password", MAX_SECRET)?);
        }
        ConnectionKind::Headers => {
            let mut f = Fields::new(v, &["headers"])?;
            let Some(Value::Object(h)) = f.map.remove("headers") else {
                return Err(err(
                    "`credentials.headers` is required: an object of header name to value",
                ));
            };
            if h.is_empty() || h.len() > 32 {
                return Err(err("`credentials.headers` must hold 1–32 headers"));
            }
            let mut names = Vec::new();
            for (name, value) in h {
                if !is_header_name(&name) {
                    return Err(err(format!(
                        "`credentials.headers` has an invalid header name `{}`",
                        crate::ids::truncate_for_message(&name)
                    )));
                }
                if let Some(why) = header_name_problem(&name) {
                    return Err(err(format!("`credentials.headers.{name}` {why}")));
                }
                let Value::String(value) = value else {
                    return Err(err(format!(
                        "`credentials.headers.{name}` must be a string"
                    )));
                };
                let value = SecretString::new(value);
                if value.is_empty() || value.len() > MAX_SECRET {
                    return Err(err(format!(
                        "`credentials.headers.{name}` must be 1–{MAX_SECRET} bytes"
                    )));
                }
                check_header(&format!("credentials.headers.{name}"), &name, value.expose())?;
                names.push(Value::String(name.clone()));
                out.secrets.insert(format!("header:{name}"), value);
            }
            out.meta.insert("header_names".into(), Value::Array(names));
        }
        ConnectionKind::AwsAccessKey => {
            let mut f = Fields::new(
                v,
                &["access_key_id", "secret_access_key", "session_token", "region"],
            )?;
            let id = f.req_str("access_key_id")?;
            if !(16..=128).contains(&id.len())
                || !id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                return Err(err(
                    "`credentials.access_key_id` must be 16–128 characters of A-Z and 0-9",
                ));
            }
            out.meta.insert("access_key_id".into(), id.into());
            out.secrets.insert(
                "secret_access_key".into(),
                f.req_secret("secret_access_key", 1024)?,
            );
            if let Some(t) = f.take_str("session_token")? {
                out.secrets
                    .insert("session_token".into(), SecretString::new(t));
            }
            if let Some(r) = f.take_str("region")? {
                crate::ids::validate_slug("credentials.region", &r, 32)?;
                out.meta.insert("region".into(), r.into());
            }
        }
        ConnectionKind::ServiceAccountJson => {
            let mut f = Fields::new(v, &["json"])?;
            // Accept the key file as an object or as the file's text.
            let doc = match f.map.remove("json") {
                Some(Value::Object(o)) => Value::Object(o),
                Some(Value::String(s)) => serde_json::from_str::<Value>(&s)
                    .map_err(|_| err("`credentials.json` is not valid JSON"))?,
                _ => {
                    return Err(err(
                        "`credentials.json` is required: the service-account key file (object or string)",
                    ))
                }
            };
            let get = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
            if get("type").as_deref() != Some("service_account") {
                return Err(err(
                    "`credentials.json.type` must be \"service_account\"",
                ));
            }
            let email = get("client_email")
                .ok_or_else(|| err("`credentials.json.client_email` is required"))?;
            if get("private_key").map(|k| k.contains("PRIVATE KEY")) != Some(true) {
                return Err(err(
                    "`credentials.json.private_key` is required and must be a PEM private key",
                ));
            }
            short_plain("json.client_email", &email, 320)?;
            out.meta.insert("client_email".into(), email.into());
            for k in ["project_id", "private_key_id", "client_id"] {
                if let Some(v) = get(k) {
                    short_plain(&format!("json.{k}"), &v, 256)?;
                    out.meta.insert(k.into(), v.into());
                }
            }
            let text = serde_json::to_string(&doc).map_err(Error::internal)?;
            if text.len() > MAX_SECRET {
                return Err(err(format!("`credentials.json` is longer than {MAX_SECRET} bytes")));
            }
            out.secrets.insert("json".into(), SecretString::new(text));
        }
        ConnectionKind::RsaKeyPair => {
            let mut f = Fields::new(v, &["private_key_pem", "passphrase", "username"])?;
            let pem = f.req_secret("private_key_pem", MAX_SECRET)?;
            if !pem.expose().contains("-----BEGIN") {
                return Err(err("`credentials.private_key_pem` must be a PEM document"));
            }
            out.secrets.insert("private_key_pem".into(), pem);
            if let Some(p) = f.take_str("passphrase")? {
                out.secrets.insert("passphrase".into(), SecretString::new(p));
            }
            if let Some(u) = f.take_str("username")? {
                short_plain("username", &u, 256)?;
                out.meta.insert("username".into(), u.into());
            }
        }
        ConnectionKind::OAuth2AuthorizationCode | ConnectionKind::OAuth2ClientCredentials => {
            return Err(Error::unprocessable(
                ErrorCode::KindNotSupported,
                format!("connections of kind `{kind}` are created through a connect session, not with credential material"),
            ))
        }
    }
    Ok(out)
}

/// Rebuild the full material (secrets included) for a `credentials:read`
/// caller, plus `apply`: the ready-to-send HTTP form where one exists.
/// The returned value holds secrets: it goes straight into a response body.
pub fn assemble(
    kind: ConnectionKind,
    meta: &Map<String, Value>,
    secrets: &BTreeMap<String, SecretString>,
) -> Result<Value, Error> {
    let secret = |k: &str| -> Result<String, Error> {
        secrets
            .get(k)
            .map(|s| s.expose().to_string())
            .ok_or_else(|| Error::internal(format!("stored credential lacks field {k}")))
    };
    let mut m = meta.clone();
    let mut apply = Map::new();
    // Stored before the header rules: no ready-to-send form of a header
    // that must never be sent (the material itself is still returned).
    let sendable = check_stored_headers(kind, meta, secrets).is_ok();
    match kind {
        ConnectionKind::ApiKey => {
            let key = secret("key")?;
            let placement = meta
                .get("placement")
                .and_then(Value::as_str)
                .unwrap_or("header");
            let name = meta
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("Authorization");
            match placement {
                "query" => {
                    apply.insert("query".into(), serde_json::json!({ name: key }));
                }
                "basic" => {
                    let pair = match meta.get("username").and_then(Value::as_str) {
                        Some(u) => format!("{u}:{key}"),
                        None => format!("{key}:"),
                    };
                    let b = base64::engine::general_purpose::STANDARD.encode(pair);
                    apply.insert(
                        "headers".into(),
                        serde_json::json!({ "Authorization": format!("Basic {b}") }),
                    );
                }
                _ => {
                    let prefix = meta.get("prefix").and_then(Value::as_str).unwrap_or("");
                    apply.insert(
                        "headers".into(),
                        serde_json::json!({ name: format!("{prefix}{key}") }),
                    );
                }
            }
            m.insert("key".into(), key.into());
        }
        ConnectionKind::Basic => {
            let pw = secret("password")?;
            let user = meta.get("username").and_then(Value::as_str).unwrap_or("");
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
            apply.insert(
                "headers".into(),
                serde_json::json!({ "Authorization": format!("Basic {b}") }),
            );
            m.insert("password".into(), pw.into());
        }
        ConnectionKind::Headers => {
            let mut h = Map::new();
            for (k, v) in secrets {
                if let Some(name) = k.strip_prefix("header:") {
                    h.insert(name.to_string(), v.expose().to_string().into());
                }
            }
            m.remove("header_names");
            apply.insert("headers".into(), Value::Object(h.clone()));
            m.insert("headers".into(), Value::Object(h));
        }
        ConnectionKind::AwsAccessKey => {
            m.insert(
                "secret_access_key".into(),
                secret("secret_access_key")?.into(),
            );
            if secrets.contains_key("session_token") {
                m.insert("session_token".into(), secret("session_token")?.into());
            }
        }
        ConnectionKind::ServiceAccountJson => {
            let doc: Value = serde_json::from_str(&secret("json")?).map_err(Error::internal)?;
            m.insert("json".into(), doc);
        }
        ConnectionKind::RsaKeyPair => {
            m.insert("private_key_pem".into(), secret("private_key_pem")?.into());
            if secrets.contains_key("passphrase") {
                m.insert("passphrase".into(), secret("passphrase")?.into());
            }
        }
        ConnectionKind::OAuth2AuthorizationCode | ConnectionKind::OAuth2ClientCredentials => {
            return Err(Error::internal("oauth material is not assembled here"))
        }
    }
    if !apply.is_empty() && sendable {
        m.insert("apply".into(), Value::Object(apply));
    }
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_key_defaults_and_assembly() {
        let p = parse(
            ConnectionKind::ApiKey,
            json!({"key": "sk_live_123", "prefix": "Bearer "}),
        )
        .unwrap();
        assert_eq!(p.meta["placement"], "header");
        assert_eq!(p.meta["name"], "Authorization");
        assert!(!serde_json::to_string(&p.meta).unwrap().contains("sk_live"));
        let out = assemble(ConnectionKind::ApiKey, &p.meta, &p.secrets).unwrap();
        assert_eq!(
            out["apply"]["headers"]["Authorization"],
            "Bearer sk_live_123"
        );
    }

    #[test]
    fn errors_never_echo_values() {
        for (kind, body) in [
            (ConnectionKind::ApiKey, json!({"key": 12345678})),
            (
                ConnectionKind::ApiKey,
                json!({"key": "sekrit", "placement": "sekrit-place"}),
            ),
            (
                ConnectionKind::Basic,
                json!({"username": "u", "password": ["sekrit"]}),
            ),
            (
                ConnectionKind::Headers,
                json!({"headers": {"X-A": 12345678}}),
            ),
            (
                ConnectionKind::ServiceAccountJson,
                json!({"json": "{sekrit"}),
            ),
            (
                ConnectionKind::AwsAccessKey,
                json!({"access_key_id": "sekrit", "secret_access_key": "x"}),
            ),
        ] {
            let e = parse(kind, body).unwrap_err();
            assert_eq!(e.code(), "invalid_credentials");
            let m = e.to_string();
            assert!(!m.contains("sekrit") && !m.contains("12345678"), "{m}");
        }
    }

    #[test]
    fn unknown_fields_rejected() {
        let e = parse(
            ConnectionKind::Basic,
            json!({"username": "u", "password": "p", "pw": "x"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("credentials.pw"));
    }

    #[test]
    fn basic_and_headers_roundtrip() {
        let p = parse(
            ConnectionKind::Basic,
            json!({"username": "svc", "password": "pw"}),
        )
        .unwrap();
        let out = assemble(ConnectionKind::Basic, &p.meta, &p.secrets).unwrap();
        assert_eq!(out["apply"]["headers"]["Authorization"], "Basic c3ZjOnB3");
        let p = parse(
            ConnectionKind::Headers,
            json!({"headers": {"X-Api-Key": "k", "X-Org": "o"}}),
        )
        .unwrap();
        assert_eq!(p.secrets.len(), 2);
        let out = assemble(ConnectionKind::Headers, &p.meta, &p.secrets).unwrap();
        assert_eq!(out["headers"]["X-Org"], "o");
    }

    #[test]
    fn service_account_meta_extracted() {
        let sa = json!({"type": "service_account", "project_id": "p1", "client_email": "a@p1.iam.gserviceaccount.com",
            "private_key_id": "abc", "private_key": "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n"});
        let p = parse(
            ConnectionKind::ServiceAccountJson,
            json!({"json": sa.to_string()}),
        )
        .unwrap();
        assert_eq!(p.meta["client_email"], "a@p1.iam.gserviceaccount.com");
        assert!(!serde_json::to_string(&p.meta).unwrap().contains("BEGIN"));
    }

    #[test]
    fn header_injection_refused_and_never_echoed() {
        let bad_values = [
            "sk_1\r\nX-Evil: 1",
            "sk_1\nHost: evil",
            "sk\0",
            "sk\u{7f}",
            "sk\u{85}x",
            "\r",
        ];
        for v in bad_values {
            for (kind, body, field) in [
                (ConnectionKind::ApiKey, json!({"key": v}), "credentials.key"),
                (
                    ConnectionKind::ApiKey,
                    json!({"key": v, "name": "X-Api-Key", "prefix": "Token "}),
                    "credentials.key",
                ),
                (
                    ConnectionKind::Headers,
                    json!({"headers": {"X-Api-Key": v}}),
                    "credentials.headers.X-Api-Key",
                ),
            ] {
                let e = parse(kind, body).unwrap_err();
                assert_eq!(e.code(), "invalid_credentials");
                let m = e.to_string();
                assert!(m.contains(field) && m.contains("control"), "{m}");
                assert!(!m.contains("sk_1") && !m.contains("evil"), "{m}");
            }
        }
        // A tab is legal in a header value; outside headers anything goes
        // (query values are percent-encoded, Basic is base64).
        assert!(parse(ConnectionKind::ApiKey, json!({"key": "a\tb"})).is_ok());
        for placement in ["query", "basic"] {
            let p = parse(
                ConnectionKind::ApiKey,
                json!({"key": "a\r\nb", "placement": placement}),
            );
            assert!(p.is_ok(), "{placement}");
        }
        assert!(parse(
            ConnectionKind::Basic,
            json!({"username": "u", "password": "a\r\nb"})
        )
        .is_ok());
        // A prefix with a line break.
        let e = parse(
            ConnectionKind::ApiKey,
            json!({"key": "k", "prefix": "Bearer\r\n"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("credentials.prefix"));
    }

    #[test]
    fn framing_and_hop_by_hop_header_names_refused() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "CONNECTION",
            "Keep-Alive",
            "Upgrade",
            "TE",
            "Trailer",
            "Expect",
            "Proxy-Authorization",
            "proxy-connection",
        ] {
            let e = parse(ConnectionKind::ApiKey, json!({"key": "k", "name": name})).unwrap_err();
            assert_eq!(e.code(), "invalid_credentials");
            assert!(
                e.to_string().contains("`credentials.name` names a framing"),
                "{e}"
            );
            let e = parse(
                ConnectionKind::Headers,
                json!({"headers": {name: "k-secret"}}),
            )
            .unwrap_err();
            assert_eq!(e.code(), "invalid_credentials");
            let m = e.to_string();
            assert!(m.contains("hop-by-hop") && !m.contains("k-secret"), "{m}");
        }
        // A query parameter may be called `host`.
        assert!(parse(
            ConnectionKind::ApiKey,
            json!({"key": "k", "placement": "query", "name": "host"})
        )
        .is_ok());
        for name in [
            "X-Api-Key",
            "Authorization",
            "X-Host",
            "Content-Type",
            "Proxy",
        ] {
            assert!(
                parse(ConnectionKind::Headers, json!({"headers": {name: "v"}})).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn stored_unusable_headers_are_found_and_not_applied() {
        // As stored before the rules: straight into meta and secrets.
        let mut meta = Map::new();
        meta.insert("placement".into(), "header".into());
        meta.insert("name".into(), "X-Api-Key".into());
        let mut secrets = BTreeMap::new();
        secrets.insert("key".into(), SecretString::new("k\r\nHost: evil".into()));
        let e = check_stored_headers(ConnectionKind::ApiKey, &meta, &secrets).unwrap_err();
        assert!(e.to_string().contains("credentials.key") && !e.to_string().contains("evil"));
        let out = assemble(ConnectionKind::ApiKey, &meta, &secrets).unwrap();
        assert!(out.get("apply").is_none(), "{out}");
        assert_eq!(out["key"], "k\r\nHost: evil");
        meta.insert("name".into(), "Content-Length".into());
        secrets.insert("key".into(), SecretString::new("100".into()));
        let e = check_stored_headers(ConnectionKind::ApiKey, &meta, &secrets).unwrap_err();
        assert!(e.to_string().contains("credentials.name"));
        let mut secrets = BTreeMap::new();
        secrets.insert(
            "header:Transfer-Encoding".into(),
            SecretString::new("chunked".into()),
        );
        let e = check_stored_headers(ConnectionKind::Headers, &Map::new(), &secrets).unwrap_err();
        assert!(e
            .to_string()
            .contains("credentials.headers.Transfer-Encoding"));
        assert!(assemble(ConnectionKind::Headers, &Map::new(), &secrets)
            .unwrap()
            .get("apply")
            .is_none());
        // Good material is applied as before.
        let p = parse(ConnectionKind::Headers, json!({"headers": {"X-A": "a\tb"}})).unwrap();
        assert!(check_stored_headers(ConnectionKind::Headers, &p.meta, &p.secrets).is_ok());
        let out = assemble(ConnectionKind::Headers, &p.meta, &p.secrets).unwrap();
        assert_eq!(out["apply"]["headers"]["X-A"], "a\tb");
    }

    #[test]
    fn oauth_kinds_refused() {
        let e = parse(ConnectionKind::OAuth2AuthorizationCode, json!({})).unwrap_err();
        assert_eq!(e.code(), "kind_not_supported");
    }
}
