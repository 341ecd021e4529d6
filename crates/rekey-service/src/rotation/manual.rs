//! The guided rotation, for every static kind rekey has no rotator for:
//! the operator makes the new credential at the provider (by the catalog's
//! runbook) and submits it with the confirmation of `set`; rekey tests it
//! with the connection's probe, promotes it, and waits for the operator to
//! confirm the old one revoked (unless the provider killed it at `set`).

use super::{At, Instructions, Material, Options, Rotate, StepError};
use crate::Rekey;
use rekey_core::rotation::RotationState;
use rekey_core::Error;
use rekey_store::connections::ConnectionRow;

pub(crate) struct Manual;

impl Rotate for Manual {
    async fn prepare(
        &self,
        rk: &Rekey,
        row: &ConnectionRow,
        _current: &Material,
        opts: &mut Options,
    ) -> Result<(), Error> {
        opts.old_dies_at_set = rk
            .catalog()
            .get(&row.provider)
            .and_then(|p| p.rotate_for(row.kind.as_str()).invalidates_old_immediately)
            .unwrap_or(false);
        Ok(())
    }

    /// Nothing yet: the operator's confirmation of `set` brings it.
    fn generate(&self, current: &Material, _opts: &Options) -> Result<Material, Error> {
        Ok(Material {
            meta: current.meta.clone(),
            secrets: Default::default(),
        })
    }

    async fn set(
        &self,
        at: &At<'_>,
        _current: &Material,
        _pending: &Material,
    ) -> Result<Option<Material>, StepError> {
        let At { rk, row, opts } = *at;
        if opts.is_confirmed(RotationState::Set) {
            return Ok(None);
        }
        let (name, steps) = runbook(rk, row, false);
        let then = if opts.old_dies_at_set {
            " The old credential stops working once the new one is made: submit it at once."
        } else {
            " Leave the old credential in place until rekey asks you to revoke it."
        };
        Err(StepError::operator(Instructions {
            step: RotationState::Set.as_str().into(),
            summary: format!(
                "Make a new {} credential at {name}, then confirm this step with it.{then} \
                 The provider's runbook below is for reference: skip its steps that update \
                 rekey or remove the old credential; this rotation does those (it asks you to \
                 revoke the old one at its retire step).",
                row.kind
            ),
            steps,
            statements: vec![],
            needs_credentials: true,
        }))
    }

    /// The operator made the new credential; rekey cannot remove it.
    async fn discard(
        &self,
        at: &At<'_>,
        _current: &Material,
        _pending: &Material,
    ) -> Result<(), StepError> {
        let At { opts, .. } = *at;
        if !opts.is_confirmed(RotationState::Set) {
            return Ok(());
        }
        Err(StepError::permanent(
            "manual_cleanup",
            "rekey cannot remove a credential made by hand",
            "revoke the new credential at the provider",
        ))
    }

    async fn test(&self, at: &At<'_>, pending: &Material) -> Result<(), StepError> {
        let At { rk, row, .. } = *at;
        probe_pending(rk, row, pending).await
    }

    async fn retire(
        &self,
        at: &At<'_>,
        _old: &Material,
        _current: &Material,
    ) -> Result<(), StepError> {
        let At { rk, row, opts } = *at;
        if opts.old_dies_at_set || opts.is_confirmed(RotationState::Retired) {
            return Ok(());
        }
        let (name, steps) = runbook(rk, row, true);
        Err(StepError::operator(Instructions {
            step: RotationState::Retired.as_str().into(),
            summary: format!(
                "The new credential is current. Revoke the old {} credential at {name}, then confirm this step.",
                row.kind
            ),
            steps,
            statements: vec![],
            needs_credentials: false,
        }))
    }

    fn old_survives_set(&self, opts: &Options) -> bool {
        !opts.old_dies_at_set
    }
}

/// The provider's name and its catalog steps: the rotation runbook, or
/// (`revoke`) the revocation one.
fn runbook(rk: &Rekey, row: &ConnectionRow, revoke: bool) -> (String, Vec<String>) {
    match rk.catalog().get(&row.provider) {
        Some(p) => {
            let steps = if revoke {
                p.revoke_for(row.kind.as_str()).operator_steps()
            } else {
                p.rotate_for(row.kind.as_str()).steps.clone()
            };
            (p.display_name.clone(), steps)
        }
        None => (row.provider.clone(), vec![]),
    }
}

/// The new material works at the provider, by the connection's probe.
/// Without a probe for it there is nothing to test with: that passes (the
/// operator vouched for it with the confirmation).
pub(super) async fn probe_pending(
    rk: &Rekey,
    row: &ConnectionRow,
    pending: &Material,
) -> Result<(), StepError> {
    let mut r = row.clone();
    r.credential_meta = serde_json::Value::Object(pending.meta.clone()).to_string();
    match rk.probe_with(&r, pending.secrets.clone()).await {
        Ok(o) if o.outcome == crate::status::Outcome::Ok => Ok(()),
        Ok(o) => Err(StepError::from_probe(&o)),
        Err(why) => {
            tracing::info!(connection = %row.id, %why, "rotation: no probe for the new credential; untested");
            Ok(())
        }
    }
}
