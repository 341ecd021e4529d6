//! Store rows → wire views. Only non-secret columns are read here.

use rekey_api::{
    ApiKeyView, AuditEntryView, ConfirmationView, ConnectionLinks, ConnectionView, HealthView,
    OwnerView, UncheckedView, UNCHECKED_MESSAGE,
};
use rekey_core::audit::ChainedEntry;
use rekey_core::time::ms_to_rfc3339;
use rekey_store::api_keys::ApiKeyRow;
use rekey_store::connections::ConnectionRow;
use rekey_store::health_notes::HealthNotes;
use serde_json::Value;

pub fn connection(r: &ConnectionRow) -> ConnectionView {
    ConnectionView {
        id: r.id.clone(),
        tenant: r.tenant.clone(),
        provider: r.provider.clone(),
        kind: r.kind.as_str().to_string(),
        display_name: r.display_name.clone(),
        owner: OwnerView {
            subject: r.owner.subject.clone(),
            email: r.owner.email.clone(),
            name: r.owner.name.clone(),
        },
        scopes: r.scopes.clone(),
        tags: r.tags.clone(),
        custody: r.custody.clone(),
        credential: serde_json::from_str(&r.credential_meta).unwrap_or(Value::Null),
        status: r.status.as_str().to_string(),
        last_error: r.error_context().map(|e| e.to_value()),
        created_at: ms_to_rfc3339(r.created_at),
        updated_at: ms_to_rfc3339(r.updated_at),
        rotated_at: r.rotated_at.map(ms_to_rfc3339),
        expires_at: r.expires_at.map(ms_to_rfc3339),
        version: r.version,
        health: HealthView {
            last_ok_at: r.last_ok_at.map(ms_to_rfc3339),
            last_checked_at: r.last_checked_at.map(ms_to_rfc3339),
            first_failed_at: r.first_failed_at.map(ms_to_rfc3339),
            consecutive_failures: r.consecutive_failures,
            unchecked: None,
            confirmation: None,
        },
        params: serde_json::from_str(&r.params).unwrap_or_default(),
        probe_url: r.probe_url.clone(),
        links: ConnectionLinks {
            provider: format!("/api/v1/providers/{}", r.provider),
            revoke_runbook: format!("/api/v1/providers/{}#revoke", r.provider),
            rotate_runbook: format!("/api/v1/providers/{}#rotate", r.provider),
        },
    }
}

/// The view with what health knows beyond the status columns (kept in
/// `connection_health_notes`): no probe can check it, and the last
/// operator confirmation.
pub fn with_notes(mut v: ConnectionView, n: Option<&HealthNotes>) -> ConnectionView {
    let Some(n) = n else { return v };
    v.health.unchecked = n.unchecked_reason.as_ref().map(|r| UncheckedView {
        message: UNCHECKED_MESSAGE.to_string(),
        reason: r.clone(),
    });
    v.health.confirmation = match (n.confirmed_at, &n.confirmed_by) {
        (Some(at), Some(by)) => Some(ConfirmationView {
            at: ms_to_rfc3339(at),
            by: by.clone(),
            note: n.confirmation_note.clone(),
        }),
        _ => None,
    };
    v
}

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
