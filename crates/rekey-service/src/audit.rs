use crate::{Ctx, Rekey};
use rekey_api::AuditQuery;
use rekey_core::audit::{AuditAction, AuditEntry, AuditOutcome, ChainedEntry, Verifier};
use rekey_core::{ids, Error};
use rekey_store::audit::AuditFilter;
use rekey_store::WriteTx;
use serde_json::Value;

/// Record `action` inside `tx`. `details` must never hold secret values.
pub(crate) async fn record(
    tx: &mut WriteTx,
    ctx: &Ctx,
    action: AuditAction,
    target: Option<&str>,
    outcome: AuditOutcome,
    details: Value,
) -> Result<(), Error> {
    let entry = entry(ctx, action, target, outcome, details);
    let backend = tx.backend();
    rekey_store::audit::append(tx.conn(), backend, entry).await?;
    Ok(())
}

/// [`record`] a change to `target` that was made.
pub(crate) async fn record_ok(
    tx: &mut WriteTx,
    ctx: &Ctx,
    action: AuditAction,
    target: &str,
    details: Value,
) -> Result<(), Error> {
    record(tx, ctx, action, Some(target), AuditOutcome::Ok, details).await
}

/// The entry for `action` by the caller of `ctx` (its `seq` and hashes are
/// the store's to set).
pub(crate) fn entry(
    ctx: &Ctx,
    action: AuditAction,
    target: Option<&str>,
    outcome: AuditOutcome,
    details: Value,
) -> AuditEntry {
    AuditEntry {
        seq: 0,
        id: ids::new_id(ids::AUDIT),
        at: rekey_core::time::now_ms(),
        tenant: ctx.tenant.clone(),
        actor: ctx.actor.clone(),
        action: action.as_str().to_string(),
        target: target.map(str::to_string),
        request_id: ctx.request_id.clone(),
        source: ctx.source.clone(),
        outcome: outcome.as_str().to_string(),
        details: details.to_string(),
    }
}

/// One page of the tenant's audit log, newest first.
pub struct AuditPage {
    pub items: Vec<ChainedEntry>,
    pub next_cursor: Option<String>,
}

/// The verdict of a walk over the hash chain.
#[derive(Debug, Clone)]
pub struct ChainReport {
    pub ok: bool,
    /// Entries of `tenant` checked (all entries when `tenant` is None).
    pub checked: u64,
    pub first_broken_seq: Option<i64>,
    pub message: String,
    pub tenant: Option<String>,
    /// The walk started at the first entry (no checkpoint was used).
    pub full: bool,
    /// Entries read by this walk.
    pub walked: u64,
    /// The walk started after this entry, verified by an earlier walk.
    pub from_seq: Option<i64>,
    /// The walk reached the last entry (it may stop early when bounded).
    pub complete: bool,
    /// When a full walk last found the chain intact (ms), as far as known.
    pub last_full_walk: Option<i64>,
}

fn limit(l: Option<i64>) -> Result<i64, Error> {
    crate::paging::limit(l, 500)
}

impl Rekey {
    pub async fn audit_list(&self, tenant: &str, q: &AuditQuery) -> Result<AuditPage, Error> {
        let before_seq = match &q.cursor {
            None => None,
            Some(c) => Some(
                c.parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(crate::paging::bad_cursor)?,
            ),
        };
        let since = q
            .since
            .as_deref()
            .map(|s| rekey_core::time::parse_rfc3339("since", s))
            .transpose()?;
        let limit = limit(q.limit)?;
        let f = AuditFilter {
            action: q.action.clone(),
            target: q.target.clone(),
            actor: q.actor.clone(),
            since,
            before_seq,
            limit,
        };
        let mut c = self.store().read().await?;
        let rows = rekey_store::audit::list(&mut c, tenant, &f).await?;
        let next_cursor = if rows.len() as i64 == limit {
            rows.last().map(|r| r.entry.seq.to_string())
        } else {
            None
        };
        Ok(AuditPage {
            items: rows,
            next_cursor,
        })
    }

    /// Walk the whole chain, oldest first, and report on all of it: for an
    /// operator on the box (`rekey audit verify --offline`), never for an
    /// API caller (the entry count is every tenant's activity).
    pub async fn audit_verify(&self) -> Result<ChainReport, Error> {
        self.verify_chain(None, Walk::Full).await
    }

