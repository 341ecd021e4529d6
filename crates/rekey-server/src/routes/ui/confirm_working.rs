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
    /// A revocation's runbook step (1-based); none: every step left.
    #[serde(default)]
    step: Option<String>,
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
        step: match form.step.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(n) => Some(n.parse().map_err(|_| {
                UiError::service("Not confirmed")(rekey_core::Error::invalid(
                    rekey_core::ErrorCode::InvalidStep,
                    "`step` must be a runbook step number",
                ))
            })?),
        },
    };
    let (c, r) = s
        .rekey
        .confirm_revocation(&u.ctx(), &id, &req)
        .await
        .map_err(UiError::service("Not confirmed"))?;
    let what = match (&r, req.step) {
        (Some(r), Some(n)) if r.row.state.as_str() == "open" => {
            format!(
                "Step {n} of the revocation of {} is recorded as done.",
                c.row.display_name
            )
        }
        _ => format!(
            "{} is {}: your confirmation that it is revoked at the provider is recorded{}.",
            c.row.display_name,
            c.row.status,
            match r.as_ref().and_then(|r| r.row.verdict.as_deref()) {
                Some("verified_rejected") => ", and the provider now refuses the old credential",
                Some("still_accepted") => ", but the provider STILL ACCEPTS the old credential",
                _ => "",
            }
        ),
    };
    Ok(message(StatusCode::OK, "Done", what, "ok"))
}

/// Try the revoked credential at the provider now (as `POST …/revoke/verify`).
pub(super) async fn verify_revocation(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { user: u, form: _ }: CsrfForm<NoteForm>,
) -> UiResult {
    u.require_write("verify revocations")?;
    let r = s
        .rekey
        .verify_revocation(&u.ctx(), &id)
        .await
        .map_err(UiError::service("Not verified"))?;
    let (class, words) = match r.row.verdict.as_deref() {
        Some("verified_rejected") => ("ok", "The provider refuses the old credential: revocation verified."),
        Some("still_accepted") => ("bad", "The provider STILL ACCEPTS the old credential. Revoke it at the provider again; rekey keeps checking."),
        Some(_) => ("warn", "rekey cannot try this credential; the revocation stays unverified."),
        None => ("warn", "The provider did not answer; rekey tries again shortly."),
    };
    Ok(message(
        StatusCode::OK,
        "Verification",
        words.to_string(),
        class,
    ))
}
