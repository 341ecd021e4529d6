//! Incident campaigns: every connection a filter selects revoked, rotated
//! or reauthorized by its owner, and verified, as one tracked run.
//!
//! A campaign is planned from its filter (`draft`); starting it freezes
//! the plan into one item per connection, which workers then advance one
//! action at a time (`worker.rs`), writing each outcome before the next
//! side effect, under a lease, so a restart or another replica resumes
//! without repeating a provider call. Each action is the ordinary use case
//! (revocation, the rotation engine, a reauthorization link), so each is
//! audited and verified as it is on its own. `links.rs`: the owners'
//! reauthorization links; `plan.rs`: which actions a connection gets.

mod links;
mod mail;
mod plan;
mod worker;

use crate::audit::record_ok;
use crate::webhooks::emit;
use crate::{Ctx, Rekey};
use rekey_api::{CampaignFilter, CampaignNotify, ConnectionQuery, CreateCampaign};
use rekey_core::audit::AuditAction;
use rekey_core::campaign::{CampaignState, ItemState};
use rekey_core::events::EventType;
use rekey_core::time::{now_ms, parse_rfc3339};
use rekey_core::{ids, Error, ErrorCode};
use rekey_store::campaigns::{self as store, CampaignRow, ItemRow};
use rekey_store::connections::{self as conns, ConnectionFilter};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub use links::CampaignLink;
pub use mail::MailSettings;
pub(crate) use mail::Mailer;
pub use plan::{PlanItem, PlannedStep};
pub use rekey_store::campaigns::{CampaignRow as CampaignRecord, ItemRow as CampaignItem};
pub use worker::{CampaignRun, CampaignSettings};

/// The furthest deadline a campaign may set.
const MAX_DEADLINE_MS: i64 = 90 * 86_400_000;
/// Connections read per page when planning or freezing.
const PAGE: i64 = 500;

/// A campaign and its progress.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub row: CampaignRow,
    pub progress: Progress,
}

impl Campaign {
    pub fn filter(&self) -> CampaignFilter {
        serde_json::from_str(&self.row.filter).unwrap_or_default()
    }
    pub fn actions(&self) -> BTreeMap<String, Vec<String>> {
        serde_json::from_str(&self.row.actions).unwrap_or_default()
    }
    pub fn rotation(&self) -> BTreeMap<String, rekey_api::StartRotation> {
        serde_json::from_str(&self.row.rotation).unwrap_or_default()
    }
    pub fn notify(&self) -> CampaignNotify {
        serde_json::from_str(&self.row.notify).unwrap_or_default()
    }
}

/// Counts of a campaign's items.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub total: i64,
    /// Stored states (never `overdue`).
    pub counts: BTreeMap<ItemState, i64>,
    /// Unfinished past the deadline.
    pub overdue: i64,
    pub by_provider: Vec<Breakdown>,
    pub by_owner: Vec<Breakdown>,
}

