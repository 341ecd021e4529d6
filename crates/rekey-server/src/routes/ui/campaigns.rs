//! Incident campaigns on the dashboard: started from a filtered
//! connections view (`new`), planned as a table to confirm (a draft's
//! page), then followed on the campaign's page, whose progress and
//! connection list refresh themselves with htmx while it runs. The
//! operator's part (confirm by hand, skip, resend or cancel an owner's
//! link) are buttons; one connection's page holds the forms that take a
//! comment, so a refresh never replaces what is being typed. The use
//! cases are rekey-service's, as for the API.

use super::connections::Filter;
use super::show::{Actor, Actors, When};
use super::{CsrfForm, SessionUser, UiError, UiResult};
use crate::pages::page;
use crate::routes::campaigns::{item_view, link_view, view};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rekey_api::{CampaignFilter, CampaignItemView, CampaignNotify, CampaignView, CreateCampaign};
use rekey_core::campaign::{CampaignState, ItemState};
use rekey_core::scope::Scope;
use rekey_core::time::{ms_to_datetime, now_ms};
use serde::Deserialize;
use std::collections::HashMap;

/// Connections per page of a campaign's list.
const PAGE_ITEMS: i64 = 100;
/// Days to the deadline the form suggests.
const DEFAULT_DAYS: i64 = 7;

const BACK: (&str, &str) = ("/ui/campaigns", "Back to campaigns");

/// A refusal rendered with the way back to the campaigns.
fn back(e: UiError) -> Response {
    e.render(BACK)
}

/// Each item state in words (never colour alone), and its class.
fn state_look(state: &str) -> (&'static str, &'static str) {
    match state.parse() {
        Ok(ItemState::Pending) => ("Pending", ""),
        Ok(ItemState::InProgress) => ("In progress", "warn"),
        Ok(ItemState::WaitingForOwner) => ("Waiting for the owner", "warn"),
        Ok(ItemState::WaitingForOperator) => ("Waiting for an operator", "bad"),
        Ok(ItemState::Done) => ("Done", "ok"),
        Ok(ItemState::Failed) => ("Failed", "bad"),
        Ok(ItemState::Skipped) => ("Skipped", ""),
        Ok(ItemState::Overdue) => ("Overdue", "bad"),
        Err(_) => ("Unknown", ""),
    }
}

/// The campaign's state in words.
fn campaign_look(state: &str) -> &'static str {
    match state.parse() {
        Ok(CampaignState::Draft) => "Draft: nothing has happened yet",
        Ok(CampaignState::Running) => "Running",
        Ok(CampaignState::Paused) => "Paused: no new step starts",
        Ok(CampaignState::Completed) => "Completed",
        Ok(CampaignState::Cancelled) => "Cancelled",
        Err(_) => "Unknown",
    }
}

/// One line of the per-state bars.
struct Bar {
    state: &'static str,
    label: &'static str,
    class: &'static str,
    n: i64,
}

/// One provider's or owner's line.
struct Share {
    key: String,
    done: i64,
    total: i64,
    /// Unfinished and waiting on a person.
    waiting: i64,
}

/// A connection of the list, ready to show.
struct Line {
    i: CampaignItemView,
    label: &'static str,
    class: &'static str,
    /// Its owner holds a live link: Cancel link applies, and its expiry shows.
    owner_link: bool,
    /// Its reauthorization is under way and the deadline ahead: a new link
    /// can be sent (the service's rule for a resend).
    resendable: bool,
    /// Confirm or skip apply.
    open: bool,
}

fn line(i: CampaignItemView) -> Line {
    let (mut label, class) = state_look(&i.state);
    let state: Option<ItemState> = i.state.parse().ok();
    // Done by an operator's word, not by rekey's proof: say so.
    if state == Some(ItemState::Done) && i.confirmed_by.is_some() {
        label = "Done (confirmed by hand)";
    } else if state == Some(ItemState::Done) {
        label = "Done (verified)";
    }
    Line {
        owner_link: i.link_expires_at.is_some() && state == Some(ItemState::WaitingForOwner),
        resendable: i.current.as_deref() == Some("reauthorize")
            && matches!(
                state,
                Some(ItemState::WaitingForOwner | ItemState::WaitingForOperator)
            ),
        open: state.is_some_and(|s| !s.is_finished()) || state == Some(ItemState::Failed),
        label,
        class,
        i,
    }
}

