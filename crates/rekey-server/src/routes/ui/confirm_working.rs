//! The connection page's two confirmations, each one rekey-service use case
//! (the same as the API's) with the session's audit context: "Confirm data
//! flows" for a connection no probe can check, and "Confirm revocation" for
//! one whose manual revocation steps are done (`revoke_pending`).

use super::{message, CsrfForm, UiError, UiResult};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;

/// The form: the CSRF token (checked by [`CsrfForm`]) and an optional note.
#[derive(serde::Deserialize)]
pub(super) struct NoteForm {
    #[serde(default)]
    note: Option<String>,
}

pub(super) async fn confirm_working(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { user: u, form }: CsrfForm<NoteForm>,
) -> UiResult {
    u.require_write("confirm connections")?;
    let req = rekey_api::ConfirmWorking {
        note: form.note.filter(|n| !n.trim().is_empty()),
        version: None,
    };
    let c = s
        .rekey
        .confirm_working(&u.ctx(), &id, req, None)
        .await
        .map_err(UiError::service("Not confirmed"))?;
    Ok(message(
        StatusCode::OK,
        "Done",
        format!(
            "{} is {}: your confirmation that its data flows is recorded.",
            c.row.display_name, c.row.status
        ),
        "ok",
    ))
}

/// `revoke_pending` → `revoked`: the operator did the provider's manual
/// revocation steps; the note (e.g. a ticket number) is the audit evidence.
pub(super) async fn confirm_revocation(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { user: u, form }: CsrfForm<NoteForm>,
) -> UiResult {
    u.require_write("confirm revocations")?;
    let req = rekey_api::ConfirmRevocation {
        note: form.note.filter(|n| !n.trim().is_empty()),
        step: None,
    };
    let (c, _) = s
        .rekey
        .confirm_revocation(&u.ctx(), &id, &req)
        .await
        .map_err(UiError::service("Not confirmed"))?;
    Ok(message(
        StatusCode::OK,
        "Done",
        format!(
            "{} is {}: your confirmation that it is revoked at the provider is recorded.",
            c.row.display_name, c.row.status
        ),
        "ok",
    ))
}
