//! Revocations, one credential each. Revoking a connection records which
//! credential went (its fingerprint and a sealed copy of its material,
//! owner kind `revocation`), how (at the provider, or by an operator's
//! runbook confirmed step by step), and then what the provider answered
//! when rekey tried the old credential (`verify.rs`). The record is apart
//! from the connection: a new credential on the connection never closes
//! the old one's revocation.

mod verify;

use crate::audit::record_ok;
use crate::{Ctx, Rekey};
use rekey_core::audit::AuditAction;
use rekey_core::revocation::{RevocationMethod, RevocationState};
use rekey_core::time::now_ms;
use rekey_core::versions::VersionLabel;
use rekey_core::{ids, Error, ErrorCode, SecretString};
use rekey_crypto::Aad;
use rekey_store::connections::ConnectionRow;
use rekey_store::revocations::{self as store, RevocationRow};
use rekey_store::{secrets, WriteTx};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

pub use verify::{Check, VERIFY_BATCH};

pub(crate) const OWNER_KIND: &str = "revocation";

/// A credential just revoked is verified by the request that revoked it
/// (`verify_now`); the worker takes it only if that has not happened this
/// long after (a crash, an error), so the two rarely race for it.
const WORKER_DELAY_MS: i64 = 5_000;

/// A grant switch's old grant is revoked at the provider after the switch
/// commits: it is verified this long after, well past that call's timeout.
const GRANT_SWITCH_VERIFY_DELAY_MS: i64 = 60_000;

/// One runbook step of a manual revocation, and who confirmed it done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Step {
    pub text: String,
    #[serde(default)]
    pub done_at: Option<i64>,
    #[serde(default)]
    pub done_by: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// A revocation as the use cases return it: the row with its steps and
/// evidence read.
#[derive(Debug, Clone)]
pub struct RevocationRecord {
    pub row: RevocationRow,
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
}

impl From<RevocationRow> for RevocationRecord {
    fn from(row: RevocationRow) -> RevocationRecord {
        RevocationRecord {
            steps: serde_json::from_str(&row.steps).unwrap_or_default(),
            checks: row
                .evidence
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok())
                .unwrap_or_default(),
            row,
        }
    }
}

fn aad(tenant: &str, id: &str, field: &str, version: i64) -> Aad {
    Aad::new(tenant, OWNER_KIND, id, field, version)
}

/// What decides where an OAuth app's tokens go and whose they are: its
/// provider, client id, parameters and endpoint overrides (JSON with
/// sorted keys, so equal means same). Another client id could be told
/// `invalid_grant` for a token that is alive for its own client.
pub(crate) fn oauth_target_of(i: &rekey_store::integrations::IntegrationRow) -> String {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_default();
    json!({"provider": i.provider, "client_id": i.client_id, "params": parse(&i.params),
           "endpoints": parse(&i.endpoints)})
    .to_string()
}

fn steps_json(steps: &[Step]) -> Result<String, Error> {
    serde_json::to_string(steps).map_err(Error::internal)
}

