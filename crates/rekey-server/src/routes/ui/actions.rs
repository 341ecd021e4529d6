//! What the dashboard does to one connection: Check now (in place, through
//! htmx), the three-dot menu's actions (confirmed first, each an
//! [`ConnAction`]) and saving a new API key. Each runs one rekey-service use
//! case with the session's audit context ([`SessionUser::ctx`]).

use super::connections::{tile_of, TileFragment};
use super::session::{Htmx, TokenOnly};
use super::{connection_of, look, message, CsrfForm, SessionUser, UiError, UiResult};
use crate::pages::page;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rekey_core::connection::{ConnectionKind, Status};
use rekey_core::credential_meta::StaticMeta;
use rekey_core::SecretString;
use rekey_service::Connection;

/// An action of the connection menu (`/ui/connections/{id}/{action}`).
/// Any other name is refused before anything runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConnAction {
    Reauthorize,
    Disable,
    Enable,
    Revoke,
    Delete,
}

/// How the confirmation page asks for an action.
struct ActionText {
    heading: String,
    explain: &'static str,
    button: &'static str,
    danger: bool,
}

impl ConnAction {
    pub(super) const ALL: [ConnAction; 5] = [
        ConnAction::Reauthorize,
        ConnAction::Disable,
        ConnAction::Enable,
        ConnAction::Revoke,
        ConnAction::Delete,
    ];

    pub(super) fn parse(s: &str) -> Option<ConnAction> {
        ConnAction::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            ConnAction::Reauthorize => "reauthorize",
            ConnAction::Disable => "disable",
            ConnAction::Enable => "enable",
            ConnAction::Revoke => "revoke",
            ConnAction::Delete => "delete",
        }
    }

    fn text(self, name: &str) -> ActionText {
        let (verb, explain, button, danger) = match self {
            ConnAction::Reauthorize => ("Reauthorize", "Opens the hosted Connect page: sign in at the provider (or enter the new key) to replace this connection's credential. The old grant is revoked once the new one works.", "Connect new account", false),
            ConnAction::Disable => ("Disable", "Its credentials stop being handed out and it is no longer checked, until enabled again.", "Disable", true),
            ConnAction::Enable => ("Enable", "It goes back to pending and is verified by the next check.", "Enable", false),
            ConnAction::Revoke => ("Revoke", "rekey revokes the credential at the provider where it can; otherwise it shows the manual steps. This cannot be undone: the connection must be reauthorized to work again.", "Revoke", true),
            ConnAction::Delete => ("Delete", "OAuth grants are revoked at the provider first; then the stored secrets are destroyed. This cannot be undone.", "Delete", true),
        };
        ActionText {
            heading: format!("{verb} {name}"),
            explain,
            button,
            danger,
        }
    }
}

fn unknown_action() -> UiError {
    UiError::page(
        StatusCode::NOT_FOUND,
        "Unknown action",
        "There is no such action.",
        "bad",
    )
}

#[derive(Template)]
#[template(path = "ui/confirm.html")]
struct ConfirmPage {
    id: String,
    action: &'static str,
    heading: String,
    explain: &'static str,
    button: &'static str,
    class: &'static str,
    csrf: String,
}

/// The menu action's confirmation page, whose form posts to [`act`].
pub(super) async fn confirm(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    u: SessionUser,
) -> UiResult {
    let c = connection_of(&s, &u, &id).await?;
    let action = ConnAction::parse(&action).ok_or_else(unknown_action)?;
    let t = action.text(&c.row.display_name);
    Ok(page(
        StatusCode::OK,
        &ConfirmPage {
            id: c.row.id,
            action: action.as_str(),
            heading: t.heading,
            explain: t.explain,
            button: t.button,
            class: if t.danger { "danger" } else { "" },
            csrf: u.csrf.clone(),
        },
    ))
}

/// Carry out a confirmed menu action; the result is shown on its own page
/// (Reauthorize goes on to the Connect page).
pub(super) async fn act(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    CsrfForm { user: u, .. }: CsrfForm<TokenOnly>,
) -> UiResult {
    let action = ConnAction::parse(&action).ok_or_else(unknown_action)?;
    u.require_write("change connections")?;
    let ctx = u.ctx();
    let reason = || rekey_api::DisableConnection {
        reason: Some(format!("dashboard: {}", u.username)),
        version: None,
    };
    let not_done = UiError::service("Not done");
    let done = match action {
        ConnAction::Reauthorize => {
            let r = s
                .rekey
                .reauthorize(&ctx, &id, false)
                .await
                .map_err(not_done)?;
            match r.session {
                Some(sess) => return Ok(Redirect::to(&sess.url).into_response()),
                None => "Switched to the new grant.".to_string(),
            }
        }
        ConnAction::Disable => {
            let c = s
                .rekey
                .set_status(&ctx, &id, Status::Disabled, reason(), None)
                .await
                .map_err(not_done)?;
            format!("{} is disabled.", c.row.display_name)
        }
        ConnAction::Enable => {
            let c = s
                .rekey
                .set_status(&ctx, &id, Status::Pending, reason(), None)
                .await
                .map_err(not_done)?;
            format!("{} is enabled and will be verified.", c.row.display_name)
        }
        ConnAction::Revoke => {
            let r = s
                .rekey
                .revoke_connection(&ctx, &id)
                .await
                .map_err(not_done)?;
            if r.revoked_at_provider {
                format!(
                    "{} is revoked at the provider.",
                    r.connection.row.display_name
                )
            } else {
                format!(
                    "{} is waiting for manual revocation: {}",
                    r.connection.row.display_name,
                    r.manual_steps.join(" ")
                )
            }
        }
        ConnAction::Delete => {
            s.rekey
                .delete_connection(&ctx, &id, None, true)
                .await
                .map_err(not_done)?;
            "The connection and its stored secrets are deleted.".to_string()
        }
    };
    Ok(message(StatusCode::OK, "Done", done, "ok"))
}

