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
        self.verify_chain(None).await
    }

    /// Walk the whole chain (tampering anywhere breaks it for everyone), but
    /// report only figures about `tenant`: how many of its entries were
    /// checked, and where the chain breaks only when that entry is its own.
    pub async fn audit_verify_tenant(&self, tenant: &str) -> Result<ChainReport, Error> {
        self.verify_chain(Some(tenant)).await
    }

    async fn verify_chain(&self, tenant: Option<&str>) -> Result<ChainReport, Error> {
        let mut v = Verifier::default();
        let mut mine: u64 = 0;
        let mut after = 0;
        let mut c = self.store().read().await?;
        let report = |ok, checked, first_broken_seq, message| ChainReport {
            ok,
            checked,
            first_broken_seq,
            message,
            tenant: tenant.map(str::to_string),
        };
        loop {
            let page = rekey_store::audit::page_from(&mut c, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.entry.seq;
            for row in &page {
                if let Err(b) = v.feed(row) {
                    let seq = match &b {
                        rekey_core::audit::ChainBreak::HashMismatch { seq }
                        | rekey_core::audit::ChainBreak::LinkMismatch { seq } => *seq,
                        rekey_core::audit::ChainBreak::Gap { next, .. } => *next,
                    };
                    // The broken row is `row` in every case.
                    return Ok(match tenant {
                        None => report(
                            false,
                            v.checked,
                            Some(seq),
                            format!("audit chain broken at {b}"),
                        ),
                        Some(t) if row.entry.tenant == t => {
                            report(false, mine, Some(seq), format!("audit chain broken at {b}"))
                        }
                        Some(_) => report(
                            false,
                            mine,
                            None,
                            "audit chain broken at an entry outside this tenant; an operator \
                             can locate it with `rekey audit verify --offline`"
                                .to_string(),
                        ),
                    });
                }
                if tenant.is_some_and(|t| row.entry.tenant == t) {
                    mine += 1;
                }
            }
        }
        Ok(match tenant {
            None => report(
                true,
                v.checked,
                None,
                format!("audit chain intact: {} entries", v.checked),
            ),
            Some(_) => report(
                true,
                mine,
                None,
                format!("audit chain intact: {mine} entries of this tenant checked"),
            ),
        })
    }
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
