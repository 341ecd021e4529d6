//! Webhooks: subscriptions (at most `max_webhooks` per tenant), the outbox
//! (one event row written in the transaction that made the change), and the
//! delivery worker's pass: fan pending events out to deliveries, then sign,
//! post, retry with backoff and jitter, give up after a limit.

use crate::audit::record;
use crate::{Ctx, Rekey};
use base64::Engine;
use rand::Rng;
use rekey_api::{
    CreateWebhook, CreatedWebhook, DeliveryAttemptView, DeliveryList, DeliveryQuery, DeliveryView,
    UpdateWebhook, WebhookList, WebhookQuery, WebhookView,
};
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::{ids, Error, SecretString};
use rekey_crypto::Aad;
use rekey_store::webhooks::{self as store, Claimed, DeliveryRow, EventRow, WebhookRow};
use rekey_store::{secrets, WriteTx};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const OWNER_KIND: &str = "webhook";

pub use rekey_core::events::EVENT_TYPES;

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
    let bad = |m: String| Error::invalid("invalid_field", m);
    if events.is_empty() || events.len() > 32 {
        return Err(bad("`events` needs 1–32 entries".into()));
    }
    for e in events {
        let known = e == "*"
            || EVENT_TYPES.contains(&e.as_str())
            || e.strip_suffix(".*")
                .is_some_and(|fam| EVENT_TYPES.iter().any(|t| t.split('.').next() == Some(fam)));
        if !known {
            return Err(bad(format!(
                "`events`: unknown event type `{}`; expected `*`, a family like `connection.*`, or one of: {}",
                ids::truncate_for_message(e),
                EVENT_TYPES.join(", ")
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
                "invalid_field",
                "`description` must be at most 500 characters, without control or invisible formatting characters",
            ));
        }
    }
    Ok(())
}

pub(crate) fn view(w: &WebhookRow) -> WebhookView {
    WebhookView {
        id: w.id.clone(),
        url: w.url.clone(),
        events: w.events.clone(),
        description: w.description.clone(),
        enabled: w.disabled_at.is_none(),
        created_at: ms_to_rfc3339(w.created_at),
        updated_at: ms_to_rfc3339(w.updated_at),
        version: w.version,
    }
}

fn delivery_view(d: &DeliveryRow, attempts: Option<Vec<DeliveryAttemptView>>) -> DeliveryView {
    DeliveryView {
        id: d.id.clone(),
        webhook_id: d.webhook_id.clone(),
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        status: d.status.clone(),
        attempts: d.attempts,
        next_attempt_at: (d.status == "pending").then(|| ms_to_rfc3339(d.next_attempt_at)),
        last_http_status: d.last_http_status,
        last_error: d.last_error.clone(),
        created_at: ms_to_rfc3339(d.created_at),
        delivered_at: d.delivered_at.map(ms_to_rfc3339),
        attempt_log: attempts,
    }
}

fn aad(tenant: &str, id: &str) -> Aad {
    Aad {
        tenant: tenant.to_string(),
        record_kind: OWNER_KIND.into(),
        record_id: id.to_string(),
        field: "secret".into(),
        version: 1,
    }
}

