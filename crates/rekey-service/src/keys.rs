//! KEK rotation: add a key, re-wrap every data key under it, drop keys that
//! nothing uses. Resumable: each secret row is re-wrapped in its own small
//! update (compare-and-swap on the old KEK id), and the old key stays in the
//! keyring until no row refers to it, so a crash at any point leaves every
//! secret readable and a rerun finishes the job.

use crate::audit::record;
use crate::{Ctx, Rekey};
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::Error;
use rekey_crypto::{Aad, KeyringSource};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct KekRotationReport {
    pub primary: String,
    /// True when this run finished an earlier, interrupted rotation instead of starting a new one.
    pub resumed: bool,
    pub rewrapped: u64,
    pub dropped: Vec<String>,
    /// Keys no longer used but supplied by the operator (master-key mode):
    /// remove them from `REKEY_PREVIOUS_MASTER_KEYS`.
    pub unused_previous: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct KeyStatus {
    pub primary: String,
    pub keys: Vec<(String, i64)>,
}

impl Rekey {
    pub async fn key_status(&self) -> Result<KeyStatus, Error> {
        let usage = {
            let mut c = self.store().read().await?;
            rekey_store::secrets::kek_usage(&mut c).await?
        };
        let kr = self.keyring()?;
        let keys = kr
            .ids()
            .into_iter()
            .map(|id| {
                let n = usage
                    .iter()
                    .find(|(k, _)| *k == id)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                (id, n)
            })
            .collect();
        Ok(KeyStatus {
            primary: kr.primary().id().to_string(),
            keys,
        })
    }

    /// Rotate the KEK. `progress(done, total)` is called after each batch.
    /// `abort_after` is a fault-injection hook for crash tests: the process
    /// aborts after that many re-wraps.
    pub async fn rotate_keks(
        &self,
        mut progress: impl FnMut(u64, u64),
        abort_after: Option<u64>,
    ) -> Result<KekRotationReport, Error> {
        let (primary, resumed) = {
            let mut kr = self
                .inner
                .keyring
                .write()
                .map_err(|_| Error::internal("keyring lock poisoned"))?;
            match kr.source().clone() {
                KeyringSource::File(_) | KeyringSource::Ephemeral => {
                    // Several keys in the file means an earlier run stopped
                    // before dropping the old one: finish it, don't add another.
                    let resumed = kr.ids().len() > 1;
                    if !resumed {
                        kr.add_generated();
                        kr.save().map_err(|e| Error::Unavailable(e.to_string()))?;
                    }
                    (kr.primary().id().to_string(), resumed)
                }
                // The operator supplies the new key; we only re-wrap.
                KeyringSource::MasterKey => (kr.primary().id().to_string(), false),
            }
        };
        let total: u64 = {
            let mut c = self.store().read().await?;
            rekey_store::secrets::kek_usage(&mut c)
                .await?
                .iter()
                .filter(|(k, _)| *k != primary)
                .map(|(_, n)| *n as u64)
                .sum()
        };
        let mut done = 0u64;
        progress(0, total);
        // One transaction per page: a crash loses at most the page in
        // flight (still wrapped by the old key, which stays in the keyring
        // until no row uses it), and a rerun picks it up.
        let mut after = rekey_store::secrets::SecretKey::default();
        loop {
            let limit = match abort_after {
                Some(n) => REWRAP_PAGE.min(n.saturating_sub(done).max(1)),
                None => REWRAP_PAGE,
            };
            let page = {
                let mut c = self.store().read().await?;
                rekey_store::secrets::not_wrapped_by(&mut c, &primary, &after, limit as i64).await?
            };
            let Some(last) = page.last() else { break };
            after = rekey_store::secrets::SecretKey {
                owner_kind: last.owner_kind.clone(),
                owner_id: last.owner_id.clone(),
                field: last.field.clone(),
            };
            let rewrapped = {
                let kr = self.keyring()?;
                page.into_iter()
                    .map(|row| rewrap_row(&kr, row))
                    .collect::<Result<Vec<_>, Error>>()?
            };
            let mut tx = self.store().begin_write().await?;
            done += rekey_store::secrets::rewrap_all(tx.conn(), &rewrapped).await?;
            tx.commit().await?;
            if abort_after.is_some_and(|n| done >= n) {
                eprintln!("fault injection: aborting after {done} re-wraps");
                std::process::abort();
            }
            progress(done, total);
        }
        // Drop what nothing uses any more.
        let usage = {
            let mut c = self.store().read().await?;
            rekey_store::secrets::kek_usage(&mut c).await?
        };
        let (dropped, unused_previous) = {
            let mut kr = self
                .inner
                .keyring
                .write()
                .map_err(|_| Error::internal("keyring lock poisoned"))?;
            let unused: Vec<String> = kr
                .ids()
                .into_iter()
                .filter(|id| *id != primary && !usage.iter().any(|(k, _)| k == id))
                .collect();
            if matches!(kr.source(), KeyringSource::MasterKey) {
                (Vec::new(), unused)
            } else {
                kr.retain(|id| !unused.iter().any(|u| u == id));
                kr.save().map_err(|e| Error::Unavailable(e.to_string()))?;
                (unused, Vec::new())
            }
        };
        let mut tx = self.store().begin_write().await?;
        record(
            &mut tx,
            &Ctx {
                tenant: "system".into(),
                actor: "cli".into(),
                request_id: None,
                source: None,
            },
            AuditAction::KeysRotate,
            Some(&primary),
            AuditOutcome::Ok,
            json!({"rewrapped": done, "dropped": dropped, "resumed": resumed}),
        )
        .await?;
        tx.commit().await?;
        Ok(KekRotationReport {
            primary,
            resumed,
            rewrapped: done,
            dropped,
            unused_previous,
        })
    }
}

/// Secrets re-wrapped per transaction by [`Rekey::rotate_keks`].
const REWRAP_PAGE: u64 = 1000;

/// `row` with its data key re-wrapped under the primary KEK, paired with
/// the KEK that wrapped it (the update's compare-and-swap).
fn rewrap_row(
    kr: &rekey_crypto::Keyring,
    row: rekey_store::secrets::SecretRow,
) -> Result<(rekey_store::secrets::SecretRow, String), Error> {
    let aad = Aad::new(
        &row.tenant,
        &row.owner_kind,
        &row.owner_id,
        &row.field,
        row.version,
    );
    let new = kr
        .rewrap(&aad, &crate::sealing::sealed_of(&row))
        .map_err(|e| {
            Error::DecryptionFailed(format!(
                "cannot re-wrap secret `{}` of {} {}: {e}",
                row.field, row.owner_kind, row.owner_id
            ))
        })?;
    let old_kek = row.kek_id.clone();
    let mut updated = row;
    updated.kek_id = new.kek_id;
    updated.wrapped_dek = new.wrapped_dek;
    Ok((updated, old_kek))
}
