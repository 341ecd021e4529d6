//! Evidence of a breach response, for an auditor: for every connection a
//! filter selects, the credential revoked (fingerprint, how, by whom, what
//! the provider answered when rekey tried it afterwards) and the one that
//! replaced it (fingerprint, who made it, when it was seen working).
//!
//! The use cases read the rows page by page ([`Rekey::evidence_page`]), so
//! an export of any size streams in bounded memory; the server renders the
//! file and, once every row is out, records its SHA-256 in the audit chain
//! ([`Rekey::record_evidence`]) under the export's id, so the file can be
//! shown unaltered later ([`Rekey::evidence_record`]).

use crate::audit::{record_ok, ChainReport};
use crate::revocation::RevocationRecord;
use crate::{Ctx, Rekey};
use rekey_api::ConnectionQuery;
use rekey_core::audit::{AuditAction, ChainedEntry};
use rekey_core::revocation::{RevocationState, Verdict};
use rekey_core::versions::VersionLabel;
use rekey_core::{ids, Error, ErrorCode};
use rekey_store::audit::AuditFilter;
use rekey_store::connections::{self as conns, ConnectionFilter, ConnectionRow};
use rekey_store::credential_versions::{self as versions, VersionRow};
use rekey_store::revocations;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Connections read per page of an export.
pub const EVIDENCE_PAGE: i64 = 200;

/// A validated export filter.
#[derive(Debug, Clone)]
pub struct EvidenceFilter(ConnectionFilter);

/// One connection's evidence, as the store holds it.
#[derive(Debug, Clone)]
pub struct EvidenceItem {
    pub connection: ConnectionRow,
    /// The revocation the row is about: one whose old credential is still
    /// accepted if any (a later, cleaner revocation must not hide it), else
    /// one with runbook steps left, else the newest.
    pub revocation: Option<RevocationRecord>,
    /// How many revocations the connection has had.
    pub revocations: usize,
    /// The version the newest revocation revoked.
    pub revoked_version: Option<VersionRow>,
    /// The version consumers get now.
    pub current: Option<VersionRow>,
}

/// Where a connection stands in the response, one word an auditor can
/// count: the columns of the export say why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    NotRevoked,
    /// Manual runbook steps left.
    RevocationOpen,
    /// Revoked; rekey has not tried the old credential yet.
    AwaitingVerification,
    VerifiedRejected,
    StillAccepted,
    Unverifiable,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::NotRevoked,
        Outcome::RevocationOpen,
        Outcome::AwaitingVerification,
        Outcome::VerifiedRejected,
        Outcome::StillAccepted,
        Outcome::Unverifiable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NotRevoked => "not_revoked",
            Outcome::RevocationOpen => "revocation_open",
            Outcome::AwaitingVerification => "awaiting_verification",
            Outcome::VerifiedRejected => "verified_rejected",
            Outcome::StillAccepted => "still_accepted",
            Outcome::Unverifiable => "unverifiable",
        }
    }
}

impl EvidenceItem {
    pub fn outcome(&self) -> Outcome {
        let Some(r) = &self.revocation else {
            return Outcome::NotRevoked;
        };
        if r.row.state == RevocationState::Open {
            return Outcome::RevocationOpen;
        }
        match r.row.verdict() {
            None => Outcome::AwaitingVerification,
            Some(Verdict::VerifiedRejected) => Outcome::VerifiedRejected,
            Some(Verdict::StillAccepted) => Outcome::StillAccepted,
            Some(Verdict::Unverifiable) => Outcome::Unverifiable,
        }
    }

    /// The credential that replaced the revoked one, if one did.
    pub fn replacement(&self) -> Option<&VersionRow> {
        let r = self.revocation.as_ref()?;
        self.current
            .as_ref()
            .filter(|v| v.seq > r.row.credential_version)
    }

    /// When a probe last saw the connection's current credential work
    /// (only a success after that credential arrived counts).
    pub fn verified_working_at(&self) -> Option<i64> {
        let since = self.current.as_ref().map_or(0, |v| v.created_at);
        self.connection.last_ok_at.filter(|t| *t >= since)
    }
}

/// An export's record in the audit chain.
#[derive(Debug, Clone)]
pub struct EvidenceRecord {
    pub entry: ChainedEntry,
    pub details: Value,
    /// The whole chain walked: an altered log cannot vouch for a file.
    pub chain: ChainReport,
}

impl Rekey {
    /// Validate an export's filter; an integration or campaign it names
    /// must exist.
    pub async fn evidence_filter(
        &self,
        tenant: &str,
        q: &ConnectionQuery,
        campaign: Option<&str>,
    ) -> Result<EvidenceFilter, Error> {
        let mut f = crate::connections::connection_filter(q)?;
        if let Some(i) = &f.integration {
            self.integration_row(tenant, i).await?;
        }
        if let Some(c) = campaign {
            f.campaign = Some(self.campaign_row(tenant, c).await?.id);
        }
        Ok(EvidenceFilter(f))
    }

    /// The campaign an export is scoped to, if any.
    pub async fn evidence_campaign(
        &self,
        tenant: &str,
        f: &EvidenceFilter,
    ) -> Result<Option<crate::Campaign>, Error> {
        match &f.0.campaign {
            Some(id) => Ok(Some(self.get_campaign(tenant, id).await?)),
            None => Ok(None),
        }
    }