fn not_found(id: &str) -> Error {
    Error::not_found("webhook_not_found", format!("webhook {id}"))
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
    kind: &str,
    data: Value,
) -> Result<(), Error> {
    if !store::any_enabled(tx.conn(), tenant).await? {
        return Ok(());
    }
    let now = now_ms();
    let event = EventRow {
        id: ids::new_id(ids::EVENT),
        tenant: tenant.to_string(),
        kind: kind.to_string(),
        payload: json!({"type": kind, "timestamp": ms_to_rfc3339(now), "data": data}).to_string(),
        created_at: now,
        fanned_out_at: None,
    };
    store::insert_event(tx.conn(), &event).await
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

enum Sent {
    Delivered,
    Retry,
    GaveUp,
}

impl Rekey {
    fn webhook_settings(&self) -> WebhookSettings {
        self.inner
            .webhook_settings
            .read()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    pub fn set_webhook_settings(&self, s: WebhookSettings) {
        if let Ok(mut w) = self.inner.webhook_settings.write() {
            *w = s;
        }
    }

    async fn seal_webhook_secret(
        &self,
        tx: &mut WriteTx,
        tenant: &str,
        id: &str,
        secret: &SecretString,
    ) -> Result<(), Error> {
        let row = {
            let kr = self.keyring()?;
            crate::sealing::seal_row(&kr, &aad(tenant, id), secret)
        };
        secrets::delete_owner(tx.conn(), OWNER_KIND, id).await?;
        secrets::insert(tx.conn(), &row).await
    }

    pub async fn create_webhook(
        &self,
        ctx: &Ctx,
        req: &CreateWebhook,
    ) -> Result<CreatedWebhook, Error> {
        let url = validate_url(&self.outbound_policy(), &req.url)?;
        let events = validate_events(&req.events)?;
        validate_description(&req.description)?;
        let now = now_ms();
        let row = WebhookRow {
            id: ids::new_id(ids::WEBHOOK),
            tenant: ctx.tenant.clone(),
            url,
            events,
            description: req.description.clone(),
            disabled_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let secret = SecretString::new(rekey_crypto::generate_webhook_secret().to_string());
        let max = self.webhook_settings().max_webhooks;
        let mut tx = self.store().begin_write().await?;
        // Count and insert under a per-tenant lock (PostgreSQL; SQLite's
        // writes are serialised), so concurrent creates cannot pass the cap.
        let backend = tx.backend();
        store::lock_tenant(tx.conn(), backend, &ctx.tenant).await?;
        if store::count(tx.conn(), &ctx.tenant).await? >= max {
            return Err(Error::conflict(
                "webhook_limit",
                format!("this tenant already has the maximum of {max} webhook subscriptions (--max-webhooks); delete one before creating another"),
            ));
        }
        store::insert(tx.conn(), &row).await?;
        self.seal_webhook_secret(&mut tx, &ctx.tenant, &row.id, &secret)
            .await?;
        record(
            &mut tx,
            ctx,
            "webhook.created",
            Some(&row.id),
            "ok",
            json!({"host": url_host(&row.url), "events": row.events}),
        )
        .await?;
        tx.commit().await?;
        Ok(CreatedWebhook {
            webhook: view(&row),
            secret: secret.expose().to_string(),
        })
    }

    async fn webhook_row(&self, tenant: &str, id: &str) -> Result<WebhookRow, Error> {
        let id = ids::parse_id(ids::WEBHOOK, id)?;
        let mut c = self.store().read().await?;
        store::get(&mut c, tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))
    }

    pub async fn get_webhook(&self, tenant: &str, id: &str) -> Result<WebhookView, Error> {
        Ok(view(&self.webhook_row(tenant, id).await?))
    }

    /// One page of subscriptions in id order (`limit` 1–200, default 50);
    /// `next_cursor` only when another page exists.
    pub async fn list_webhooks(
        &self,
        tenant: &str,
        q: &WebhookQuery,
    ) -> Result<WebhookList, Error> {
        let limit = match q.limit {
            None => 50,
            Some(n) if (1..=200).contains(&n) => n,
            Some(_) => {
                return Err(Error::invalid(
                    "invalid_limit",
                    "`limit` must be between 1 and 200",
                ))
            }
        };
        let after_id = match &q.cursor {
            None => None,
            Some(c) => {
                let bad = || {
                    Error::invalid(
                        "invalid_cursor",
                        "`cursor` is not a cursor returned by this endpoint",
                    )
                };
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .map_err(|_| bad())?;
                let s = String::from_utf8(raw).map_err(|_| bad())?;
                Some(ids::parse_id(ids::WEBHOOK, &s).map_err(|_| bad())?)
            }
        };
        let mut c = self.store().read().await?;
        // One more than asked: a cursor only when another page exists.
        let mut rows = store::list(&mut c, tenant, after_id.as_deref(), limit + 1).await?;
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|r| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&r.id))
        } else {
            None
        };
        Ok(WebhookList {
            items: rows.iter().map(view).collect(),
            next_cursor,
        })
    }

    pub async fn update_webhook(
        &self,
        ctx: &Ctx,
        id: &str,
        req: &UpdateWebhook,
        if_match: Option<i64>,
    ) -> Result<WebhookView, Error> {
        let id = ids::parse_id(ids::WEBHOOK, id)?;
        let policy = self.outbound_policy();
        let url = req
            .url
            .as_deref()
            .map(|u| validate_url(&policy, u))
            .transpose()?;
        let events = req
            .events
            .as_ref()
            .map(|e| validate_events(e))
            .transpose()?;
        if req.description.is_some() {
            validate_description(&req.description)?;
        }
        let mut tx = self.store().begin_write().await?;
        // Locked, so an update without a version applies to the latest one.
        rekey_store::lock_row(&mut tx, rekey_store::Locked::Webhook, &ctx.tenant, &id).await?;
        let cur = store::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        if let Some(v) = if_match.or(req.version) {
            if v != cur.version {
                return Err(Error::conflict(
                    "version_conflict",
                    format!("webhook {} is at version {}, not {v}", cur.id, cur.version),
                ));
            }
        }
        let mut w = cur.clone();
        if let Some(u) = url {
            w.url = u;
        }
        if let Some(e) = events {
            w.events = e;
        }
        if req.description.is_some() {
            w.description = req.description.clone().filter(|d| !d.is_empty());
        }
        let now = now_ms();
        match req.enabled {
            Some(true) => w.disabled_at = None,
            Some(false) => w.disabled_at = w.disabled_at.or(Some(now)),
            None => {}
        }
        w.updated_at = now;
        w.version += 1;
        if !store::update(tx.conn(), &w, cur.version).await? {
            return Err(Error::conflict(
                "version_conflict",
                format!("webhook {} changed concurrently; retry", cur.id),
            ));
        }
        record(
            &mut tx,
            ctx,
            "webhook.updated",
            Some(&w.id),
            "ok",
            json!({"host": url_host(&w.url), "events": w.events, "enabled": w.disabled_at.is_none()}),
        )
        .await?;
        tx.commit().await?;
        Ok(view(&w))
    }

    pub async fn delete_webhook(&self, ctx: &Ctx, id: &str) -> Result<(), Error> {
        let w = self.webhook_row(&ctx.tenant, id).await?;
        let mut tx = self.store().begin_write().await?;
        secrets::delete_owner(tx.conn(), OWNER_KIND, &w.id).await?;
        if !store::delete(tx.conn(), &ctx.tenant, &w.id).await? {
            return Err(not_found(&w.id));
        }
        record(
            &mut tx,
            ctx,
            "webhook.deleted",
            Some(&w.id),
            "ok",
            json!({"host": url_host(&w.url)}),
        )
        .await?;
        tx.commit().await
    }

    /// A new signing secret, shown once; the old one stops signing at once.
    pub async fn rotate_webhook_secret(
        &self,
        ctx: &Ctx,
        id: &str,
    ) -> Result<CreatedWebhook, Error> {
        let w = self.webhook_row(&ctx.tenant, id).await?;
        let secret = SecretString::new(rekey_crypto::generate_webhook_secret().to_string());
        let mut tx = self.store().begin_write().await?;
        self.seal_webhook_secret(&mut tx, &ctx.tenant, &w.id, &secret)
            .await?;
        record(
            &mut tx,
            ctx,
            "webhook.secret_rotated",
            Some(&w.id),
            "ok",
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(CreatedWebhook {
            webhook: view(&w),
            secret: secret.expose().to_string(),
        })
    }

    /// Queue a `webhook.test` event for this subscription only.
    pub async fn test_webhook(&self, ctx: &Ctx, id: &str) -> Result<DeliveryView, Error> {
        let w = self.webhook_row(&ctx.tenant, id).await?;
        let now = now_ms();
        let event = EventRow {
            id: ids::new_id(ids::EVENT),
            tenant: ctx.tenant.clone(),
            kind: "webhook.test".into(),
            payload: json!({"type": "webhook.test", "timestamp": ms_to_rfc3339(now), "data": {"webhook_id": w.id}}).to_string(),
            created_at: now,
            // For this subscription only: its one delivery is written here.
            fanned_out_at: Some(now),
        };
        let did = ids::new_id(ids::DELIVERY);
        let mut tx = self.store().begin_write().await?;
        store::insert_event(tx.conn(), &event).await?;
        store::insert_delivery(tx.conn(), &did, &ctx.tenant, &w.id, &event.id, now).await?;
        let d = store::get_delivery(tx.conn(), &ctx.tenant, &did)
            .await?
            .ok_or_else(|| Error::internal("delivery vanished"))?;
        tx.commit().await?;
        Ok(delivery_view(&d, None))
    }

    pub async fn list_deliveries(
        &self,
        tenant: &str,
        webhook_id: &str,
        q: &DeliveryQuery,
    ) -> Result<DeliveryList, Error> {
        let w = self.webhook_row(tenant, webhook_id).await?;
        if let Some(s) = &q.status {
            if !["pending", "delivered", "failed"].contains(&s.as_str()) {
                return Err(Error::invalid(
                    "invalid_status",
                    "`status` must be pending, delivered or failed",
                ));
            }
        }
        let limit = match q.limit {
            None => 50,
            Some(n) if (1..=200).contains(&n) => n,
            Some(_) => {
                return Err(Error::invalid(
                    "invalid_limit",
                    "`limit` must be between 1 and 200",
                ))
            }
        };
        let cursor = q
            .cursor
            .as_deref()
            .map(|c| ids::parse_id(ids::DELIVERY, c))
            .transpose()
            .map_err(|_| {
                Error::invalid(
                    "invalid_cursor",
                    "`cursor` is not a cursor returned by this endpoint",
                )
            })?;
        let mut c = self.store().read().await?;
        let rows = store::list_deliveries(
            &mut c,
            tenant,
            &w.id,
            q.status.as_deref(),
            cursor.as_deref(),
            limit + 1,
        )
        .await?;
        let more = rows.len() as i64 > limit;
        let items: Vec<DeliveryView> = rows
            .iter()
            .take(limit as usize)
            .map(|d| delivery_view(d, None))
            .collect();
        Ok(DeliveryList {
            next_cursor: if more {
                items.last().map(|d| d.id.clone())
            } else {
                None
            },
            items,
        })
    }

    pub async fn get_delivery(
        &self,
        tenant: &str,
        webhook_id: &str,
        id: &str,
    ) -> Result<DeliveryView, Error> {
        let w = self.webhook_row(tenant, webhook_id).await?;
        let id = ids::parse_id(ids::DELIVERY, id)?;
        let mut c = self.store().read().await?;
        let d = store::get_delivery(&mut c, tenant, &id)
            .await?
            .filter(|d| d.webhook_id == w.id)
            .ok_or_else(|| {
                Error::not_found(
                    "delivery_not_found",
                    format!("delivery {id} of webhook {}", w.id),
                )
            })?;
        let attempts = store::attempts(&mut c, &d.id)
            .await?
            .into_iter()
            .map(|a| DeliveryAttemptView {
                id: a.id,
                at: ms_to_rfc3339(a.at),
                http_status: a.http_status,
                error: a.error,
                duration_ms: a.duration_ms,
                response_body: a.response_body,
            })
            .collect();
        Ok(delivery_view(&d, Some(attempts)))
    }

    /// Send a delivery again (same `webhook-id`), whatever its state.
    pub async fn replay_delivery(
        &self,
        ctx: &Ctx,
        webhook_id: &str,
        id: &str,
    ) -> Result<DeliveryView, Error> {
        let before = self.get_delivery(&ctx.tenant, webhook_id, id).await?;
        let mut tx = self.store().begin_write().await?;
        if !store::replay(tx.conn(), &ctx.tenant, &before.id, now_ms()).await? {
            return Err(Error::conflict(
                "delivery_in_flight",
                format!(
                    "delivery {} is being sent right now; try again in a moment",
                    before.id
                ),
            ));
        }
        record(&mut tx, ctx, "webhook.delivery_replayed", Some(&before.id), "ok", json!({"webhook_id": before.webhook_id, "event_id": before.event_id, "previous_status": before.status})).await?;
        let d = store::get_delivery(tx.conn(), &ctx.tenant, &before.id)
            .await?
            .ok_or_else(|| Error::internal("delivery vanished"))?;
        tx.commit().await?;
        Ok(delivery_view(&d, None))
    }

    /// Forget leases at start-up: `None` drops all (single-process SQLite),
    /// `Some(owner)` only this replica's.
    pub async fn release_leases(&self, owner: Option<&str>) -> Result<(), Error> {
        let mut tx = self.store().begin_write().await?;
        store::release_leases(tx.conn(), owner).await?;
        rekey_store::connections::release_check_leases(tx.conn(), owner).await?;
        tx.commit().await
    }

    /// Deliveries per status, all tenants (metrics).
    pub async fn webhook_delivery_counts(&self) -> Result<Vec<(String, i64)>, Error> {
        let mut c = self.store().read().await?;
        store::count_by_status(&mut c).await
    }

    /// At start-up on SQLite (one serving process, by the data-directory
    /// lock) every lease was left by a crash: free them so work resumes at
    /// once. On PostgreSQL other replicas' leases are live; they lapse.
    pub async fn release_stale_leases(&self) -> Result<(), Error> {
        match self.store().backend() {
            rekey_store::Backend::Sqlite => self.release_leases(None).await,
            rekey_store::Backend::Postgres => Ok(()),
        }
    }

    /// Fan out up to `limit` pending outbox events in one write transaction:
    /// claim them (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas take
    /// disjoint events), write one delivery per enabled subscription of the
    /// event's tenant whose filter matches *now*, and mark each event fanned
    /// out. A crash or error anywhere rolls all of it back, so an event ends
    /// up either unmarked with no deliveries (redone by the next pass) or
    /// marked with all of them. Returns (events fanned out, backlog left).
    pub async fn fan_out_events(&self, limit: i64) -> Result<(usize, bool), Error> {
        {
            // Most passes find nothing: don't take the write lock for that.
            let mut c = self.store().read().await?;
            if !store::has_pending_events(&mut c).await? {
                return Ok((0, false));
            }
        }
        let mut tx = self.store().begin_write().await?;
        let backend = tx.backend();
        let events = store::claim_pending_events(tx.conn(), backend, limit).await?;
        let now = now_ms();
        let mut hooks: HashMap<String, Vec<WebhookRow>> = HashMap::new();
        let mut done = Vec::with_capacity(events.len());
        let mut rows = 0;
        for e in &events {
            if rows >= FAN_OUT_ROWS {
                break;
            }
            if !hooks.contains_key(&e.tenant) {
                let enabled = store::enabled_for_fan_out(tx.conn(), backend, &e.tenant).await?;
                hooks.insert(e.tenant.clone(), enabled);
            }
            let targets: Vec<(String, String)> = hooks
                .get(&e.tenant)
                .map(|hs| {
                    hs.iter()
                        .filter(|w| matches(&w.events, &e.kind))
                        .map(|w| (ids::new_id(ids::DELIVERY), w.id.clone()))
                        .collect()
                })
                .unwrap_or_default();
            store::insert_deliveries(tx.conn(), &e.tenant, &e.id, &targets, now).await?;
            rows += targets.len();
            done.push(e.id.clone());
        }
        store::mark_fanned_out(tx.conn(), &done, now).await?;
        tx.commit().await?;
        let backlog = done.len() < events.len() || events.len() as i64 >= limit;
        Ok((done.len(), backlog))
    }

    /// One pass of the delivery worker: fan out pending events (see
    /// [`Rekey::fan_out_events`]), then claim due deliveries (lease long
    /// enough for one attempt), post them in parallel, record each attempt.
    /// A crash after the post and before the record re-sends after the lease
    /// lapses: at-least-once, de-duplicated by receivers on `webhook-id`.
    pub async fn deliver_due(&self, owner: &str, limit: i64) -> Result<DeliveryRun, Error> {
        use futures_util::StreamExt;
        // A failed fan-out is rolled back and retried next pass; it must not
        // hold up deliveries already queued.
        let (fanned_out, fan_out_backlog) = match self.fan_out_events(limit).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "webhook fan-out failed; retried next pass");
                (0, false)
            }
        };
        let s = self.webhook_settings();
        let now = now_ms();
        // PARALLEL posts at a time, each at most `timeout`: the lease covers
        // the whole batch, so a live worker never loses a claim.
        let rounds = (limit + PARALLEL - 1) / PARALLEL;
        let lease_ms = s.timeout.as_millis() as i64 * (rounds + 1);
        let claimed = {
            let mut tx = self.store().begin_write().await?;
            let backend = tx.backend();
            let c = store::claim_due(tx.conn(), backend, owner, now, now + lease_ms, limit).await?;
            tx.commit().await?;
            c
        };
        let mut run = DeliveryRun {
            fanned_out,
            fan_out_backlog,
            claimed: claimed.len(),
            ..Default::default()
        };
        let results: Vec<Result<Sent, Error>> = futures_util::stream::iter(claimed)
            .map(|d| {
                let s = s.clone();
                async move { self.deliver_one(&s, d, owner).await }
            })
            .buffer_unordered(PARALLEL as usize)
            .collect()
            .await;
        for r in results {
            match r {
                Ok(Sent::Delivered) => run.delivered += 1,
                Ok(Sent::Retry) => run.retrying += 1,
                Ok(Sent::GaveUp) => run.gave_up += 1,
                Err(e) => tracing::warn!(error = %e, "webhook delivery bookkeeping failed"),
            }
        }
        Ok(run)
    }

    async fn webhook_secret(&self, tenant: &str, id: &str) -> Result<SecretString, Error> {
        let rows = {
            let mut c = self.store().read().await?;
            secrets::for_owner(&mut c, OWNER_KIND, id).await?
        };
        let row = rows
            .iter()
            .find(|r| r.field == "secret")
            .ok_or_else(|| Error::internal(format!("webhook {id} has no signing secret")))?;
        let kr = self.keyring()?;
        crate::sealing::open_row(&kr, &aad(tenant, id), row)
            .map_err(|e| Error::DecryptionFailed(format!("signing secret of webhook {id}: {e}")))?
    }

    /// Sign with the subscription's secret. A failure here is recorded as
    /// an attempt, so it counts towards the limit instead of looping.
    /// Returns the signature and the secret (to scrub from the answer).
    async fn sign(&self, d: &Claimed, ts: i64) -> Result<(String, SecretString), String> {
        let secret = self
            .webhook_secret(&d.tenant, &d.webhook_id)
            .await
            .map_err(|e| format!("cannot sign: {}", e.code()))?;
        let sig =
            rekey_crypto::sign_webhook(secret.expose(), &d.event_id, ts, d.payload.as_bytes())
                .map_err(|_| "cannot sign: the stored secret is malformed".to_string())?;
        Ok((sig, secret))
    }

    async fn deliver_one(
        &self,
        s: &WebhookSettings,
        d: Claimed,
        owner: &str,
    ) -> Result<Sent, Error> {
        // The timestamp is the attempt's (receivers reject stale ones); the
        // id and body stay the same across attempts.
        let ts = now_ms() / 1000;
        let started = Instant::now();
        let (http_status, error, body, ok) = match self.sign(&d, ts).await {
            Ok((sig, secret)) => self.post(s, &d, ts, sig, &secret).await,
            Err(e) => {
                tracing::error!(delivery = %d.delivery_id, webhook = %d.webhook_id, error = %e, "webhook not signed");
                (None, Some(e), None, false)
            }
        };
        let duration_ms = started.elapsed().as_millis() as i64;
        let at = now_ms();
        let attempts = d.attempts + 1;
        let (status, next, sent) = if ok {
            ("delivered", at, Sent::Delivered)
        } else if attempts >= s.max_attempts {
            ("failed", at, Sent::GaveUp)
        } else {
            ("pending", at + retry_delay_ms(s, attempts), Sent::Retry)
        };
        let mut tx = self.store().begin_write().await?;
        let kept = store::finish_attempt(
            tx.conn(),
            &ids::new_id(ids::ATTEMPT),
            &d,
            at,
            http_status,
            error.as_deref(),
            duration_ms,
            body.as_deref(),
            status,
            next,
            owner,
        )
        .await?;
        tx.commit().await?;
        if !kept {
            tracing::warn!(delivery = %d.delivery_id, "webhook lease lost; attempt recorded, state left to its new holder");
            return Ok(Sent::Retry);
        }
        if let Sent::GaveUp = sent {
            tracing::warn!(delivery = %d.delivery_id, webhook = %d.webhook_id, attempts, "webhook delivery failed for good");
        }
        Ok(sent)
    }

    /// Post one signed delivery: (HTTP status, error, scrubbed answer,
    /// success). Success is any 2xx, whatever the answer's size.
    async fn post(
        &self,
        s: &WebhookSettings,
        d: &Claimed,
        ts: i64,
        sig: String,
        secret: &SecretString,
    ) -> (Option<i64>, Option<String>, Option<String>, bool) {
        // A receiver's answer may quote its own copy of the signing secret
        // (`whsec_…`, or the base64 key after the prefix).
        let whole = secret.expose();
        let known = [whole, whole.strip_prefix("whsec_").unwrap_or(whole)];
        let req = self
            .inner
            .webhook_http
            .inner()
            .post(&d.url)
            .timeout(s.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(d.payload.clone());
        match self.inner.webhook_http.execute(req).await {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let ok = (200..300).contains(&status);
                // Keep at most 1 KiB of the answer, best effort.
                let mut head = Vec::new();
                while head.len() < 1024 {
                    match resp.chunk().await {
                        Ok(Some(c)) => {
                            let take = c.len().min(1024 - head.len());
                            head.extend_from_slice(&c[..take]);
                        }
                        _ => break,
                    }
                }
                let body =
                    (!head.is_empty()).then(|| rekey_core::scrub::scrub_body(&head, &known, 512));
                let err = (!ok).then(|| format!("receiver answered HTTP {status}"));
                (Some(i64::from(status)), err, body, ok)
            }
            // The policy's refusal names host, address and range; network
            // errors name scheme, host and port (never the path or query,
            // which may carry the receiver's token).
            Err(e @ rekey_oauth::OAuthError::Refused(_)) => {
                (None, Some(e.to_string()), None, false)
            }
            Err(e) => {
                let m = e.to_string();
                let what = if m.contains("timed out") {
                    "timed out"
                } else if m.contains("connection failed") {
                    "connection failed"
                } else {
                    "request failed"
                };
                (None, Some(what.to_string()), None, false)
            }
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
