//! The one writer of health: applies the status policy's transition to the
//! stored connection, audits a status change and writes its event.

use super::observation::Observation;
use super::policy::{observe, HealthState, Transition};
use crate::audit::record;
use crate::webhooks::emit;
use crate::Ctx;
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::Status;
use rekey_core::events::EventType;
use rekey_core::time::now_ms;
use rekey_core::Error;
use rekey_core::ErrorCode;
use rekey_store::connections::{self as conns, ConnectionRow};
use rekey_store::{Backend, WriteTx};
use serde_json::json;

impl HealthState {
    fn of(row: &ConnectionRow) -> HealthState {
        HealthState {
            status: row.status,
            last_ok_at: row.last_ok_at,
            first_failed_at: row.first_failed_at,
            consecutive_failures: row.consecutive_failures,
            last_error: row.error_context(),
        }
    }

    fn store_in(self, row: &mut ConnectionRow) {
        row.status = self.status;
        row.last_ok_at = self.last_ok_at;
        row.first_failed_at = self.first_failed_at;
        row.consecutive_failures = self.consecutive_failures;
        row.last_error = self.last_error.map(|e| e.to_column());
    }
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
    let now = now_ms();
    let Transition::Update {
        next,
        status_changed: changed,
        bump_version,
    } = observe(&HealthState::of(&row), obs, source, now)
    else {
        return Ok(None);
    };
    let mut r = row.clone();
    if checked {
        r.last_checked_at = Some(now);
    }
    next.store_in(&mut r);
    if bump_version {
        r.version += 1;
        r.updated_at = now;
    }
    // Only the health columns change: no rewrite of the whole row and its
    // tag and custody rows.
    if !conns::update_health(tx.conn(), &r, row.version).await? {
        return Err(Error::conflict(
            ErrorCode::VersionConflict,
            format!("connection {id} changed during the check"),
        ));
    }
    if changed {
        status_changed(tx, ctx, &r, row.status, source, obs.error_code()).await?;
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
    let error = r.error_context().map(|e| e.to_value());
    // `error` marks a connection that stopped working, not every move
    // away from `active` (a revocation or a disable is what was asked for).
    let outcome = if matches!(r.status, Status::Degraded | Status::NeedsReauth) {
        AuditOutcome::Error
    } else {
        AuditOutcome::Ok
    };
    record(
        tx,
        ctx,
        AuditAction::ConnectionStatusChanged,
        Some(&r.id),
        outcome,
        json!({"from": from.as_str(), "to": r.status.as_str(), "source": source, "error": code}),
    )
    .await?;
    emit(
        tx,
        &ctx.tenant,
        EventType::ConnectionStatusChanged,
        json!({
            "connection_id": r.id, "provider": r.provider, "display_name": r.display_name,
            "from": from.as_str(), "to": r.status.as_str(), "source": source,
            "error": error,
        }),
    )
    .await
}

/// A connection took a new credential (an OAuth reauthorization, an
/// accepted parked grant, replaced key material): the status change, if
/// any, then `connection.reauthorized` with how (`method`).
pub(crate) async fn reauthorized(
    tx: &mut WriteTx,
    ctx: &Ctx,
    r: &ConnectionRow,
    from: Status,
    source: &str,
    method: &str,
) -> Result<(), Error> {
    if r.status != from {
        status_changed(tx, ctx, r, from, source, None).await?;
    }
    // A campaign waiting for this reconnection looks again at once.
    rekey_store::campaigns::nudge(tx.conn(), &r.tenant, &r.id, now_ms()).await?;
    let mut data = crate::webhooks::connection_data(r);
    data["method"] = json!(method);
    emit(tx, &ctx.tenant, EventType::ConnectionReauthorized, data).await
}
