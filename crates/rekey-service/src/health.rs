//! Connection health: running a catalog probe with the connection's current
//! credential, judging the answer, and moving the status machine with the
//! error context (`last_error`, `first_failed_at`, `consecutive_failures`,
//! `last_ok_at`). Refresh failures and successes go through the same
//! [`apply_observation`], so both feed one picture of a connection's health.

use crate::audit::record;
use crate::connections::not_found;
use crate::webhooks::emit;
use crate::{Ctx, Rekey};
use rekey_api::CheckResult;
use rekey_core::connection::{ConnectionKind, Status};
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::{credentials, ids, Error, SecretString};
use rekey_oauth::OAuthError;
use rekey_providers::probe::{BodyValue, Probe, ProbeMethod, ProbeOutcome, ProbeProtocol};
use rekey_store::connections::{self as conns, ConnectionRow};
use rekey_store::{Backend, WriteTx};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one probe or refresh found.
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    pub outcome: Outcome,
    /// Stable error code (`auth_rejected`, `rate_limited`, `timeout`…).
    pub code: String,
    pub message: String,
    pub http_status: Option<u16>,
    /// The provider's answer, truncated and scrubbed.
    pub body: Option<String>,
    pub retry_after_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    AuthFailure,
    Transient,
    Unexpected,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::AuthFailure => "auth_failure",
            Outcome::Transient => "transient",
            Outcome::Unexpected => "unexpected",
        }
    }
}

impl Observation {
    pub(crate) fn ok() -> Observation {
        Observation {
            outcome: Outcome::Ok,
            code: "ok".into(),
            message: String::new(),
            http_status: None,
            body: None,
            retry_after_secs: None,
        }
    }

    /// A failed token refresh, in the same terms as a failed probe. `known`
    /// are secret values to scrub from the provider's text.
    pub(crate) fn from_oauth(e: &OAuthError, known: &[&str]) -> Observation {
        let outcome = match e.severity() {
            rekey_oauth::Severity::Auth => Outcome::AuthFailure,
            rekey_oauth::Severity::Transient => Outcome::Transient,
            rekey_oauth::Severity::Invalid => Outcome::Unexpected,
        };
        let http_status = match e {
            OAuthError::Unavailable { status, .. } | OAuthError::Provider { status, .. } => {
                Some(*status)
            }
            _ => None,
        };
        Observation {
            outcome,
            code: e.code().to_string(),
            // The provider's error_description is its own text: scrub it.
            message: rekey_core::scrub::scrub_text(&e.to_string(), known),
            http_status,
            body: None,
            retry_after_secs: e
                .retry_after()
                .map(|d| d.as_secs().min(MAX_RETRY_AFTER_SECS)),
        }
    }
}

/// The probe cannot be made as configured: nothing was sent. Reported as
/// `probe_misconfigured`, never as the provider failing.
fn misconfigured(message: String) -> Observation {
    Observation {
        outcome: Outcome::Unexpected,
        code: "probe_misconfigured".into(),
        message,
        http_status: None,
        body: None,
        retry_after_secs: None,
    }
}

/// A provider's `Retry-After` is honoured up to this (a hostile or broken
/// value must not stop checks for good).
pub(crate) const MAX_RETRY_AFTER_SECS: u64 = 6 * 3600;

/// Backoff for transient failures: `Retry-After` when given (capped), else
/// 5 s doubling per consecutive failure, capped at 10 min.
fn retry_at(obs: &Observation, failures: i64, now: i64) -> Option<i64> {
    if obs.outcome == Outcome::AuthFailure {
        return None;
    }
    let ms = match obs.retry_after_secs {
        Some(s) => (s.min(MAX_RETRY_AFTER_SECS) as i64) * 1000,
        None => (5_000i64 << (failures - 1).clamp(0, 10)).min(600_000),
    };
    Some(now.saturating_add(ms))
}

