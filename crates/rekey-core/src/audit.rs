//! The audit chain: each entry's hash covers the previous entry's hash and a
//! canonical encoding of the entry, so an edit or deletion anywhere breaks
//! every later link.

use serde::Serialize;
use sha2::{Digest, Sha256};

string_enum!(
    /// What an audit entry records. Stored entries keep the wire name as
    /// text (the chain covers it), so older entries read back unchanged.
    AuditAction, crate::ErrorCode::InvalidField, {
        ApiKeyCreate => "api_key.create",
        ApiKeyRevoke => "api_key.revoke",
        ApiKeyRotate => "api_key.rotate",
        ConnectSessionCreate => "connect_session.create",
        ConnectSessionFail => "connect_session.fail",
        ConnectSessionStart => "connect_session.start",
        ConnectionChecked => "connection.checked",
        ConnectionConfirmWorking => "connection.confirm_working",
        ConnectionCreate => "connection.create",
        ConnectionCredentialsUpdate => "connection.credentials_update",
        ConnectionDelete => "connection.delete",
        ConnectionProviderRevocation => "connection.provider_revocation",
        ConnectionReauthorizeAccepted => "connection.reauthorize_accepted",
        ConnectionReauthorizeMismatch => "connection.reauthorize_mismatch",
        ConnectionReauthorized => "connection.reauthorized",
        ConnectionRefreshFailed => "connection.refresh_failed",
        ConnectionRefreshed => "connection.refreshed",
        ConnectionStatusChanged => "connection.status_changed",
        ConnectionUpdate => "connection.update",
        ConnectionRevoked => "connection.revoked",
        ConnectionRevokePending => "connection.revoke_pending",
        ConnectionStatusChange => "connection.status_change",
        ConnectionDisable => "connection.disable",
        ConnectionEnable => "connection.enable",
        CampaignCreate => "campaign.create",
        CampaignStart => "campaign.start",
        CampaignPause => "campaign.pause",
        CampaignResume => "campaign.resume",
        CampaignCancel => "campaign.cancel",
        CampaignCompleted => "campaign.completed",
        CampaignAddConnections => "campaign.add_connections",
        CampaignStep => "campaign.step",
        CampaignConfirm => "campaign.confirm",
        CampaignSkip => "campaign.skip",
        CampaignLinksRead => "campaign.links_read",
        CampaignReminder => "campaign.reminder",
        CampaignMail => "campaign.mail",
        CredentialsRead => "credentials.read",
        CredentialVersionRetired => "credential.version_retired",
        EvidenceExported => "evidence.exported",
        RevocationStepConfirmed => "revocation.step_confirmed",
        RevocationVerified => "revocation.verified",
        RotationStart => "rotation.start",
        RotationStep => "rotation.step",
        RotationSucceeded => "rotation.succeeded",
        RotationFailed => "rotation.failed",
        RotationRolledBack => "rotation.rolled_back",
        RotationAwaitingOperator => "rotation.awaiting_operator",
        RotationConfirm => "rotation.confirm",
        RotationCancel => "rotation.cancel",
        RotationScheduleSet => "rotation.schedule_set",
        RotationScheduleDelete => "rotation.schedule_delete",
        IntegrationCreate => "integration.create",
        KeysRotate => "keys.rotate",
        IntegrationDelete => "integration.delete",
        IntegrationSecretDiscard => "integration.secret_discard",
        IntegrationSecretRotate => "integration.secret_rotate",
        IntegrationSecretStage => "integration.secret_stage",
        IntegrationUpdate => "integration.update",
        UserCreated => "user.created",
        UserLogin => "user.login",
        WebhookCreated => "webhook.created",
        WebhookDeleted => "webhook.deleted",
        WebhookDeliveryReplayed => "webhook.delivery_replayed",
        WebhookSecretRotated => "webhook.secret_rotated",
        WebhookUpdated => "webhook.updated",
    }
);

string_enum!(
    /// How the recorded action ended.
    AuditOutcome, crate::ErrorCode::InvalidField, {
        Ok => "ok",
        Error => "error",
        Denied => "denied",
        Parked => "parked",
        Skipped => "skipped",
    }
);

/// The hash that precedes the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry as stored. `details` is JSON text that never holds secret
/// values (only ids, field names, versions, outcomes).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub id: String,
    pub at: i64,
    pub tenant: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub request_id: Option<String>,
    pub source: Option<String>,
    pub outcome: String,
    pub details: String,
}