    /// Walk the chain (tampering anywhere breaks it for everyone) from the
    /// last verified entry, or from the first with `Walk::Full`, but report
    /// only figures about `tenant`: how many of its entries are verified,
    /// and where the chain breaks only when that entry is its own.
    pub async fn audit_verify_tenant(
        &self,
        tenant: &str,
        walk: Walk,
    ) -> Result<ChainReport, Error> {
        self.verify_chain(Some(tenant), walk).await
    }

    async fn verify_chain(&self, tenant: Option<&str>, walk: Walk) -> Result<ChainReport, Error> {
        let mut c = self.store().read().await?;
        let (cp, max) = match walk {
            Walk::Full => (None, u64::MAX),
            Walk::FromCheckpoint { max } => (rekey_store::audit::checkpoint(&mut c).await?, max),
        };
        let last_full = cp.as_ref().and_then(|c| c.full_at);
        let mut report = ChainReport {
            ok: true,
            checked: 0,
            first_broken_seq: None,
            message: String::new(),
            tenant: tenant.map(str::to_string),
            full: cp.is_none(),
            walked: 0,
            from_seq: cp.as_ref().map(|c| c.seq),
            complete: true,
            last_full_walk: last_full,
        };
        // Counts up to the last verified entry: all, and per tenant.
        let (mut entries, mut tenants) = match &cp {
            Some(cp) => (cp.entries, cp.tenants.clone()),
            None => (0, Default::default()),
        };
        let mut v = match &cp {
            None => Verifier::default(),
            Some(cp) => {
                // The checkpoint's own entry must still be the one verified.
                let row = rekey_store::audit::page_from(&mut c, cp.seq - 1, 1)
                    .await?
                    .pop();
                let intact = row.as_ref().is_some_and(|r| {
                    r.entry.seq == cp.seq
                        && r.hash == cp.hash
                        && r.entry.chain_hash(&r.prev_hash) == r.hash
                });
                if !intact {
                    let own = row
                        .as_ref()
                        .is_some_and(|r| Some(r.entry.tenant.as_str()) == tenant);
                    return Ok(broken(
                        report,
                        tenant.map_or(entries, |t| tenants.get(t).copied().unwrap_or(0)),
                        (tenant.is_none() || own).then_some(cp.seq),
                        format!(
                            "audit chain broken at entry {}: changed or removed since it was verified",
                            cp.seq
                        ),
                    ));
                }
                Verifier::resume(cp.seq, &cp.hash)
            }
        };
        let mut after = cp.as_ref().map_or(0, |c| c.seq);
        let mine = |tenants: &std::collections::BTreeMap<String, i64>, entries: i64| {
            tenant.map_or(entries, |t| tenants.get(t).copied().unwrap_or(0))
        };
        loop {
            let want = (max - report.walked).min(PAGE as u64) as i64;
            if want == 0 {
                // Bounded: stopped with entries left to read?
                report.complete = rekey_store::audit::page_from(&mut c, after, 1)
                    .await?
                    .is_empty();
                break;
            }
            let page = rekey_store::audit::page_from(&mut c, after, want).await?;
            let Some(last) = page.last() else { break };
            after = last.entry.seq;
            for row in &page {
                if let Err(b) = v.feed(row) {
                    let seq = match &b {
                        rekey_core::audit::ChainBreak::HashMismatch { seq }
                        | rekey_core::audit::ChainBreak::LinkMismatch { seq } => *seq,
                        rekey_core::audit::ChainBreak::Gap { next, .. } => *next,
                    };
                    // The broken row is `row` in every case; a break outside
                    // the tenant is reported without saying where.
                    let own = tenant.is_none_or(|t| row.entry.tenant == t);
                    let message = if own {
                        format!("audit chain broken at {b}")
                    } else {
                        "audit chain broken at an entry outside this tenant; an operator \
                         can locate it with `rekey audit verify --offline`"
                            .to_string()
                    };
                    let full_at = if report.full { None } else { last_full };
                    drop(c);
                    self.save_checkpoint(&v, entries, &tenants, report.full, full_at)
                        .await;
                    return Ok(broken(
                        report,
                        mine(&tenants, entries),
                        own.then_some(seq),
                        message,
                    ));
                }
                report.walked += 1;
                entries += 1;
                *tenants.entry(row.entry.tenant.clone()).or_default() += 1;
            }
        }
        drop(c);
        let full_at = if report.full && report.complete {
            Some(rekey_core::time::now_ms())
        } else {
            last_full
        };
        self.save_checkpoint(&v, entries, &tenants, report.full, full_at)
            .await;
        report.last_full_walk = full_at;
        report.checked = mine(&tenants, entries).max(0) as u64;
        let whose = if tenant.is_some() {
            " of this tenant"
        } else {
            ""
        };
        let since = match (report.from_seq, report.walked) {
            (None, _) => String::new(),
            (Some(s), n) => {
                let full = last_full.map_or("never".to_string(), rekey_core::time::ms_to_rfc3339);
                format!(
                    " ({n} read now, after entry {s}, verified earlier; last full walk: {full})"
                )
            }
        };
        report.message = if report.complete {
            format!(
                "audit chain intact: {} entries{whose}{since}",
                report.checked
            )
        } else {
            format!(
                "audit chain intact up to entry {after}: {} entries{whose}{since}; later entries \
                 are checked on the next verification",
                report.checked
            )
        };
        Ok(report)
    }