/// Apply `obs` to the connection inside `tx`: re-read it (locked on
/// PostgreSQL), move the status, keep or clear the error context, audit a
/// transition and write its event. `checked` marks a probe (sets
/// `last_checked_at`). Returns the row as stored, or None if the connection
/// is gone or an operator took it out of service meanwhile.
pub(crate) async fn apply_observation(
    tx: &mut WriteTx,
    ctx: &Ctx,
    id: &str,
    obs: &Observation,
    source: &str,
    checked: bool,
) -> Result<Option<ConnectionRow>, Error> {
    if tx.backend() == Backend::Postgres {
        conns::lock_row(tx.conn(), &ctx.tenant, id).await?;
    }
    let Some(row) = conns::get(tx.conn(), &ctx.tenant, id).await? else {
        return Ok(None);
    };
    if matches!(
        row.status,
        Status::Disabled | Status::Revoked | Status::RevokePending
    ) {
        return Ok(None);
    }
    let now = now_ms();
    let mut r = row.clone();
    if checked {
        r.last_checked_at = Some(now);
    }
    let from = row.status;
    let grant_dead = from == Status::NeedsReauth
        && source == "check"
        && row
            .last_error
            .as_deref()
            .and_then(|e| serde_json::from_str::<Value>(e).ok())
            .is_some_and(|e| e.get("source").and_then(Value::as_str) == Some("refresh"));
    if obs.outcome == Outcome::Ok && grant_dead {
        // The access token still works but the grant cannot be refreshed:
        // it stays needs_reauth (no flapping) until reauthorized.
        r.last_ok_at = Some(now);
        if !conns::update(tx.conn(), &r, row.version).await? {
            return Err(Error::conflict(
                "version_conflict",
                format!("connection {id} changed during the check"),
            ));
        }
        return Ok(Some(r));
    }
    let to = match obs.outcome {
        Outcome::Ok => Status::Active,
        Outcome::AuthFailure => Status::NeedsReauth,
        Outcome::Transient | Outcome::Unexpected => Status::Degraded,
    };
    if from != to && from.can_transition(to) {
        r.status = to;
    }
    if obs.outcome == Outcome::Ok {
        r.last_ok_at = Some(now);
        r.consecutive_failures = 0;
        r.first_failed_at = None;
        r.last_error = None;
    } else {
        r.consecutive_failures = row.consecutive_failures + 1;
        r.first_failed_at = row.first_failed_at.or(Some(now));
        r.last_error = Some(
            json!({
                "code": obs.code,
                "message": obs.message,
                "http_status": obs.http_status,
                "provider_body": obs.body,
                "at": ms_to_rfc3339(now),
                "source": source,
                "retry_after_secs": obs.retry_after_secs,
                "retry_at": retry_at(obs, r.consecutive_failures, now),
            })
            .to_string(),
        );
    }
    let changed = r.status != from;
    // The version guards edits (If-Match); health bookkeeping alone does not
    // bump it, a status change does.
    if changed || row.last_error.is_some() != r.last_error.is_some() {
        r.version += 1;
        r.updated_at = now;
    }
    if !conns::update(tx.conn(), &r, row.version).await? {
        return Err(Error::conflict(
            "version_conflict",
            format!("connection {id} changed during the check"),
        ));
    }
    if changed {
        status_changed(tx, ctx, &r, from, source, obs_code(obs)).await?;
    }
    Ok(Some(r))
}

/// Audit a status transition and write its `connection.status_changed` event.
pub(crate) async fn status_changed(
    tx: &mut WriteTx,
    ctx: &Ctx,
    r: &ConnectionRow,
    from: Status,
    source: &str,
    code: Option<&str>,
) -> Result<(), Error> {
    let error = r
        .last_error
        .as_deref()
        .and_then(|e| serde_json::from_str::<Value>(e).ok());
    let outcome = if r.status == Status::Active {
        "ok"
    } else {
        "error"
    };
    record(
        tx,
        ctx,
        "connection.status_changed",
        Some(&r.id),
        outcome,
        json!({"from": from.as_str(), "to": r.status.as_str(), "source": source, "error": code}),
    )
    .await?;
    emit(
        tx,
        &ctx.tenant,
        "connection.status_changed",
        json!({
            "connection_id": r.id, "provider": r.provider, "display_name": r.display_name,
            "from": from.as_str(), "to": r.status.as_str(), "source": source,
            "error": error,
        }),
    )
    .await
}

fn obs_code(o: &Observation) -> Option<&str> {
    (o.outcome != Outcome::Ok).then_some(o.code.as_str())
}

/// Scheduler knobs. Defaults: every 15 min ±10 %, degraded connections
/// after 30 s doubling up to the interval, 4 checks in flight and 5 per
/// second per provider.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub interval: Duration,
    pub jitter: f64,
    pub degraded_base: Duration,
    pub per_provider_concurrency: usize,
    pub per_provider_rate: f64,
    /// Connections claimed per pass.
    pub batch: i64,
    /// Upper bound on any probe's own `timeout_secs`.
    pub max_probe_timeout: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_secs(900),
            jitter: 0.1,
            degraded_base: Duration::from_secs(30),
            per_provider_concurrency: 4,
            per_provider_rate: 5.0,
            batch: 200,
            max_probe_timeout: Duration::from_secs(30),
        }
    }
}

