//! Connections no probe can check: why, and an operator's confirmation that
//! their data flows.
//!
//! Semantics (docs/health-and-webhooks.md): a check that finds no probe
//! records the reason (`health.unchecked`) and leaves the status alone. An
//! operator's confirmation moves `pending` to `active` (a status change,
//! audited and emitted with source `operator_confirmation`) and records who,
//! when and the note (`health.confirmation`); on an `active` connection it
//! only records the newer confirmation. It is refused where it would
//! contradict evidence or the operator: a connection a probe can check (run
//! the check), one whose last check or refresh failed (`degraded`,
//! `needs_reauth`), one out of service (disabled, revoked).

use crate::audit::record_ok;
use crate::connection_rows::not_found;
use crate::{Connection, Ctx, Rekey};
use rekey_api::ConfirmWorking;
use rekey_core::audit::AuditAction;
use rekey_core::connection::{self, ConnectionKind, Status};
use rekey_core::time::now_ms;
use rekey_core::ErrorCode;
use rekey_core::{ids, Error};
use rekey_store::connections::{self as conns, ConnectionRow};
use rekey_store::health_notes;
use rekey_store::Locked;
use serde_json::json;

impl Rekey {
    /// Why no probe can check `row`, or None when one can (or may: an OAuth
    /// grant of a provider with an identity endpoint is checked there).
    pub(crate) async fn unprobed_reason(
        &self,
        row: &ConnectionRow,
    ) -> Result<Option<String>, Error> {
        let notes = {
            let mut c = self.store().read().await?;
            health_notes::get(&mut c, &row.tenant, &row.id).await?
        };
        if let Some(why) = notes.and_then(|n| n.unchecked_reason) {
            return Ok(Some(why));
        }
        let Err(why) = self.probe_of(row) else {
            return Ok(None);
        };
        // Client credentials are checked by requesting a token.
        if row.kind == ConnectionKind::OAuth2ClientCredentials {
            return Ok(None);
        }
        if row.kind == ConnectionKind::OAuth2AuthorizationCode && self.may_have_identity(row) {
            return Ok(None);
        }
        Ok(Some(why))
    }

    /// `POST /connections/{id}/confirm-working`.
    pub async fn confirm_working(
        &self,
        ctx: &Ctx,
        id: &str,
        req: ConfirmWorking,
        if_match: Option<i64>,
    ) -> Result<Connection, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let note = connection::validate_note(req.note.as_deref())?;
        // Decided before the write transaction: it may read the integration.
        let row = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &ctx.tenant, &id)
                .await?
                .ok_or_else(|| not_found(&id))?
        };
        if self.unprobed_reason(&row).await?.is_none() {
            return Err(Error::conflict(
                ErrorCode::ProbeAvailable,
                format!(
                    "connection {id} is checked by a health probe; run a check (POST /api/v1/connections/{id}/check) instead of confirming"
                ),
            ));
        }
        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(&mut tx, Locked::Connection, &ctx.tenant, &id).await?;
        let mut row = conns::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        if let Some(v) = if_match.or(req.version) {
            if v != row.version {
                return Err(Error::conflict(
                    ErrorCode::VersionConflict,
                    format!(
                        "connection {id} is at version {}, not {v}; reload and retry",
                        row.version
                    ),
                ));
            }
        }
        let from = row.status;
        match from {
            Status::Pending | Status::Active => {}
            Status::Degraded | Status::NeedsReauth => {
                return Err(Error::conflict(
                    ErrorCode::ConfirmationRefused,
                    format!(
                        "connection {id} is `{from}`: its last check or refresh failed; fix that and check again instead of confirming"
                    ),
                ))
            }
            Status::Disabled
            | Status::Revoked
            | Status::RevokePending
            | Status::RevocationFailed => {
                return Err(Error::conflict(
                    ErrorCode::ConnectionUnusable,
                    format!("connection {id} is `{from}`; it cannot be confirmed"),
                ))
            }
        }
        let now = now_ms();
        if from == Status::Pending {
            let old = row.version;
            row.status = from.transition(Status::Active)?;
            row.version += 1;
            row.updated_at = now;
            if !conns::update_health(tx.conn(), &row, old).await? {
                return Err(Error::conflict(
                    ErrorCode::VersionConflict,
                    format!("connection {id} was changed concurrently; reload and retry"),
                ));
            }
        }
        health_notes::set_confirmed(
            tx.conn(),
            &ctx.tenant,
            &id,
            now,
            &ctx.actor,
            note.as_deref(),
        )
        .await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::ConnectionConfirmWorking,
            &id,
            json!({"from": from.as_str(), "to": row.status.as_str(), "note": note}),
        )
        .await?;
        if row.status != from {
            crate::status::status_changed(&mut tx, ctx, &row, from, "operator_confirmation", None)
                .await?;
        }
        let notes = health_notes::get(tx.conn(), &ctx.tenant, &id).await?;
        tx.commit().await?;
        Ok(Connection { row, notes })
    }
}