fn bars(c: &CampaignView) -> Vec<Bar> {
    [
        ItemState::Done,
        ItemState::WaitingForOwner,
        ItemState::WaitingForOperator,
        ItemState::InProgress,
        ItemState::Pending,
        ItemState::Failed,
        ItemState::Skipped,
    ]
    .into_iter()
    .map(|s| {
        let (label, class) = state_look(s.as_str());
        Bar {
            state: s.as_str(),
            label,
            class,
            n: c.counts.get(s.as_str()).copied().unwrap_or(0),
        }
    })
    .collect()
}

fn shares(b: &[rekey_api::CampaignBreakdown], limit: usize) -> Vec<Share> {
    let waiting = |b: &rekey_api::CampaignBreakdown| {
        [ItemState::WaitingForOwner, ItemState::WaitingForOperator]
            .iter()
            .map(|s| b.counts.get(s.as_str()).copied().unwrap_or(0))
            .sum()
    };
    let mut out: Vec<Share> = b
        .iter()
        .map(|b| Share {
            key: b.key.clone(),
            done: b.done,
            total: b.total,
            waiting: waiting(b),
        })
        .collect();
    // Most left to do first.
    out.sort_by_key(|s| std::cmp::Reverse(s.total - s.done));
    out.truncate(limit);
    out
}

/// The part of the campaign page that refreshes itself while it runs.
#[derive(Template)]
#[template(path = "ui/campaign_live.html")]
struct Live {
    c: CampaignView,
    state_label: &'static str,
    csrf: String,
    can_write: bool,
    bars: Vec<Bar>,
    /// Unfinished past the deadline (also counted in their state).
    overdue: i64,
    providers: Vec<Share>,
    owners: Vec<Share>,
    lines: Vec<Line>,
    /// The list's state filter (`""`: all).
    only: String,
    /// Query string of this view (state filter and page), for the refresh.
    here: String,
    next: Option<String>,
    /// The htmx trigger while workers move the campaign on.
    poll: Option<&'static str>,
    /// Cancel applies (not finished).
    cancellable: bool,
}

#[derive(Template)]
#[template(path = "ui/campaign.html")]
struct CampaignPage {
    c: CampaignView,
    csrf: String,
    can_write: bool,
    can_audit: bool,
    draft: bool,
    /// A draft's plan (this page of it).
    plan: Vec<Line>,
    /// How many connections a draft's filter selects now.
    plan_size: i64,
    plan_next: Option<String>,
    /// A draft's plan, on this page: steps by who carries them out.
    by_rekey: usize,
    by_operator: usize,
    by_owner: usize,
    /// The rendered [`Live`] (started campaigns).
    live: String,
    deadline: When,
    created_by: Actor,
    reason_lines: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ListQuery {
    state: String,
    cursor: String,
}

impl ListQuery {
    fn link(&self, cursor: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if !self.state.is_empty() {
            q.append_pair("state", &self.state);
        }
        if let Some(c) = cursor.filter(|c| !c.is_empty()) {
            q.append_pair("cursor", c);
        }
        q.finish()
    }
}

async fn live(s: &AppState, u: &SessionUser, id: &str, q: &ListQuery) -> UiResult<Live> {
    let c = s
        .rekey
        .get_campaign(u.tenant(), id)
        .await
        .map_err(UiError::service("Not found"))?;
    let state = match q.state.as_str() {
        "" => None,
        v => Some(
            v.parse::<ItemState>()
                .map_err(UiError::service("Bad filter"))?,
        ),
    };
    let cursor = Some(q.cursor.as_str()).filter(|c| !c.is_empty());
    let (_, items, next) = s
        .rekey
        .campaign_plan(u.tenant(), id, state, cursor, Some(PAGE_ITEMS))
        .await
        .map_err(UiError::service("Not found"))?;
    let c = view(&c);
    let running = c.state == CampaignState::Running.as_str();
    Ok(Live {
        state_label: campaign_look(&c.state),
        csrf: u.csrf.clone(),
        can_write: u.can_write(),
        bars: bars(&c),
        overdue: c.counts.get("overdue").copied().unwrap_or(0),
        providers: shares(&c.by_provider, 50),
        owners: shares(&c.by_owner, 20),
        lines: items.iter().map(|p| line(item_view(p, true))).collect(),
        only: q.state.clone(),
        here: q.link(cursor),
        next: next.as_deref().map(|n| q.link(Some(n))),
        poll: running.then_some("every 2s"),
        cancellable: !c
            .state
            .parse::<CampaignState>()
            .is_ok_and(CampaignState::is_finished),
        c,
    })
}

fn render<T: Template>(t: &T) -> UiResult<String> {
    t.render()
        .map_err(|e| UiError::Service("Unavailable", rekey_core::Error::internal(e)))
}

/// `GET /ui/campaigns/{id}`: a draft's plan to confirm, or a started
/// campaign's progress and connections.
pub(super) async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
    u: SessionUser,
) -> Response {
    show_page(&s, &id, &q, &u).await.unwrap_or_else(back)
}