impl AuditEntry {
    /// Canonical bytes: JSON with fields in declaration order (serde keeps
    /// struct order) — stable across backends and versions.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn chain_hash(&self, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(b"\n");
        h.update(self.canonical());
        hex(&h.finalize())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// A stored row: the entry and the links that were recorded with it.
#[derive(Debug, Clone)]
pub struct ChainedEntry {
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The entry's content no longer matches its hash (edited).
    HashMismatch { seq: i64 },
    /// The entry does not link to its predecessor (a row before it was
    /// deleted, inserted or edited).
    LinkMismatch { seq: i64 },
    /// Sequence numbers skip (a row was deleted).
    Gap { after: i64, next: i64 },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::HashMismatch { seq } => {
                write!(f, "entry {seq}: content does not match its hash (edited)")
            }
            ChainBreak::LinkMismatch { seq } => write!(
                f,
                "entry {seq}: does not link to the previous entry (an earlier entry was changed or removed)"
            ),
            ChainBreak::Gap { after, next } => {
                write!(f, "entries {after}..{next}: missing entries (deleted)")
            }
        }
    }
}

/// Incremental verifier: feed rows in `seq` order.
pub struct Verifier {
    prev_hash: String,
    prev_seq: Option<i64>,
    pub checked: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            prev_hash: GENESIS.to_string(),
            prev_seq: None,
            checked: 0,
        }
    }
}

impl Verifier {
    /// Carry on after entry `seq`, whose hash is `hash`, verified earlier
    /// (a checkpoint): the next entry fed must be `seq + 1` and link to it.
    pub fn resume(seq: i64, hash: &str) -> Verifier {
        Verifier {
            prev_hash: hash.to_string(),
            prev_seq: Some(seq),
            checked: 0,
        }
    }

    /// The last entry fed, as `(seq, hash)`; None before the first.
    pub fn last(&self) -> Option<(i64, &str)> {
        self.prev_seq.map(|s| (s, self.prev_hash.as_str()))
    }

    pub fn feed(&mut self, row: &ChainedEntry) -> Result<(), ChainBreak> {
        let seq = row.entry.seq;
        match self.prev_seq {
            Some(p) if seq != p + 1 => {
                return Err(ChainBreak::Gap {
                    after: p,
                    next: seq,
                })
            }
            None if seq != 1 => {
                return Err(ChainBreak::Gap {
                    after: 0,
                    next: seq,
                })
            }
            _ => {}
        }
        if row.prev_hash != self.prev_hash {
            return Err(ChainBreak::LinkMismatch { seq });
        }
        if row.entry.chain_hash(&row.prev_hash) != row.hash {
            return Err(ChainBreak::HashMismatch { seq });
        }
        self.prev_hash = row.hash.clone();
        self.prev_seq = Some(seq);
        self.checked += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<ChainedEntry> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let entry = AuditEntry {
                    seq,
                    id: format!("aud_{seq}"),
                    at: 1000 + seq,
                    tenant: "default".into(),
                    actor: "cli".into(),
                    action: "connection.create".into(),
                    target: Some("con_x".into()),
                    request_id: None,
                    source: None,
                    outcome: "ok".into(),
                    details: "{}".into(),
                };
                let hash = entry.chain_hash(&prev);
                let row = ChainedEntry {
                    entry,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                row
            })
            .collect()
    }

    fn verify(rows: &[ChainedEntry]) -> Result<u64, ChainBreak> {
        let mut v = Verifier::default();
        for r in rows {
            v.feed(r)?;
        }
        Ok(v.checked)
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(&chain(5)).unwrap(), 5);
    }

    #[test]
    fn edit_is_detected() {
        let mut rows = chain(5);
        rows[2].entry.outcome = "denied".into();
        assert_eq!(verify(&rows), Err(ChainBreak::HashMismatch { seq: 3 }));
    }

    #[test]
    fn deletion_is_detected() {
        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(verify(&rows), Err(ChainBreak::Gap { after: 1, next: 3 }));
    }

    #[test]
    fn rehash_of_edit_breaks_next_link() {
        let mut rows = chain(5);
        rows[2].entry.outcome = "denied".into();
        rows[2].hash = rows[2].entry.chain_hash(&rows[2].prev_hash);
        assert_eq!(verify(&rows), Err(ChainBreak::LinkMismatch { seq: 4 }));
    }
}
