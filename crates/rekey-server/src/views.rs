//! What rekey-service returns → rekey-api's wire views. Only non-secret
//! columns are read here (a new webhook's signing secret and a new connect
//! link's token are passed through, once); this is where the wire's strings (statuses, kinds,
//! RFC 3339 times) are made from domain values.

use rekey_api::{
    ApiKeyList, ApiKeyView, AuditEntryView, AuditList, AuditVerifyReport, CheckResult,
    ConfirmationView, ConnectSessionView, ConnectionLinks, ConnectionList, ConnectionView,
    CreatedApiKey, CreatedWebhook, CredentialsView, DeliveryAttemptView, DeliveryList,
    DeliveryView, EndpointOverrides, HealthView, IntegrationList, IntegrationView, OwnerView,
    ReauthorizeResult, RevokeResult, RotatedApiKey, UncheckedView, WebhookList, WebhookView,
    UNCHECKED_MESSAGE,
};
use rekey_core::audit::ChainedEntry;
use rekey_core::time::ms_to_rfc3339;
use rekey_service::{
    ApiKeyRow, AttemptRow, AuditPage, ChainReport, CheckReport, Connection, ConnectionPage,
    ConnectionRow, Credentials, Delivery, DeliveryPage, DeliveryRow, Endpoints, HealthNotes,
    Integration, IssuedApiKey, NewConnectSession, NewWebhook, Reauthorization, Revocation,
    WebhookPage, WebhookRow,
};
use serde_json::Value;

pub fn connection(c: &Connection) -> ConnectionView {
    with_notes(row(&c.row), c.notes.as_ref())
}

