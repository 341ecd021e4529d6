//! Bulk actions from the connections page: check, request reauthorization
//! or revoke several connections (picked tiles, or every connection matching
//! the page's filter) with one result row per connection. Each row is the
//! ordinary single-connection use case, so each is audited on its own; the
//! destructive ones are confirmed against the resolved list first.

use super::connections::Filter;
use super::show::When;
use super::{look, CsrfForm, SessionUser, UiError, UiResult};
use crate::pages::page;
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use futures_util::StreamExt;
use rekey_service::Ctx;
use std::collections::BTreeSet;

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
    /// A Connect link to hand to the connection's owner, and its expiry.
    link: Option<(String, When)>,
    /// Not done yet: a revocation waiting for its manual steps.
    waiting: bool,
}

#[derive(Template)]
#[template(path = "ui/bulk_result.html")]
struct ResultPage {
    heading: String,
    done: usize,
    waiting: usize,
    failed: usize,
    rows: Vec<Row>,
}

/// The bulk form: `action`, `id` (repeated) or `all=1` with the page's
/// filter fields, and `confirmed=1` once the list was confirmed.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct BulkForm {
    action: String,
    #[serde(rename = "id")]
    ids: Vec<String>,
    all: String,
    confirmed: String,
    #[serde(flatten)]
    filter: Filter,
}

/// `POST /ui/bulk`.
pub(super) async fn bulk(
    State(s): State<AppState>,
    CsrfForm { user: u, form }: CsrfForm<BulkForm>,
) -> UiResult {
    let action = Action::parse(&form.action).ok_or_else(|| {
        UiError::page(
            StatusCode::BAD_REQUEST,
            "Unknown action",
            "Choose Check now, Request reauthorization or Revoke.",
            "bad",
        )
    })?;
    u.require_write("change connections")?;
    let targets = if form.all == "1" {
        matching(&s, &u, &form.filter.trimmed()).await?
    } else {
        picked(&s, &u, form.ids).await?
    };
    if targets.is_empty() {
        return Err(UiError::page(
            StatusCode::BAD_REQUEST,
            "Nothing selected",
            "Select at least one connection, or apply to all connections matching the filter.",
            "warn",
        ));
    }
    if action != Action::Check && form.confirmed != "1" {
        return Ok(confirm_page(action, &u, targets));
    }
    let ctx = u.ctx();
    // In its own task: a browser or proxy giving up on a long request must
    // not stop a half-done revoke (each row is still audited on its own).
    let work = tokio::spawn(async move {
        futures_util::stream::iter(targets)
            .map(|t| run_one(&s, &ctx, action, t))
            .buffer_unordered(PARALLEL)
            .collect::<Vec<Row>>()
            .await
    });
    let mut rows = work.await.map_err(|e| {
        tracing::error!(error = %e, "bulk action task failed");
        UiError::page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Bulk action interrupted",
            "Some connections may have been changed; the audit log shows which.",
            "bad",
        )
    })?;
    rows.sort_by_key(|r| r.name.to_lowercase());
    let failed = rows.iter().filter(|r| r.class == "bad").count();
    let waiting = rows.iter().filter(|r| r.waiting).count();
    Ok(page(
        StatusCode::OK,
        &ResultPage {
            heading: format!("{}: {}", action.title(), connections(rows.len())),
            done: rows.len() - failed - waiting,
            waiting,
            failed,
            rows,
        },
    ))
}

/// Revoke and reauthorization list what they will touch and ask first.
fn confirm_page(action: Action, u: &SessionUser, targets: Vec<Target>) -> axum::response::Response {
    let (explain, danger) = match action {
        Action::Revoke => ("rekey revokes each credential at its provider where it can; the others wait for the manual steps shown in the results. This cannot be undone: each connection must be reauthorized to work again.", true),
        _ => ("rekey makes a single-use Connect link for each connection; send each link to the connection's owner. The old credential keeps working until the new one replaces it.", false),
    };
    page(
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

fn too_many() -> UiError {
    UiError::page(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Too many connections",
        format!("A bulk action covers at most {MAX_BULK} connections; narrow the filter."),
        "bad",
    )
}

/// Every connection matching the filter, page by page.
async fn matching(s: &AppState, u: &SessionUser, f: &Filter) -> UiResult<Vec<Target>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let l = s
            .rekey
            .list_connections(u.tenant(), &f.query(cursor, 200))
            .await
            .map_err(UiError::service("Cannot list"))?;
        out.extend(l.items.into_iter().map(|c| Target {
            status_label: look(c.row.status).2,
            id: c.row.id,
            name: c.row.display_name,
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
async fn picked(s: &AppState, u: &SessionUser, ids: Vec<String>) -> UiResult<Vec<Target>> {
    let ids: BTreeSet<String> = ids.into_iter().collect();
    if ids.len() > MAX_BULK {
        return Err(too_many());
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let c = s
            .rekey
            .get_connection(u.tenant(), &id)
            .await
            .map_err(UiError::service("Not found"))?;
        out.push(Target {
            status_label: look(c.row.status).2,
            id: c.row.id,
            name: c.row.display_name,
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
        waiting: false,
    };
    let failed = |e: rekey_core::Error| row("bad", "✖", "Failed", e.public_message());
    match action {
        Action::Check => match s.rekey.check_connection(ctx, &t.id).await {
            Ok(r) => {
                let (class, icon, label) = look(r.status);
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
                match r.revocation.as_ref().and_then(|v| v.row.verdict.as_deref()) {
                    Some("still_accepted") => row(
                        "bad",
                        "⚠",
                        "Revoked, but still accepted",
                        "The provider still accepts the old credential; rekey keeps checking."
                            .into(),
                    ),
                    Some("verified_rejected") => row(
                        "ok",
                        "✔",
                        "Revoked",
                        "Revoked at the provider, which now refuses the old credential.".into(),
                    ),
                    _ => row("ok", "✔", "Revoked", "Revoked at the provider.".into()),
                }
            }
            Ok(r) => Row {
                waiting: true,
                ..row(
                    "warn",
                    "⚠",
                    "Revocation pending",
                    format!("Manual steps: {}", r.manual_steps.join(" ")),
                )
            },
            Err(e) => failed(e),
        },
        Action::Reauthorize => match s.rekey.reauthorize(ctx, &t.id, false).await {
            Ok(r) => match r.session {
                Some(sess) => Row {
                    link: Some((
                        sess.url,
                        When::now(&rekey_core::time::ms_to_rfc3339(sess.expires_at)),
                    )),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::BulkForm;
    use crate::routes::ui::session::from_pairs;

    #[test]
    fn the_bulk_form_reads_ids_and_the_filter() {
        let pairs = [
            ("csrf", "t"),
            ("action", "revoke"),
            ("id", "con_a"),
            ("id", "con_b"),
            ("all", "1"),
            ("tag", " billing "),
            ("q", ""),
            ("confirmed", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        let f: BulkForm = from_pairs(pairs).unwrap();
        assert_eq!(f.action, "revoke");
        assert_eq!(f.ids, ["con_a", "con_b"]);
        assert_eq!((f.all.as_str(), f.confirmed.as_str()), ("1", "1"));
        let filter = f.filter.trimmed();
        assert_eq!((filter.tag.as_str(), filter.q.as_str()), ("billing", ""));
        assert_eq!(filter.link(None), "tag=billing");
    }
}