async fn show_page(s: &AppState, id: &str, q: &ListQuery, u: &SessionUser) -> UiResult {
    let c = s
        .rekey
        .get_campaign(u.tenant(), id)
        .await
        .map_err(UiError::service("Not found"))?;
    let draft = c.row.state == CampaignState::Draft;
    let (plan, plan_next, live_html) = if draft {
        let cursor = Some(q.cursor.as_str()).filter(|c| !c.is_empty());
        let (_, items, next) = s
            .rekey
            .campaign_plan(u.tenant(), id, None, cursor, Some(PAGE_ITEMS))
            .await
            .map_err(UiError::service("Not found"))?;
        let plan: Vec<Line> = items.iter().map(|p| line(item_view(p, false))).collect();
        (plan, next.map(|n| q.link(Some(&n))), String::new())
    } else {
        (Vec::new(), None, render(&live(s, u, id, q).await?)?)
    };
    let plan_size = if draft {
        s.rekey
            .campaign_draft_size(u.tenant(), id)
            .await
            .map_err(UiError::service("Not found"))?
    } else {
        0
    };
    let count = |by: &str| {
        plan.iter()
            .flat_map(|l| &l.i.steps)
            .filter(|st| st.by == by)
            .count()
    };
    let c = view(&c);
    Ok(page(
        StatusCode::OK,
        &CampaignPage {
            csrf: u.csrf.clone(),
            can_write: u.can_write(),
            can_audit: u.principal.require(Scope::AuditRead).is_ok(),
            draft,
            by_rekey: count("automatic"),
            by_operator: count("operator"),
            by_owner: count("owner"),
            plan,
            plan_size,
            plan_next,
            live: live_html,
            deadline: When::now(&c.deadline),
            created_by: Actors::load(s, u.tenant()).await.of(&c.created_by),
            reason_lines: c.reason.lines().map(str::to_string).collect(),
            c,
        },
    ))
}

/// `GET /ui/campaigns/{id}/live`: the progress and list alone, for htmx.
pub(super) async fn live_fragment(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
    u: SessionUser,
) -> Response {
    match live(&s, &u, &id, &q).await {
        Ok(l) => page(StatusCode::OK, &l),
        Err(e) => back(e),
    }
}

struct ListLine {
    c: CampaignView,
    created_by: Actor,
    state_label: &'static str,
    deadline: When,
}

#[derive(Template)]
#[template(path = "ui/campaigns.html")]
struct ListPage {
    items: Vec<ListLine>,
    next: Option<String>,
    can_write: bool,
}

/// `GET /ui/campaigns`: every campaign, newest first, with its progress.
pub(super) async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
    u: SessionUser,
) -> UiResult {
    let cursor = Some(q.cursor.as_str()).filter(|c| !c.is_empty());
    let (items, next) = s
        .rekey
        .list_campaigns(u.tenant(), cursor, Some(50))
        .await
        .map_err(UiError::service("Campaigns unavailable"))?;
    let actors = Actors::load(&s, u.tenant()).await;
    Ok(page(
        StatusCode::OK,
        &ListPage {
            items: items
                .iter()
                .map(|c| {
                    let c = view(c);
                    ListLine {
                        created_by: actors.of(&c.created_by),
                        state_label: campaign_look(&c.state),
                        deadline: When::now(&c.deadline),
                        c,
                    }
                })
                .collect(),
            next: next.map(|n| format!("cursor={n}")),
            can_write: u.can_write(),
        },
    ))
}

/// The new-campaign form's fields (besides the filter).
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct NewFields {
    name: String,
    reason: String,
    /// `YYYY-MM-DD`: the end of that day, UTC.
    deadline: String,
    /// `1` when checked.
    webhooks: String,
    /// `1` when checked.
    email: String,
}

