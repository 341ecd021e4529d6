//! Webhooks: subscriptions (at most `max_webhooks` per tenant), the outbox
//! (one event row written in the transaction that made the change), and the
//! delivery worker's pass: fan pending events out to deliveries, then sign,
//! post, retry with backoff and jitter, give up after a limit.

mod deliveries;
mod subscriptions;
mod worker;

use crate::Rekey;
use rand::Rng;
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::ErrorCode;
use rekey_core::{ids, Error};
use rekey_crypto::Aad;
use rekey_store::webhooks::{self as store, EventRow};
use rekey_store::WriteTx;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const OWNER_KIND: &str = "webhook";

pub use rekey_core::events::{event_types, EventType};

/// Delivery policy. Defaults: up to 12 attempts, the wait doubling from 10 s
/// to at most an hour (about 3.4 h in all), each wait jittered by ±20 %; at
/// most 50 subscriptions per tenant.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub max_attempts: i64,
    pub base_delay_ms: i64,
    pub max_delay_ms: i64,
    pub timeout: Duration,
    /// Subscriptions (enabled or paused) a tenant may have; creating one
    /// more is refused with `409 webhook_limit`.
    pub max_webhooks: i64,
}

/// The default of [`WebhookSettings::max_webhooks`].
pub const DEFAULT_MAX_WEBHOOKS: i64 = 50;

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            max_attempts: 12,
            base_delay_ms: 10_000,
            max_delay_ms: 3_600_000,
            timeout: Duration::from_secs(10),
            max_webhooks: DEFAULT_MAX_WEBHOOKS,
        }
    }
}

/// The wait before attempt `attempts + 1`, after `attempts` failures.
pub(crate) fn retry_delay_ms(s: &WebhookSettings, attempts: i64) -> i64 {
    let exp = (attempts - 1).clamp(0, 30) as u32;
    let base = s
        .base_delay_ms
        .saturating_mul(1i64 << exp.min(20))
        .min(s.max_delay_ms);
    let jitter = rand::thread_rng().gen_range(-0.2..=0.2);
    ((base as f64) * (1.0 + jitter)).max(1.0) as i64
}

fn matches(filter: &[String], kind: &str) -> bool {
    filter.iter().any(|f| {
        f == "*"
            || f == kind
            || f.strip_suffix(".*")
                .is_some_and(|fam| kind.strip_prefix(fam).is_some_and(|r| r.starts_with('.')))
    })
}