impl Rekey {
    /// Record, inside `tx`, the revocation of `row`'s current credential
    /// (`material`): done at the provider (verification due at once) or
    /// `open` with the runbook's `steps` for an operator.
    pub(crate) async fn record_revocation(
        &self,
        tx: &mut WriteTx,
        ctx: &Ctx,
        row: &ConnectionRow,
        material: &BTreeMap<String, SecretString>,
        method: RevocationMethod,
        steps: &[String],
    ) -> Result<RevocationRow, Error> {
        let now = now_ms();
        let fingerprint = rekey_store::credential_versions::with_label(
            tx.conn(),
            &row.tenant,
            &row.id,
            VersionLabel::Current,
        )
        .await?
        .map(|v| v.fingerprint);
        // A manual revocation always has a step to confirm (a catalog entry
        // whose API revocation failed may list none), so it cannot count as
        // done before an operator says so.
        let default_step = ["Revoke the credential at the provider.".to_string()];
        let steps = match method {
            RevocationMethod::Manual if steps.is_empty() => &default_step[..],
            _ => steps,
        };
        // A rotation's old credential is revoked when the rotation retires
        // it (`rotation_retired`), not when it is recorded at promotion.
        let done = method == RevocationMethod::Provider;
        let oauth_target = match row.integration_id() {
            Some(iid) if !row.kind.is_static() => {
                rekey_store::integrations::get(tx.conn(), &row.tenant, &iid)
                    .await?
                    .map(|i| oauth_target_of(&i))
            }
            _ => None,
        };
        let r = RevocationRow {
            id: ids::new_id(ids::REVOCATION),
            tenant: row.tenant.clone(),
            connection_id: row.id.clone(),
            credential_version: row.credential_version,
            kind: row.kind.as_str().to_string(),
            meta: row.credential_meta.clone(),
            fingerprint,
            scopes: row.scopes.clone(),
            params: Some(row.params.clone()),
            probe_url: row.probe_url.clone(),
            oauth_target,
            method,
            state: if done {
                RevocationState::Revoked
            } else {
                RevocationState::Open
            },
            steps: steps_json(
                &steps
                    .iter()
                    .map(|t| Step {
                        text: t.clone(),
                        done_at: None,
                        done_by: None,
                        note: None,
                    })
                    .collect::<Vec<_>>(),
            )?,
            requested_at: now,
            requested_by: ctx.actor.clone(),
            revoked_at: done.then_some(now),
            revoked_by: done.then(|| ctx.actor.clone()),
            verdict: None,
            evidence: None,
            verified_at: None,
            verify_due_at: done.then_some(now + WORKER_DELAY_MS),
            verify_attempts: 0,
            lease_owner: None,
            lease_until: None,
        };
        store::insert(tx.conn(), &r).await?;
        let sealed: Vec<_> = {
            let kr = self.keyring()?;
            material
                .iter()
                .map(|(f, v)| {
                    crate::sealing::seal_row(
                        &kr,
                        &aad(&r.tenant, &r.id, f, r.credential_version),
                        v,
                    )
                })
                .collect()
        };
        for s in &sealed {
            secrets::insert(tx.conn(), s).await?;
        }
        Ok(r)
    }