#[derive(Template)]
#[template(path = "ui/campaign_new.html")]
struct NewPage {
    csrf: String,
    f: Filter,
    /// The filter as "provider: salesforce", one line per field.
    described: Vec<(&'static str, String)>,
    fields: NewFields,
    /// Today (UTC), the earliest deadline the date input offers.
    today: String,
    /// The latest day whose end is within the 90 days allowed.
    last_day: String,
    error: Option<String>,
    /// rekey has an SMTP server to e-mail owners through.
    smtp: bool,
}

fn day(ms: i64) -> String {
    let d = ms_to_datetime(ms);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn describe(f: &Filter) -> Vec<(&'static str, String)> {
    [
        ("Search", &f.q),
        ("Status", &f.status),
        ("Provider", &f.provider),
        ("Tag", &f.tag),
        ("Custody", &f.custody),
        ("OAuth app", &f.integration),
        ("Created before", &f.created_before),
        ("Not rotated since", &f.rotated_before),
        ("Read since", &f.last_read_after),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k, v.clone()))
    .collect()
}

fn new_page(
    s: &AppState,
    u: &SessionUser,
    f: Filter,
    fields: NewFields,
    error: Option<String>,
) -> NewPage {
    NewPage {
        smtp: s.rekey.sends_mail(),
        csrf: u.csrf.clone(),
        described: describe(&f),
        f,
        fields,
        today: day(now_ms()),
        last_day: day(now_ms() + 89 * 86_400_000),
        error,
    }
}

/// `GET /ui/campaigns/new?<filter>`: the form, for the connections the
/// connections page's filter selects.
pub(super) async fn new_form(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    u: SessionUser,
) -> UiResult {
    u.require_write("start incident campaigns")?;
    let f = Filter::from_map(&q);
    if f.is_empty() {
        return Err(UiError::page(
            StatusCode::BAD_REQUEST,
            "Filter first",
            "A campaign covers the connections a filter selects: filter the connections page (by provider, tag, custody…), then start the campaign from there.",
            "warn",
        ));
    }
    let fields = NewFields {
        deadline: day(now_ms() + DEFAULT_DAYS * 86_400_000),
        webhooks: "1".into(),
        email: "1".into(),
        ..Default::default()
    };
    Ok(page(StatusCode::OK, &new_page(&s, &u, f, fields, None)))
}

#[derive(Deserialize)]
pub(super) struct NewForm {
    #[serde(flatten)]
    filter: Filter,
    #[serde(flatten)]
    fields: NewFields,
}

/// The deadline field: a day (the end of it, UTC) or an RFC 3339 time.
fn deadline_of(v: &str) -> String {
    let v = v.trim();
    if v.len() == 10 && v.as_bytes().get(4) == Some(&b'-') {
        format!("{v}T23:59:59Z")
    } else {
        v.to_string()
    }
}

fn campaign_filter(f: &Filter) -> CampaignFilter {
    let q = f.query(None, 1);
    CampaignFilter {
        provider: q.provider,
        status: q.status,
        tag: q.tag,
        custody: q.custody,
        q: q.q,
        created_before: q.created_before,
        rotated_before: q.rotated_before,
        integration: q.integration,
        last_read_after: q.last_read_after,
        ..Default::default()
    }
}

/// `POST /ui/campaigns`: record the draft and show its plan.
pub(super) async fn create(
    State(s): State<AppState>,
    CsrfForm { user: u, form }: CsrfForm<NewForm>,
) -> UiResult {
    u.require_write("start incident campaigns")?;
    let filter = form.filter.trimmed();
    let req = CreateCampaign {
        name: form.fields.name.clone(),
        reason: form.fields.reason.clone(),
        filter: campaign_filter(&filter),
        deadline: deadline_of(&form.fields.deadline),
        notify: Some(CampaignNotify {
            webhooks: form.fields.webhooks == "1",
            email: form.fields.email == "1",
        }),
        ..Default::default()
    };
    match s.rekey.create_campaign(&u.ctx(), req).await {
        Ok(c) => Ok(Redirect::to(&format!("/ui/campaigns/{}", c.row.id)).into_response()),
        // The form again, filled in, with what to fix.
        Err(e) => {
            let status = crate::error::status_of(e.class());
            Ok(page(
                status,
                &new_page(&s, &u, filter, form.fields, Some(e.public_message())),
            ))
        }
    }
}

fn no_such_action() -> UiError {
    UiError::page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such campaign action.",
        "bad",
    )
}

/// `POST /ui/campaigns/{id}/{start|pause|resume|cancel}`.
pub(super) async fn control(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    CsrfForm { user: u, .. }: CsrfForm<super::session::TokenOnly>,
) -> Response {
    let run = async {
        u.require_write("run incident campaigns")?;
        let ctx = u.ctx();
        let r = match action.as_str() {
            "start" => s.rekey.start_campaign(&ctx, &id).await,
            "pause" => {
                s.rekey
                    .campaign_control(&ctx, &id, CampaignState::Paused)
                    .await
            }
            "resume" => {
                s.rekey
                    .campaign_control(&ctx, &id, CampaignState::Running)
                    .await
            }
            "cancel" => {
                s.rekey
                    .campaign_control(&ctx, &id, CampaignState::Cancelled)
                    .await
            }
            _ => return Err(no_such_action()),
        };
        let c = r.map_err(UiError::service("Not changed"))?;
        Ok(Redirect::to(&format!("/ui/campaigns/{}", c.row.id)).into_response())
    };
    run.await.unwrap_or_else(back)
}

