//! Health probes: a cheap authenticated request that tells whether a
//! connection's credential still works, and how to judge the answer.
//!
//! Data only: the health checker performs the request; [`Probe::judge`]
//! turns (status, body) into an outcome so every caller judges alike.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProbeProtocol {
    /// An HTTPS request carrying the connection's credential.
    #[default]
    Http,
    /// Connect with the PostgreSQL wire protocol (also Amazon Redshift) and run `query`.
    Postgres,
    /// Connect with the MySQL protocol and run `query`.
    Mysql,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProbeMethod {
    #[default]
    Get,
    Head,
    Post,
}

/// A JSON scalar in the catalog (predicate values).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Str(String),
}

/// What a dotted path points at in a response body (for [`Probe::judge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyValue {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    /// An object, array or non-integer number.
    Other,
}

impl BodyValue {
    fn matches(&self, s: &Scalar) -> bool {
        match (self, s) {
            (BodyValue::Bool(a), Scalar::Bool(b)) => a == b,
            (BodyValue::Int(a), Scalar::Int(b)) => a == b,
            (BodyValue::Str(a), Scalar::Str(b)) => a == b,
            _ => false,
        }
    }
}

/// A condition on the JSON response body. Exactly one of `equals`,
/// `one_of`, `exists` is set.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    /// Dotted path into the JSON body (`ok`, `error`, `data.id`; a numeric
    /// segment indexes an array).
    pub path: String,
    #[serde(default)]
    pub equals: Option<Scalar>,
    #[serde(default)]
    pub one_of: Vec<Scalar>,
    #[serde(default)]
    pub exists: Option<bool>,
}

impl Predicate {
    pub fn holds(&self, lookup: &dyn Fn(&str) -> Option<BodyValue>) -> bool {
        let v = lookup(&self.path);
        if let Some(want) = self.exists {
            return matches!(v, Some(ref x) if *x != BodyValue::Null) == want;
        }
        let Some(v) = v else { return false };
        if let Some(eq) = &self.equals {
            return v.matches(eq);
        }
        self.one_of.iter().any(|s| v.matches(s))
    }
}

/// AWS Signature Version 4 signing for probes of `aws_access_key` connections.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AwsSigV4 {
    pub service: String,
    pub region: String,
}

fn default_success() -> Vec<u16> {
    vec![200]
}
fn default_auth_failure() -> Vec<u16> {
    vec![401]
}
fn default_timeout() -> u32 {
    10
}

/// One health probe. An entry may have several (`[[probe]]`), each for a
/// subset of its auth kinds; `kinds = []` means every kind not covered by
/// another probe.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// Auth kinds this probe is for; empty = all remaining kinds.
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub protocol: ProbeProtocol,
    #[serde(default)]
    pub method: ProbeMethod,
    /// `http`: URL template (may use `params` placeholders).
    #[serde(default)]
    pub url: Option<String>,
    /// `http`: extra non-secret headers (values may use placeholders).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `http`: request body for POST, sent verbatim (no placeholders).
    #[serde(default)]
    pub body: Option<String>,
    /// `http`: content type of `body`.
    #[serde(default)]
    pub content_type: Option<String>,
    /// `http`: sign the request with the connection's AWS key instead of
    /// sending the credential as a header.
    #[serde(default)]
    pub aws_sigv4: Option<AwsSigV4>,
    /// `postgres`/`mysql`: host template, port (or `{port}`), database.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<String>,
    #[serde(default)]
    pub database: Option<String>,
    /// `postgres`/`mysql`: statement to run, e.g. `SELECT 1`.
    #[serde(default)]
    pub query: Option<String>,
    /// `postgres`/`mysql`: server error codes that mean the credential was
    /// rejected (SQLSTATE `28P01`, MySQL `1045`).
    #[serde(default)]
    pub auth_failure_codes: Vec<String>,
    #[serde(default = "default_success")]
    pub success_statuses: Vec<u16>,
    #[serde(default = "default_auth_failure")]
    pub auth_failure_statuses: Vec<u16>,
    /// With a success status, all of these must hold (else `Unexpected`).
    #[serde(default)]
    pub success_when: Vec<Predicate>,
    /// Any of these holding means the credential is dead, whatever the
    /// status (Slack: 200 with `{"ok": false, "error": "invalid_auth"}`).
    #[serde(default)]
    pub auth_failure_when: Vec<Predicate>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u32,
    /// `service_account_json`: scopes of the access token minted for the
    /// probe (RFC 7523 JWT bearer grant at the key file's `token_uri`).
    #[serde(default)]
    pub token_scopes: Vec<String>,
    /// `rsa_key_pair`: send a key-pair JWT as the bearer token, in this
    /// provider's format.
    #[serde(default)]
    pub keypair_jwt: Option<KeypairJwt>,
}