fn row(r: &ConnectionRow) -> ConnectionView {
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
fn with_notes(mut v: ConnectionView, n: Option<&HealthNotes>) -> ConnectionView {
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

pub fn connection_list(p: &ConnectionPage) -> ConnectionList {
    ConnectionList {
        items: p.items.iter().map(connection).collect(),
        next_cursor: p.next_cursor.clone(),
    }
}

pub fn check(r: &CheckReport) -> CheckResult {
    CheckResult {
        connection_id: r.connection_id.clone(),
        outcome: r.outcome.clone(),
        status_before: r.status_before.as_str().to_string(),
        status: r.status.as_str().to_string(),
        http_status: r.http_status,
        duration_ms: r.duration_ms,
        checked_at: ms_to_rfc3339(r.checked_at),
        message: r.message.clone(),
        last_error: r.last_error.as_ref().map(|e| e.to_value()),
        connection: connection(&r.connection),
    }
}

pub fn revocation(r: &Revocation) -> RevokeResult {
    RevokeResult {
        connection: connection(&r.connection),
        revoked_at_provider: r.revoked_at_provider,
        manual_steps: r.manual_steps.clone(),
        revocation: r.revocation.as_ref().map(revocation_record),
    }
}

pub fn revocation_record(r: &rekey_service::RevocationRecord) -> rekey_api::RevocationView {
    let row = &r.row;
    rekey_api::RevocationView {
        id: row.id.clone(),
        connection_id: row.connection_id.clone(),
        credential_version: row.credential_version,
        kind: row.kind.clone(),
        fingerprint: row.fingerprint.clone(),
        method: row.method.as_str().to_string(),
        state: row.state.as_str().to_string(),
        steps: r
            .steps
            .iter()
            .zip(1u32..)
            .map(|(s, n)| rekey_api::RevocationStepView {
                step: n,
                text: s.text.clone(),
                done_at: s.done_at.map(ms_to_rfc3339),
                done_by: s.done_by.clone(),
                note: s.note.clone(),
            })
            .collect(),
        requested_at: ms_to_rfc3339(row.requested_at),
        requested_by: row.requested_by.clone(),
        revoked_at: row.revoked_at.map(ms_to_rfc3339),
        revoked_by: row.revoked_by.clone(),
        verdict: row.verdict.clone(),
        verified_at: row.verified_at.map(ms_to_rfc3339),
        next_verification_at: row.verify_due_at.map(ms_to_rfc3339),
        verification_attempts: row.verify_attempts,
        checks: r
            .checks
            .iter()
            .map(|c| rekey_api::RevocationCheckView {
                at: ms_to_rfc3339(c.at),
                tried: c.tried.clone(),
                result: c.result.clone(),
                code: c.code.clone(),
                message: c.message.clone(),
                http_status: c.http_status,
                body: c.body.clone(),
                expires_at: c.expires_at.map(ms_to_rfc3339),
            })
            .collect(),
    }
}

pub fn reauthorization(r: Reauthorization) -> ReauthorizeResult {
    ReauthorizeResult {
        connection: connection(&r.connection),
        session: r.session.map(connect_session),
        accepted_pending_grant: r.accepted_pending_grant,
    }
}

pub fn webhook(w: &WebhookRow) -> WebhookView {
    WebhookView {
        id: w.id.clone(),
        url: w.url.clone(),
        events: w.events.clone(),
        description: w.description.clone(),
        enabled: w.disabled_at.is_none(),
        created_at: ms_to_rfc3339(w.created_at),
        updated_at: ms_to_rfc3339(w.updated_at),
        version: w.version,
    }
}

pub fn webhook_list(p: &WebhookPage) -> WebhookList {
    WebhookList {
        items: p.items.iter().map(webhook).collect(),
        next_cursor: p.next_cursor.clone(),
    }
}

pub fn created_webhook(n: NewWebhook) -> CreatedWebhook {
    CreatedWebhook {
        webhook: webhook(&n.webhook),
        secret: n.secret,
    }
}

pub fn delivery(d: &Delivery) -> DeliveryView {
    delivery_row(
        &d.row,
        d.attempts
            .as_deref()
            .map(|a| a.iter().map(attempt).collect()),
    )
}

pub fn delivery_list(p: &DeliveryPage) -> DeliveryList {
    DeliveryList {
        items: p.items.iter().map(|d| delivery_row(d, None)).collect(),
        next_cursor: p.next_cursor.clone(),
    }
}

fn delivery_row(d: &DeliveryRow, attempts: Option<Vec<DeliveryAttemptView>>) -> DeliveryView {
    DeliveryView {
        id: d.id.clone(),
        webhook_id: d.webhook_id.clone(),
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        status: d.status.clone(),
        attempts: d.attempts,
        next_attempt_at: (d.status == "pending").then(|| ms_to_rfc3339(d.next_attempt_at)),
        last_http_status: d.last_http_status,
        last_error: d.last_error.clone(),
        created_at: ms_to_rfc3339(d.created_at),
        delivered_at: d.delivered_at.map(ms_to_rfc3339),
        attempt_log: attempts,
    }
}

fn attempt(a: &AttemptRow) -> DeliveryAttemptView {
    DeliveryAttemptView {
        id: a.id.clone(),
        at: ms_to_rfc3339(a.at),
        http_status: a.http_status,
        error: a.error.clone(),
        duration_ms: a.duration_ms,
        response_body: a.response_body.clone(),
    }
}

pub fn connect_session(s: NewConnectSession) -> ConnectSessionView {
    ConnectSessionView {
        id: s.id,
        token: s.token,
        url: s.url,
        expires_at: ms_to_rfc3339(s.expires_at),
        integration: s.integration,
        provider: s.provider,
        kind: s.kind.as_str().to_string(),
        reauthorize: s.reauthorize,
    }
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
        expires_at: r.expires_at.map(ms_to_rfc3339),
        rotated_from: r.rotated_from.clone(),
        rotated_to: r.rotated_to.clone(),
    }
}

pub fn api_key_list(rows: &[ApiKeyRow]) -> ApiKeyList {
    ApiKeyList {
        items: rows.iter().map(api_key).collect(),
    }
}

/// The one place a new key's token is put on the wire.
pub fn created_api_key(k: &IssuedApiKey) -> CreatedApiKey {
    CreatedApiKey {
        key: k.key.to_string(),
        api_key: api_key(&k.row),
    }
}

pub fn rotated_api_key(r: &rekey_service::RotatedApiKey) -> RotatedApiKey {
    RotatedApiKey {
        key: r.issued.key.to_string(),
        api_key: api_key(&r.issued.row),
        previous: api_key(&r.previous),
    }
}

pub fn audit_entry(e: &ChainedEntry) -> AuditEntryView {
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

pub fn audit_list(p: &AuditPage) -> AuditList {
    AuditList {
        items: p.items.iter().map(audit_entry).collect(),
        next_cursor: p.next_cursor.clone(),
    }
}

pub fn audit_verify(r: &ChainReport) -> AuditVerifyReport {
    AuditVerifyReport {
        ok: r.ok,
        checked: r.checked,
        first_broken_seq: r.first_broken_seq,
        message: r.message.clone(),
        tenant: r.tenant.clone(),
        full: r.full,
        walked: r.walked,
        verified_before: r.from_seq,
        last_full_walk: r.last_full_walk.map(rekey_core::time::ms_to_rfc3339),
    }
}

/// The one place decrypted material is put on the wire.
pub fn credentials(c: Credentials) -> CredentialsView {
    CredentialsView {
        connection_id: c.connection_id,
        kind: c.kind.as_str().to_string(),
        version: c.version,
        credentials: c.material,
    }
}

fn endpoints(e: &Endpoints) -> EndpointOverrides {
    EndpointOverrides {
        authorize_url: e.authorize_url.clone(),
        token_url: e.token_url.clone(),
        revocation_url: e.revocation_url.clone(),
        issuer: e.issuer.clone(),
        identity_url: e.identity_url.clone(),
    }
}

pub fn integration(i: &Integration) -> IntegrationView {
    let r = &i.row;
    IntegrationView {
        id: r.id.clone(),
        tenant: r.tenant.clone(),
        provider: r.provider.clone(),
        display_name: r.display_name.clone(),
        client_id: r.client_id.clone(),
        auth_method: r.auth_method.clone(),
        key_id: r.key_id.clone(),
        scopes: r.scopes.clone(),
        extra_authorize_params: i.extra_authorize_params.clone(),
        params: i.params.clone(),
        endpoints: endpoints(&i.endpoints),
        redirect_uri: i.redirect_uri.clone(),
        tags: r.tags.clone(),
        custody: r.custody.clone(),
        created_at: ms_to_rfc3339(r.created_at),
        updated_at: ms_to_rfc3339(r.updated_at),
        version: r.version,
    }
}

pub fn integration_list(items: &[Integration]) -> IntegrationList {
    IntegrationList {
        items: items.iter().map(integration).collect(),
    }
}

pub fn readers(items: &[rekey_service::Reader]) -> rekey_api::ReaderList {
    rekey_api::ReaderList {
        items: items
            .iter()
            .map(|r| rekey_api::ReaderView {
                actor: r.row.actor.clone(),
                api_key_name: r.key_name.clone(),
                source: r.row.source.clone(),
                outcome: r.row.outcome.clone(),
                reads: r.row.reads,
                first_read_at: ms_to_rfc3339(r.row.first_at),
                last_read_at: ms_to_rfc3339(r.row.last_at),
            })
            .collect(),
    }
}

pub fn import_report(
    dry_run: bool,
    out: Vec<rekey_service::ImportOutcome>,
) -> rekey_api::ImportReport {
    use rekey_service::ImportOutcome;
    let mut r = rekey_api::ImportReport {
        dry_run,
        created: 0,
        valid: 0,
        failed: 0,
        rows: Vec::with_capacity(out.len()),
    };
    for (i, o) in out.into_iter().enumerate() {
        let (outcome, id, error) = match o {
            ImportOutcome::Created(id) => {
                r.created += 1;
                r.valid += 1;
                ("created", Some(id), None)
            }
            ImportOutcome::Valid => {
                r.valid += 1;
                ("valid", None, None)
            }
            ImportOutcome::Failed(e) => {
                r.failed += 1;
                let detail = rekey_api::ErrorDetail {
                    code: e.code().as_str().to_string(),
                    message: e.public_message(),
                };
                ("failed", None, Some(detail))
            }
        };
        r.rows.push(rekey_api::ImportRow {
            index: i as u64,
            outcome: outcome.into(),
            id,
            error,
        });
    }
    r
}
