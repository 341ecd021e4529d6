//! What rekey-service returns → rekey-api's wire views. Only non-secret
//! columns are read here (a new webhook's signing secret and a new connect
//! link's token are passed through, once); this is where the wire's strings (statuses, kinds,
//! RFC 3339 times) are made from domain values.

use rekey_api::{
    CheckResult, ConfirmationView, ConnectSessionView, ConnectionLinks, ConnectionList,
    ConnectionView, CreatedWebhook, DeliveryAttemptView, DeliveryList, DeliveryView, HealthView,
    OwnerView, ReauthorizeResult, RevokeResult, UncheckedView, WebhookList, WebhookView,
    UNCHECKED_MESSAGE,
};
use rekey_core::time::ms_to_rfc3339;
use rekey_service::{
    AttemptRow, CheckReport, Connection, ConnectionPage, ConnectionRow, Delivery, DeliveryPage,
    DeliveryRow, HealthNotes, NewConnectSession, NewWebhook, Reauthorization, Revocation,
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