    /// A page of a campaign's timeline (its audit entries, oldest first)
    /// after audit sequence number `after`.
    pub async fn campaign_timeline(
        &self,
        tenant: &str,
        campaign_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChainedEntry>, Error> {
        let mut c = self.store().read().await?;
        rekey_store::audit::for_target_from(&mut c, tenant, campaign_id, after, limit).await
    }

    /// Up to [`EVIDENCE_PAGE`] connections after `after_id`, in id order.
    pub async fn evidence_page(
        &self,
        tenant: &str,
        f: &EvidenceFilter,
        after_id: Option<&str>,
    ) -> Result<Vec<EvidenceItem>, Error> {
        let filter = ConnectionFilter {
            after_id: after_id.map(str::to_string),
            limit: EVIDENCE_PAGE,
            ..f.0.clone()
        };
        let mut c = self.store().read().await?;
        let rows = conns::list(&mut c, tenant, &filter).await?;
        let mut items = Vec::with_capacity(rows.len());
        for connection in rows {
            let revs = revocations::for_connection(&mut c, tenant, &connection.id).await?;
            let count = revs.len();
            let newest = of_concern(revs).map(RevocationRecord::from);
            let vs = versions::for_connection(&mut c, tenant, &connection.id).await?;
            let revoked_version = newest.as_ref().and_then(|r| {
                vs.iter()
                    .find(|v| v.seq == r.row.credential_version)
                    .cloned()
            });
            let current = vs.into_iter().find(|v| v.label == VersionLabel::Current);
            items.push(EvidenceItem {
                connection,
                revocation: newest,
                revocations: count,
                revoked_version,
                current,
            });
        }
        Ok(items)
    }

    /// Record a finished export in the audit chain: its id (the target),
    /// the SHA-256 of the file up to its seal line, and what it holds.
    pub async fn record_evidence(
        &self,
        ctx: &Ctx,
        id: &str,
        sha256: &str,
        details: Value,
    ) -> Result<(), Error> {
        let mut d = json!({"sha256": sha256});
        if let (Some(m), Value::Object(extra)) = (d.as_object_mut(), details) {
            m.extend(extra);
        }
        let mut tx = self.store().begin_write().await?;
        record_ok(&mut tx, ctx, AuditAction::EvidenceExported, id, d).await?;
        tx.commit().await
    }

    /// The audit record of export `id`, and the chain's verdict.
    pub async fn evidence_record(&self, tenant: &str, id: &str) -> Result<EvidenceRecord, Error> {
        let id = ids::parse_id(ids::EVIDENCE, id)?;
        let entry = {
            let mut c = self.store().read().await?;
            let f = AuditFilter {
                action: Some(AuditAction::EvidenceExported.as_str().to_string()),
                target: Some(id.clone()),
                limit: 1,
                ..AuditFilter::default()
            };
            rekey_store::audit::list(&mut c, tenant, &f).await?.pop()
        };
        let entry = entry.ok_or_else(|| {
            Error::not_found(ErrorCode::EvidenceNotFound, format!("evidence export {id}"))
        })?;
        let details = serde_json::from_str(&entry.entry.details).unwrap_or(Value::Null);
        let chain = self.audit_verify_tenant(tenant, crate::Walk::Full).await?;
        Ok(EvidenceRecord {
            entry,
            details,
            chain,
        })
    }
}

/// Of a connection's revocations (newest first), the one evidence must
/// show: still accepted first, then open, then the newest.
fn of_concern(
    revs: Vec<rekey_store::revocations::RevocationRow>,
) -> Option<rekey_store::revocations::RevocationRow> {
    let rank = |r: &rekey_store::revocations::RevocationRow| match (r.state, r.verdict()) {
        (_, Some(Verdict::StillAccepted)) => 0,
        (RevocationState::Open, _) => 1,
        _ => 2,
    };
    // min_by_key keeps the first of equals: the newest.
    revs.into_iter().min_by_key(rank)
}

/// Counts of outcomes, every outcome named (zero included).
pub fn outcome_counts(counts: &BTreeMap<Outcome, u64>) -> Vec<(&'static str, u64)> {
    Outcome::ALL
        .iter()
        .map(|o| (o.as_str(), counts.get(o).copied().unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_core::revocation::RevocationMethod;
    use rekey_store::revocations::RevocationRow;

    fn rev(id: &str, state: RevocationState, verdict: Option<&str>) -> RevocationRow {
        RevocationRow {
            id: id.into(),
            tenant: "t".into(),
            connection_id: "con".into(),
            credential_version: 1,
            kind: "api_key".into(),
            meta: "{}".into(),
            fingerprint: None,
            scopes: vec![],
            params: None,
            probe_url: None,
            oauth_target: None,
            method: RevocationMethod::Manual,
            state,
            steps: "[]".into(),
            requested_at: 0,
            requested_by: "x".into(),
            revoked_at: None,
            revoked_by: None,
            verdict: verdict.map(str::to_string),
            evidence: None,
            verified_at: None,
            verify_due_at: None,
            verify_attempts: 0,
            lease_owner: None,
            lease_until: None,
        }
    }

    #[test]
    fn a_later_revocation_does_not_hide_a_live_credential() {
        use RevocationState::{Open, Revoked};
        // Newest first, as the store lists them.
        let pick = |revs: Vec<RevocationRow>| of_concern(revs).map(|r| r.id);
        assert_eq!(
            pick(vec![
                rev("new", Revoked, Some("verified_rejected")),
                rev("old", Revoked, Some("still_accepted")),
            ]),
            Some("old".into())
        );
        assert_eq!(
            pick(vec![
                rev("new", Revoked, Some("verified_rejected")),
                rev("open", Open, None),
            ]),
            Some("open".into())
        );
        assert_eq!(
            pick(vec![
                rev("new", Revoked, Some("unverifiable")),
                rev("old", Revoked, Some("verified_rejected")),
            ]),
            Some("new".into())
        );
        assert_eq!(pick(vec![]), None);
    }
}
