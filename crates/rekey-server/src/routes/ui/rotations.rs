//! A rotation on the dashboard: started from the Rotate page, followed on
//! its own page (the step list refreshes itself with htmx while a step
//! runs, and stops refreshing while it waits for the operator so a form
//! being filled is never replaced), with the operator's confirmations and
//! Cancel as buttons. The use cases are rekey-service's, as for the API.

use super::{connection_of, CsrfForm, SessionUser, UiError, UiResult};
use crate::pages::page;
use crate::routes::rotations::{drive_in_background, view};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use rekey_api::RotationView;
use rekey_core::connection::ConnectionKind;
use rekey_core::rotation::RotationState;
use rekey_core::versions::parse_grace;
use rekey_core::SecretString;
use rekey_service::{ConfirmRequest, RotateRequest};
use serde::Deserialize;

/// The steps in order, as the page names them.
const STEPS: [(RotationState, &str); 5] = [
    (RotationState::Created, "New credential made"),
    (RotationState::Set, "Set at the target"),
    (RotationState::Tested, "Tested"),
    (RotationState::Promoted, "Current in rekey"),
    (RotationState::Retired, "Old credential retired"),
];

struct StepLine {
    name: &'static str,
    label: &'static str,
    /// `done`, `now` (running or waiting), `failed` or `todo`.
    class: &'static str,
    /// The same in words, for screen readers and without colour.
    mark: &'static str,
}

#[derive(Template)]
#[template(path = "ui/rotation_panel.html")]
struct Panel {
    r: RotationView,
    csrf: String,
    can_write: bool,
    steps: Vec<StepLine>,
    /// The htmx trigger while the rotation moves on by itself.
    poll: Option<&'static str>,
    /// The awaited step's new credential is an API key (one field).
    api_key: bool,
    error: Option<String>,
    cancellable: bool,
}

#[derive(Template)]
#[template(path = "ui/rotation.html")]
struct RotationPage {
    name: String,
    conn_id: String,
    /// The rendered [`Panel`].
    panel: String,
}

fn step_lines(r: &RotationView) -> Vec<StepLine> {
    let state: RotationState = r.state.parse().unwrap_or(RotationState::Created);
    let failed_at = r
        .last_error
        .as_ref()
        .and_then(|e| e.get("step"))
        .and_then(|s| s.as_str())
        .and_then(|s| s.parse::<RotationState>().ok());
    let reached = STEPS.iter().position(|(s, _)| *s == state);
    STEPS
        .iter()
        .enumerate()
        .map(|(i, (s, label))| {
            let (class, mark) = match reached {
                Some(n) if i <= n => ("done", "done"),
                Some(n) if i == n + 1 => match &r.awaiting {
                    Some(_) => ("now", "waiting for you"),
                    None => ("now", "in progress"),
                },
                Some(_) => ("todo", ""),
                // Failed or rolled back: the step that failed, if known.
                None if Some(*s) == failed_at => ("failed", "failed"),
                None => ("todo", ""),
            };
            StepLine {
                name: s.as_str(),
                label,
                class,
                mark,
            }
        })
        .collect()
}

fn panel(r: RotationView, kind: ConnectionKind, u: &SessionUser) -> Panel {
    let state: Option<RotationState> = r.state.parse().ok();
    let poll = match (&r.awaiting, state) {
        (Some(_), _) => None,
        _ if r.finished => None,
        // Waiting out the grace: the next step is a while away.
        (None, Some(RotationState::Promoted)) if r.grace_secs > 60 => Some("every 10s"),
        _ => Some("every 1s"),
    };
    let error = r.last_error.as_ref().map(|e| {
        e.get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("the step failed")
            .to_string()
    });
    Panel {
        steps: step_lines(&r),
        cancellable: matches!(state, Some(RotationState::Created | RotationState::Set)),
        api_key: kind == ConnectionKind::ApiKey,
        csrf: u.csrf.clone(),
        can_write: u.can_write(),
        poll,
        error,
        r,
    }
}

/// The rotation and its connection, in the session's tenant.
async fn load(
    s: &AppState,
    u: &SessionUser,
    id: &str,
) -> UiResult<(RotationView, rekey_service::Connection)> {
    let r = s
        .rekey
        .get_rotation(u.tenant(), id)
        .await
        .map_err(UiError::service("Not found"))?;
    let c = connection_of(s, u, &r.connection_id).await?;
    Ok((view(&r), c))
}

