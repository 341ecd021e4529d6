//! The audit page: the tenant's audit log with filters; for admins, whether
//! the hash chain is intact.

use super::show::{evidence, Actor, Actors, When};
use super::{SessionUser, UiError, UiResult};
use crate::pages::page;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use rekey_api::{AuditEntryView, AuditQuery, AuditVerifyReport};
use rekey_core::scope::Scope;
use std::collections::HashMap;

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    action: String,
    target: String,
    actor: String,
    entries: Vec<Row>,
    error: Option<String>,
    /// Admins see whether the hash chain is intact.
    verify: Option<AuditVerifyReport>,
}

/// An audit entry as the page shows it: when readable, the actor by name.
struct Row {
    e: AuditEntryView,
    at: When,
    by: Actor,
    /// from → to, reason and note (see [`evidence`]).
    detail: String,
}

/// The tenant's audit log with filters; for admins, the chain's state.
pub(super) async fn audit(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    u: SessionUser,
) -> UiResult {
    if u.principal.require(Scope::AuditRead).is_err() {
        return Err(UiError::Forbidden(
            "This role cannot read the audit log.".into(),
        ));
    }
    let field = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let (action, target, actor) = (field("action"), field("target"), field("actor"));
    let opt = |v: &String| (!v.is_empty()).then(|| v.clone());
    let query = AuditQuery {
        action: opt(&action),
        target: opt(&target),
        actor: opt(&actor),
        limit: Some(100),
        ..Default::default()
    };
    let actors = Actors::load(&s, u.tenant()).await;
    let (entries, error) = match s.rekey.audit_list(u.tenant(), &query).await {
        Ok(l) => (
            l.items
                .iter()
                .map(crate::views::audit_entry)
                .map(|e| Row {
                    at: When::now(&e.at),
                    by: actors.of(&e.actor),
                    detail: evidence(&e.details),
                    e,
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.public_message())),
    };
    let verify = if u.principal.require(Scope::Admin).is_ok() {
        s.rekey
            .audit_verify_tenant(
                u.tenant(),
                rekey_service::Walk::FromCheckpoint { max: VIEW_WALK },
            )
            .await
            .ok()
            .map(|r| crate::views::audit_verify(&r))
    } else {
        None
    };
    Ok(page(
        StatusCode::OK,
        &AuditPage {
            action,
            target,
            actor,
            entries,
            error,
            verify,
        },
    ))
}

/// Audit entries one view of the page verifies at most (from where the
/// last verification stopped), so the page stays quick however long the
/// chain; the rest is read on later views.
const VIEW_WALK: u64 = 200_000;
