//! "Data flows": the connection page's button for a connection no probe can
//! check. One rekey-service use case (`confirm_working`), the same as the
//! API's, with the session's audit context.

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
            c.display_name, c.status
        ),
        "ok",
    ))
}