impl Progress {
    pub fn count(&self, s: ItemState) -> i64 {
        self.counts.get(&s).copied().unwrap_or(0)
    }
    pub fn finished(&self) -> i64 {
        self.count(ItemState::Done) + self.count(ItemState::Failed) + self.count(ItemState::Skipped)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Breakdown {
    pub key: String,
    pub total: i64,
    pub counts: BTreeMap<ItemState, i64>,
}

fn not_found(id: &str) -> Error {
    Error::not_found(ErrorCode::CampaignNotFound, format!("campaign {id}"))
}

fn wrong_state(id: &str, state: CampaignState, what: &str) -> Error {
    Error::conflict(
        ErrorCode::CampaignState,
        format!("campaign {id} is {state}; it cannot be {what}"),
    )
}

/// Free text of 1 to `max` characters: no control characters (but line
/// breaks where `multiline`) and no invisible formatting characters
/// (bidirectional overrides, zero-width spaces), as for display names.
fn text(field: &str, v: &str, max: usize, multiline: bool) -> Result<String, Error> {
    let t = v.trim();
    let check = if multiline {
        t.replace(['\n', '\r'], " ")
    } else {
        t.to_string()
    };
    rekey_core::connection::validate_text(ErrorCode::InvalidField, field, &check, max)?;
    Ok(t.to_string())
}

/// The store filter of a campaign's filter; at least one field set.
pub(crate) fn connection_filter(f: &CampaignFilter) -> Result<ConnectionFilter, Error> {
    let q = ConnectionQuery {
        provider: f.provider.clone(),
        kind: f.kind.clone(),
        status: f.status.clone(),
        tag: f.tag.clone(),
        custody: f.custody.clone(),
        owner: f.owner.clone(),
        q: f.q.clone(),
        created_before: f.created_before.clone(),
        rotated_before: f.rotated_before.clone(),
        integration: f.integration.clone(),
        last_read_after: f.last_read_after.clone(),
        cursor: None,
        limit: None,
    };
    let mut out = crate::connections::connection_filter(&q)?;
    if f.providers.len() > 50 {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            "`filter.providers` names at most 50 providers",
        ));
    }
    for p in &f.providers {
        ids::validate_slug("providers", p, 64)?;
    }
    out.providers = f.providers.clone();
    let empty = out.provider.is_none()
        && out.providers.is_empty()
        && out.kind.is_none()
        && out.status.is_none()
        && out.tag.is_none()
        && out.custody.is_none()
        && out.owner.is_none()
        && out.search.is_none()
        && out.created_before.is_none()
        && out.rotated_before.is_none()
        && out.integration.is_none()
        && out.last_read_after.is_none();
    if empty {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            "`filter` must narrow the campaign with at least one field (provider, providers, kind, status, tag, custody, owner, q, created_before, rotated_before, integration, last_read_after)",
        ));
    }
    Ok(out)
}

