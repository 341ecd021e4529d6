//! The connections page: a summary line of counts by status (each a link
//! that filters), every connection as a tile in a grid, grouped by provider
//! (by display name), with search and filters, paged; the bulk form acts on
//! what it shows.

use super::show::When;
use super::{is_broken, is_checkable, look, look_name, SessionUser};
use crate::pages::page;
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use rekey_api::ConnectionQuery;
use rekey_core::connection::{ConnectionKind, Owner, Status};
use rekey_core::time::ms_to_rfc3339;
use rekey_service::Connection;
use std::collections::{BTreeMap, HashMap};

pub(super) struct Tile {
    id: String,
    name: String,
    class: &'static str,
    icon: &'static str,
    status_label: &'static str,
    /// Drawn as a broken-chain icon.
    broken: bool,
    disabled: bool,
    /// Waiting for the operator's "Confirm revocation" (connection page).
    revoke_pending: bool,
    /// Check now can only fail once out of service.
    checkable: bool,
    /// Has the Update credentials form.
    api_key: bool,
    error: Option<String>,
    tags: Vec<String>,
    /// Who the credential belongs to, "—" when unknown.
    owner: String,
    /// Where copies of the secret live.
    custody: Vec<String>,
    checked: When,
    /// The result of an action just taken on this tile (htmx swaps).
    pub note: Option<(String, &'static str)>,
}

struct Group {
    /// `one`, `two` or `many` tiles: how wide the group is in the grid.
    size: &'static str,
    provider: String,
    display: String,
    initials: String,
    tiles: Vec<Tile>,
}

/// One count of the summary line.
struct Count {
    status: &'static str,
    label: &'static str,
    class: &'static str,
    n: i64,
}

#[derive(Template)]
#[template(path = "ui/connections.html")]
struct ConnectionsPage {
    csrf: String,
    can_write: bool,
    /// The role reads the audit log, so may export evidence.
    can_audit: bool,
    statuses: Vec<String>,
    /// (id, display name) of every catalog provider.
    providers: Vec<(String, String)>,
    f: Filter,
    filtered: bool,
    groups: Vec<Group>,
    shown: usize,
    /// More connections match than the page shows.
    more: bool,
    /// Query string of the next page, if any.
    next: Option<String>,
    /// This is not the first page.
    paged: bool,
    error: Option<String>,
    /// Counts by status over all the tenant's connections, worst first.
    counts: Vec<Count>,
    total: i64,
    /// Tag and custody values in use, suggested by the filter inputs.
    tags_in_use: Vec<String>,
    custody_in_use: Vec<String>,
}

/// The connections page's filters, as given in its query string (and
/// carried by the bulk form so "all matching the filter" means the same set).
#[derive(Clone, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct Filter {
    pub q: String,
    pub status: String,
    pub provider: String,
    pub tag: String,
    pub custody: String,
    /// An OAuth integration id (`int_…`).
    pub integration: String,
    /// Dates (`YYYY-MM-DD`, from a date input) or RFC 3339 times.
    pub created_before: String,
    pub rotated_before: String,
    pub last_read_after: String,
}

/// A date input's `YYYY-MM-DD` as the start of that day (UTC); anything
/// else is passed on for the service to judge.
fn day_or_time(v: &str) -> String {
    let b = v.as_bytes();
    let is_day = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if is_day {
        format!("{v}T00:00:00Z")
    } else {
        v.to_string()
    }
}

impl Filter {
    pub(crate) fn from_map(m: &HashMap<String, String>) -> Filter {
        let f = |k: &str| m.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        Filter {
            q: f("q"),
            status: f("status"),
            provider: f("provider"),
            tag: f("tag"),
            custody: f("custody"),
            integration: f("integration"),
            created_before: f("created_before"),
            rotated_before: f("rotated_before"),
            last_read_after: f("last_read_after"),
        }
    }

    /// The connections page's query string for this filter (at `cursor`).
    pub(crate) fn link(&self, cursor: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", self.q.as_str()),
            ("status", &self.status),
            ("provider", &self.provider),
            ("tag", &self.tag),
            ("custody", &self.custody),
            ("integration", &self.integration),
            ("created_before", &self.created_before),
            ("rotated_before", &self.rotated_before),
            ("last_read_after", &self.last_read_after),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        q.finish()
    }

