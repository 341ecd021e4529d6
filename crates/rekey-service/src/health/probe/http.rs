//! HTTP probes: send the credential as the catalog says (headers, query,
//! or a SigV4 signature), and judge the answer.

use crate::status::{Observation, Outcome};
use crate::Rekey;
use rekey_core::{credentials, ids, SecretString};
use rekey_oauth::OAuthError;
use rekey_providers::probe::{BodyValue, Probe, ProbeMethod, ProbeOutcome};
use rekey_store::connections::ConnectionRow;
use serde_json::Value;
use std::time::Duration;

/// An AWS access key, for SigV4-signed probes.
pub(in crate::health) struct AwsKey {
    pub access_key_id: String,
    pub secret: SecretString,
    pub session_token: Option<SecretString>,
}

/// SigV4 headers for the probe request as it will be sent.
fn sigv4_headers(
    url: &str,
    probe: &Probe,
    key: &AwsKey,
    sig: &rekey_providers::probe::AwsSigV4,
) -> Vec<(String, String)> {
    let Ok(u) = url::Url::parse(url) else {
        return vec![];
    };
    let host = match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return vec![],
    };
    let query: Vec<(String, String)> = u.query_pairs().into_owned().collect();
    let headers: Vec<(String, String)> = probe
        .content_type
        .iter()
        .map(|ct| ("content-type".to_string(), ct.clone()))
        .collect();
    let amz_date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    let method = match probe.method {
        ProbeMethod::Get => "GET",
        ProbeMethod::Head => "HEAD",
        ProbeMethod::Post => "POST",
    };
    rekey_crypto::sigv4::sign_v4(
        &rekey_crypto::sigv4::SigV4Request {
            method,
            host: &host,
            path: u.path(),
            query: &query,
            headers: &headers,
            body: probe.body.as_deref().unwrap_or("").as_bytes(),
            service: &sig.service,
            region: &sig.region,
            amz_date: &amz_date,
        },
        &key.access_key_id,
        key.secret.expose(),
        key.session_token.as_ref().map(|t| t.expose()),
    )
}

fn body_lookup(v: &Option<Value>) -> impl Fn(&str) -> Option<BodyValue> + '_ {
    move |path: &str| {
        let v = v.as_ref()?;
        let mut cur = v;
        for part in path.split('.') {
            cur = match cur {
                Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
                other => other.get(part)?,
            };
        }
        Some(match cur {
            Value::Null => BodyValue::Null,
            Value::Bool(b) => BodyValue::Bool(*b),
            Value::Number(n) => n.as_i64().map_or(BodyValue::Other, BodyValue::Int),
            Value::String(s) => BodyValue::Str(s.clone()),
            _ => BodyValue::Other,
        })
    }
}

/// A short reason from the provider's error body (`error`, `message`…),
/// scrubbed: Slack's `invalid_auth`, an OAuth `invalid_token`.
fn provider_reason(body: &Option<Value>, known: &[&str]) -> Option<String> {
    let l = body_lookup(body);
    for path in [
        "error.message",
        "error_description",
        "error",
        "message",
        "errors.0.message",
    ] {
        if let Some(BodyValue::Str(s)) = l(path) {
            let t = rekey_core::scrub::scrub_text(&s, known);
            return Some(t.chars().take(200).collect());
        }
    }
    None
}

