//! One connection's pages: the detail page (facts, the last error with its
//! context, health, audit history, runbooks), Rotate (which starts a
//! rotation, see `rotations`, or shows the runbook) and the Update
//! credentials form. Their POSTs are in `actions`.

use super::show::{evidence, Actor, Actors, When};
use super::{connection_of, is_broken, is_checkable, look, SessionUser, UiError, UiResult};
use crate::pages::page;
use crate::{views, AppState};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rekey_api::{AuditEntryView, AuditQuery, ConnectionView};
use rekey_core::connection::ConnectionKind;
use rekey_core::credential_meta::OAuthMeta;
use rekey_core::last_error::LastError;
use rekey_core::scope::Scope;

struct ErrorInfo {
    message: String,
    code: String,
    http_status: Option<i64>,
    at: When,
    source: String,
    body: Option<String>,
}

struct HistoryItem {
    at: When,
    action: String,
    outcome: String,
    actor: Actor,
    detail: String,
}

#[derive(Template)]
#[template(path = "ui/connection.html")]
struct ConnectionPage {
    csrf: String,
    can_write: bool,
    c: ConnectionView,
    provider: String,
    owner: String,
    /// (id, name) of the OAuth app the grant came from.
    integration: Option<(String, String)>,
    class: &'static str,
    icon: &'static str,
    status_label: &'static str,
    broken: bool,
    /// Checks and confirmations of data flow can only fail once the
    /// connection is out of service (revoke_pending, revoked, disabled).
    checkable: bool,
    error: Option<ErrorInfo>,
    created: When,
    rotated: When,
    last_ok: When,
    last_checked: When,
    failing_since: When,
    history: Vec<HistoryItem>,
    /// "Confirmed working by <name> at <time>", with the note.
    confirmed: Option<(Actor, When, Option<String>)>,
    revoke_steps: Vec<String>,
    rotate_steps: Vec<String>,
    /// Revocations of its credentials, newest first, with their verdict
    /// shown as (class, words).
    revocations: Vec<(rekey_api::RevocationView, &'static str, &'static str)>,
    /// Who read the credential (for those who may read the audit log).
    readers: Option<Vec<rekey_api::ReaderView>>,
}

/// A revocation's verdict as colour and words (never colour alone).
fn verdict_look(r: &rekey_api::RevocationView) -> (&'static str, &'static str) {
    match (r.state.as_str(), r.verdict.as_deref()) {
        ("open", _) if r.method == "rotation" => ("warn", "Waiting for the rotation to retire it"),
        ("open", _) => ("warn", "Waiting for the runbook steps"),
        (_, Some("verified_rejected")) => {
            ("ok", "Verified: the provider refuses the old credential")
        }
        (_, Some("still_accepted")) => (
            "bad",
            "Alarm: the provider still accepts the old credential",
        ),
        (_, Some(_)) => ("warn", "Unverifiable: rekey cannot try this credential"),
        _ => ("warn", "Not verified yet: the provider has not answered"),
    }
}

