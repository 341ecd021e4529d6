//! Bulk actions from the integrations page: check, request reauthorization
//! or revoke several connections (picked tiles, or every connection matching
//! the page's filter) with one result row per connection. Each row is the
//! ordinary single-connection use case, so each is audited on its own; the
//! destructive ones are confirmed against the resolved list first.

use super::{error_page, look, message, posted_fields, refuse_write, Filter};
use crate::pages::page;
use crate::AppState;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use rekey_service::{Ctx, SessionUser};
use std::collections::{BTreeSet, HashMap};

/// Most connections one bulk action touches; larger incidents are campaigns.
pub(crate) const MAX_BULK: usize = 1000;
/// Bulk rows run this many at a time (each may wait on a provider).
const PARALLEL: usize = 4;

#[derive(Clone, Copy, PartialEq)]
enum Action {
    Check,
    Reauthorize,
    Revoke,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        match s {
            "check" => Some(Action::Check),
            "reauthorize" => Some(Action::Reauthorize),
            "revoke" => Some(Action::Revoke),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Action::Check => "check",
            Action::Reauthorize => "reauthorize",
            Action::Revoke => "revoke",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Action::Check => "Check now",
            Action::Reauthorize => "Request reauthorization",
            Action::Revoke => "Revoke",
        }
    }
}

struct Target {
    id: String,
    name: String,
    status_label: &'static str,
}

#[derive(Template)]
#[template(path = "ui/bulk_confirm.html")]
struct ConfirmPage {
    heading: String,
    explain: &'static str,
    action: &'static str,
    button: String,
    danger: bool,
    csrf: String,
    targets: Vec<Target>,
}

struct Row {
    id: String,
    name: String,
    class: &'static str,
    icon: &'static str,
    result: String,
    detail: String,
    /// A Connect link to hand to the connection's owner.
    link: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "ui/bulk_result.html")]
struct ResultPage {
    heading: String,
    done: usize,
    failed: usize,
    rows: Vec<Row>,
}

/// `POST /ui/bulk`: fields `action`, `id` (repeated) or `all=1` with the
/// page's filter fields, and `confirmed=1` once the list was confirmed.
pub(super) async fn bulk(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let mut fields = HashMap::new();
    let mut ids = Vec::new();
    for (k, v) in form.map(|f| f.0).unwrap_or_default() {
        if k == "id" {
            ids.push(v);
        } else {
            fields.entry(k).or_insert(v);
        }
    }
    let u = match posted_fields(&s, &headers, &fields).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Some(action) = fields.get("action").and_then(|a| Action::parse(a)) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Unknown action",
            "Choose Check now, Request reauthorization or Revoke.".into(),
            "bad",
        );
    };
    if let Some(r) = refuse_write(&u, "change connections") {
        return r;
    }
    let targets = if fields.get("all").map(String::as_str) == Some("1") {
        matching(&s, &u, &Filter::from_map(&fields)).await
    } else {
        picked(&s, &u, ids).await
    };
    let targets =
        match targets {
            Ok(t) if t.is_empty() => return message(
                StatusCode::BAD_REQUEST,
                "Nothing selected",
                "Select at least one connection, or apply to all connections matching the filter."
                    .into(),
                "warn",
            ),
            Ok(t) => t,
            Err(r) => return r,
        };
    if action != Action::Check && fields.get("confirmed").map(String::as_str) != Some("1") {
        let (explain, danger) = match action {
            Action::Revoke => ("rekey revokes each credential at its provider where it can; the others wait for the manual steps shown in the results. This cannot be undone: each connection must be reauthorized to work again.", true),
            _ => ("rekey makes a single-use Connect link for each connection; send each link to the connection's owner. The old credential keeps working until the new one replaces it.", false),
        };
        return page(
            StatusCode::OK,
            &ConfirmPage {
                heading: format!("{} {}?", action.title(), connections(targets.len())),
                explain,
                action: action.as_str(),
                button: format!("{} {}", action.title(), connections(targets.len())),
                danger,
                csrf: u.csrf.clone(),
                targets,
            },
        );
    }
    let ctx = u.ctx(None, None);
    // In its own task: a browser or proxy giving up on a long request must
    // not stop a half-done revoke (each row is still audited on its own).
    let work = tokio::spawn(async move {
        futures_util::stream::iter(targets)
            .map(|t| run_one(&s, &ctx, action, t))
            .buffer_unordered(PARALLEL)
            .collect::<Vec<Row>>()
            .await
    });
    let mut rows = match work.await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "bulk action task failed");
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Bulk action interrupted",
                "Some connections may have been changed; the audit log shows which.".into(),
                "bad",
            );
        }
    };
    rows.sort_by_key(|r| r.name.to_lowercase());
    let failed = rows.iter().filter(|r| r.class == "bad").count();
    page(
        StatusCode::OK,
        &ResultPage {
            heading: format!("{}: {}", action.title(), connections(rows.len())),
            done: rows.len() - failed,
            failed,
            rows,
        },
    )
}

