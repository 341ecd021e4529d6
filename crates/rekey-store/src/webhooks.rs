//! Webhook subscriptions, the event outbox, deliveries and their attempts.
//! The signing secret lives in `secrets` (owner kind `webhook`), sealed.

use crate::rows::{self, AnyQuery, JsonList, TenantScoped};
use crate::{json_list, Backend};
use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub tenant: String,
    pub url: String,
    /// Event types or patterns (`connection.*`, `*`).
    #[sqlx(try_from = "JsonList")]
    pub events: Vec<String>,
    pub description: Option<String>,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

const HOOK_COLS: &str =
    "id, tenant, url, events, description, disabled_at, created_at, updated_at, version";

impl TenantScoped for WebhookRow {
    const TABLE: &'static str = "webhooks";
    const COLUMNS: &'static str = HOOK_COLS;
}

/// The columns every write sets, in the order [`bind_written`] binds them.
const WRITTEN: &str = "url, events, description, disabled_at, updated_at, version";

fn bind_written<'q>(q: AnyQuery<'q>, w: &'q WebhookRow) -> AnyQuery<'q> {
    q.bind(&w.url)
        .bind(json_list(&w.events))
        .bind(&w.description)
        .bind(w.disabled_at)
        .bind(w.updated_at)
        .bind(w.version)
}

pub async fn insert(c: &mut AnyConnection, w: &WebhookRow) -> Result<(), Error> {
    let sql = rows::insert_sql("webhooks", &format!("id, tenant, created_at, {WRITTEN}"));
    let q = sqlx::query(&sql)
        .bind(&w.id)
        .bind(&w.tenant)
        .bind(w.created_at);
    bind_written(q, w).execute(c).await?;
    Ok(())
}

/// Optimistic update; false when the version moved.
pub async fn update(c: &mut AnyConnection, w: &WebhookRow, expected: i64) -> Result<bool, Error> {
    let sql = rows::versioned_update_sql("webhooks", WRITTEN);
    let q = bind_written(sqlx::query(&sql), w);
    rows::run_versioned_update(q, c, &w.tenant, &w.id, expected).await
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<WebhookRow>, Error> {
    rows::get(c, tenant, id).await
}

/// One page of the tenant's subscriptions in id order: ids after
/// `after_id`, at most `limit`.
pub async fn list(
    c: &mut AnyConnection,
    tenant: &str,
    after_id: Option<&str>,
    limit: i64,
) -> Result<Vec<WebhookRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {HOOK_COLS} FROM webhooks WHERE tenant = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(tenant)
    .bind(after_id)
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// How many subscriptions (enabled or paused) the tenant has.
pub async fn count(c: &mut AnyConnection, tenant: &str) -> Result<i64, Error> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) AS n FROM webhooks WHERE tenant = $1")
        .bind(tenant)
        .fetch_one(c)
        .await?;
    Ok(n)
}

/// Serialise the tenant's subscription creates for the rest of the write
/// transaction, so a count-then-insert cannot race past a limit. PostgreSQL:
/// a transaction-scoped advisory lock on the tenant; SQLite: a no-op (its
/// write transactions are already serialised).
pub async fn lock_tenant(
    c: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
) -> Result<(), Error> {
    if backend != Backend::Postgres {
        return Ok(());
    }
    // `pg_advisory_xact_lock` returns `void`, which the Any driver cannot
    // decode: call it in FROM and select a constant.
    sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("rekey.webhooks/{tenant}"))
        .fetch_one(c)
        .await?;
    Ok(())
}

/// Whether the tenant has at least one enabled subscription (one indexed
/// probe; the outbox skips events nobody could receive).
pub async fn any_enabled(c: &mut AnyConnection, tenant: &str) -> Result<bool, Error> {
    let r = sqlx::query(
        "SELECT 1 AS one FROM webhooks WHERE tenant = $1 AND disabled_at IS NULL LIMIT 1",
    )
    .bind(tenant)
    .fetch_optional(c)
    .await?;
    Ok(r.is_some())
}

/// The tenant's enabled subscriptions, for fan-out. On PostgreSQL they are
/// key-share locked to the end of the transaction, so a subscription deleted
/// concurrently is either gone from the answer or deleted after the
/// deliveries to it are in (and then cascades them away).
pub async fn enabled_for_fan_out(
    c: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
) -> Result<Vec<WebhookRow>, Error> {
    let lock = match backend {
        Backend::Postgres => " FOR KEY SHARE",
        Backend::Sqlite => "",
    };
    Ok(sqlx::query_as(&format!(
        "SELECT {HOOK_COLS} FROM webhooks WHERE tenant = $1 AND disabled_at IS NULL ORDER BY id{lock}"
    ))
    .bind(tenant)
    .fetch_all(c)
    .await?)
}

/// Deletes the subscription and (by cascade) its deliveries and attempts.
pub async fn delete(c: &mut AnyConnection, tenant: &str, id: &str) -> Result<bool, Error> {
    rows::delete::<WebhookRow>(c, tenant, id).await
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: String,
    pub tenant: String,
    pub kind: String,
    /// The JSON body sent to receivers, exactly as signed.
    pub payload: String,
    pub created_at: i64,
    /// When its deliveries were written; `None` while the worker has yet to
    /// fan it out.
    pub fanned_out_at: Option<i64>,
}