#[derive(Template)]
#[template(path = "ui/campaign_item.html")]
struct ItemPage {
    campaign_id: String,
    campaign_name: String,
    l: Line,
    csrf: String,
    can_write: bool,
    link_expires: When,
    decided_by: Option<Actor>,
}

/// `GET /ui/campaigns/{id}/items/{connection_id}`: one connection, with
/// the forms to confirm it by hand or skip it.
pub(super) async fn item(
    State(s): State<AppState>,
    Path((id, cid)): Path<(String, String)>,
    u: SessionUser,
) -> Response {
    let run = async {
        let (row, p) = s
            .rekey
            .campaign_item(u.tenant(), &id, &cid)
            .await
            .map_err(UiError::service("Not found"))?;
        let l = line(item_view(&p, true));
        let decided_by = match &l.i.confirmed_by {
            Some(a) => Some(Actors::load(&s, u.tenant()).await.of(a)),
            None => None,
        };
        Ok(page(
            StatusCode::OK,
            &ItemPage {
                campaign_id: row.id,
                campaign_name: row.name,
                link_expires: When::opt(&l.i.link_expires_at),
                decided_by,
                l,
                csrf: u.csrf.clone(),
                can_write: u.can_write(),
            },
        ))
    };
    run.await.unwrap_or_else(back)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct DecideForm {
    /// The comment (confirm) or the reason (skip).
    text: String,
}

/// `POST /ui/campaigns/{id}/items/{connection_id}/{confirm|skip|resend|cancel-link}`.
pub(super) async fn item_action(
    State(s): State<AppState>,
    Path((id, cid, action)): Path<(String, String, String)>,
    CsrfForm { user: u, form }: CsrfForm<DecideForm>,
) -> Response {
    let run = async {
        u.require_write("change incident campaigns")?;
        let ctx = u.ctx();
        let r = match action.as_str() {
            "confirm" | "skip" => {
                s.rekey
                    .campaign_item_decide(&ctx, &id, &cid, action == "confirm", &form.text)
                    .await
            }
            "resend" | "cancel-link" => {
                s.rekey
                    .campaign_link_change(&ctx, &id, &cid, action == "resend")
                    .await
            }
            _ => return Err(no_such_action()),
        };
        let p = r.map_err(UiError::service("Not changed"))?;
        Ok(Redirect::to(&format!(
            "/ui/campaigns/{id}/items/{}",
            p.item.connection_id
        ))
        .into_response())
    };
    run.await.unwrap_or_else(back)
}

/// `GET /ui/campaigns/{id}/evidence?format=csv|json`: the campaign's
/// evidence export (its connections and its timeline), sealed and
/// recorded in the audit chain under the signed-in user.
pub(super) async fn evidence(
    State(s): State<AppState>,
    method: axum::http::Method,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    u: SessionUser,
) -> Response {
    let run = async {
        if u.principal.require(Scope::AuditRead).is_err() {
            return Err(UiError::Forbidden(
                "This role cannot export evidence (it needs the audit log).".into(),
            ));
        }
        let query = rekey_api::EvidenceQuery {
            campaign: Some(id.clone()),
            ..rekey_api::EvidenceQuery::new(Default::default(), q.get("format").cloned())
        };
        let head = method == axum::http::Method::HEAD;
        crate::evidence::export(s.rekey.clone(), u.ctx(), query, head)
            .await
            .map_err(|e| UiError::Service("Evidence export failed", e))
    };
    run.await.unwrap_or_else(back)
}

/// `GET /ui/campaigns/{id}/links.csv`: the owners' links as a mail-merge
/// file (reading them is audited, as through the API).
pub(super) async fn links_csv(
    State(s): State<AppState>,
    Path(id): Path<String>,
    u: SessionUser,
) -> Response {
    let run = async {
        u.require_write("read reauthorization links")?;
        let ctx = u.ctx();
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let (links, next) = s
                .rekey
                .campaign_links(&ctx, &id, cursor.as_deref(), Some(200))
                .await
                .map_err(UiError::service("Not found"))?;
            all.extend(links.into_iter().map(link_view));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let body = rekey_api::links_csv(&all)
            .map_err(|e| UiError::Service("Unavailable", rekey_core::Error::internal(e)))?;
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{id}-links.csv\""),
                ),
                // The file holds ways in: never cached.
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            body,
        )
            .into_response())
    };
    run.await.unwrap_or_else(back)
}