    /// Each value trimmed, as [`Filter::from_map`] reads them.
    pub(crate) fn trimmed(self) -> Filter {
        let t = |v: String| v.trim().to_string();
        Filter {
            q: t(self.q),
            status: t(self.status),
            provider: t(self.provider),
            tag: t(self.tag),
            custody: t(self.custody),
            integration: t(self.integration),
            created_before: t(self.created_before),
            rotated_before: t(self.rotated_before),
            last_read_after: t(self.last_read_after),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.link(None).is_empty()
    }

    pub(crate) fn query(&self, cursor: Option<String>, limit: i64) -> ConnectionQuery {
        let opt = |v: &String| (!v.is_empty()).then(|| v.clone());
        ConnectionQuery {
            q: opt(&self.q),
            status: opt(&self.status),
            provider: opt(&self.provider),
            tag: opt(&self.tag),
            custody: opt(&self.custody),
            integration: opt(&self.integration),
            created_before: opt(&self.created_before).map(|v| day_or_time(&v)),
            rotated_before: opt(&self.rotated_before).map(|v| day_or_time(&v)),
            last_read_after: opt(&self.last_read_after).map(|v| day_or_time(&v)),
            cursor,
            limit: Some(limit),
            ..Default::default()
        }
    }
}

/// How many tiles the page shows; bulk actions on "all matching" go further.
const PAGE_TILES: i64 = 200;

/// The summary line's order: what needs attention first.
const SUMMARY_ORDER: [(&str, &str); 7] = [
    ("needs_reauth", "broken"),
    ("revoked", "revoked"),
    ("revoke_pending", "revocation pending"),
    ("degraded", "degraded"),
    ("pending", "pending"),
    ("active", "active"),
    ("disabled", "disabled"),
];

fn counts(summary: &rekey_service::ConnectionSummary) -> Vec<Count> {
    SUMMARY_ORDER
        .iter()
        .filter_map(|(status, label)| {
            let n = summary
                .counts
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |c| c.1);
            (n > 0).then(|| Count {
                status,
                label,
                class: look_name(status).0,
                n,
            })
        })
        .collect()
}

/// Owner as shown on tiles: name, email or subject, first known.
fn owner_of(o: &Owner) -> String {
    [&o.name, &o.email, &o.subject]
        .into_iter()
        .flatten()
        .next()
        .cloned()
        .unwrap_or_else(|| "—".into())
}

pub(super) fn tile_of(c: Connection) -> Tile {
    let Connection { row: c, notes } = c;
    let (class, icon, mut status_label) = look(c.status);
    // No probe can check it: say so instead of "Pending verification"
    // forever; the connection page has the operator's confirmation.
    let unchecked = notes.is_some_and(|n| n.unchecked_reason.is_some());
    if c.status == Status::Pending && unchecked {
        status_label = "Cannot be checked automatically: confirm data flows";
    }
    Tile {
        owner: owner_of(&c.owner),
        checked: When::opt(&c.last_checked_at.map(ms_to_rfc3339)),
        custody: c.custody.clone(),
        broken: is_broken(c.status),
        disabled: c.status == Status::Disabled,
        revoke_pending: c.status == Status::RevokePending,
        checkable: is_checkable(c.status),
        api_key: c.kind == ConnectionKind::ApiKey,
        error: c
            .error_context()
            .map(|e| e.message.chars().take(160).collect()),
        tags: c.tags,
        note: None,
        id: c.id,
        name: c.display_name,
        class,
        icon,
        status_label,
    }
}

