//! The operator's part of a rotation: confirming a step done at the target
//! (with the new credential, for a guided rotation's `set`), and cancelling
//! a rotation while the current credential is still untouched.

use super::engine::system_ctx;
use super::{At, Confirmation, Instructions, Options, Rotate, Rotation, Rotator};
use crate::audit::record_ok;
use crate::connection_rows::not_found;
use crate::{Ctx, Rekey};
use rekey_core::audit::AuditAction;
use rekey_core::connection::validate_note;
use rekey_core::rotation::RotationState;
use rekey_core::time::now_ms;
use rekey_core::{Error, ErrorCode};
use rekey_store::credential_versions as versions;
use rekey_store::rotations as store;
use rekey_store::Locked;
use serde_json::{json, Value};

/// An operator's confirmation of the step a rotation waits for. No
/// `Debug`: `credentials` holds the new secret.
#[derive(Clone, Default)]
pub struct ConfirmRequest {
    /// The step confirmed done: `set` or `retired` (must be the awaited one).
    pub step: String,
    /// Evidence for the audit log (a ticket, what was checked).
    pub note: Option<String>,
    /// A guided rotation's `set`: the new credential made at the provider,
    /// in the shape of the connection's kind.
    pub credentials: Option<Value>,
}

fn not_awaiting(id: &str, r: &Rotation) -> Error {
    Error::conflict(
        ErrorCode::RotationNotAwaiting,
        match &r.awaiting {
            Some(a) => format!("rotation {id} waits for `{a}` to be confirmed"),
            None => format!(
                "rotation {id} is not waiting for a confirmation (it is at `{}`)",
                r.state
            ),
        },
    )
}