/// "1 connection", "2 connections".
fn connections(n: usize) -> String {
    if n == 1 {
        "1 connection".into()
    } else {
        format!("{n} connections")
    }
}

fn too_many() -> Response {
    message(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Too many connections",
        format!("A bulk action covers at most {MAX_BULK} connections; narrow the filter."),
        "bad",
    )
}

/// Every connection matching the filter, page by page.
async fn matching(s: &AppState, u: &SessionUser, f: &Filter) -> Result<Vec<Target>, Response> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let l = s
            .rekey
            .list_connections(&u.principal.tenant, &f.query(cursor, 200))
            .await
            .map_err(|e| error_page("Cannot list", &e))?;
        out.extend(l.items.into_iter().map(|c| Target {
            status_label: look(&c.status).2,
            id: c.id,
            name: c.display_name,
        }));
        if out.len() > MAX_BULK {
            return Err(too_many());
        }
        match l.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// The picked tiles; ids that are not this tenant's connections are refused.
async fn picked(s: &AppState, u: &SessionUser, ids: Vec<String>) -> Result<Vec<Target>, Response> {
    let ids: BTreeSet<String> = ids.into_iter().collect();
    if ids.len() > MAX_BULK {
        return Err(too_many());
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let c = s
            .rekey
            .get_connection(&u.principal.tenant, &id)
            .await
            .map_err(|e| error_page("Not found", &e))?;
        out.push(Target {
            status_label: look(&c.status).2,
            id: c.id,
            name: c.display_name,
        });
    }
    Ok(out)
}

async fn run_one(s: &AppState, ctx: &Ctx, action: Action, t: Target) -> Row {
    let row = |class, icon, result: &str, detail: String| Row {
        id: t.id.clone(),
        name: t.name.clone(),
        class,
        icon,
        result: result.to_string(),
        detail,
        link: None,
    };
    let failed = |e: rekey_core::Error| row("bad", "✖", "Failed", e.public_message());
    match action {
        Action::Check => match s.rekey.check_connection(ctx, &t.id).await {
            Ok(r) => {
                let (class, icon, label) = look(&r.status);
                let class = match (r.outcome.as_str(), class) {
                    ("ok", _) => "ok",
                    (_, "") => "warn",
                    (_, c) => c,
                };
                row(class, icon, label, r.message.unwrap_or_default())
            }
            Err(e) => failed(e),
        },
        Action::Revoke => match s.rekey.revoke_connection(ctx, &t.id).await {
            Ok(r) if r.revoked_at_provider => {
                row("ok", "✔", "Revoked", "Revoked at the provider.".into())
            }
            Ok(r) => row(
                "warn",
                "⚠",
                "Revocation pending",
                format!("Manual steps: {}", r.manual_steps.join(" ")),
            ),
            Err(e) => failed(e),
        },
        Action::Reauthorize => match s.rekey.reauthorize(ctx, &t.id, false).await {
            Ok(r) => match r.session {
                Some(sess) => Row {
                    link: Some((sess.url, sess.expires_at)),
                    ..row(
                        "ok",
                        "✔",
                        "Link made",
                        "Send this single-use link to the owner.".into(),
                    )
                },
                None => row("ok", "✔", "Switched", "Switched to the new grant.".into()),
            },
            Err(e) => failed(e),
        },
    }
}