pub(super) async fn connections(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    u: SessionUser,
) -> Response {
    let filter = Filter::from_map(&q);
    let cursor = q.get("cursor").cloned().filter(|c| !c.is_empty());
    let paged = cursor.is_some();
    let (list, error) = match s
        .rekey
        .list_connections(u.tenant(), &filter.query(cursor, PAGE_TILES))
        .await
    {
        Ok(l) => (l, None),
        // A bad filter value is shown above an empty list, with the form kept.
        Err(e) => (Default::default(), Some(e)),
    };
    // Without the summary the page still works: the line is left out.
    let summary = s
        .rekey
        .connection_summary(u.tenant())
        .await
        .unwrap_or_default();
    let next = list.next_cursor.as_deref().map(|c| filter.link(Some(c)));
    let groups = groups(&s, list.items);
    let status = error
        .as_ref()
        .map_or(StatusCode::OK, |e| crate::error::status_of(e.class()));
    page(
        status,
        &ConnectionsPage {
            counts: counts(&summary),
            total: summary.counts.iter().map(|c| c.1).sum(),
            tags_in_use: summary.tags,
            custody_in_use: summary.custody,
            csrf: u.csrf.clone(),
            can_write: u.can_write(),
            can_audit: u
                .principal
                .require(rekey_core::scope::Scope::AuditRead)
                .is_ok(),
            statuses: Status::ALL.iter().map(|s| s.as_str().to_string()).collect(),
            providers: providers(&s),
            filtered: !filter.is_empty(),
            f: filter,
            shown: groups.iter().map(|g| g.tiles.len()).sum(),
            groups,
            more: next.is_some() || paged,
            next,
            paged,
            error: error.map(|e| e.public_message()),
        },
    )
}

/// The tiles grouped by provider, groups by display name.
fn groups(s: &AppState, items: Vec<Connection>) -> Vec<Group> {
    let mut by_provider: BTreeMap<String, Vec<Connection>> = BTreeMap::new();
    for c in items {
        by_provider
            .entry(c.row.provider.clone())
            .or_default()
            .push(c);
    }
    let mut groups = by_provider
        .into_iter()
        .map(|(p, conns)| {
            let display = s
                .rekey
                .catalog()
                .get(&p)
                .map(|e| e.display_name.clone())
                .unwrap_or_else(|| p.clone());
            let initials: String = display
                .split_whitespace()
                .filter_map(|w| w.chars().next())
                .take(2)
                .collect::<String>()
                .to_uppercase();
            let mut tiles: Vec<Tile> = conns.into_iter().map(tile_of).collect();
            tiles.sort_by_key(|t| t.name.to_lowercase());
            Group {
                size: match tiles.len() {
                    1 => "one",
                    2 => "two",
                    _ => "many",
                },
                provider: p,
                display,
                initials,
                tiles,
            }
        })
        .collect::<Vec<_>>();
    groups.sort_by(|a, b| {
        (a.display.to_lowercase(), &a.provider).cmp(&(b.display.to_lowercase(), &b.provider))
    });
    groups
}

/// (id, display name) of every catalog provider, by name: the filter's choices.
fn providers(s: &AppState) -> Vec<(String, String)> {
    let mut providers: Vec<(String, String)> = s
        .rekey
        .catalog()
        .all()
        .map(|p| (p.id.clone(), p.display_name.clone()))
        .collect();
    providers.sort_by_key(|p| p.1.to_lowercase());
    providers
}

/// One tile, for htmx to swap in place.
#[derive(Template)]
#[template(path = "ui/tile.html")]
pub(super) struct TileFragment {
    pub t: Tile,
    pub csrf: String,
    pub can_write: bool,
}

/// `GET /ui/evidence?<filter>&format=csv|json`: the evidence export of the
/// connections the page's filter selects, as a download (the API's export,
/// recorded in the audit chain under the signed-in user).
pub(super) async fn evidence(
    State(s): State<AppState>,
    method: axum::http::Method,
    Query(q): Query<HashMap<String, String>>,
    u: SessionUser,
) -> super::UiResult {
    if u.principal
        .require(rekey_core::scope::Scope::AuditRead)
        .is_err()
    {
        return Err(super::UiError::Forbidden(
            "This role cannot export evidence (it needs the audit log).".into(),
        ));
    }
    let filter = Filter::from_map(&q);
    let query = rekey_api::EvidenceQuery::new(
        ConnectionQuery {
            limit: None,
            ..filter.query(None, 1)
        },
        q.get("format").cloned(),
    );
    let head = method == axum::http::Method::HEAD;
    crate::evidence::export(s.rekey.clone(), u.ctx(), query, head)
        .await
        .map_err(|e| super::UiError::Service("Evidence export failed", e))
}