fn validate_events(events: &[String]) -> Result<Vec<String>, Error> {
    let bad = |m: String| Error::invalid(ErrorCode::InvalidField, m);
    if events.is_empty() || events.len() > 32 {
        return Err(bad("`events` needs 1–32 entries".into()));
    }
    for e in events {
        let known = e == "*"
            || event_types().any(|t| t == e)
            || e.strip_suffix(".*")
                .is_some_and(|fam| event_types().any(|t| t.split('.').next() == Some(fam)));
        if !known {
            return Err(bad(format!(
                "`events`: unknown event type `{}`; expected `*`, a family like `connection.*`, or one of: {}",
                ids::truncate_for_message(e),
                event_types().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let mut v = events.to_vec();
    v.sort();
    v.dedup();
    Ok(v)
}

fn validate_url(policy: &rekey_core::outbound::OutboundPolicy, s: &str) -> Result<String, Error> {
    crate::check_outbound_url(policy, "url", s)
}

/// Receiver URLs may carry a token in their path or query: audit the host only.
fn url_host(u: &str) -> String {
    url::Url::parse(u)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

fn validate_description(d: &Option<String>) -> Result<(), Error> {
    if let Some(d) = d {
        let bad = |c: char| c.is_control() || rekey_core::connection::is_invisible_format(c);
        if d.chars().count() > 500 || d.chars().any(bad) {
            return Err(Error::invalid(
                ErrorCode::InvalidField,
                "`description` must be at most 500 characters, without control or invisible formatting characters",
            ));
        }
    }
    Ok(())
}

fn aad(tenant: &str, id: &str) -> Aad {
    Aad::new(tenant, OWNER_KIND, id, "secret", 1)
}

fn not_found(id: &str) -> Error {
    Error::not_found(ErrorCode::WebhookNotFound, format!("webhook {id}"))
}

/// The delivery `id` as `tx` wrote it (without attempts); `tx` is then
/// committed.
async fn commit_delivery(
    mut tx: WriteTx,
    tenant: &str,
    id: &str,
) -> Result<crate::Delivery, Error> {
    let row = store::get_delivery(tx.conn(), tenant, id)
        .await?
        .ok_or_else(|| Error::internal("delivery vanished"))?;
    tx.commit().await?;
    Ok(crate::Delivery {
        row,
        attempts: None,
    })
}

/// The non-secret facts about a connection every connection event carries.
pub(crate) fn connection_data(r: &rekey_store::connections::ConnectionRow) -> Value {
    json!({
        "connection_id": r.id, "provider": r.provider, "kind": r.kind.as_str(),
        "display_name": r.display_name, "status": r.status.as_str(), "tags": r.tags,
        "owner": {"subject": r.owner.subject, "email": r.owner.email},
    })
}

/// Write `kind` with `data` to the outbox inside `tx`: one event row, or
/// nothing when the tenant has no enabled subscription. The delivery worker
/// fans it out later (see [`Rekey::deliver_due`]), to the subscriptions that
/// are enabled and match when it does. `data` must not hold secrets.
pub(crate) async fn emit(
    tx: &mut WriteTx,
    tenant: &str,
    kind: EventType,
    data: Value,
) -> Result<(), Error> {
    emit_all(tx, kind, vec![(tenant, data)]).await
}

/// [`emit`] an event of `kind` for each `(tenant, data)`: one enabled-
/// subscription check per tenant, and the rows in a few statements.
pub(crate) async fn emit_all(
    tx: &mut WriteTx,
    kind: EventType,
    events: Vec<(&str, Value)>,
) -> Result<(), Error> {
    let mut enabled: BTreeMap<&str, bool> = BTreeMap::new();
    let mut rows = Vec::with_capacity(events.len());
    let now = now_ms();
    for (tenant, data) in events {
        let on = match enabled.get(tenant) {
            Some(on) => *on,
            None => {
                let on = store::any_enabled(tx.conn(), tenant).await?;
                enabled.insert(tenant, on);
                on
            }
        };
        if on {
            rows.push(EventRow {
                id: ids::new_id(ids::EVENT),
                tenant: tenant.to_string(),
                kind: kind.as_str().to_string(),
                payload: json!({"type": kind, "timestamp": ms_to_rfc3339(now), "data": data})
                    .to_string(),
                created_at: now,
                fanned_out_at: None,
            });
        }
    }
    store::insert_events(tx.conn(), &rows).await
}

/// Delivery rows one fan-out transaction writes before it stops (after the
/// event that reaches it: an event is always fanned out whole). Bounds how
/// long the transaction holds SQLite's write lock.
const FAN_OUT_ROWS: usize = 1000;

/// Posts in flight at once per delivery pass.
const PARALLEL: i64 = 16;

/// What one delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryRun {
    /// Events fanned out to deliveries in this pass.
    pub fanned_out: usize,
    /// Events were left waiting for fan-out (run the next pass at once).
    pub fan_out_backlog: bool,
    pub claimed: usize,
    pub delivered: usize,
    pub retrying: usize,
    pub gave_up: usize,
}

impl Rekey {
    fn webhook_settings(&self) -> WebhookSettings {
        self.inner
            .webhook_settings
            .read()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Tests only: new webhook settings (the server takes them from
    /// `RekeyConfig`).
    #[cfg(feature = "test-hooks")]
    pub fn set_webhook_settings(&self, s: WebhookSettings) {
        if let Ok(mut w) = self.inner.webhook_settings.write() {
            *w = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_types_families_and_all() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches(&f(&["*"]), "connection.created"));
        assert!(matches(&f(&["connection.*"]), "connection.created"));
        assert!(!matches(&f(&["connection.*"]), "webhook.test"));
        assert!(!matches(&f(&["conn.*"]), "connection.created"));
        assert!(matches(&f(&["connection.revoked"]), "connection.revoked"));
        assert!(!matches(&f(&["connection.revoked"]), "connection.created"));
    }

    #[test]
    fn event_filters_and_urls_are_validated() {
        assert!(validate_events(&["connection.*".into()]).is_ok());
        assert!(validate_events(&["connection.nope".into()]).is_err());
        assert!(validate_events(&[]).is_err());
        let p = rekey_core::outbound::OutboundPolicy::default();
        let validate_url = |s: &str| validate_url(&p, s);
        assert!(validate_url("https://hooks.example.com/x").is_ok());
        assert!(validate_url("http://127.0.0.1:9/x").is_ok());
        assert!(validate_url("http://hooks.example.com/x").is_err());
        assert!(validate_url("https://u:p@hooks.example.com/").is_err());
        assert!(validate_url("ftp://x/").is_err());
    }

    #[test]
    fn retry_delays_grow_and_are_capped() {
        let s = WebhookSettings::default();
        let d1 = retry_delay_ms(&s, 1);
        assert!((8_000..=12_000).contains(&d1), "{d1}");
        let d3 = retry_delay_ms(&s, 3);
        assert!((32_000..=48_000).contains(&d3), "{d3}");
        let d20 = retry_delay_ms(&s, 20);
        assert!(d20 <= 3_600_000 * 12 / 10, "{d20}");
    }
}