impl Rekey {
    /// `POST /campaigns`: validate and record a campaign as a `draft`.
    /// Nothing happens to any connection until it is started.
    pub async fn create_campaign(&self, ctx: &Ctx, req: CreateCampaign) -> Result<Campaign, Error> {
        let name = text("name", &req.name, 100, false)?;
        let reason = text("reason", &req.reason, 2000, true)?;
        let now = now_ms();
        let deadline = parse_rfc3339("deadline", &req.deadline)?;
        if deadline <= now {
            return Err(Error::invalid(
                ErrorCode::InvalidTimestamp,
                "`deadline` is in the past; give a time in the future",
            ));
        }
        if deadline > now + MAX_DEADLINE_MS {
            return Err(Error::invalid(
                ErrorCode::InvalidTimestamp,
                "`deadline` must be at most 90 days ahead",
            ));
        }
        // Checked as written first (a malformed value is 400), then
        // providers by id or alias, stored by id as connections name them.
        connection_filter(&req.filter)?;
        let mut req = req;
        let canonical = |p: &str| {
            self.catalog().find(p).map(|e| e.id.clone()).ok_or_else(|| {
                Error::unprocessable(
                    ErrorCode::UnknownProvider,
                    format!(
                        "no provider `{}` in the catalog; see GET /api/v1/providers",
                        ids::truncate_for_message(p)
                    ),
                )
            })
        };
        if let Some(p) = &req.filter.provider {
            req.filter.provider = Some(canonical(p)?);
        }
        req.filter.providers = req
            .filter
            .providers
            .iter()
            .map(|p| canonical(p))
            .collect::<Result<_, _>>()?;
        let filter = connection_filter(&req.filter)?;
        if let Some(i) = &filter.integration {
            self.integration_row(&ctx.tenant, i).await?;
        }
        let actions = plan::Overrides::parse(&req.actions)?;
        plan::check_rotation_keys(&req.rotation)?;
        // An empty scope is a mistake (a typo in a tag, a provider id).
        let any = {
            let mut c = self.store().read().await?;
            let probe = ConnectionFilter {
                limit: 1,
                ..filter.clone()
            };
            !conns::list(&mut c, &ctx.tenant, &probe).await?.is_empty()
        };
        if !any {
            return Err(Error::unprocessable(
                ErrorCode::CampaignEmpty,
                "no connection matches `filter`; check it with GET /api/v1/connections",
            ));
        }
        let row = CampaignRow {
            id: ids::new_id(ids::CAMPAIGN),
            tenant: ctx.tenant.clone(),
            name,
            reason,
            filter: serde_json::to_string(&req.filter).map_err(Error::internal)?,
            actions: serde_json::to_string(&actions.to_wire()).map_err(Error::internal)?,
            rotation: serde_json::to_string(&req.rotation).map_err(Error::internal)?,
            deadline,
            notify: serde_json::to_string(&req.notify.unwrap_or_default())
                .map_err(Error::internal)?,
            state: CampaignState::Draft,
            created_by: ctx.actor.clone(),
            created_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now,
        };
        let mut tx = self.store().begin_write().await?;
        store::insert(tx.conn(), &row).await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::CampaignCreate,
            &row.id,
            json!({"name": row.name, "filter": req.filter, "deadline": req.deadline}),
        )
        .await?;
        tx.commit().await?;
        Ok(Campaign {
            row,
            progress: Progress::default(),
        })
    }

    pub async fn get_campaign(&self, tenant: &str, id: &str) -> Result<Campaign, Error> {
        let row = self.campaign_row(tenant, id).await?;
        let progress = self.progress(&row).await?;
        Ok(Campaign { row, progress })
    }

    pub(crate) async fn campaign_row(&self, tenant: &str, id: &str) -> Result<CampaignRow, Error> {
        let id = ids::parse_id(ids::CAMPAIGN, id)?;
        let mut c = self.store().read().await?;
        store::get(&mut c, tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))
    }

    /// Campaigns, newest first.
    pub async fn list_campaigns(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Vec<Campaign>, Option<String>), Error> {
        let limit = crate::paging::limit(limit, 200)?;
        let before = crate::paging::after_id(cursor, ids::CAMPAIGN)?;
        let mut rows = {
            let mut c = self.store().read().await?;
            store::list(&mut c, tenant, before.as_deref(), limit + 1).await?
        };
        let next = crate::paging::next_cursor(&mut rows, limit, |r| r.id.as_str());
        // Every campaign's counts in one query, not one per campaign.
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut counts = {
            let mut c = self.store().read().await?;
            store::counts_of(&mut c, tenant, &ids).await?
        };
        let out = rows
            .into_iter()
            .map(|row| {
                let mine = counts.remove(&row.id).unwrap_or_default();
                let progress = progress_of(&row, mine);
                Campaign { row, progress }
            })
            .collect();
        Ok((out, next))
    }

    async fn progress(&self, row: &CampaignRow) -> Result<Progress, Error> {
        let counts = {
            let mut c = self.store().read().await?;
            store::counts(&mut c, &row.tenant, &row.id).await?
        };
        Ok(progress_of(row, counts))
    }
}

/// A campaign's progress from its items' counts by (state, provider, owner).
fn progress_of(row: &CampaignRow, counts: Vec<(String, String, Option<String>, i64)>) -> Progress {
    let late = now_ms() > row.deadline;
    let mut p = Progress::default();
    let mut providers: BTreeMap<String, Breakdown> = BTreeMap::new();
    let mut owners: BTreeMap<String, Breakdown> = BTreeMap::new();
    for (state, provider, owner, n) in counts {
        let Ok(state) = state.parse::<ItemState>() else {
            continue;
        };
        p.total += n;
        *p.counts.entry(state).or_default() += n;
        if late && !state.is_finished() {
            p.overdue += n;
        }
        for (map, key) in [
            (&mut providers, provider.clone()),
            (
                &mut owners,
                owner.clone().unwrap_or_else(|| "(none)".into()),
            ),
        ] {
            let b = map.entry(key.clone()).or_insert_with(|| Breakdown {
                key,
                ..Breakdown::default()
            });
            b.total += n;
            *b.counts.entry(state).or_default() += n;
        }
    }
    p.by_provider = providers.into_values().collect();
    p.by_owner = owners.into_values().collect();
    p
}