fn jittered(ms: i64, jitter: f64) -> i64 {
    use rand::Rng;
    let j = if jitter > 0.0 {
        rand::thread_rng().gen_range(-jitter..=jitter)
    } else {
        0.0
    };
    ((ms as f64) * (1.0 + j)).max(1000.0) as i64
}

/// When the next scheduled check of `row` is due.
fn next_check(s: &HealthSettings, row: &ConnectionRow, now: i64) -> i64 {
    let interval = s.interval.as_millis() as i64;
    let base = if row.status == Status::Degraded {
        let n = (row.consecutive_failures - 1).clamp(0, 20) as u32;
        (s.degraded_base.as_millis() as i64)
            .saturating_mul(1i64 << n)
            .min(interval)
    } else {
        interval
    };
    let mut at = now + jittered(base, s.jitter);
    let retry = row
        .last_error
        .as_deref()
        .and_then(|e| serde_json::from_str::<Value>(e).ok())
        .and_then(|e| e.get("retry_at").and_then(Value::as_i64));
    if let Some(r) = retry {
        at = at.max(r);
    }
    at
}

/// Per-provider concurrency and rate limits for scheduled checks.
#[derive(Default)]
pub(crate) struct Throttle {
    gates: std::sync::Mutex<HashMap<String, Arc<Gate>>>,
}

struct Gate {
    sem: tokio::sync::Semaphore,
    next: tokio::sync::Mutex<Instant>,
}

impl Throttle {
    fn gate(&self, provider: &str, s: &HealthSettings) -> Arc<Gate> {
        let mut g = match self.gates.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.entry(provider.to_string())
            .or_insert_with(|| {
                Arc::new(Gate {
                    sem: tokio::sync::Semaphore::new(s.per_provider_concurrency.max(1)),
                    next: tokio::sync::Mutex::new(Instant::now()),
                })
            })
            .clone()
    }
}

/// A claimed check's result; None when the pass ran out of time first.
type Attempted = Option<Result<CheckResult, Error>>;

/// What one scheduler pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRun {
    pub claimed: usize,
    pub ok: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Claimed but not started in this pass's time window; due again now.
    pub deferred: usize,
}

/// An AWS access key, for SigV4-signed probes.
struct AwsKey {
    access_key_id: String,
    secret: SecretString,
    session_token: Option<SecretString>,
}

/// Where the probe sends the credential, from the connection's material.
enum Presented {
    Http {
        headers: Vec<(String, String)>,
        query: Vec<(String, String)>,
        /// Secret values, to scrub from the provider's answer.
        secrets: Vec<SecretString>,
        /// Sign the request with SigV4 instead of sending a credential.
        aws: Option<AwsKey>,
    },
    /// Log in to a database (`protocol = "postgres" | "mysql"`).
    Database {
        username: String,
        password: SecretString,
    },
    /// No probe can be made with this kind (yet): why.
    Unsupported(String),
    /// Getting the credential into shape failed at the provider (a
    /// service-account token request refused): that is the finding.
    Failed(Observation),
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
    pub fn set_health_settings(&self, s: HealthSettings) {
        if let Ok(mut w) = self.inner.health_settings.write() {
            *w = s;
        }
    }

    /// Connections claimed per scheduler pass.
    pub fn health_batch(&self) -> i64 {
        self.health_settings().batch
    }