/// Key-pair JWT formats a probe can present.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeypairJwt {
    /// `iss` = `ACCOUNT.USER.SHA256:<fingerprint>`, `sub` = `ACCOUNT.USER`
    /// (the `account` param and the connection's `username`).
    Snowflake,
}

/// How a probe answer is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The credential works.
    Ok,
    /// The provider rejected the credential: `needs_reauth`.
    AuthFailure,
    /// Try again later (429, 408, 5xx): `degraded`.
    Transient,
    /// Anything else (404, 400, a failed `success_when`): `degraded` with the error kept.
    Unexpected,
}

impl Probe {
    pub fn applies_to(&self, kind: &str) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind)
    }

    /// Judge an HTTP answer. `lookup` resolves a dotted path in the parsed
    /// JSON body (`None` if absent or the body is not JSON).
    ///
    /// Order: an `auth_failure_when` predicate or an auth-failure status →
    /// `AuthFailure`; a success status with every `success_when` holding →
    /// `Ok` (with one failing → `Unexpected`); 408, 429 and 5xx →
    /// `Transient`; else `Unexpected`.
    pub fn judge(&self, status: u16, lookup: &dyn Fn(&str) -> Option<BodyValue>) -> ProbeOutcome {
        if self.auth_failure_when.iter().any(|p| p.holds(lookup)) {
            return ProbeOutcome::AuthFailure;
        }
        if self.auth_failure_statuses.contains(&status) {
            return ProbeOutcome::AuthFailure;
        }
        if self.success_statuses.contains(&status) {
            return if self.success_when.iter().all(|p| p.holds(lookup)) {
                ProbeOutcome::Ok
            } else {
                ProbeOutcome::Unexpected
            };
        }
        if status == 408 || status == 429 || (500..=599).contains(&status) {
            return ProbeOutcome::Transient;
        }
        ProbeOutcome::Unexpected
    }
}

fn check_predicate(p: &Predicate) -> Result<(), (String, String)> {
    let set = usize::from(p.equals.is_some())
        + usize::from(!p.one_of.is_empty())
        + usize::from(p.exists.is_some());
    if set != 1 {
        return Err((
            String::new(),
            "needs exactly one of `equals`, `one_of`, `exists`".into(),
        ));
    }
    if p.path.is_empty() || p.path.split('.').any(str::is_empty) {
        return Err((
            "path".into(),
            "must be a dotted path like `error` or `data.id`".into(),
        ));
    }
    Ok(())
}