/// `GET /ui/rotations/{id}`: the rotation's page.
pub(super) async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
    u: SessionUser,
) -> UiResult {
    let (r, c) = load(&s, &u, &id).await?;
    let panel = panel(r, c.row.kind, &u)
        .render()
        .map_err(|e| UiError::Service("Unavailable", rekey_core::Error::internal(e)))?;
    Ok(page(
        StatusCode::OK,
        &RotationPage {
            name: c.row.display_name.clone(),
            conn_id: c.row.id.clone(),
            panel,
        },
    ))
}

/// `GET /ui/rotations/{id}/panel`: the steps alone, for htmx to swap in.
pub(super) async fn panel_fragment(
    State(s): State<AppState>,
    Path(id): Path<String>,
    u: SessionUser,
) -> UiResult {
    let (r, c) = load(&s, &u, &id).await?;
    Ok(page(StatusCode::OK, &panel(r, c.row.kind, &u)))
}

#[derive(Deserialize)]
pub(super) struct StartForm {
    #[serde(default)]
    grace: String,
    /// `manual` for a guided rotation where rekey has a rotator too.
    #[serde(default)]
    method: String,
}

/// `POST /ui/connections/{id}/rotate`: start the rotation and go to its page.
pub(super) async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { user: u, form }: CsrfForm<StartForm>,
) -> UiResult {
    u.require_write("rotate credentials")?;
    let grace = match form.grace.trim() {
        "" => None,
        g => Some(parse_grace(g).map_err(UiError::service("Not started"))?),
    };
    let method = match form.method.as_str() {
        "" => None,
        m => Some(m.parse().map_err(UiError::service("Not started"))?),
    };
    let r = s
        .rekey
        .start_rotation(
            &u.ctx(),
            &id,
            RotateRequest {
                grace,
                method,
                ..Default::default()
            },
        )
        .await
        .map_err(UiError::service("Not started"))?;
    drive_in_background(&s, &r);
    Ok(Redirect::to(&format!("/ui/rotations/{}", r.id)).into_response())
}

#[derive(Deserialize)]
pub(super) struct ConfirmForm {
    step: String,
    #[serde(default)]
    note: String,
    /// A guided rotation of an API key: the new key.
    #[serde(default)]
    key: SecretString,
    /// Other kinds: the new credential as JSON.
    #[serde(default)]
    credentials: SecretString,
}

/// `POST /ui/rotations/{id}/confirm`: the operator did the awaited step.
pub(super) async fn confirm(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { user: u, form }: CsrfForm<ConfirmForm>,
) -> UiResult {
    u.require_write("rotate credentials")?;
    let (r, c) = load(&s, &u, &id).await?;
    let needs = r.instructions.as_ref().is_some_and(|i| i.needs_credentials);
    let credentials = if !needs {
        None
    } else if c.row.kind == ConnectionKind::ApiKey {
        Some(super::actions::new_api_key(
            &c.row.credential_meta,
            &form.key,
        ))
    } else {
        // Parse errors name the position, never the content.
        Some(
            serde_json::from_str(form.credentials.expose()).map_err(|e| {
                UiError::page(
                    StatusCode::BAD_REQUEST,
                    "Not confirmed",
                    format!(
                        "The new credential is not valid JSON (line {}, column {}).",
                        e.line(),
                        e.column()
                    ),
                    "bad",
                )
            })?,
        )
    };
    let note = Some(form.note.trim().to_string()).filter(|n| !n.is_empty());
    let r = s
        .rekey
        .confirm_rotation(
            &u.ctx(),
            &id,
            ConfirmRequest {
                step: form.step,
                note,
                credentials,
            },
        )
        .await
        .map_err(UiError::service("Not confirmed"))?;
    drive_in_background(&s, &r);
    Ok(Redirect::to(&format!("/ui/rotations/{}", r.id)).into_response())
}

#[derive(Deserialize)]
pub(super) struct CancelForm {
    #[serde(default)]
    note: String,
}

/// `POST /ui/rotations/{id}/cancel`: stop before anything current changed.
pub(super) async fn cancel(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { user: u, form }: CsrfForm<CancelForm>,
) -> UiResult {
    u.require_write("rotate credentials")?;
    let note = Some(form.note.trim().to_string()).filter(|n| !n.is_empty());
    let r = s
        .rekey
        .cancel_rotation(&u.ctx(), &id, note.as_deref())
        .await
        .map_err(UiError::service("Not cancelled"))?;
    Ok(Redirect::to(&format!("/ui/rotations/{}", r.id)).into_response())
}