pub async fn insert_event(c: &mut AnyConnection, e: &EventRow) -> Result<(), Error> {
    insert_events(c, std::slice::from_ref(e)).await
}

/// Insert every event of `events` into the outbox, a few dozen per statement.
pub async fn insert_events(c: &mut AnyConnection, events: &[EventRow]) -> Result<(), Error> {
    rows::insert_many(
        c,
        "webhook_events",
        "id, tenant, type, payload, created_at, fanned_out_at",
        events,
        |q, e| {
            q.bind(&e.id)
                .bind(&e.tenant)
                .bind(&e.kind)
                .bind(&e.payload)
                .bind(e.created_at)
                .bind(e.fanned_out_at)
        },
    )
    .await
}

/// An event waiting for fan-out.
#[derive(Debug, Clone, FromRow)]
pub struct PendingEvent {
    pub id: String,
    pub tenant: String,
    #[sqlx(rename = "type")]
    pub kind: String,
}

/// Whether any event waits for fan-out (a cheap read before taking the
/// write lock; all tenants).
pub async fn has_pending_events(c: &mut AnyConnection) -> Result<bool, Error> {
    let r = sqlx::query("SELECT 1 AS one FROM webhook_events WHERE fanned_out_at IS NULL LIMIT 1")
        .fetch_optional(c)
        .await?;
    Ok(r.is_some())
}