impl Rekey {
    /// `POST /campaigns/{id}/start`: freeze the plan (one item per
    /// connection the filter selects now) and let the workers run it.
    /// Freezing writes in batches while the campaign is still a draft, so
    /// a crash meanwhile leaves a draft that starts again cleanly.
    pub async fn start_campaign(&self, ctx: &Ctx, id: &str) -> Result<Campaign, Error> {
        let row = self.campaign_row(&ctx.tenant, id).await?;
        if row.state != CampaignState::Draft {
            return Err(wrong_state(&row.id, row.state, "started"));
        }
        if now_ms() >= row.deadline {
            return Err(Error::conflict(
                ErrorCode::CampaignState,
                format!(
                    "campaign {}'s deadline ({}) has passed; create a new campaign with a later deadline",
                    row.id,
                    rekey_core::time::ms_to_rfc3339(row.deadline)
                ),
            ));
        }
        let added = self.freeze(&row, true).await?.1;
        let total = {
            let mut c = self.store().read().await?;
            store::counts(&mut c, &row.tenant, &row.id)
                .await?
                .iter()
                .map(|r| r.3)
                .sum::<i64>()
        };
        if total == 0 {
            return Err(Error::unprocessable(
                ErrorCode::CampaignEmpty,
                "no connection matches the campaign's filter any more; nothing to start",
            ));
        }
        let now = now_ms();
        let mut tx = self.store().begin_write().await?;
        if !store::set_state(
            tx.conn(),
            &row.tenant,
            &row.id,
            &[CampaignState::Draft],
            CampaignState::Running,
            now,
        )
        .await?
        {
            drop(tx);
            // Cancelled while the plan was being frozen: what this start
            // wrote is skipped too, so the counts stay true.
            let mut tx = self.store().begin_write().await?;
            if store::get(tx.conn(), &row.tenant, &row.id)
                .await?
                .is_some_and(|r| r.state == CampaignState::Cancelled)
            {
                store::skip_unfinished(tx.conn(), &row.tenant, &row.id, "campaign cancelled", now)
                    .await?;
            }
            tx.commit().await?;
            return Err(Error::conflict(
                ErrorCode::CampaignState,
                format!("campaign {} was started or cancelled meanwhile", row.id),
            ));
        }
        record_ok(
            &mut tx,
            ctx,
            AuditAction::CampaignStart,
            &row.id,
            json!({"connections": total, "added": added}),
        )
        .await?;
        announce(
            &mut tx,
            &row,
            EventType::CampaignStarted,
            json!({"connections": total}),
        )
        .await?;
        tx.commit().await?;
        self.get_campaign(&ctx.tenant, &row.id).await
    }

    /// Write an item for every connection the filter selects that the
    /// campaign lacks (`add`), or only list them: the new items and how
    /// many were written.
    async fn freeze(&self, row: &CampaignRow, add: bool) -> Result<(Vec<PlanItem>, u64), Error> {
        let filter: CampaignFilter = serde_json::from_str(&row.filter).map_err(Error::internal)?;
        let filter = connection_filter(&filter)?;
        let overrides = plan::Overrides::from_column(&row.actions)?;
        let mut after: Option<String> = None;
        let (mut listed, mut added) = (Vec::new(), 0);
        loop {
            let (items, last) = {
                let mut c = self.store().read().await?;
                let page = conns::list(
                    &mut c,
                    &row.tenant,
                    &ConnectionFilter {
                        after_id: after.clone(),
                        limit: PAGE,
                        ..filter.clone()
                    },
                )
                .await?;
                let Some(last) = page.last().map(|r| r.id.clone()) else {
                    break;
                };
                let held =
                    store::held(&mut c, &row.tenant, &row.id, after.as_deref(), &last).await?;
                let items: Vec<PlanItem> = page
                    .iter()
                    .filter(|r| !held.contains(&r.id))
                    .map(|r| self.plan_item(row, r, &overrides))
                    .collect();
                (items, last)
            };
            if add && !items.is_empty() {
                let rows: Vec<ItemRow> = items.iter().map(|i| i.item.clone()).collect();
                let mut tx = self.store().begin_write().await?;
                added += store::insert_items(tx.conn(), &rows).await?;
                tx.commit().await?;
            }
            if !add && listed.len() < 1000 {
                listed.extend(items);
            }
            after = Some(last);
        }
        Ok((listed, added))
    }

