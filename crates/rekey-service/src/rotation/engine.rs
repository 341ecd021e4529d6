//! Running a rotation's steps. A rotation is driven by whoever holds its
//! lease (the process that started it, or the background worker of any
//! replica once that lease lapses), one step at a time; each step's
//! outcome is written, with the rotation still in the state the step began
//! from, before the next step runs. A crash between a step's side effect
//! and that write runs the (idempotent) step again.

use super::{fault, rotation_data, At, Material, Options, Rotate, Rotation, Rotator, StepError};
use crate::audit::{record, record_ok};
use crate::connection_rows::{not_found, OWNER_KIND};
use crate::webhooks::emit;
use crate::{Ctx, Rekey};
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::events::EventType;
use rekey_core::rotation::RotationState;
use rekey_core::time::now_ms;
use rekey_core::{Error, ErrorCode};
use rekey_store::connections::{self as conn_store, ConnectionRow};
use rekey_store::credential_versions::{self as versions, VersionRow};
use rekey_store::rotations as store;
use rekey_store::{secrets, Locked, WriteTx};
use serde_json::{json, Value};
use std::time::Duration;

/// How long a worker holds a rotation before another may take it over
/// (renewed every third of it while a step runs).
pub(crate) const LEASE_MS: i64 = 15_000;
/// A step that cannot reach its target is tried this many times.
const MAX_ATTEMPTS: i64 = 8;

fn backoff_ms(attempts: i64) -> i64 {
    (5_000i64 << attempts.clamp(0, 7)).min(600_000)
}

pub(super) fn system_ctx(tenant: &str) -> Ctx {
    Ctx {
        tenant: tenant.to_string(),
        actor: "system:rotation".into(),
        request_id: None,
        source: None,
    }
}

/// What a step left behind.
enum Stepped {
    /// Moved on; try the next step now.
    Advanced,
    /// Nothing to do until `due_at` (the grace, a retry's backoff), or done.
    Wait,
}

impl Rekey {
    /// A worker pass: claim due rotations and drive each as far as it goes;
    /// true when a full batch was claimed (more may be waiting).
    pub async fn rotate_due(&self, limit: i64) -> Result<bool, Error> {
        let now = now_ms();
        let claimed = self
            .store()
            .claim(
                &store::DUE,
                store::claim_due,
                self.replica_id(),
                now,
                now + self.rotation_lease_ms(),
                limit,
            )
            .await?;
        for (tenant, id) in &claimed {
            if let Err(e) = self.drive_rotation(tenant, id).await {
                tracing::warn!(rotation = %id, error = %e, "rotation step failed to run");
            }
        }
        Ok(claimed.len() as i64 >= limit)
    }

    /// Run a rotation's steps as far as they go now: to the end, or until
    /// it waits (the grace before retirement, a retry's backoff). Returns
    /// the rotation as it stands; another process holding it is not an
    /// error (it is returned as found).
    pub async fn drive_rotation(&self, tenant: &str, id: &str) -> Result<Rotation, Error> {
        let owner = self.replica_id().to_string();
        loop {
            let now = now_ms();
            let mut tx = self.store().begin_write().await?;
            let taken = store::take_lease(
                tx.conn(),
                tenant,
                id,
                &owner,
                now,
                now + self.rotation_lease_ms(),
            )
            .await?;
            tx.commit().await?;
            let r = self.get_rotation(tenant, id).await?;
            if !taken || r.state.is_finished() || r.due_at > now || r.awaiting.is_some() {
                if taken {
                    self.release_rotation(&owner, id).await?;
                }
                return Ok(r);
            }
            // A step can outlast the lease (a provider slow to answer): keep
            // it while the step runs, so no other replica runs it at once.
            let stepped = {
                let step = self.step(&r);
                tokio::pin!(step);
                tokio::select! {
                    s = &mut step => s,
                    never = self.keep_lease(tenant, id, &owner) => match never {},
                }
            };
            match stepped? {
                Stepped::Advanced => continue,
                // Waiting (the grace, a backoff, the operator) or done:
                // let go now rather than after another read.
                Stepped::Wait => {
                    self.release_rotation(&owner, id).await?;
                    return self.get_rotation(tenant, id).await;
                }
            }
        }
    }