/// One connection: facts, the last error with its context, health, its
/// audit history and the provider's runbooks.
pub(super) async fn connection(
    State(s): State<AppState>,
    Path(id): Path<String>,
    u: SessionUser,
) -> UiResult {
    let conn = connection_of(&s, &u, &id).await?;
    let (status, kind) = (conn.row.status, conn.row.kind);
    let c = views::connection(&conn);
    let actors = Actors::load(&s, u.tenant()).await;
    let history = s
        .rekey
        .audit_list(
            u.tenant(),
            &AuditQuery {
                target: Some(c.id.clone()),
                limit: Some(30),
                ..Default::default()
            },
        )
        .await
        .map(|l| {
            l.items
                .iter()
                .map(|e| history_item(views::audit_entry(e), &actors))
                .collect()
        })
        .unwrap_or_default();
    let entry = s.rekey.catalog().get(&c.provider);
    let (revoke_steps, rotate_steps) = entry
        .map(|p| {
            (
                p.revoke_for(kind.as_str()).steps.clone(),
                p.rotate_for(kind.as_str()).steps.clone(),
            )
        })
        .unwrap_or_default();
    let (class, icon, status_label) = look(status);
    // Without them the page still shows; the API lists them too.
    let revocations = s
        .rekey
        .revocations(u.tenant(), &c.id)
        .await
        .unwrap_or_default()
        .iter()
        .map(views::revocation_record)
        .map(|r| {
            let (class, words) = verdict_look(&r);
            (r, class, words)
        })
        .collect();
    let readers = if u.principal.require(Scope::AuditRead).is_ok() {
        s.rekey
            .credential_readers(u.tenant(), &c.id, None)
            .await
            .ok()
            .map(|r| views::readers(&r).items)
    } else {
        None
    };
    let integration = match OAuthMeta::from_column(&conn.row.credential_meta).integration_id {
        Some(i) => Some(match s.rekey.get_integration(u.tenant(), &i).await {
            Ok(v) => (v.row.id, v.row.display_name),
            // Deleted since: the id is all there is.
            Err(_) => (i.clone(), i),
        }),
        None => None,
    };
    let owner = [
        c.owner.name.clone(),
        c.owner.email.clone(),
        c.owner.subject.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");
    Ok(page(
        StatusCode::OK,
        &ConnectionPage {
            csrf: u.csrf.clone(),
            can_write: u.can_write(),
            integration,
            provider: entry
                .map(|p| p.display_name.clone())
                .unwrap_or_else(|| c.provider.clone()),
            owner: if owner.is_empty() {
                "—".into()
            } else {
                owner
            },
            class,
            icon,
            status_label,
            broken: is_broken(status),
            checkable: is_checkable(status),
            error: conn.row.error_context().as_ref().map(error_info),
            created: When::now(&c.created_at),
            rotated: When::opt(&c.rotated_at),
            last_ok: When::opt(&c.health.last_ok_at),
            last_checked: When::opt(&c.health.last_checked_at),
            failing_since: When::opt(&c.health.first_failed_at),
            history,
            confirmed: c
                .health
                .confirmation
                .as_ref()
                .map(|k| (actors.of(&k.by), When::now(&k.at), k.note.clone())),
            revoke_steps,
            rotate_steps,
            revocations,
            readers,
            c,
        },
    ))
}

/// An audit entry as a history row: its evidence (`from → to`, reason,
/// note), otherwise its error or outcome detail.
fn history_item(e: AuditEntryView, actors: &Actors) -> HistoryItem {
    let d = &e.details;
    let mut detail = evidence(d);
    if detail.is_empty() {
        detail = d
            .get("error")
            .or_else(|| d.get("outcome"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
    }
    HistoryItem {
        at: When::now(&e.at),
        actor: actors.of(&e.actor),
        action: e.action,
        outcome: e.outcome,
        detail,
    }
}

/// The connection's `last_error` as the page shows it.
fn error_info(e: &LastError) -> ErrorInfo {
    ErrorInfo {
        message: e.message.clone(),
        code: e.code.clone(),
        http_status: e.http_status.map(i64::from),
        at: When::now(e.at.as_deref().unwrap_or("")),
        source: e.source.clone().unwrap_or_default(),
        body: e.provider_body.clone(),
    }
}

#[derive(Template)]
#[template(path = "ui/rotate.html")]
struct RotatePage {
    id: String,
    name: String,
    provider: String,
    csrf: String,
    api_key: bool,
    oauth: bool,
    overlap: Option<bool>,
    invalidates_old: bool,
    rotate_steps: Vec<String>,
    revoke_steps: Vec<String>,
    /// The rotator a rotation would use (`postgres`, `manual`…), or why
    /// rekey cannot rotate this connection.
    rotator: Option<String>,
    no_rotator: Option<String>,
    /// An unfinished rotation of this connection: (id, state).
    running: Option<(String, String)>,
}

/// Rotate: the provider's rotation runbook with the way to hand rekey the
/// new credential (the key form in place for API keys, otherwise the
/// Connect page through Reauthorize).
pub(super) async fn rotate_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
    u: SessionUser,
) -> UiResult {
    let c = connection_of(&s, &u, &id).await?.row;
    u.require_write("rotate credentials")?;
    let entry = s.rekey.catalog().get(&c.provider);
    let rotate = entry.map(|p| p.rotate_for(c.kind.as_str()).clone());
    let (rotator, no_rotator) = match s.rekey.default_rotator(&c) {
        Ok(r) => (Some(r.to_string()), None),
        Err(e) => (None, Some(e.public_message())),
    };
    let running = s
        .rekey
        .list_rotations(u.tenant(), Some(&c.id), None, Some(5))
        .await
        .map_err(UiError::service("Unavailable"))?
        .0
        .into_iter()
        .find(|r| !r.state.is_finished())
        .map(|r| (r.id, r.state.as_str().to_string()));
    Ok(page(
        StatusCode::OK,
        &RotatePage {
            provider: entry
                .map(|p| p.display_name.clone())
                .unwrap_or_else(|| c.provider.clone()),
            api_key: c.kind == ConnectionKind::ApiKey,
            oauth: c.kind == ConnectionKind::OAuth2AuthorizationCode,
            overlap: rotate.as_ref().and_then(|r| r.overlap),
            invalidates_old: rotate
                .as_ref()
                .and_then(|r| r.invalidates_old_immediately)
                .unwrap_or(false),
            rotate_steps: rotate.map(|r| r.steps).unwrap_or_default(),
            revoke_steps: entry
                .map(|p| p.revoke_for(c.kind.as_str()).steps.clone())
                .unwrap_or_default(),
            csrf: u.csrf.clone(),
            id: c.id,
            name: c.display_name,
            rotator,
            no_rotator,
            running,
        },
    ))
}

#[derive(Template)]
#[template(path = "ui/update.html")]
struct UpdatePage {
    id: String,
    name: String,
    csrf: String,
}

/// The Update credentials form (API keys; other kinds use Reauthorize).
pub(super) async fn update_form(
    State(s): State<AppState>,
    Path(id): Path<String>,
    u: SessionUser,
) -> UiResult {
    let c = connection_of(&s, &u, &id).await?.row;
    if c.kind != ConnectionKind::ApiKey {
        return Err(UiError::page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Use Reauthorize",
            "This kind of credential is replaced through the Connect page (Reauthorize).",
            "warn",
        ));
    }
    Ok(page(
        StatusCode::OK,
        &UpdatePage {
            id: c.id,
            name: c.display_name,
            csrf: u.csrf.clone(),
        },
    ))
}
