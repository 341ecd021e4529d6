//! Store rows → wire views for API keys and the audit log (connections
//! are converted in rekey-server). Only non-secret columns are read here.

use rekey_api::{ApiKeyView, AuditEntryView};
use rekey_core::audit::ChainedEntry;
use rekey_core::time::ms_to_rfc3339;
use rekey_store::api_keys::ApiKeyRow;
use serde_json::Value;

pub fn api_key(r: &ApiKeyRow) -> ApiKeyView {
    ApiKeyView {
        id: r.id.clone(),
        tenant: r.tenant.clone(),
        name: r.name.clone(),
        scopes: r.scopes.clone(),
        created_at: ms_to_rfc3339(r.created_at),
        created_by: r.created_by.clone(),
        last_used_at: r.last_used_at.map(ms_to_rfc3339),
        revoked_at: r.revoked_at.map(ms_to_rfc3339),
        expires_at: r.expires_at.map(ms_to_rfc3339),
        rotated_from: r.rotated_from.clone(),
        rotated_to: r.rotated_to.clone(),
    }
}

pub fn audit(e: &ChainedEntry) -> AuditEntryView {
    AuditEntryView {
        seq: e.entry.seq,
        id: e.entry.id.clone(),
        at: ms_to_rfc3339(e.entry.at),
        tenant: e.entry.tenant.clone(),
        actor: e.entry.actor.clone(),
        action: e.entry.action.clone(),
        target: e.entry.target.clone(),
        request_id: e.entry.request_id.clone(),
        source: e.entry.source.clone(),
        outcome: e.entry.outcome.clone(),
        details: serde_json::from_str(&e.entry.details).unwrap_or(Value::Null),
        hash: e.hash.clone(),
    }
}