    /// `POST /campaigns/{id}/refresh-plan`: the connections the filter
    /// selects now that the frozen plan lacks (the first 1,000), and with
    /// `add` they join it.
    pub async fn refresh_campaign_plan(
        &self,
        ctx: &Ctx,
        id: &str,
        add: bool,
    ) -> Result<(Vec<PlanItem>, u64), Error> {
        let row = self.campaign_row(&ctx.tenant, id).await?;
        if !matches!(row.state, CampaignState::Running | CampaignState::Paused) {
            let what = if row.state == CampaignState::Draft {
                "refreshed (a draft's plan follows its filter: start it first)"
            } else {
                "refreshed"
            };
            return Err(wrong_state(&row.id, row.state, what));
        }
        let (listed, _) = self.freeze(&row, false).await?;
        if !add {
            return Ok((listed, 0));
        }
        let (_, added) = self.freeze(&row, true).await?;
        let mut tx = self.store().begin_write().await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::CampaignAddConnections,
            &row.id,
            json!({"added": added}),
        )
        .await?;
        tx.commit().await?;
        Ok((listed, added))
    }

    /// `pause`, `resume` or `cancel` a campaign. Cancelling finishes every
    /// unfinished connection as skipped and retires the unused links;
    /// rotations already started go on by themselves.
    pub async fn campaign_control(
        &self,
        ctx: &Ctx,
        id: &str,
        to: CampaignState,
    ) -> Result<Campaign, Error> {
        use CampaignState::*;
        let row = self.campaign_row(&ctx.tenant, id).await?;
        let (from, what, action): (&[CampaignState], _, _) = match to {
            Paused => (&[Running], "paused", AuditAction::CampaignPause),
            Running => (&[Paused], "resumed", AuditAction::CampaignResume),
            Cancelled => (
                &[Draft, Running, Paused],
                "cancelled",
                AuditAction::CampaignCancel,
            ),
            _ => return Err(Error::internal("campaign_control: no such move")),
        };
        let now = now_ms();
        let mut tx = self.store().begin_write().await?;
        if !store::set_state(tx.conn(), &row.tenant, &row.id, from, to, now).await? {
            let state = store::get(tx.conn(), &row.tenant, &row.id)
                .await?
                .map_or(row.state, |r| r.state);
            return Err(wrong_state(&row.id, state, what));
        }
        let mut details = json!({"from": row.state.as_str()});
        if to == Cancelled {
            let links = self.cancel_links(&mut tx, &row).await?;
            let skipped =
                store::skip_unfinished(tx.conn(), &row.tenant, &row.id, "campaign cancelled", now)
                    .await?;
            details =
                json!({"from": row.state.as_str(), "skipped": skipped, "links_cancelled": links});
        }
        record_ok(&mut tx, ctx, action, &row.id, details).await?;
        tx.commit().await?;
        self.get_campaign(&ctx.tenant, &row.id).await
    }

    /// The plan: before the start, computed from the filter; afterwards the
    /// frozen items (optionally in one state), in connection-id order.
    pub async fn campaign_plan(
        &self,
        tenant: &str,
        id: &str,
        state: Option<ItemState>,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(CampaignRow, Vec<PlanItem>, Option<String>), Error> {
        let row = self.campaign_row(tenant, id).await?;
        let limit = crate::paging::limit(limit.or(Some(100)), 200)?;
        let after = crate::paging::after_id(cursor, ids::CONNECTION)?;
        let mut c = self.store().read().await?;
        if row.state == CampaignState::Draft {
            if state.is_some() {
                return Err(Error::invalid(
                    ErrorCode::InvalidQuery,
                    "`state` filters a started campaign's plan; this one is a draft",
                ));
            }
            let filter: CampaignFilter =
                serde_json::from_str(&row.filter).map_err(Error::internal)?;
            let overrides = plan::Overrides::from_column(&row.actions)?;
            let mut rows = conns::list(
                &mut c,
                tenant,
                &ConnectionFilter {
                    after_id: after,
                    limit: limit + 1,
                    ..connection_filter(&filter)?
                },
            )
            .await?;
            let next = crate::paging::next_cursor(&mut rows, limit, |r| r.id.as_str());
            let items = rows
                .iter()
                .map(|r| self.plan_item(&row, r, &overrides))
                .collect();
            return Ok((row, items, next));
        }
        let stored = state.map(|s| {
            if s == ItemState::Overdue {
                None
            } else {
                Some(s)
            }
        });
        let mut items = store::items(
            &mut c,
            tenant,
            &row.id,
            stored.flatten(),
            after.as_deref(),
            limit + 1,
        )
        .await?;
        let next = crate::paging::next_cursor(&mut items, limit, |r| r.connection_id.as_str());
        let now = now_ms();
        let mut out: Vec<PlanItem> = items
            .into_iter()
            .map(|i| self.planned(&row, i, now))
            .collect();
        if state == Some(ItemState::Overdue) {
            out.retain(|p| p.state == ItemState::Overdue);
        }
        Ok((row, out, next))
    }

    /// How many connections a draft's filter selects now (what starting it
    /// would freeze).
    pub async fn campaign_draft_size(&self, tenant: &str, id: &str) -> Result<i64, Error> {
        let row = self.campaign_row(tenant, id).await?;
        let filter: CampaignFilter = serde_json::from_str(&row.filter).map_err(Error::internal)?;
        let mut c = self.store().read().await?;
        conns::count(&mut c, tenant, &connection_filter(&filter)?).await
    }

    /// One connection of a started campaign, as its plan shows it.
    pub async fn campaign_item(
        &self,
        tenant: &str,
        id: &str,
        connection_id: &str,
    ) -> Result<(CampaignRow, PlanItem), Error> {
        let row = self.campaign_row(tenant, id).await?;
        let cid = ids::parse_id(ids::CONNECTION, connection_id)?;
        let item = {
            let mut c = self.store().read().await?;
            store::item(&mut c, tenant, &row.id, &cid).await?
        }
        .ok_or_else(|| {
            Error::not_found(
                ErrorCode::CampaignItemNotFound,
                format!("connection {cid} in campaign {}", row.id),
            )
        })?;
        let p = self.planned(&row, item, now_ms());
        Ok((row, p))
    }

    /// An operator's word on one connection: `confirm` (checked by hand:
    /// done, with the comment) or skip it (with the reason).
    pub async fn campaign_item_decide(
        &self,
        ctx: &Ctx,
        id: &str,
        connection_id: &str,
        done: bool,
        text_in: &str,
    ) -> Result<PlanItem, Error> {
        let field = if done { "comment" } else { "reason" };
        let words = text(field, text_in, 2000, true)?;
        let row = self.campaign_row(&ctx.tenant, id).await?;
        let cid = ids::parse_id(ids::CONNECTION, connection_id)?;
        // A completed campaign's failed connection can still be confirmed.
        let open = matches!(row.state, CampaignState::Running | CampaignState::Paused)
            || (done && row.state == CampaignState::Completed);
        if !open {
            return Err(wrong_state(&row.id, row.state, "changed"));
        }
        let now = now_ms();
        let mut tx = self.store().begin_write().await?;
        let item = store::item(tx.conn(), &row.tenant, &row.id, &cid)
            .await?
            .ok_or_else(|| {
                Error::not_found(
                    ErrorCode::CampaignItemNotFound,
                    format!("connection {cid} in campaign {}", row.id),
                )
            })?;
        if item.state.is_finished() && !(done && item.state == ItemState::Failed) {
            return Err(Error::conflict(
                ErrorCode::CampaignState,
                format!(
                    "connection {cid} is already {} in this campaign",
                    item.state
                ),
            ));
        }
        let mut next = item.clone();
        next.state = if done {
            ItemState::Done
        } else {
            ItemState::Skipped
        };
        next.detail = Some(if done {
            "confirmed by hand".to_string()
        } else {
            words.clone()
        });
        next.confirmed_by = Some(ctx.actor.clone());
        next.comment = Some(words.clone());
        next.updated_at = now;
        next.finished_at = Some(now);
        if !store::update_item(tx.conn(), &next, None, (item.step, item.state)).await? {
            return Err(Error::conflict(
                ErrorCode::VersionConflict,
                format!(
                    "connection {cid} moved on in campaign {} meanwhile; look again",
                    row.id
                ),
            ));
        }
        // Settled: its link, if unused, stops working.
        if let Some(sid) = &item.session_id {
            rekey_store::connect_sessions::cancel(tx.conn(), &row.tenant, sid).await?;
        }
        let action = if done {
            AuditAction::CampaignConfirm
        } else {
            AuditAction::CampaignSkip
        };
        record_ok(
            &mut tx,
            ctx,
            action,
            &row.id,
            json!({"connection": cid, field: words, "was": item.state.as_str()}),
        )
        .await?;
        tx.commit().await?;
        self.finish_if_complete(&row).await?;
        Ok(self.planned(&row, next, now))
    }

    /// A campaign whose every item finished is `completed` (once).
    pub(crate) async fn finish_if_complete(&self, row: &CampaignRow) -> Result<bool, Error> {
        let now = now_ms();
        let mut tx = self.store().begin_write().await?;
        if store::unfinished(tx.conn(), &row.tenant, &row.id).await? > 0 {
            return Ok(false);
        }
        // Every item is finished and written; the campaign is not yet.
        crate::rotation::fault::after("campaign_items_all_finished");
        if !store::set_state(
            tx.conn(),
            &row.tenant,
            &row.id,
            &[CampaignState::Running, CampaignState::Paused],
            CampaignState::Completed,
            now,
        )
        .await?
        {
            return Ok(false);
        }
        let counts = store::counts(tx.conn(), &row.tenant, &row.id).await?;
        let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
        for (s, _, _, n) in counts {
            *by_state.entry(s).or_default() += n;
        }
        let ctx = worker::campaign_ctx(&row.tenant, &row.id);
        record_ok(
            &mut tx,
            &ctx,
            AuditAction::CampaignCompleted,
            &row.id,
            json!({"counts": by_state}),
        )
        .await?;
        announce(
            &mut tx,
            row,
            EventType::CampaignCompleted,
            json!({"counts": by_state}),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Emit a campaign-wide event (`campaign_id`, `name` and the fields of
/// `extra`) unless the campaign was told not to.
pub(crate) async fn announce(
    tx: &mut rekey_store::WriteTx,
    row: &CampaignRow,
    event: EventType,
    extra: Value,
) -> Result<(), Error> {
    if !notifies(row) {
        return Ok(());
    }
    let mut data = json!({"campaign_id": row.id, "name": row.name});
    if let (Some(d), Value::Object(extra)) = (data.as_object_mut(), extra) {
        d.extend(extra);
    }
    emit(tx, &row.tenant, event, data).await
}

/// Whether the campaign sends `campaign.*` webhook events.
pub(crate) fn notifies(c: &CampaignRow) -> bool {
    serde_json::from_str::<CampaignNotify>(&c.notify)
        .unwrap_or_default()
        .webhooks
}

/// The webhook payload naming an item.
pub(crate) fn item_data(row: &CampaignRow, i: &ItemRow) -> Value {
    json!({
        "campaign_id": row.id, "connection_id": i.connection_id, "provider": i.provider,
        "owner": i.owner, "state": i.state.as_str(),
    })
}