    /// Remember how far the chain is verified. Best effort: a failure only
    /// means the next walk starts earlier.
    async fn save_checkpoint(
        &self,
        v: &Verifier,
        entries: i64,
        tenants: &std::collections::BTreeMap<String, i64>,
        force: bool,
        full_at: Option<i64>,
    ) {
        let Some((seq, hash)) = v.last() else {
            // A full walk broken at the first entry: nothing is verified.
            if force {
                let res = async {
                    let mut tx = self.store().begin_write().await?;
                    rekey_store::audit::clear_checkpoint(tx.conn()).await?;
                    tx.commit().await
                }
                .await;
                if let Err(e) = res {
                    tracing::warn!(error = %e, "could not clear the audit checkpoint");
                }
            }
            return;
        };
        let cp = rekey_store::audit::Checkpoint {
            seq,
            hash: hash.to_string(),
            entries,
            verified_at: rekey_core::time::now_ms(),
            full_at,
            tenants: tenants.clone(),
        };
        let res = async {
            let mut tx = self.store().begin_write().await?;
            rekey_store::audit::save_checkpoint(tx.conn(), &cp, force).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "could not save the audit checkpoint");
        }
    }
}

/// Entries read per query while walking the chain.
const PAGE: i64 = 5000;

/// How much of the chain a verification reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Every entry from the first: the check of record.
    Full,
    /// From the last entry an earlier walk verified (or the first, if none
    /// did), reading at most `max` entries (`u64::MAX`: to the end).
    FromCheckpoint { max: u64 },
}

fn broken(mut r: ChainReport, checked: i64, seq: Option<i64>, message: String) -> ChainReport {
    r.ok = false;
    r.checked = checked.max(0) as u64;
    r.first_broken_seq = seq;
    r.message = message;
    r
}

/// One reader of a credential: who (`api_key:<id>` with the key's name,
/// `user:<name>`, `cli`), from which client address, with what outcome,
/// how often, first and last.
#[derive(Debug, Clone)]
pub struct Reader {
    pub row: rekey_store::audit::ReaderRow,
    /// The API key's name, when the actor is a key this tenant still knows.
    pub key_name: Option<String>,
}

/// Groups of readers answered at most (the most recent first).
const MAX_READERS: i64 = 1000;

impl Rekey {
    /// `GET /connections/{id}/readers?since=`: who read this connection's
    /// credential, from the audit log (reads refused or failed included,
    /// with their outcome).
    pub async fn credential_readers(
        &self,
        tenant: &str,
        id: &str,
        since: Option<&str>,
    ) -> Result<Vec<Reader>, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let since = since
            .map(|s| rekey_core::time::parse_rfc3339("since", s))
            .transpose()?
            .unwrap_or(0);
        let mut c = self.store().read().await?;
        rekey_store::connections::get(&mut c, tenant, &id)
            .await?
            .ok_or_else(|| crate::connection_rows::not_found(&id))?;
        let rows = rekey_store::audit::readers(
            &mut c,
            tenant,
            &id,
            AuditAction::CredentialsRead.as_str(),
            since,
            MAX_READERS,
        )
        .await?;
        let names: std::collections::HashMap<String, String> =
            rekey_store::api_keys::list(&mut c, tenant)
                .await?
                .into_iter()
                .map(|k| (k.id, k.name))
                .collect();
        Ok(rows
            .into_iter()
            .map(|row| Reader {
                key_name: row
                    .actor
                    .strip_prefix("api_key:")
                    .and_then(|k| names.get(k).cloned()),
                row,
            })
            .collect())
    }
}