impl Rekey {
    /// Confirm the step a rotation waits for; the rotation then goes on
    /// (the caller drives it). Two confirmations of one step: the second
    /// gets 409 `rotation_not_awaiting`.
    pub async fn confirm_rotation(
        &self,
        ctx: &Ctx,
        id: &str,
        req: ConfirmRequest,
    ) -> Result<Rotation, Error> {
        let note = validate_note(req.note.as_deref())?;
        let r = self.get_rotation(&ctx.tenant, id).await?;
        let id = r.id.clone();
        let awaiting = match &r.awaiting {
            Some(a) if *a == req.step => a.clone(),
            _ => return Err(not_awaiting(&id, &r)),
        };
        let instructions: Instructions = r
            .instructions
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(Error::internal)?
            .unwrap_or_default();
        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(&mut tx, Locked::Connection, &ctx.tenant, &r.connection_id).await?;
        let row = rekey_store::connections::get(tx.conn(), &ctx.tenant, &r.connection_id)
            .await?
            .ok_or_else(|| not_found(&r.connection_id))?;
        let mut new_fingerprint = None;
        match (instructions.needs_credentials, req.credentials) {
            (true, None) => {
                return Err(Error::invalid(
                    ErrorCode::InvalidField,
                    "`credentials` is required: the new credential you made at the provider, in the connection's kind's fields",
                ))
            }
            (false, Some(_)) => {
                return Err(Error::invalid(
                    ErrorCode::InvalidField,
                    format!("`credentials` is not taken when confirming `{awaiting}`"),
                ))
            }
            (true, Some(creds)) => {
                let creds = match self.catalog().get(&row.provider) {
                    Some(p) => crate::connections::rules::apply_key_form(p, row.kind, creds)
                        .map_err(|p| p.to_error())?,
                    None => creds,
                };
                let parsed = self.parse_material(row.kind, creds)?;
                let all = versions::for_connection(tx.conn(), &ctx.tenant, &row.id).await?;
                let pending = all
                    .iter()
                    .find(|v| Some(&v.id) == r.pending_version_id.as_ref())
                    .cloned()
                    .ok_or_else(|| Error::internal("rotation without its pending version"))?;
                let filled = self
                    .fill_pending(&mut tx, row.kind, pending, &parsed.meta, &parsed.secrets)
                    .await?;
                let current = all
                    .iter()
                    .find(|v| v.label == rekey_core::versions::VersionLabel::Current);
                if current.is_some_and(|c| c.fingerprint == filled.fingerprint) {
                    return Err(Error::unprocessable(
                        ErrorCode::InvalidCredentials,
                        "`credentials` is the current credential: submit the new one made at the provider",
                    ));
                }
                new_fingerprint = Some(filled.fingerprint);
            }
            (false, None) => {}
        }
        let now = now_ms();
        let mut opts = Options::of(&r);
        opts.confirmed.push(Confirmation {
            step: awaiting.clone(),
            by: ctx.actor.clone(),
            at: now,
            note: note.clone(),
        });
        let mut next = r.clone();
        next.options = serde_json::to_string(&opts).map_err(Error::internal)?;
        next.awaiting = None;
        next.instructions = None;
        next.next_action = None;
        next.due_at = now;
        next.updated_at = now;
        if !store::advance_from(tx.conn(), &next, r.state, Some(&awaiting)).await? {
            let fresh = self.get_rotation(&ctx.tenant, &id).await?;
            return Err(not_awaiting(&id, &fresh));
        }
        record_ok(
            &mut tx,
            ctx,
            AuditAction::RotationConfirm,
            &r.connection_id,
            json!({"rotation": id, "step": awaiting, "note": note, "new_fingerprint": new_fingerprint}),
        )
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Stop a rotation before its new credential becomes current, leaving
    /// the current one as it was: at `created` (nothing done at the target
    /// yet, or the operator has not confirmed doing it), or at `set` where
    /// the old credential still works (what `set` made is removed again
    /// where rekey can). Later, 409 `rotation_not_cancellable`.
    pub async fn cancel_rotation(
        &self,
        ctx: &Ctx,
        id: &str,
        note: Option<&str>,
    ) -> Result<Rotation, Error> {
        let note = validate_note(note)?;
        let r = self.get_rotation(&ctx.tenant, id).await?;
        let id = r.id.clone();
        let opts = Options::of(&r);
        let rotator = Rotator::by_name(&r.rotator)
            .ok_or_else(|| Error::internal(format!("rotation {id}: unknown rotator")))?;
        // At `created` an automatic rotator may already have changed the
        // target (a `set` that ran but was not yet recorded, being
        // retried): only a rotation waiting for the operator's `set` is
        // known to have changed nothing.
        let cancellable = match r.state {
            RotationState::Created => r.awaiting.as_deref() == Some("set"),
            RotationState::Set => rotator.old_survives_set(&opts),
            _ => false,
        };
        if !cancellable {
            return Err(Error::conflict(
                ErrorCode::RotationNotCancellable,
                if r.state.is_finished() {
                    format!("rotation {id} has finished (`{}`)", r.state)
                } else if r.state == RotationState::Created {
                    format!(
                        "rotation {id} is running its `set` step at the target; let it finish, or cancel once it waits for you"
                    )
                } else {
                    format!(
                        "rotation {id} is at `{}`: the old credential no longer works or the new one is current; let it finish (or rotate again)",
                        r.state
                    )
                },
            ));
        }
        // Hold the lease so no worker runs a step at the target meanwhile.
        let owner = format!("{}:cancel", self.replica_id());
        let now = now_ms();
        let mut tx = self.store().begin_write().await?;
        let taken =
            store::take_lease(tx.conn(), &ctx.tenant, &id, &owner, now, now + 60_000).await?;
        tx.commit().await?;
        if !taken {
            return Err(Error::conflict(
                ErrorCode::RotationInProgress,
                format!("rotation {id} is running a step right now; try again in a few seconds"),
            ));
        }
        let result = self.cancel_leased(ctx, &r, rotator, &opts, note).await;
        self.release_rotation(&owner, &id).await?;
        result
    }

    async fn cancel_leased(
        &self,
        ctx: &Ctx,
        seen: &Rotation,
        rotator: Rotator,
        opts: &Options,
        note: Option<String>,
    ) -> Result<Rotation, Error> {
        let id = &seen.id;
        // Read again under the lease: a step may have finished meanwhile.
        let r = self.get_rotation(&ctx.tenant, id).await?;
        if r.state != seen.state || r.awaiting != seen.awaiting {
            return Err(Error::conflict(
                ErrorCode::RotationNotCancellable,
                format!(
                    "rotation {id} moved on to `{}` meanwhile; look again",
                    r.state
                ),
            ));
        }
        let (row, cur) = self
            .load_with_secrets(&ctx.tenant, &r.connection_id)
            .await?;
        let mut cleanup: Option<String> = None;
        if r.state == RotationState::Set {
            let current = super::Material {
                meta: serde_json::from_str(&row.credential_meta).unwrap_or_default(),
                secrets: cur,
            };
            let pending = match &r.pending_version_id {
                Some(v) => Some(self.pending_of(&r, v).await?.1),
                None => None,
            };
            if let Some(p) = pending {
                match rotator
                    .discard(
                        &At {
                            rk: self,
                            row: &row,
                            opts,
                        },
                        &current,
                        &p,
                    )
                    .await
                {
                    Ok(()) => {}
                    // What an operator made by hand is removed by hand: the
                    // rotation still ends, with that step as its next action.
                    Err(e) if e.code == "manual_cleanup" => {
                        cleanup = e.next_action.or(Some(e.message));
                    }
                    Err(e) => {
                        return Err(Error::conflict(
                            ErrorCode::RotationNotCancellable,
                            format!(
                                "the new credential could not be removed at the target ({}): {}",
                                e.message,
                                e.next_action.unwrap_or_default()
                            ),
                        ))
                    }
                }
            }
        }
        let now = now_ms();
        let mut next = r.clone();
        next.state = RotationState::RolledBack;
        next.awaiting = None;
        next.instructions = None;
        next.finished_at = Some(now);
        next.updated_at = now;
        next.next_action = Some(match &cleanup {
            Some(c) => format!(
                "cancelled by {}; the current credential is unchanged; remove the new one at the target: {c}",
                ctx.actor
            ),
            None => format!(
                "cancelled by {}; the current credential is unchanged",
                ctx.actor
            ),
        });
        let sys = system_ctx(&ctx.tenant);
        let mut tx = self.store().begin_write().await?;
        if !store::advance_from(tx.conn(), &next, r.state, r.awaiting.as_deref()).await? {
            return Err(Error::conflict(
                ErrorCode::RotationNotCancellable,
                format!("rotation {id} moved on meanwhile; look again"),
            ));
        }
        if let Some(p) = &r.pending_version_id {
            self.retire_version(&mut tx, &sys, &r.tenant, &r.connection_id, p)
                .await?;
        }
        record_ok(
            &mut tx,
            ctx,
            AuditAction::RotationCancel,
            &r.connection_id,
            json!({"rotation": id, "state": r.state.as_str(), "note": note}),
        )
        .await?;
        self.record_end(&mut tx, &sys, &next, &row, AuditAction::RotationRolledBack)
            .await?;
        tx.commit().await?;
        Ok(next)
    }
}