/// Claim up to `limit` events not yet fanned out, oldest first, for the rest
/// of the write transaction. PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
/// replicas claim disjoint events (and an event fanned out meanwhile no
/// longer matches); SQLite's write transactions are serialised.
pub async fn claim_pending_events(
    c: &mut AnyConnection,
    backend: Backend,
    limit: i64,
) -> Result<Vec<PendingEvent>, Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    Ok(sqlx::query_as(&format!(
        "SELECT id, tenant, type FROM webhook_events WHERE fanned_out_at IS NULL ORDER BY id LIMIT $1{lock}"
    ))
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// Mark events fanned out (their deliveries are written in the same
/// transaction).
pub async fn mark_fanned_out(c: &mut AnyConnection, ids: &[String], at: i64) -> Result<(), Error> {
    for chunk in ids.chunks(200) {
        let list = (0..chunk.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("UPDATE webhook_events SET fanned_out_at = $1 WHERE id IN ({list})");
        let mut q = sqlx::query(&sql).bind(at);
        for id in chunk {
            q = q.bind(id);
        }
        q.execute(&mut *c).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub tenant: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_http_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub delivered_at: Option<i64>,
}

const DEL_COLS: &str = "d.id, d.tenant, d.webhook_id, d.event_id, e.type AS event_type, d.status, d.attempts, d.next_attempt_at, d.last_http_status, d.last_error, d.created_at, d.updated_at, d.delivered_at";

pub async fn insert_delivery(
    c: &mut AnyConnection,
    id: &str,
    tenant: &str,
    webhook_id: &str,
    event_id: &str,
    now: i64,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO webhook_deliveries (id, tenant, webhook_id, event_id, status, attempts, next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)")
        .bind(id)
        .bind(tenant)
        .bind(webhook_id)
        .bind(event_id)
        .bind(now)
        .execute(c)
        .await?;
    Ok(())
}

/// One pending delivery of `event_id` per `(delivery id, webhook id)` in
/// `targets`, due at `now` (multi-row inserts, 100 rows a statement).
pub async fn insert_deliveries(
    c: &mut AnyConnection,
    tenant: &str,
    event_id: &str,
    targets: &[(String, String)],
    now: i64,
) -> Result<(), Error> {
    for chunk in targets.chunks(100) {
        let values = (0..chunk.len())
            .map(|i| {
                let (d, w) = (2 * i + 4, 2 * i + 5);
                format!("(${d}, $1, ${w}, $2, 'pending', 0, $3, $3, $3)")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("INSERT INTO webhook_deliveries (id, tenant, webhook_id, event_id, status, attempts, next_attempt_at, created_at, updated_at) VALUES {values}");
        let mut q = sqlx::query(&sql).bind(tenant).bind(event_id).bind(now);
        for (delivery_id, webhook_id) in chunk {
            q = q.bind(delivery_id).bind(webhook_id);
        }
        q.execute(&mut *c).await?;
    }
    Ok(())
}

pub async fn get_delivery(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<DeliveryRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {DEL_COLS} FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE d.tenant = $1 AND d.id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(c)
    .await?)
}

/// A subscription's deliveries, newest first; `before_id` pages.
pub async fn list_deliveries(
    c: &mut AnyConnection,
    tenant: &str,
    webhook_id: &str,
    status: Option<&str>,
    before_id: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {DEL_COLS} FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
         WHERE d.tenant = $1 AND d.webhook_id = $2 AND ($3 IS NULL OR d.status = $3) AND ($4 IS NULL OR d.id < $4) \
         ORDER BY d.id DESC LIMIT $5"
    ))
    .bind(tenant)
    .bind(webhook_id)
    .bind(status)
    .bind(before_id)
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// What the delivery worker needs for one claimed delivery.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    #[sqlx(rename = "id")]
    pub delivery_id: String,
    pub tenant: String,
    pub webhook_id: String,
    pub url: String,
    pub event_id: String,
    pub payload: String,
    pub created_at: i64,
    pub attempts: i64,
}

/// Deliveries waiting for an attempt: those [`claim_due`] takes, and also
/// those of disabled webhooks (which it leaves), so never fewer.
pub const DUE: crate::Due = crate::Due::new(
    "webhook_deliveries",
    "status = 'pending' AND next_attempt_at <= $1",
);

/// Claim up to `limit` due deliveries (pending, due, no live lease) for
/// `owner` until `lease_until`. PostgreSQL: `FOR UPDATE SKIP LOCKED` keeps
/// replicas from claiming the same rows.
pub async fn claim_due(
    c: &mut AnyConnection,
    backend: Backend,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Claimed>, Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let ids: Vec<(String,)> = sqlx::query_as(&format!(
        "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN (\
         SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= $3 AND w.disabled_at IS NULL \
         AND (d.lease_until IS NULL OR d.lease_until < $3) ORDER BY d.next_attempt_at, d.id LIMIT $4{lock}) RETURNING id"
    ))
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *c)
    .await?;
    let mut out = Vec::with_capacity(ids.len());
    for (id,) in &ids {
        let row = sqlx::query_as(
            "SELECT d.id, d.tenant, d.webhook_id, w.url, d.event_id, e.payload, e.created_at, d.attempts \
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id JOIN webhook_events e ON e.id = d.event_id WHERE d.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
        out.extend(row);
    }
    Ok(out)
}

/// Record one attempt and, if `owner` still holds the lease, the
/// delivery's new state. Returns false when the lease was lost (another
/// worker or a replay took the delivery over): only the attempt is kept.
#[allow(clippy::too_many_arguments)]
pub async fn finish_attempt(
    c: &mut AnyConnection,
    attempt_id: &str,
    d: &Claimed,
    at: i64,
    http_status: Option<i64>,
    error: Option<&str>,
    duration_ms: i64,
    response_body: Option<&str>,
    new_status: &str,
    next_attempt_at: i64,
    owner: &str,
) -> Result<bool, Error> {
    sqlx::query("INSERT INTO webhook_attempts (id, delivery_id, tenant, at, http_status, error, duration_ms, response_body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(attempt_id)
        .bind(&d.delivery_id)
        .bind(&d.tenant)
        .bind(at)
        .bind(http_status)
        .bind(error)
        .bind(duration_ms)
        .bind(response_body)
        .execute(&mut *c)
        .await?;
    let delivered_at = (new_status == "delivered").then_some(at);
    let r = sqlx::query("UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, lease_owner = NULL, lease_until = NULL, last_http_status = $3, last_error = $4, updated_at = $5, delivered_at = $6 WHERE id = $7 AND lease_owner = $8")
        .bind(new_status)
        .bind(next_attempt_at)
        .bind(http_status)
        .bind(error)
        .bind(at)
        .bind(delivered_at)
        .bind(&d.delivery_id)
        .bind(owner)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Put a delivery back in the queue, due now, with a fresh attempt budget.
/// False when it is being sent right now (a live lease).
pub async fn replay(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    now: i64,
) -> Result<bool, Error> {
    let r = sqlx::query("UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, lease_owner = NULL, lease_until = NULL, delivered_at = NULL, updated_at = $1 WHERE tenant = $2 AND id = $3 AND (lease_until IS NULL OR lease_until < $1)")
        .bind(now)
        .bind(tenant)
        .bind(id)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Drop the leases `owner` holds, or all leases (single-process SQLite start-up).
pub async fn release_leases(c: &mut AnyConnection, owner: Option<&str>) -> Result<u64, Error> {
    let r = match owner {
        Some(o) => sqlx::query("UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
            .bind(o)
            .execute(c)
            .await,
        None => sqlx::query("UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL")
            .execute(c)
            .await,
    }?;
    Ok(r.rows_affected())
}

#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub id: String,
    pub at: i64,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response_body: Option<String>,
}

pub async fn attempts(c: &mut AnyConnection, delivery_id: &str) -> Result<Vec<AttemptRow>, Error> {
    Ok(sqlx::query_as("SELECT id, at, http_status, error, duration_ms, response_body FROM webhook_attempts WHERE delivery_id = $1 ORDER BY at, id")
        .bind(delivery_id)
        .fetch_all(c)
        .await?)
}

/// Counts of deliveries per status (metrics, status page).
pub async fn count_by_status(c: &mut AnyConnection) -> Result<Vec<(String, i64)>, Error> {
    Ok(
        sqlx::query_as("SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status")
            .fetch_all(c)
            .await?,
    )
}