/// Shape checks for one probe; URL and kind checks are done by the caller.
/// Returns `(field, reason)` relative to the probe.
pub(crate) fn validate_probe(p: &Probe) -> Result<(), (String, String)> {
    let e = |f: &str, r: &str| Err((f.to_string(), r.to_string()));
    let http_only = [
        ("url", p.url.is_some()),
        ("body", p.body.is_some()),
        ("content_type", p.content_type.is_some()),
        ("aws_sigv4", p.aws_sigv4.is_some()),
        ("headers", !p.headers.is_empty()),
        ("success_when", !p.success_when.is_empty()),
        ("auth_failure_when", !p.auth_failure_when.is_empty()),
        ("token_scopes", !p.token_scopes.is_empty()),
        ("keypair_jwt", p.keypair_jwt.is_some()),
    ];
    let sql_only = [
        ("host", p.host.is_some()),
        ("port", p.port.is_some()),
        ("database", p.database.is_some()),
        ("query", p.query.is_some()),
        ("auth_failure_codes", !p.auth_failure_codes.is_empty()),
    ];
    match p.protocol {
        ProbeProtocol::Http => {
            if let Some((f, _)) = sql_only.iter().find(|(_, set)| *set) {
                return e(f, "only applies to protocol `postgres` or `mysql`");
            }
            if p.url.is_none() {
                return e("url", "required for protocol `http`");
            }
            if p.body.is_some() && p.method != ProbeMethod::Post {
                return e("body", "only applies to method `POST`");
            }
            if p.body.is_some() != p.content_type.is_some() {
                return e("content_type", "must be given together with `body`");
            }
            for (name, value) in &p.headers {
                if !crate::forms::is_header_name(name) {
                    return Err((
                        format!("headers.{name}"),
                        "is not a valid header name".into(),
                    ));
                }
                if let Some(why) = rekey_core::credentials::header_name_problem(name) {
                    return Err((format!("headers.{name}"), why.into()));
                }
                if name.eq_ignore_ascii_case("authorization") {
                    return Err((
                        format!("headers.{name}"),
                        "the credential is added by rekey; do not set Authorization".into(),
                    ));
                }
                if value.is_empty() || value.chars().any(char::is_control) {
                    return Err((
                        format!("headers.{name}"),
                        "must be printable and non-empty".into(),
                    ));
                }
            }
            if p.token_scopes
                .iter()
                .any(|s| s.is_empty() || s.contains(char::is_whitespace))
            {
                return e("token_scopes", "scopes are non-empty and contain no spaces");
            }
            if let Some(s) = &p.aws_sigv4 {
                let ok = |v: &str| {
                    !v.is_empty()
                        && v.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                };
                if !ok(&s.service) {
                    return e(
                        "aws_sigv4.service",
                        "must be an AWS service name like `sts`",
                    );
                }
                if !ok(&s.region) {
                    return e("aws_sigv4.region", "must be an AWS region like `us-east-1`");
                }
            }
            for (list, name) in [
                (&p.success_when, "success_when"),
                (&p.auth_failure_when, "auth_failure_when"),
            ] {
                for (i, pr) in list.iter().enumerate() {
                    check_predicate(pr).map_err(|(f, r)| {
                        let at = format!("{name}[{i}]");
                        (
                            if f.is_empty() {
                                at
                            } else {
                                format!("{at}.{f}")
                            },
                            r,
                        )
                    })?;
                }
            }
        }
        ProbeProtocol::Postgres | ProbeProtocol::Mysql => {
            if let Some((f, _)) = http_only.iter().find(|(_, set)| *set) {
                return e(f, "only applies to protocol `http`");
            }
            if p.method != ProbeMethod::Get {
                return e("method", "only applies to protocol `http`");
            }
            let Some(host) = &p.host else {
                return e("host", "required for a database probe");
            };
            if host.is_empty() || host.contains(['/', ':', '@', ' ']) {
                return e("host", "must be a host name or `{placeholder}`");
            }
            if let Some(port) = &p.port {
                let ok = port.parse::<u16>().is_ok_and(|n| n > 0)
                    || (port.starts_with('{') && port.ends_with('}'));
                if !ok {
                    return e("port", "must be a port number or `{placeholder}`");
                }
            }
            match &p.query {
                Some(q) if !q.trim().is_empty() && !q.contains(';') => {}
                _ => {
                    return e(
                        "query",
                        "required: one statement such as `SELECT 1` (no `;`)",
                    )
                }
            }
            if p.auth_failure_codes.is_empty() {
                return e(
                    "auth_failure_codes",
                    "list the server codes for a rejected login",
                );
            }
        }
    }
    for (list, name) in [
        (&p.success_statuses, "success_statuses"),
        (&p.auth_failure_statuses, "auth_failure_statuses"),
    ] {
        if list.iter().any(|s| !(100..=599).contains(s)) {
            return e(name, "HTTP statuses are 100–599");
        }
    }
    if p.protocol == ProbeProtocol::Http && p.success_statuses.is_empty() {
        return e("success_statuses", "must list at least one status");
    }
    if let Some(s) = p
        .success_statuses
        .iter()
        .find(|s| p.auth_failure_statuses.contains(s))
    {
        return Err((
            "auth_failure_statuses".into(),
            format!("{s} is also listed in success_statuses"),
        ));
    }
    if p.timeout_secs == 0 || p.timeout_secs > 120 {
        return e("timeout_secs", "must be between 1 and 120");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack() -> Probe {
        toml::from_str(
            r#"
url = "https://slack.com/api/auth.test"
method = "POST"
success_when = [{ path = "ok", equals = true }]
auth_failure_when = [{ path = "error", one_of = ["invalid_auth", "token_revoked"] }]
"#,
        )
        .unwrap()
    }

    fn body<'a>(pairs: &'a [(&'a str, BodyValue)]) -> impl Fn(&str) -> Option<BodyValue> + 'a {
        move |p: &str| pairs.iter().find(|(k, _)| *k == p).map(|(_, v)| v.clone())
    }

    #[test]
    fn slack_style_bodies_are_judged() {
        let p = slack();
        assert!(validate_probe(&p).is_ok());
        assert_eq!(
            p.judge(200, &body(&[("ok", BodyValue::Bool(true))])),
            ProbeOutcome::Ok
        );
        assert_eq!(
            p.judge(
                200,
                &body(&[
                    ("ok", BodyValue::Bool(false)),
                    ("error", BodyValue::Str("invalid_auth".into()))
                ])
            ),
            ProbeOutcome::AuthFailure
        );
        assert_eq!(
            p.judge(
                200,
                &body(&[
                    ("ok", BodyValue::Bool(false)),
                    ("error", BodyValue::Str("ratelimited".into()))
                ])
            ),
            ProbeOutcome::Unexpected
        );
        assert_eq!(p.judge(401, &body(&[])), ProbeOutcome::AuthFailure);
        assert_eq!(p.judge(429, &body(&[])), ProbeOutcome::Transient);
        assert_eq!(p.judge(503, &body(&[])), ProbeOutcome::Transient);
        assert_eq!(p.judge(404, &body(&[])), ProbeOutcome::Unexpected);
    }

    #[test]
    fn exists_predicate() {
        let p = Predicate {
            path: "data.id".into(),
            equals: None,
            one_of: vec![],
            exists: Some(true),
        };
        assert!(p.holds(&body(&[("data.id", BodyValue::Int(3))])));
        assert!(!p.holds(&body(&[("data.id", BodyValue::Null)])));
        assert!(!p.holds(&body(&[])));
    }

    #[test]
    fn bad_probes_name_the_field() {
        let mut p = slack();
        p.success_when[0].one_of = vec![Scalar::Bool(true)];
        assert_eq!(validate_probe(&p).unwrap_err().0, "success_when[0]");
        let mut p = slack();
        p.auth_failure_statuses = vec![200];
        assert_eq!(validate_probe(&p).unwrap_err().0, "auth_failure_statuses");
        let mut p = slack();
        p.url = None;
        assert_eq!(validate_probe(&p).unwrap_err().0, "url");
        let mut p = slack();
        p.headers.insert("Authorization".into(), "Bearer x".into());
        assert_eq!(validate_probe(&p).unwrap_err().0, "headers.Authorization");
        let mut p = slack();
        p.protocol = ProbeProtocol::Postgres;
        assert_eq!(validate_probe(&p).unwrap_err().0, "url");
        let mut p = slack();
        p.query = Some("SELECT 1".into());
        assert_eq!(validate_probe(&p).unwrap_err().0, "query");
    }
}