    pub(crate) fn health_settings(&self) -> HealthSettings {
        self.inner
            .health_settings
            .read()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The probe for a connection: the catalog's for its kind, with the
    /// connection's URL override; an override alone makes a plain GET probe.
    fn probe_of(&self, row: &ConnectionRow) -> Result<Probe, String> {
        let provider = self.catalog().get(&row.provider);
        let catalog = provider
            .and_then(|p| p.probe_for(row.kind.as_str()))
            .cloned();
        match (catalog, &row.probe_url) {
            (Some(mut p), Some(u)) => {
                p.url = Some(u.clone());
                p.protocol = ProbeProtocol::Http;
                Ok(p)
            }
            (Some(p), None) => Ok(p),
            (None, Some(u)) => {
                let mut p: Probe = serde_json::from_value(json!({ "url": u }))
                    .map_err(|e| format!("probe: {e}"))?;
                p.auth_failure_statuses = vec![401, 403];
                p.success_statuses = vec![200, 201, 202, 204];
                Ok(p)
            }
            (None, None) => Err(provider
                .and_then(|p| p.probe_unavailable.clone())
                .unwrap_or_else(|| {
                    format!(
                        "provider `{}` has no health probe for `{}`; set `probe_url` on the connection",
                        row.provider, row.kind
                    )
                })),
        }
    }

    async fn probe_params(&self, row: &ConnectionRow) -> BTreeMap<String, String> {
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        if !row.kind.is_static() {
            let integ = serde_json::from_str::<Map<String, Value>>(&row.credential_meta)
                .ok()
                .and_then(|m| {
                    m.get("integration_id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
            if let Some(iid) = integ {
                if let Ok(i) = self.integration_row(&row.tenant, &iid).await {
                    params.extend(
                        serde_json::from_str::<BTreeMap<String, String>>(&i.params)
                            .unwrap_or_default(),
                    );
                }
            }
        }
        params.extend(
            serde_json::from_str::<BTreeMap<String, String>>(&row.params).unwrap_or_default(),
        );
        params
    }

    /// The credential in the form the probe sends it. OAuth connections get
    /// a fresh access token first (which records a failed refresh itself).
    async fn presented(
        &self,
        ctx: &Ctx,
        row: &ConnectionRow,
        probe: &Probe,
    ) -> Result<Presented, Error> {
        if probe.protocol != ProbeProtocol::Http {
            if row.kind != ConnectionKind::Basic {
                return Ok(Presented::Unsupported(format!(
                    "database probes log in with a user name and password; `{}` has none",
                    row.kind
                )));
            }
            // Re-read with the secrets: material may have changed since the scan.
            let (row, mut sec) = self.load_with_secrets(&row.tenant, &row.id).await?;
            let meta = serde_json::from_str::<Map<String, Value>>(&row.credential_meta)
                .map_err(Error::internal)?;
            return Ok(Presented::Database {
                username: meta
                    .get("username")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                password: sec
                    .remove("password")
                    .ok_or_else(|| Error::internal("basic connection without password"))?,
            });
        }
        if probe.aws_sigv4.is_some() {
            if row.kind != ConnectionKind::AwsAccessKey {
                return Ok(Presented::Unsupported(
                    "SigV4 probes sign with an AWS access key".into(),
                ));
            }
            // Re-read with the secrets: material may have changed since the scan.
            let (row, mut sec) = self.load_with_secrets(&row.tenant, &row.id).await?;
            let meta = serde_json::from_str::<Map<String, Value>>(&row.credential_meta)
                .map_err(Error::internal)?;
            let key = AwsKey {
                access_key_id: meta
                    .get("access_key_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                secret: sec
                    .remove("secret_access_key")
                    .ok_or_else(|| Error::internal("AWS connection without secret"))?,
                session_token: sec.remove("session_token"),
            };
            let mut known = vec![key.secret.clone()];
            known.extend(key.session_token.clone());
            return Ok(Presented::Http {
                headers: vec![],
                query: vec![],
                secrets: known,
                aws: Some(key),
            });
        }
        if !row.kind.is_static() {
            let (r, s) = self.fresh_oauth(ctx, &row.id, false).await?;
            let at = s
                .get("access_token")
                .ok_or_else(|| Error::internal("OAuth connection without access token"))?;
            let prefix = self
                .catalog()
                .get(&r.provider)
                .and_then(|p| p.oauth.as_ref())
                .and_then(|o| o.authorization_prefix.clone())
                .unwrap_or_else(|| "Bearer ".to_string());
            return Ok(Presented::Http {
                headers: vec![("Authorization".into(), format!("{prefix}{}", at.expose()))],
                query: vec![],
                secrets: vec![at.clone()],
                aws: None,
            });
        }
        let (row, sec) = self.load_with_secrets(&row.tenant, &row.id).await?;
        let row = &row;
        let meta = serde_json::from_str::<Map<String, Value>>(&row.credential_meta)
            .map_err(Error::internal)?;
        match row.kind {
            ConnectionKind::ServiceAccountJson => {
                return self.service_account_token(probe, &sec).await
            }
            ConnectionKind::RsaKeyPair => return self.keypair_jwt(row, probe, &meta, &sec).await,
            _ => {}
        }
        // Material stored before the header rules may hold a header that
        // must never be sent (CR/LF, `Content-Length`…): report, don't send.
        if let Err(e) = credentials::check_stored_headers(row.kind, &meta, &sec) {
            return Ok(Presented::Failed(misconfigured(format!(
                "the stored credential cannot be sent as an HTTP header: {}; replace the credentials",
                e.public_message()
            ))));
        }
        let material = credentials::assemble(row.kind, &meta, &sec)?;
        let Some(apply) = material.get("apply") else {
            return Ok(Presented::Unsupported(format!(
                "`{}` credentials are not sent as HTTP headers; no probe is run",
                row.kind
            )));
        };
        let pairs = |k: &str| -> Vec<(String, String)> {
            apply
                .get(k)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Presented::Http {
            headers: pairs("headers"),
            query: pairs("query"),
            secrets: sec.values().cloned().collect(),
            aws: None,
        })
    }

    /// Log in to the connection's database. The host, port and database
    /// come from the connection's `params` through the catalog templates.
    async fn run_db_probe(
        &self,
        row: &ConnectionRow,
        probe: &Probe,
        username: &str,
        password: &SecretString,
    ) -> Observation {
        let params = self.probe_params(row).await;
        let misconfigured = |m: String| Observation {
            outcome: Outcome::Unexpected,
            code: "probe_misconfigured".into(),
            message: m,
            http_status: None,
            body: None,
            retry_after_secs: None,
        };
        let Some(provider) = self.catalog().get(&row.provider) else {
            return misconfigured(format!("provider `{}` is not in the catalog", row.provider));
        };
        // A missing optional part (port, database) falls back to the default.
        let render = |t: &Option<String>| -> Result<Option<String>, String> {
            match t {
                None => Ok(None),
                Some(t) => {
                    let missing = rekey_providers::placeholders(t)
                        .iter()
                        .any(|p| !params.contains_key(p));
                    if missing {
                        return Ok(None);
                    }
                    provider
                        .render_url(t, &params)
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
            }
        };
        let host = match render(&probe.host) {
            Ok(Some(h)) => h,
            Ok(None) => {
                return misconfigured(
                    "the database host is not set; set `params.host` on the connection".into(),
                )
            }
            Err(e) => return misconfigured(format!("cannot build the probe target: {e}")),
        };
        let port = match render(&probe.port) {
            Ok(p) => match p.map(|p| p.parse::<u16>()) {
                None => None,
                Some(Ok(n)) if n > 0 => Some(n),
                Some(_) => return misconfigured("`params.port` must be a port number".into()),
            },
            Err(e) => return misconfigured(format!("cannot build the probe target: {e}")),
        };
        let database = match render(&probe.database) {
            Ok(d) => d,
            Err(e) => return misconfigured(format!("cannot build the probe target: {e}")),
        };
        let timeout = Duration::from_secs(u64::from(probe.timeout_secs))
            .min(self.health_settings().max_probe_timeout);
        crate::db_probe::run(
            probe,
            crate::db_probe::Target {
                host,
                port,
                database,
                username,
                password: password.expose(),
            },
            &self.inner.outbound,
            timeout,
        )
        .await
    }

    /// A service-account key: mint an access token (RFC 7523 JWT bearer
    /// grant at the key file's `token_uri`) with the probe's scopes.
    async fn service_account_token(
        &self,
        probe: &Probe,
        sec: &BTreeMap<String, SecretString>,
    ) -> Result<Presented, Error> {
        if probe.token_scopes.is_empty() {
            return Ok(Presented::Unsupported(
                "the catalog probe names no `token_scopes` for service-account keys".into(),
            ));
        }
        let doc: Value = sec
            .get("json")
            .and_then(|j| serde_json::from_str(j.expose()).ok())
            .ok_or_else(|| Error::internal("service-account connection without its key file"))?;
        let field = |k: &str| doc.get(k).and_then(Value::as_str);
        let token_uri = field("token_uri").unwrap_or("https://oauth2.googleapis.com/token");
        let token_uri = match self.check_url("token_uri", token_uri) {
            Ok(u) => u,
            Err(e) => {
                return Ok(Presented::Failed(Observation {
                    outcome: Outcome::Unexpected,
                    code: "probe_misconfigured".into(),
                    message: format!("the key file's {}", e.public_message()),
                    http_status: None,
                    body: None,
                    retry_after_secs: None,
                }))
            }
        };
        let (Some(email), Some(pem)) = (field("client_email"), field("private_key")) else {
            return Err(Error::internal(
                "service-account key file lacks its email or key",
            ));
        };
        match rekey_oauth::jwt_bearer(
            &self.inner.http,
            &token_uri,
            email,
            pem,
            field("private_key_id"),
            &probe.token_scopes,
        )
        .await
        {
            Ok(t) => {
                let token = t.access_token.clone();
                Ok(Presented::Http {
                    headers: vec![("Authorization".into(), format!("Bearer {}", token.expose()))],
                    query: vec![],
                    secrets: vec![token],
                    aws: None,
                })
            }
            Err(e) => {
                // The provider may echo the assertion's key material.
                let mut obs = Observation::from_oauth(&e, &[pem]);
                obs.message = format!("the token request failed: {}", obs.message);
                Ok(Presented::Failed(obs))
            }
        }
    }

    /// An RSA key pair: a key-pair JWT in the provider's format as the
    /// bearer token.
    async fn keypair_jwt(
        &self,
        row: &ConnectionRow,
        probe: &Probe,
        meta: &Map<String, Value>,
        sec: &BTreeMap<String, SecretString>,
    ) -> Result<Presented, Error> {
        let Some(rekey_providers::KeypairJwt::Snowflake) = probe.keypair_jwt else {
            return Ok(Presented::Unsupported(
                "the catalog probe defines no key-pair JWT for this provider".into(),
            ));
        };
        let misconfigured = |m: &str| {
            Ok(Presented::Failed(Observation {
                outcome: Outcome::Unexpected,
                code: "probe_misconfigured".into(),
                message: m.to_string(),
                http_status: None,
                body: None,
                retry_after_secs: None,
            }))
        };
        let params = self.probe_params(row).await;
        let Some(account) = params.get("account") else {
            return misconfigured("set `params.account` (the Snowflake account identifier)");
        };
        let Some(user) = meta.get("username").and_then(Value::as_str) else {
            return misconfigured("the key pair has no `username` (the Snowflake user)");
        };
        let Some(fp) = meta.get("public_key_fingerprint").and_then(Value::as_str) else {
            return Err(Error::internal(
                "RSA key-pair connection without a fingerprint",
            ));
        };
        let pem = sec
            .get("private_key_pem")
            .ok_or_else(|| Error::internal("RSA key-pair connection without its key"))?;
        let der = crate::rsa_key::signing_der(pem, sec.get("passphrase"))?;
        let jwt = rekey_oauth::snowflake_keypair_jwt(&der, account, user, fp)
            .map_err(|e| Error::internal(format!("key-pair JWT: {e}")))?;
        let jwt = SecretString::new(jwt);
        Ok(Presented::Http {
            headers: vec![("Authorization".into(), format!("Bearer {}", jwt.expose()))],
            query: vec![],
            secrets: vec![jwt],
            aws: None,
        })
    }

    /// Run the probe; never errors for provider trouble (that is the observation).
    async fn run_probe(
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
                return misconfigured(format!(
                    "cannot build the probe URL: {e}; set `params` on the connection"
                ))
            }
        };
        // Whatever the kind (an OAuth provider's token too), a header that
        // could split the request or change its framing is never sent.
        for (k, _) in &headers {
            if let Some(why) = credentials::header_name_problem(k) {
                return misconfigured(format!(
                    "the credential cannot be sent as an HTTP header: header `{}` {why}",
                    ids::truncate_for_message(k)
                ));
            }
        }
        if let Some((k, _)) = headers
            .iter()
            .find(|(_, v)| !credentials::header_value_ok(v))
        {
            return misconfigured(format!(
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
                return Observation {
                    outcome,
                    code: code.into(),
                    message: msg,
                    http_status: None,
                    body: None,
                    retry_after_secs: None,
                };
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

    /// Check one connection now. `manual` (API, CLI) audits the check itself;
    /// the scheduler audits only transitions.
    async fn check_inner(
        &self,
        ctx: &Ctx,
        id: &str,
        manual: bool,
        owner: Option<&str>,
    ) -> Result<CheckResult, Error> {
        let started = Instant::now();
        let row = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &ctx.tenant, id)
                .await?
                .ok_or_else(|| not_found(id))?
        };
        if matches!(
            row.status,
            Status::Disabled | Status::Revoked | Status::RevokePending
        ) {
            return Err(Error::conflict(
                "connection_unusable",
                format!("connection {id} is {}; it is not checked", row.status),
            ));
        }
        let before = row.status;
        let probe = self.probe_of(&row);
        // OAuth client credentials without a probe: requesting a token is the check.
        let probe = match probe {
            Err(_) if row.kind == ConnectionKind::OAuth2ClientCredentials => None,
            Err(why) => return self.skipped(ctx, row, why, started, manual, owner).await,
            Ok(p) => Some(p),
        };
        let observed = match &probe {
            None => match self.fresh_oauth(ctx, id, true).await {
                Ok(_) => Some(Observation::ok()),
                Err(e) => match self.refresh_failure(ctx, &row, e).await? {
                    Ok(()) => None,
                    Err(why) => return self.skipped(ctx, row, why, started, manual, owner).await,
                },
            },
            Some(p) => match self.presented(ctx, &row, p).await {
                Ok(Presented::Unsupported(why)) => {
                    return self.skipped(ctx, row, why, started, manual, owner).await
                }
                Ok(Presented::Http {
                    headers,
                    query,
                    secrets,
                    aws,
                }) => {
                    let exposed: Vec<&str> = secrets.iter().map(|s| s.expose()).collect();
                    Some(
                        self.run_probe(&row, p, headers, query, aws.as_ref(), &exposed)
                            .await,
                    )
                }
                Ok(Presented::Failed(obs)) => Some(obs),
                Ok(Presented::Database { username, password }) => {
                    Some(self.run_db_probe(&row, p, &username, &password).await)
                }
                Err(e) => match self.refresh_failure(ctx, &row, e).await? {
                    Ok(()) => None,
                    Err(why) => return self.skipped(ctx, row, why, started, manual, owner).await,
                },
            },
        };
        let mut tx = self.store().begin_write().await?;
        let stored = match &observed {
            Some(obs) => apply_observation(&mut tx, ctx, id, obs, "check", true).await?,
            None => {
                // Mark the check itself; the refresh failure set the status.
                let cur = conns::get(tx.conn(), &ctx.tenant, id).await?;
                if let Some(mut c) = cur.clone() {
                    c.last_checked_at = Some(now_ms());
                    conns::update(tx.conn(), &c, c.version).await?;
                    Some(c)
                } else {
                    None
                }
            }
        };
        let Some(stored) = stored else {
            tx.commit().await?;
            return Err(Error::conflict(
                "connection_unusable",
                format!("connection {id} was taken out of service during the check"),
            ));
        };
        let s = self.health_settings();
        conns::schedule_check(
            tx.conn(),
            &ctx.tenant,
            id,
            next_check(&s, &stored, now_ms()),
            owner,
        )
        .await?;
        let err: Option<Value> = stored
            .last_error
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok());
        let outcome = match &observed {
            Some(o) => o.outcome.as_str(),
            None if stored.status == Status::NeedsReauth => "auth_failure",
            None => "transient",
        };
        if manual {
            record(&mut tx, ctx, "connection.checked", Some(id), if outcome == "ok" { "ok" } else { "error" }, json!({
                "outcome": outcome, "http_status": observed.as_ref().and_then(|o| o.http_status),
                "status_before": before.as_str(), "status": stored.status.as_str(),
            })).await?;
        }
        tx.commit().await?;
        Ok(CheckResult {
            connection_id: id.to_string(),
            outcome: outcome.to_string(),
            status_before: before.as_str().to_string(),
            status: stored.status.as_str().to_string(),
            http_status: observed.as_ref().and_then(|o| o.http_status),
            duration_ms: started.elapsed().as_millis() as u64,
            checked_at: ms_to_rfc3339(now_ms()),
            message: err
                .as_ref()
                .and_then(|e| e.get("message").and_then(Value::as_str).map(str::to_string)),
            last_error: err,
            connection: crate::views::connection(&stored),
        })
    }

    async fn skipped(
        &self,
        ctx: &Ctx,
        row: ConnectionRow,
        why: String,
        started: Instant,
        manual: bool,
        owner: Option<&str>,
    ) -> Result<CheckResult, Error> {
        let mut tx = self.store().begin_write().await?;
        let s = self.health_settings();
        conns::schedule_check(
            tx.conn(),
            &ctx.tenant,
            &row.id,
            next_check(&s, &row, now_ms()),
            owner,
        )
        .await?;
        if manual {
            record(
                &mut tx,
                ctx,
                "connection.checked",
                Some(&row.id),
                "skipped",
                json!({"reason": why}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(CheckResult {
            connection_id: row.id.clone(),
            outcome: "skipped".into(),
            status_before: row.status.as_str().into(),
            status: row.status.as_str().into(),
            http_status: None,
            duration_ms: started.elapsed().as_millis() as u64,
            checked_at: ms_to_rfc3339(now_ms()),
            message: Some(why),
            last_error: row
                .last_error
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
            connection: crate::views::connection(&row),
        })
    }

    /// A refresh before the probe failed. `Ok(Ok(()))`: `fresh_oauth`
    /// recorded it on the connection (the check reports that).
    /// `Ok(Err(why))`: nothing was tried (a backoff is running): the check is
    /// skipped. `Err`: anything else (the integration is gone, the database
    /// failed), passed on.
    async fn refresh_failure(
        &self,
        ctx: &Ctx,
        before: &ConnectionRow,
        e: Error,
    ) -> Result<Result<(), String>, Error> {
        if !matches!(e.code(), "needs_reauth" | "unavailable") {
            return Err(e);
        }
        let now = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &ctx.tenant, &before.id)
                .await?
                .ok_or_else(|| not_found(&before.id))?
        };
        let recorded = now.consecutive_failures > before.consecutive_failures
            || (now.status == Status::NeedsReauth && now.status != before.status);
        if recorded {
            Ok(Ok(()))
        } else if e.code() == "unavailable" {
            Ok(Err(e.to_string()))
        } else {
            Err(e)
        }
    }

    /// `POST /connections/{id}/check`: probe now and return what was found.
    pub async fn check_connection(&self, ctx: &Ctx, id: &str) -> Result<CheckResult, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        self.check_inner(ctx, &id, true, None).await
    }

    /// One scheduler pass: claim due connections (a lease, so replicas on one
    /// PostgreSQL never check the same connection), check them in parallel
    /// under each provider's concurrency and rate limits.
    pub async fn check_due(&self, owner: &str) -> Result<CheckRun, Error> {
        use futures_util::StreamExt;
        let s = self.health_settings();
        let started = Instant::now();
        let now = now_ms();
        // Checks start only within `window`; any started check ends within
        // twice the probe timeout (a refresh, then the probe) plus slack. The
        // lease covers both, so a live replica never loses its claims and a
        // crashed one's come free soon after.
        let window =
            (s.max_probe_timeout * 2).clamp(Duration::from_secs(10), Duration::from_secs(60));
        let lease = window + s.max_probe_timeout * 2 + Duration::from_secs(15);
        let lease_until = now + lease.as_millis() as i64;
        let claimed = {
            let mut tx = self.store().begin_write().await?;
            let backend = tx.backend();
            let c =
                conns::claim_checks(tx.conn(), backend, owner, now, lease_until, s.batch).await?;
            tx.commit().await?;
            c
        };
        let mut run = CheckRun {
            claimed: claimed.len(),
            ..Default::default()
        };
        // Checks in flight at once, all providers: a PostgreSQL refresh holds
        // one pooled connection while it reads with another, so stay under
        // half the pool there.
        let in_flight = match self.store().backend() {
            Backend::Postgres => (self.store().pool_size() / 2).max(1) as usize,
            Backend::Sqlite => 64,
        };
        let global = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let n = claimed.len().max(1);
        let results: Vec<(String, String, Attempted)> = futures_util::stream::iter(claimed)
            .map(|(tenant, id, provider)| {
                let s = s.clone();
                let global = global.clone();
                async move {
                    let gate = self.inner.throttle.gate(&provider, &s);
                    let _permit = gate.sem.acquire().await;
                    if s.per_provider_rate > 0.0 {
                        let spacing = Duration::from_secs_f64(1.0 / s.per_provider_rate);
                        let wait = {
                            let mut next = gate.next.lock().await;
                            let now = Instant::now();
                            let slot = (*next).max(now);
                            *next = slot + spacing;
                            slot - now
                        };
                        tokio::time::sleep(wait).await;
                    }
                    let _slot = global.acquire().await;
                    if started.elapsed() > window {
                        // Out of time for this pass: hand it back, due now.
                        return (tenant, id, None);
                    }
                    let ctx = Ctx {
                        tenant: tenant.clone(),
                        actor: "system:health".into(),
                        request_id: None,
                        source: None,
                    };
                    let r = self.check_inner(&ctx, &id, false, Some(owner)).await;
                    (tenant, id, Some(r))
                }
            })
            // Waiting on a provider's limits holds no slot: every claimed
            // check may wait at once, so one slow provider can't stall the rest.
            .buffer_unordered(n)
            .collect()
            .await;
        for (tenant, id, r) in results {
            let retry_at = match r {
                Some(Ok(c)) => {
                    match c.outcome.as_str() {
                        "ok" => run.ok += 1,
                        "skipped" => run.skipped += 1,
                        _ => run.failed += 1,
                    }
                    continue;
                }
                None => {
                    run.deferred += 1;
                    now_ms()
                }
                Some(Err(e)) => {
                    run.failed += 1;
                    tracing::warn!(connection = %id, error = %e, "scheduled check failed");
                    now_ms() + s.interval.as_millis() as i64
                }
            };
            // Don't leave it claimed until the lease lapses.
            let mut tx = self.store().begin_write().await?;
            conns::schedule_check(tx.conn(), &tenant, &id, retry_at, Some(owner)).await?;
            tx.commit().await?;
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_backoff_honours_retry_after_and_doubles() {
        let mut o = Observation::ok();
        o.outcome = Outcome::Transient;
        assert_eq!(retry_at(&o, 1, 0), Some(5_000));
        assert_eq!(retry_at(&o, 3, 0), Some(20_000));
        assert_eq!(retry_at(&o, 30, 0), Some(600_000));
        o.retry_after_secs = Some(120);
        assert_eq!(retry_at(&o, 1, 0), Some(120_000));
        // A hostile Retry-After is capped, and never overflows.
        o.retry_after_secs = Some(u64::MAX);
        assert_eq!(retry_at(&o, 1, 0), Some(MAX_RETRY_AFTER_SECS as i64 * 1000));
        assert!(retry_at(&o, 1, i64::MAX - 5).is_some());
        o.outcome = Outcome::AuthFailure;
        assert_eq!(retry_at(&o, 1, 0), None);
    }

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