/// Check now. From htmx the answer is the tile with the result on it;
/// otherwise a result page.
pub(super) async fn check(
    State(s): State<AppState>,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    form: Result<CsrfForm<TokenOnly>, UiError>,
) -> Response {
    let checked = match form {
        Ok(CsrfForm { user, .. }) => run_check(&s, htmx, &id, &user).await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(r) => r,
        Err(e) if htmx => reload(e.into_response()),
        Err(e) => e.into_response(),
    }
}

async fn run_check(s: &AppState, htmx: bool, id: &str, u: &SessionUser) -> UiResult {
    u.require_write("run checks")?;
    // htmx swaps the tile in place, with the result on it.
    let fragment = |c: Connection, note: String, class: &'static str| {
        let mut t = tile_of(c);
        t.note = Some((note, class));
        page(
            StatusCode::OK,
            &TileFragment {
                t,
                csrf: u.csrf.clone(),
                can_write: true,
            },
        )
    };
    match s.rekey.check_connection(&u.ctx(), id).await {
        Ok(r) => {
            let (class, _, label) = look(r.status);
            let detail = r.message.map(|m| format!(" {m}")).unwrap_or_default();
            let class = if class.is_empty() { "warn" } else { class };
            if htmx {
                let note = format!("Checked: {} — {label}.{detail}", r.outcome);
                return Ok(fragment(r.connection, note, class));
            }
            let text = format!(
                "{}: {} — {label}.{detail}",
                r.connection.row.display_name, r.outcome
            );
            Ok(message(StatusCode::OK, "Check finished", text, class))
        }
        Err(e) if htmx => match s.rekey.get_connection(u.tenant(), id).await {
            Ok(c) => Ok(fragment(
                c,
                format!("Check failed: {}", e.public_message()),
                "bad",
            )),
            Err(_) => Err(UiError::Service("Check failed", e)),
        },
        Err(e) => Err(UiError::Service("Check failed", e)),
    }
}

/// htmx swaps only successful answers: for a refusal (expired form, role)
/// it reloads the page instead, which shows the real state. A redirect to
/// the sign-in page (expired session) would be followed by the browser and
/// the sign-in page swapped into the tile, so it becomes `HX-Redirect`.
fn reload(mut r: Response) -> Response {
    if r.status().is_redirection() {
        return (
            StatusCode::UNAUTHORIZED,
            [("hx-redirect", "/ui/login")],
            "Sign in again.",
        )
            .into_response();
    }
    r.headers_mut()
        .insert("hx-refresh", HeaderValue::from_static("true"));
    r
}

/// The Update credentials form's fields.
#[derive(serde::Deserialize)]
pub(super) struct UpdateForm {
    #[serde(default)]
    key: SecretString,
}

/// Replace an API key, keeping how it is sent (header name, prefix…).
pub(super) async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { user: u, form }: CsrfForm<UpdateForm>,
) -> UiResult {
    u.require_write("change connections")?;
    let c = connection_of(&s, &u, &id).await?;
    if c.row.kind != ConnectionKind::ApiKey {
        return Err(UiError::page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Use Reauthorize",
            "Only API keys are updated here.",
            "warn",
        ));
    }
    let req = rekey_api::UpdateCredentials {
        credentials: new_api_key(&c.row.credential_meta, &form.key),
        version: None,
        grace: None,
    };
    // Validation messages name the field, never the value.
    let v = s
        .rekey
        .update_credentials(&u.ctx(), &id, req, None)
        .await
        .map_err(UiError::service("Not saved"))?;
    Ok(message(
        StatusCode::OK,
        "Saved",
        format!(
            "{} has its new key; it is {} until the next check.",
            v.row.display_name, v.row.status
        ),
        "ok",
    ))
}

/// A new API key in the connection's credential shape: how the key is sent
/// (header name, prefix…) stays as it is; only the key is new.
pub(super) fn new_api_key(credential_meta: &str, key: &SecretString) -> serde_json::Value {
    let mut creds = serde_json::Map::new();
    creds.insert("key".into(), key.expose().into());
    let meta = StaticMeta::from_column(credential_meta).unwrap_or_default();
    for (k, v) in [
        ("placement", meta.placement),
        ("name", meta.name),
        ("prefix", meta.prefix),
        ("username", meta.username),
    ] {
        if let Some(v) = v {
            creds.insert(k.into(), v.into());
        }
    }
    serde_json::Value::Object(creds)
}

#[cfg(test)]
mod tests {
    use super::ConnAction;

    #[test]
    fn only_the_menu_actions_parse() {
        for a in ConnAction::ALL {
            assert_eq!(ConnAction::parse(a.as_str()), Some(a));
        }
        for unknown in [
            "", "explode", "Delete", "delete ", "check", "update", "confirm",
        ] {
            assert_eq!(ConnAction::parse(unknown), None, "{unknown:?}");
        }
    }
}