    /// Record, inside a grant switch's transaction (a reauthorization, an
    /// accepted parked grant), the revocation of the grant `before` held:
    /// `old`, its tokens (none when that grant was already revoked), when
    /// `at_provider` (the app has a revocation endpoint rekey calls; where
    /// it has none nothing is recorded, as nothing is done). The provider
    /// is asked after the commit; where that call fails, or never happens
    /// (a crash in between), the record still holds a sealed copy, and
    /// verification tries the old tokens and raises `still_accepted`
    /// instead of leaving a live grant untracked. Verification waits
    /// [`GRANT_SWITCH_VERIFY_DELAY_MS`], past the provider call's timeout,
    /// so that it never tries the tokens before the call was made. Nothing
    /// is recorded twice for one credential version.
    pub(crate) async fn record_grant_switch(
        &self,
        tx: &mut WriteTx,
        ctx: &Ctx,
        before: &ConnectionRow,
        old: &[(&'static str, SecretString)],
        at_provider: bool,
    ) -> Result<(), Error> {
        if old.is_empty() || !at_provider {
            return Ok(());
        }
        let recorded = store::for_connection(tx.conn(), &before.tenant, &before.id)
            .await?
            .iter()
            .any(|r| r.credential_version == before.credential_version);
        if recorded {
            return Ok(());
        }
        let material = old
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        let mut r = self
            .record_revocation(tx, ctx, before, &material, RevocationMethod::Provider, &[])
            .await?;
        r.verify_due_at = Some(now_ms() + GRANT_SWITCH_VERIFY_DELAY_MS);
        store::update(tx.conn(), &r).await
    }

    /// The old material kept for verification, opened.
    pub(crate) async fn revocation_material(
        &self,
        r: &RevocationRow,
    ) -> Result<BTreeMap<String, SecretString>, Error> {
        let rows = {
            let mut c = self.store().read().await?;
            secrets::for_owner(&mut c, OWNER_KIND, &r.id).await?
        };
        crate::sealing::open_all(
            &*self.keyring()?,
            &rows,
            &format_args!("revocation {}", r.id),
            |f| aad(&r.tenant, &r.id, f, r.credential_version),
        )
    }

    /// `GET /connections/{id}/revocations`: newest first.
    pub async fn revocations(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Vec<RevocationRecord>, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let mut c = self.store().read().await?;
        rekey_store::connections::get(&mut c, tenant, &id)
            .await?
            .ok_or_else(|| crate::connection_rows::not_found(&id))?;
        Ok(store::for_connection(&mut c, tenant, &id)
            .await?
            .into_iter()
            .map(RevocationRecord::from)
            .collect())
    }

    /// Confirm runbook steps of the connection's open revocation done at
    /// the provider: `step` (1-based) alone, or every step left. When none
    /// is left the credential counts as revoked and its verification is
    /// due at once. Returns the revocation and whether it is now complete.
    pub(crate) async fn confirm_steps(
        &self,
        tx: &mut WriteTx,
        ctx: &Ctx,
        open: RevocationRow,
        step: Option<u32>,
        note: Option<&str>,
    ) -> Result<RevocationRow, Error> {
        let mut r = open;
        let mut steps: Vec<Step> = serde_json::from_str(&r.steps).unwrap_or_default();
        let now = now_ms();
        let mark = |s: &mut Step| {
            s.done_at = Some(now);
            s.done_by = Some(ctx.actor.clone());
            s.note = note.map(str::to_string);
        };
        let confirmed: Vec<usize> = match step {
            Some(n) => {
                let i = (n as usize).checked_sub(1).filter(|i| *i < steps.len());
                let Some(i) = i else {
                    return Err(Error::invalid(
                        ErrorCode::InvalidStep,
                        format!(
                            "`step` must be between 1 and {} (the runbook's steps)",
                            steps.len()
                        ),
                    ));
                };
                if steps[i].done_at.is_some() {
                    return Err(Error::conflict(
                        ErrorCode::StepAlreadyConfirmed,
                        format!("step {n} was already confirmed"),
                    ));
                }
                mark(&mut steps[i]);
                vec![n as usize]
            }
            None => steps
                .iter_mut()
                .enumerate()
                .filter(|(_, s)| s.done_at.is_none())
                .map(|(i, s)| {
                    mark(s);
                    i + 1
                })
                .collect(),
        };
        let complete = steps.iter().all(|s| s.done_at.is_some());
        r.steps = steps_json(&steps)?;
        if complete {
            r.state = RevocationState::Revoked;
            r.revoked_at = Some(now);
            r.revoked_by = Some(ctx.actor.clone());
            r.verify_due_at = Some(now + WORKER_DELAY_MS);
        }
        store::update(tx.conn(), &r).await?;
        rekey_store::campaigns::nudge(tx.conn(), &r.tenant, &r.connection_id, now_ms()).await?;
        record_ok(
            tx,
            ctx,
            AuditAction::RevocationStepConfirmed,
            &r.connection_id,
            json!({"revocation": r.id, "steps": confirmed, "note": note, "complete": complete,
                   "fingerprint": r.fingerprint}),
        )
        .await?;
        Ok(r)
    }

    /// The connection's open manual revocation (runbook steps left), if any.
    pub(crate) async fn open_revocation(
        &self,
        tx: &mut WriteTx,
        tenant: &str,
        connection_id: &str,
    ) -> Result<Option<RevocationRow>, Error> {
        Ok(store::for_connection(tx.conn(), tenant, connection_id)
            .await?
            .into_iter()
            .find(|r| r.state == RevocationState::Open && r.method == RevocationMethod::Manual))
    }

    /// A rotation retired credential version `seq` of the connection: its
    /// revocation (recorded open at promotion) counts as revoked now, and
    /// its verification is due at once. None when there is none to close.
    /// `operator`: who confirmed the retire step of a guided rotation, when,
    /// and the note; kept as the revocation's one step.
    pub(crate) async fn rotation_retired(
        &self,
        tx: &mut WriteTx,
        ctx: &Ctx,
        tenant: &str,
        connection_id: &str,
        seq: i64,
        operator: Option<Step>,
    ) -> Result<Option<RevocationRow>, Error> {
        let open = store::for_connection(tx.conn(), tenant, connection_id)
            .await?
            .into_iter()
            .find(|r| {
                r.method == RevocationMethod::Rotation
                    && r.state == RevocationState::Open
                    && r.credential_version == seq
            });
        let Some(mut r) = open else { return Ok(None) };
        let now = now_ms();
        r.state = RevocationState::Revoked;
        r.revoked_at = Some(now);
        r.revoked_by = Some(ctx.actor.clone());
        if let Some(step) = operator {
            r.revoked_by = step.done_by.clone();
            r.steps = steps_json(&[step])?;
        }
        r.verify_due_at = Some(now + WORKER_DELAY_MS);
        store::update(tx.conn(), &r).await?;
        rekey_store::campaigns::nudge(tx.conn(), &r.tenant, &r.connection_id, now_ms()).await?;
        Ok(Some(r))
    }
}