    /// Let go of `owner`'s lease on rotation `id` (no-op if another holds it).
    pub(super) async fn release_rotation(&self, owner: &str, id: &str) -> Result<(), Error> {
        let mut tx = self.store().begin_write().await?;
        store::release(tx.conn(), Some(owner), Some(id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Renew this replica's lease on a rotation every third of its length,
    /// for as long as it is polled. A lost lease is logged; the step's own
    /// write then finds the rotation moved and changes nothing.
    async fn keep_lease(&self, tenant: &str, id: &str, owner: &str) -> std::convert::Infallible {
        loop {
            let lease = self.rotation_lease_ms();
            tokio::time::sleep(Duration::from_millis(lease.max(3) as u64 / 3)).await;
            let renewed = async {
                let mut tx = self.store().begin_write().await?;
                let ok = store::renew_lease(tx.conn(), tenant, id, owner, now_ms() + lease).await?;
                tx.commit().await?;
                Ok::<_, Error>(ok)
            }
            .await;
            match renewed {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(rotation = %id, "rotation lease lost during a step");
                    return std::future::pending().await;
                }
                Err(e) => {
                    tracing::warn!(rotation = %id, error = %e, "could not renew a rotation lease")
                }
            }
        }
    }

    /// Run the step after `r.state` and write its outcome.
    async fn step(&self, r: &Rotation) -> Result<Stepped, Error> {
        let rotator = Rotator::by_name(&r.rotator).ok_or_else(|| {
            Error::internal(format!(
                "rotation {} names unknown rotator {}",
                r.id, r.rotator
            ))
        })?;
        let rot = &rotator;
        let opts: Options = serde_json::from_str(&r.options).map_err(Error::internal)?;
        let (row, cur_secrets) = self.load_with_secrets(&r.tenant, &r.connection_id).await?;
        let current = material(&row.credential_meta, cur_secrets);
        let pending = match &r.pending_version_id {
            Some(v) if r.state < RotationState::Promoted => Some(self.pending_of(r, v).await?),
            _ => None,
        };
        let at = At {
            rk: self,
            row: &row,
            opts: &opts,
        };
        let outcome = match (r.state, &pending) {
            (RotationState::Created, Some((v, p))) => {
                match rot.set(&at, &current, p).await {
                    Ok(made) => {
                        fault::after("set");
                        // The target made the material: it goes into the
                        // pending version with the move to `set`.
                        return self.advance(r, &row, made.map(|m| (v.clone(), m))).await;
                    }
                    Err(e) => Err(e),
                }
            }
            (RotationState::Set, Some((_, p))) => {
                rot.test(&at, p).await.map(|()| fault::after("tested"))
            }
            (RotationState::Tested, Some((v, _))) => {
                let keep = rot.old_survives_set(&opts);
                return self.promote(r, v.clone(), keep).await;
            }
            (RotationState::Promoted, _) => {
                let old = self.old_material(r).await?;
                rot.retire(&at, &old, &current)
                    .await
                    .map(|()| fault::after("retired"))
            }
            (state, _) => {
                return Err(Error::internal(format!(
                    "rotation {} at `{state}` has no pending version",
                    r.id
                )))
            }
        };
        match outcome {
            Ok(()) => self.advance(r, &row, None).await,
            Err(e) => {
                self.step_failed(r, &row, &current, pending.map(|p| p.1), e)
                    .await
            }
        }
    }

    /// The pending version and its material.
    pub(super) async fn pending_of(
        &self,
        r: &Rotation,
        version_id: &str,
    ) -> Result<(VersionRow, Material), Error> {
        let mut c = self.store().read().await?;
        let v = versions::for_connection(&mut c, &r.tenant, &r.connection_id)
            .await?
            .into_iter()
            .find(|v| v.id == version_id)
            .ok_or_else(|| Error::internal(format!("rotation {}: pending version gone", r.id)))?;
        let secrets = self.version_material(&mut c, &v).await?;
        let m = material(&v.meta, secrets);
        Ok((v, m))
    }

    /// What retirement needs of the old credential: its fields (the role
    /// name); its secrets only while still kept as `previous`.
    async fn old_material(&self, r: &Rotation) -> Result<Material, Error> {
        let mut c = self.store().read().await?;
        let v = match &r.old_version_id {
            Some(id) => versions::for_connection(&mut c, &r.tenant, &r.connection_id)
                .await?
                .into_iter()
                .find(|v| &v.id == id),
            None => None,
        };
        let Some(v) = v else {
            return Ok(material("{}", Default::default()));
        };
        let secrets = self.version_material(&mut c, &v).await.unwrap_or_default();
        Ok(material(&v.meta, secrets))
    }

    /// The step after `r.state` succeeded: write it, with the material the
    /// target made at `set` (sealed into the pending version) if any.
    async fn advance(
        &self,
        r: &Rotation,
        row: &ConnectionRow,
        made: Option<(VersionRow, Material)>,
    ) -> Result<Stepped, Error> {
        let Some(to) = r.state.next() else {
            return Ok(Stepped::Wait);
        };
        let now = now_ms();
        let mut next = r.clone();
        next.state = to;
        next.attempts = 0;
        next.last_error = None;
        next.next_action = None;
        next.updated_at = now;
        let ctx = system_ctx(&r.tenant);
        let mut tx = self.store().begin_write().await?;
        let mut retired = None;
        if to == RotationState::Retired {
            next.finished_at = Some(now);
            if let Some(old) = &r.old_version_id {
                self.retire_version(&mut tx, &ctx, &r.tenant, &r.connection_id, old)
                    .await?;
                // The old credential's revocation, recorded at promotion,
                // is complete: rekey tries it at the provider next.
                let seq = versions::for_connection(tx.conn(), &r.tenant, &r.connection_id)
                    .await?
                    .into_iter()
                    .find(|v| &v.id == old)
                    .map(|v| v.seq);
                // A guided rotation's operator confirmed the retire step.
                let operator = serde_json::from_str::<Options>(&r.options)
                    .ok()
                    .and_then(|o| o.confirmed.into_iter().rev().find(|c| c.step == "retired"))
                    .map(|c| crate::revocation::Step {
                        text: "Delete or disable the old credential at the provider \
                               (the rotation's retire step)."
                            .into(),
                        done_at: Some(c.at),
                        done_by: Some(c.by),
                        note: c.note,
                    });
                if let Some(seq) = seq {
                    retired = self
                        .rotation_retired(&mut tx, &ctx, &r.tenant, &r.connection_id, seq, operator)
                        .await?;
                }
            }
        }
        if let Some((v, m)) = made {
            self.fill_pending(&mut tx, row.kind, v, &m.meta, &m.secrets)
                .await?;
        }
        // Each step names the credentials it moves between (fingerprints):
        // the pending one and the old one (before promotion, the current).
        let all = versions::for_connection(tx.conn(), &r.tenant, &r.connection_id).await?;
        let fp = |id: Option<&String>| {
            all.iter()
                .find(|v| Some(&v.id) == id)
                .map(|v| v.fingerprint.clone())
        };
        let old = match &r.old_version_id {
            Some(id) => fp(Some(id)),
            None => all
                .iter()
                .find(|v| v.label == rekey_core::versions::VersionLabel::Current)
                .map(|v| v.fingerprint.clone()),
        };
        let details = json!({
            "new_fingerprint": fp(r.pending_version_id.as_ref()),
            "old_fingerprint": old,
        });
        if !store::advance(tx.conn(), &next, r.state).await? {
            // Another worker wrote it first (the transaction, with any
            // material, is dropped); read it again.
            return Ok(Stepped::Advanced);
        }
        self.record_step(&mut tx, &ctx, &next, row, details).await?;
        if to == RotationState::Retired {
            self.record_end(&mut tx, &ctx, &next, row, AuditAction::RotationSucceeded)
                .await?;
        }
        tx.commit().await?;
        if let Some(rev) = retired {
            self.verify_now(&ctx, rev).await;
        }
        Ok(Stepped::Advanced)
    }

    /// `tested` → `promoted`, in one transaction: the pending material goes
    /// under the connection as its current credential, the old one aside
    /// (`previous` for the grace where it still works, else retired), and
    /// the rotation waits out the grace before retirement.
    async fn promote(
        &self,
        r: &Rotation,
        pending: VersionRow,
        keep_old: bool,
    ) -> Result<Stepped, Error> {
        let ctx = system_ctx(&r.tenant);
        let id = &r.connection_id;
        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(&mut tx, Locked::Connection, &r.tenant, id).await?;
        let mut row = conn_store::get(tx.conn(), &r.tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let before = row.clone();
        let outgoing = {
            let rows = secrets::for_owner(tx.conn(), OWNER_KIND, id).await?;
            self.open_secrets(&before, &rows)?
        };
        let incoming = self.version_material(tx.conn(), &pending).await?;
        let now = now_ms();
        let old_version = row.version;
        row.credential_meta = pending.meta.clone();
        row.credential_version = pending.seq;
        row.version += 1;
        row.updated_at = now;
        row.rotated_at = Some(now);
        if !conn_store::update(tx.conn(), &row, old_version).await? {
            return Err(Error::conflict(
                ErrorCode::VersionConflict,
                format!("connection {id} changed during promotion"),
            ));
        }
        self.write_secrets(&mut tx, &row, &incoming).await?;
        // The outgoing credential's revocation, with a sealed copy to try
        // at the provider once the rotation retires it.
        self.record_revocation(
            &mut tx,
            &ctx,
            &before,
            &outgoing,
            rekey_core::revocation::RevocationMethod::Rotation,
            &[],
        )
        .await?;
        let grace = Duration::from_millis(r.grace_ms.max(0) as u64);
        let shift = self
            .promote_pending(&mut tx, &ctx, &before, &outgoing, pending, grace, keep_old)
            .await?;
        conn_store::schedule_check(tx.conn(), &r.tenant, id, now, None).await?;
        let mut next = r.clone();
        next.state = RotationState::Promoted;
        next.old_version_id = shift.old.as_ref().map(|v| v.id.clone());
        next.attempts = 0;
        next.last_error = None;
        next.next_action = None;
        next.updated_at = now;
        // Retire once the grace is over (at once where the old credential
        // died at `set`).
        next.due_at = if keep_old { now + r.grace_ms } else { now };
        if !store::advance(tx.conn(), &next, RotationState::Tested).await? {
            return Ok(Stepped::Advanced);
        }
        self.record_step(&mut tx, &ctx, &next, &row, shift.audit_details())
            .await?;
        tx.commit().await?;
        fault::after("promoted");
        Ok(Stepped::Advanced)
    }

    /// A step failed: try again later while that may help, else stop —
    /// rolled back where nothing current was touched, failed otherwise.
    async fn step_failed(
        &self,
        r: &Rotation,
        row: &ConnectionRow,
        current: &Material,
        pending: Option<Material>,
        e: StepError,
    ) -> Result<Stepped, Error> {
        if let Some(i) = e.operator {
            return self.await_operator(r, row, *i).await;
        }
        let now = now_ms();
        let mut next = r.clone();
        next.attempts += 1;
        next.updated_at = now;
        next.last_error = Some(
            json!({
                "code": e.code, "message": e.message, "step": r.state.next().map(|s| s.as_str()),
                "at": rekey_core::time::ms_to_rfc3339(now), "attempts": next.attempts,
            })
            .to_string(),
        );
        let ctx = system_ctx(&r.tenant);
        let retry = e.retry && next.attempts < MAX_ATTEMPTS;
        let opts: Options = serde_json::from_str(&r.options).map_err(Error::internal)?;
        let rotator = Rotator::by_name(&r.rotator);
        // Undoing is safe while the current credential is untouched: before
        // `set` succeeded, or (two roles, AWS keys) before promotion, once
        // what `set` made on its own at the target is removed again.
        let mut undo = r.state == RotationState::Created
            || (r.state == RotationState::Set
                && rotator.as_ref().is_some_and(|x| x.old_survives_set(&opts)));
        // A database password is replaced in place, and a `set` that
        // failed may still have taken (its answer lost, or a crash before
        // the move to `set` was written, then a target that stayed out of
        // reach): before the new password is thrown away, the target is
        // asked. The new one refused: the current is untouched and undoing
        // is safe. The new one taken and the current refused: the set took
        // and the rotation goes on. Anything rekey cannot tell apart (out
        // of reach, another error, both taken): nothing is undone and the
        // pending version is kept, except that both taken means the current
        // one still works, so undoing is safe then too.
        if !retry && undo && r.state == RotationState::Created {
            if let (Some(x @ Rotator::Database(_)), Some(p)) = (&rotator, &pending) {
                if !x.old_survives_set(&opts) {
                    let at = At {
                        rk: self,
                        row,
                        opts: &opts,
                    };
                    match takes(x.test(&at, p).await) {
                        Some(false) => {}
                        None => undo = false,
                        Some(true) => match takes(x.test(&at, current).await) {
                            Some(false) => return self.advance(r, row, None).await,
                            Some(true) => {}
                            None => undo = false,
                        },
                    }
                }
            }
        }
        let mut discard_failed = None;
        if !retry && undo && r.state == RotationState::Set {
            if let (Some(x), Some(p)) = (&rotator, &pending) {
                let at = At {
                    rk: self,
                    row,
                    opts: &opts,
                };
                if let Err(d) = x.discard(&at, current, p).await {
                    undo = false;
                    discard_failed = Some(d);
                }
            }
        }
        let mut tx = self.store().begin_write().await?;
        if retry {
            next.due_at = now + backoff_ms(next.attempts);
            next.next_action = Some("rekey tries again by itself".into());
            if store::advance(tx.conn(), &next, r.state).await? {
                tx.commit().await?;
            }
            return Ok(Stepped::Wait);
        }
        next.finished_at = Some(now);
        if undo {
            next.state = RotationState::RolledBack;
            next.next_action = e.next_action.clone().or(Some(
                "the current credential is unchanged; fix the cause and rotate again".into(),
            ));
            if let Some(p) = &r.pending_version_id {
                self.retire_version(&mut tx, &ctx, &r.tenant, &r.connection_id, p)
                    .await?;
            }
        } else {
            next.state = RotationState::Failed;
            next.next_action = Some(match r.state {
                RotationState::Promoted => format!(
                    "the new credential is current and works; disable the old one at the target by hand ({})",
                    e.next_action.as_deref().unwrap_or("see the error")
                ),
                _ if discard_failed.is_some() => format!(
                    "the current credential is unchanged, but the new one could not be removed at the target ({}); {}",
                    discard_failed.as_ref().map(|d| d.message.as_str()).unwrap_or_default(),
                    discard_failed
                        .as_ref()
                        .and_then(|d| d.next_action.as_deref())
                        .unwrap_or("remove it there by hand (its fingerprint is in the pending version)")
                ),
                _ => format!(
                    "the target may already use the new secret (kept as the pending version); {}",
                    e.next_action.as_deref().unwrap_or("check the target and replace the credential")
                ),
            });
        }
        if !store::advance(tx.conn(), &next, r.state).await? {
            return Ok(Stepped::Advanced);
        }
        let action = if undo {
            AuditAction::RotationRolledBack
        } else {
            AuditAction::RotationFailed
        };
        self.record_end(&mut tx, &ctx, &next, row, action).await?;
        tx.commit().await?;
        Ok(Stepped::Wait)
    }

    /// The step is the operator's: the rotation waits (workers skip it)
    /// with the instructions until they confirm it done or cancel.
    async fn await_operator(
        &self,
        r: &Rotation,
        row: &ConnectionRow,
        i: super::Instructions,
    ) -> Result<Stepped, Error> {
        let now = now_ms();
        let mut next = r.clone();
        next.awaiting = Some(i.step.clone());
        next.instructions = Some(serde_json::to_string(&i).map_err(Error::internal)?);
        next.next_action = Some(i.summary.clone());
        next.last_error = None;
        next.attempts = 0;
        next.updated_at = now;
        let ctx = system_ctx(&r.tenant);
        let mut tx = self.store().begin_write().await?;
        if !store::advance(tx.conn(), &next, r.state).await? {
            return Ok(Stepped::Advanced);
        }
        record_ok(
            &mut tx,
            &ctx,
            AuditAction::RotationAwaitingOperator,
            &r.connection_id,
            json!({"rotation": r.id, "state": r.state.as_str(), "awaiting": i.step}),
        )
        .await?;
        let mut data = rotation_data(&next, row);
        if let Some(o) = data.as_object_mut() {
            o.insert("awaiting".into(), json!(i.step));
            o.insert("next_action".into(), json!(i.summary));
        }
        emit(
            &mut tx,
            &r.tenant,
            EventType::RotationAwaitingOperator,
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(Stepped::Wait)
    }

    async fn record_step(
        &self,
        tx: &mut WriteTx,
        ctx: &Ctx,
        r: &Rotation,
        row: &ConnectionRow,
        details: Value,
    ) -> Result<(), Error> {
        record_ok(
            tx,
            ctx,
            AuditAction::RotationStep,
            &r.connection_id,
            json!({"rotation": r.id, "state": r.state.as_str(), "versions": details}),
        )
        .await?;
        emit(
            tx,
            &r.tenant,
            EventType::RotationStep,
            rotation_data(r, row),
        )
        .await
    }

    pub(super) async fn record_end(
        &self,
        tx: &mut WriteTx,
        ctx: &Ctx,
        r: &Rotation,
        row: &ConnectionRow,
        action: AuditAction,
    ) -> Result<(), Error> {
        let ok = action == AuditAction::RotationSucceeded;
        record(
            tx,
            ctx,
            action,
            Some(&r.connection_id),
            if ok { AuditOutcome::Ok } else { AuditOutcome::Error },
            json!({
                "rotation": r.id, "state": r.state.as_str(),
                "error": r.last_error.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()),
                "next_action": r.next_action,
            }),
        )
        .await?;
        let event = if ok {
            EventType::RotationSucceeded
        } else {
            EventType::RotationFailed
        };
        let mut data = rotation_data(r, row);
        if let (Some(o), Some(n)) = (data.as_object_mut(), &r.next_action) {
            o.insert("next_action".into(), json!(n));
        }
        emit(tx, &r.tenant, event, data).await
    }
}

fn material(
    meta: &str,
    secrets: std::collections::BTreeMap<String, rekey_core::SecretString>,
) -> Material {
    Material {
        meta: serde_json::from_str(meta).unwrap_or_default(),
        secrets,
    }
}

/// Whether a database's answer to a login says it takes the password:
/// None when it says neither (out of reach, another error).
fn takes(answer: Result<(), StepError>) -> Option<bool> {
    match answer {
        Ok(()) => Some(true),
        Err(e) if e.code == crate::health::LOGGED_IN_QUERY_FAILED => Some(true),
        Err(e) if e.code == "auth_rejected" => Some(false),
        Err(_) => None,
    }
}