impl Rekey {
    /// Run the probe; never errors for provider trouble (that is the observation).
    pub(in crate::health) async fn run_probe(
        &self,
        row: &ConnectionRow,
        probe: &Probe,
        headers: Vec<(String, String)>,
        query: Vec<(String, String)>,
        aws: Option<&AwsKey>,
        known: &[&str],
    ) -> Observation {
        let params = self.probe_params(row).await;
        let url = match (&row.probe_url, &probe.url) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(t)) => match self.catalog().get(&row.provider) {
                Some(p) => p.render_url(t, &params).map_err(|e| e.to_string()),
                None => Err(format!("provider `{}` is not in the catalog", row.provider)),
            },
            (None, None) => Err("the probe has no URL".to_string()),
        };
        let url = match url {
            Ok(u) => u,
            Err(e) => {
                return Observation::misconfigured(format!(
                    "cannot build the probe URL: {e}; set `params` on the connection"
                ))
            }
        };
        // Whatever the kind (an OAuth provider's token too), a header that
        // could split the request or change its framing is never sent.
        for (k, _) in &headers {
            if let Some(why) = credentials::header_name_problem(k) {
                return Observation::misconfigured(format!(
                    "the credential cannot be sent as an HTTP header: header `{}` {why}",
                    ids::truncate_for_message(k)
                ));
            }
        }
        if let Some((k, _)) = headers
            .iter()
            .find(|(_, v)| !credentials::header_value_ok(v))
        {
            return Observation::misconfigured(format!(
                "the credential cannot be sent as an HTTP header: the value of `{}` holds control characters (CR, LF, NUL…)",
                ids::truncate_for_message(k)
            ));
        }
        let client = self.inner.http.inner();
        let mut req = match probe.method {
            ProbeMethod::Get => client.get(&url),
            ProbeMethod::Head => client.head(&url),
            ProbeMethod::Post => client.post(&url),
        };
        let timeout = Duration::from_secs(u64::from(probe.timeout_secs))
            .min(self.health_settings().max_probe_timeout);
        req = req.timeout(timeout);
        for (k, v) in &probe.headers {
            let v = match self.catalog().get(&row.provider) {
                Some(p) if v.contains('{') => {
                    p.render_url(v, &params).unwrap_or_else(|_| v.clone())
                }
                _ => v.clone(),
            };
            req = req.header(k.as_str(), v);
        }
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if !query.is_empty() {
            req = req.query(&query);
        }
        if let (Some(b), Some(ct)) = (&probe.body, &probe.content_type) {
            req = req.header("content-type", ct.as_str()).body(b.clone());
        }
        if let (Some(key), Some(sig)) = (aws, &probe.aws_sigv4) {
            for (k, v) in sigv4_headers(&url, probe, key, sig) {
                req = req.header(k, v);
            }
        }
        let resp = match self.inner.http.send(req).await {
            Ok(r) => r,
            Err(e) => {
                let msg = rekey_core::scrub::scrub_text(&e.to_string(), known);
                let (code, outcome) = if matches!(e, OAuthError::Refused(_)) {
                    ("outbound_refused", Outcome::Unexpected)
                } else if msg.contains("timed out") {
                    ("timeout", Outcome::Transient)
                } else if matches!(e, OAuthError::Network(_)) {
                    ("connection_failed", Outcome::Transient)
                } else {
                    ("unexpected_response", Outcome::Unexpected)
                };
                return Observation::failed(outcome, code, msg);
            }
        };
        let json: Option<Value> = serde_json::from_slice(&resp.body).ok();
        let judged = probe.judge(resp.status, &body_lookup(&json));
        let reason = provider_reason(&json, known);
        let body =
            (!resp.body.is_empty()).then(|| rekey_core::scrub::scrub_body(&resp.body, known, 1024));
        let status = resp.status;
        let with_reason = |m: String| match &reason {
            Some(r) => format!("{m}: {r}"),
            None => m,
        };
        let (outcome, code, message) = match judged {
            ProbeOutcome::Ok => (Outcome::Ok, "ok", String::new()),
            ProbeOutcome::AuthFailure => (
                Outcome::AuthFailure,
                "auth_rejected",
                with_reason(format!(
                    "the provider rejected the credential (HTTP {status})"
                )),
            ),
            ProbeOutcome::Transient if status == 429 => (
                Outcome::Transient,
                "rate_limited",
                with_reason(format!(
                    "the provider is rate limiting (HTTP 429{})",
                    resp.retry_after
                        .map(|d| format!(", retry after {} s", d.as_secs()))
                        .unwrap_or_default()
                )),
            ),
            ProbeOutcome::Transient => (
                Outcome::Transient,
                "provider_unavailable",
                with_reason(format!("the provider answered HTTP {status}")),
            ),
            ProbeOutcome::Unexpected => (
                Outcome::Unexpected,
                "unexpected_response",
                with_reason(format!(
                    "unexpected answer from the provider (HTTP {status})"
                )),
            ),
        };
        Observation {
            outcome,
            code: code.into(),
            message,
            http_status: Some(status),
            body: if outcome == Outcome::Ok { None } else { body },
            retry_after_secs: resp.retry_after.map(|d| d.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_paths_index_arrays() {
        let v = Some(json!({"ok": false, "errors": [{"message": "bad token"}], "n": 2}));
        let l = body_lookup(&v);
        assert_eq!(l("ok"), Some(BodyValue::Bool(false)));
        assert_eq!(l("n"), Some(BodyValue::Int(2)));
        assert_eq!(
            l("errors.0.message"),
            Some(BodyValue::Str("bad token".into()))
        );
        assert_eq!(l("missing"), None);
    }
}
