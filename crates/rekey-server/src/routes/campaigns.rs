//! Incident campaigns: create and plan, run, follow, and the operators'
//! and owners' part (confirmations, skips, reauthorization links).

use crate::error::ApiResult;
use crate::extract::{
    ApiJson, ApiPath, ApiPath2, ApiQuery, Auth, ConnRead, ConnWrite, OptionalJson,
};
use crate::AppState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_api::{
    CampaignBreakdown, CampaignItemQuery, CampaignItemView, CampaignLinkView, CampaignLinks,
    CampaignList, CampaignPlan, CampaignPlanRefresh, CampaignQuery, CampaignView,
    ConfirmCampaignItem, CreateCampaign, ErrorBody, PlannedStep, RefreshCampaignPlan,
    SkipCampaignItem,
};
use rekey_core::campaign::{CampaignState, ItemState};
use rekey_core::time::ms_to_rfc3339;
use rekey_service::{Campaign, CampaignBreakdown as Breakdown, PlanItem};
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_campaign, list_campaigns))
        .routes(routes!(get_campaign))
        .routes(routes!(campaign_plan))
        .routes(routes!(start_campaign))
        .routes(routes!(pause_campaign))
        .routes(routes!(resume_campaign))
        .routes(routes!(cancel_campaign))
        .routes(routes!(refresh_plan))
        .routes(routes!(confirm_item))
        .routes(routes!(skip_item))
        .routes(routes!(campaign_links))
        .routes(routes!(resend_link, cancel_link))
}

fn breakdown(b: &[Breakdown]) -> Vec<CampaignBreakdown> {
    b.iter()
        .map(|b| CampaignBreakdown {
            key: b.key.clone(),
            total: b.total,
            done: b.counts.get(&ItemState::Done).copied().unwrap_or(0),
            counts: b
                .counts
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect(),
        })
        .collect()
}

fn percent(part: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        ((part as f64) * 1000.0 / (total as f64)).round() / 10.0
    }
}

/// The wire view of a campaign and its progress.
pub fn view(c: &Campaign) -> CampaignView {
    let p = &c.progress;
    let mut counts: BTreeMap<String, i64> = ItemState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), p.count(*s)))
        .collect();
    counts.insert(ItemState::Overdue.as_str().into(), p.overdue);
    CampaignView {
        id: c.row.id.clone(),
        name: c.row.name.clone(),
        reason: c.row.reason.clone(),
        filter: c.filter(),
        actions: c.actions(),
        rotation: c.rotation(),
        deadline: ms_to_rfc3339(c.row.deadline),
        notify: c.notify(),
        state: c.row.state.as_str().into(),
        created_by: c.row.created_by.clone(),
        created_at: ms_to_rfc3339(c.row.created_at),
        started_at: c.row.started_at.map(ms_to_rfc3339),
        finished_at: c.row.finished_at.map(ms_to_rfc3339),
        total: p.total,
        counts,
        percent_finished: percent(p.finished(), p.total),
        percent_done: percent(p.count(ItemState::Done), p.total),
        by_provider: breakdown(&p.by_provider),
        by_owner: breakdown(&p.by_owner),
    }
}

/// The wire view of an owner's link.
pub fn link_view(l: rekey_service::CampaignLink) -> CampaignLinkView {
    CampaignLinkView {
        connection_id: l.item.connection_id,
        display_name: l.item.display_name,
        owner: l.item.owner,
        url: l.url,
        expires_at: ms_to_rfc3339(l.expires_at),
        status: l.status.as_str().into(),
    }
}

/// The wire view of one connection of a campaign.
pub fn item_view(p: &PlanItem, frozen: bool) -> CampaignItemView {
    let i = &p.item;
    CampaignItemView {
        connection_id: i.connection_id.clone(),
        display_name: i.display_name.clone(),
        provider: i.provider.clone(),
        kind: i.kind.clone(),
        owner: i.owner.clone(),
        steps: p
            .steps
            .iter()
            .map(|s| PlannedStep {
                action: s.action.as_str().into(),
                by: s.by.as_str().into(),
                note: s.note.clone(),
            })
            .collect(),
        current: p.current().map(|a| a.as_str().to_string()),
        state: p.state.as_str().into(),
        detail: i.detail.clone(),
        revocation_id: i.revocation_id.clone(),
        rotation_id: i.rotation_id.clone(),
        link_expires_at: i.link_expires_at.map(ms_to_rfc3339),
        confirmed_by: i.confirmed_by.clone(),
        comment: i.comment.clone(),
        updated_at: frozen.then(|| ms_to_rfc3339(i.updated_at)),
        finished_at: i.finished_at.map(ms_to_rfc3339),
    }
}

/// Create a campaign from a connection filter, a reason and a deadline. It
/// starts as a `draft`: look at its plan (`GET …/plan`), then start it.
/// 422 `campaign_empty` when no connection matches the filter.
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns", request_body = CreateCampaign,
    responses((status = 201, body = CampaignView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_campaign(
    auth: Auth<ConnWrite>,
    ApiJson(b): ApiJson<CreateCampaign>,
) -> ApiResult<Response> {
    let c = auth.rekey.create_campaign(&auth.ctx, b).await?;
    let mut resp = (StatusCode::CREATED, Json(view(&c))).into_response();
    if let Ok(loc) = format!("/api/v1/campaigns/{}", c.row.id).parse() {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// Campaigns, newest first, each with its progress.
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns", params(CampaignQuery),
    responses((status = 200, body = CampaignList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn list_campaigns(
    auth: Auth<ConnRead>,
    ApiQuery(q): ApiQuery<CampaignQuery>,
) -> ApiResult<Json<CampaignList>> {
    let (items, next_cursor) = auth
        .rekey
        .list_campaigns(&auth.ctx.tenant, q.cursor.as_deref(), q.limit)
        .await?;
    Ok(Json(CampaignList {
        items: items.iter().map(view).collect(),
        next_cursor,
    }))
}

/// A campaign and its progress: counts per state (`overdue`: unfinished
/// past the deadline), percent finished and done, per provider and per owner.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_campaign(auth: Auth<ConnRead>, ApiPath(id): ApiPath) -> ApiResult<Json<CampaignView>> {
    Ok(Json(view(
        &auth.rekey.get_campaign(&auth.ctx.tenant, &id).await?,
    )))
}

/// The plan: every connection with its steps and who carries each out
/// (`automatic`, `operator`, `owner`). A draft's plan is computed from
/// the filter now; a started campaign's is frozen, with each connection's
/// state (`state` filters it).
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/plan", tag = "campaigns",
    params(("id" = String, Path), CampaignItemQuery),
    responses((status = 200, body = CampaignPlan), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn campaign_plan(
    auth: Auth<ConnRead>,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<CampaignItemQuery>,
) -> ApiResult<Json<CampaignPlan>> {
    let state = q.state.as_deref().map(str::parse).transpose()?;
    let (row, items, next_cursor) = auth
        .rekey
        .campaign_plan(&auth.ctx.tenant, &id, state, q.cursor.as_deref(), q.limit)
        .await?;
    let frozen = row.state != CampaignState::Draft;
    Ok(Json(CampaignPlan {
        campaign_id: row.id,
        frozen,
        items: items.iter().map(|p| item_view(p, frozen)).collect(),
        next_cursor,
    }))
}

async fn control(
    auth: &Auth<ConnWrite>,
    id: &str,
    to: CampaignState,
) -> ApiResult<Json<CampaignView>> {
    let c = auth.rekey.campaign_control(&auth.ctx, id, to).await?;
    Ok(Json(view(&c)))
}

/// Start a draft: the plan is frozen (connections that match the filter
/// later do not join silently: see `refresh-plan`) and workers run it.
/// 409 `campaign_state` when it is not a draft.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/start", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn start_campaign(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<CampaignView>> {
    let c = auth.rekey.start_campaign(&auth.ctx, &id).await?;
    Ok(Json(view(&c)))
}

/// Pause a running campaign: no new step starts (steps under way finish).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn pause_campaign(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<CampaignView>> {
    control(&auth, &id, CampaignState::Paused).await
}

/// Resume a paused campaign.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/resume", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resume_campaign(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<CampaignView>> {
    control(&auth, &id, CampaignState::Running).await
}

/// Cancel a campaign: unfinished connections are skipped and unused links
/// stop working; rotations already started finish by themselves. 409
/// `campaign_state` for a completed or cancelled campaign.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/cancel", tag = "campaigns", params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_campaign(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<CampaignView>> {
    control(&auth, &id, CampaignState::Cancelled).await
}

/// The connections the filter selects now that the frozen plan lacks (the
/// first 1,000); with `add` they join the campaign.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/refresh-plan", tag = "campaigns", params(("id" = String, Path)),
    request_body(content = Option<RefreshCampaignPlan>),
    responses((status = 200, body = CampaignPlanRefresh), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn refresh_plan(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    OptionalJson(b): OptionalJson<RefreshCampaignPlan>,
) -> ApiResult<Json<CampaignPlanRefresh>> {
    let (items, added) = auth
        .rekey
        .refresh_campaign_plan(&auth.ctx, &id, b.add)
        .await?;
    Ok(Json(CampaignPlanRefresh {
        items: items.iter().map(|p| item_view(p, false)).collect(),
        added: added as i64,
    }))
}

/// An operator checked the connection by hand (old credential dead, new
/// one working): it is `done`, with the comment, whatever step it was at.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/items/{connection_id}/confirm", tag = "campaigns",
    params(("id" = String, Path), ("connection_id" = String, Path)), request_body = ConfirmCampaignItem,
    responses((status = 200, body = CampaignItemView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn confirm_item(
    auth: Auth<ConnWrite>,
    ApiPath2(id, cid): ApiPath2,
    ApiJson(b): ApiJson<ConfirmCampaignItem>,
) -> ApiResult<Json<CampaignItemView>> {
    let p = auth
        .rekey
        .campaign_item_decide(&auth.ctx, &id, &cid, true, &b.comment)
        .await?;
    Ok(Json(item_view(&p, true)))
}

/// Leave a connection out of the campaign, with the reason (`skipped`).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/items/{connection_id}/skip", tag = "campaigns",
    params(("id" = String, Path), ("connection_id" = String, Path)), request_body = SkipCampaignItem,
    responses((status = 200, body = CampaignItemView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn skip_item(
    auth: Auth<ConnWrite>,
    ApiPath2(id, cid): ApiPath2,
    ApiJson(b): ApiJson<SkipCampaignItem>,
) -> ApiResult<Json<CampaignItemView>> {
    let p = auth
        .rekey
        .campaign_item_decide(&auth.ctx, &id, &cid, false, &b.reason)
        .await?;
    Ok(Json(item_view(&p, true)))
}

/// The reauthorization links made so far, one per connection waiting for
/// its owner, with their URLs (each listing is audited). Needs
/// `connections:write`: a link lets its holder replace a credential.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/links", tag = "campaigns",
    params(("id" = String, Path), CampaignQuery),
    responses((status = 200, body = CampaignLinks), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn campaign_links(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<CampaignQuery>,
) -> ApiResult<Json<CampaignLinks>> {
    let (links, next_cursor) = auth
        .rekey
        .campaign_links(&auth.ctx, &id, q.cursor.as_deref(), q.limit)
        .await?;
    Ok(Json(CampaignLinks {
        items: links.into_iter().map(link_view).collect(),
        next_cursor,
    }))
}

/// Send a connection's owner a new link (until the deadline); the old one
/// stops working. 409 when the connection does not wait for its owner.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/links/{connection_id}", tag = "campaigns",
    params(("id" = String, Path), ("connection_id" = String, Path)),
    responses((status = 200, body = CampaignItemView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resend_link(
    auth: Auth<ConnWrite>,
    ApiPath2(id, cid): ApiPath2,
) -> ApiResult<Json<CampaignItemView>> {
    let p = auth
        .rekey
        .campaign_link_change(&auth.ctx, &id, &cid, true)
        .await?;
    Ok(Json(item_view(&p, true)))
}

/// Cancel a connection's link: it stops working and the connection waits
/// for an operator (resend, confirm or skip).
#[utoipa::path(delete, path = "/api/v1/campaigns/{id}/links/{connection_id}", tag = "campaigns",
    params(("id" = String, Path), ("connection_id" = String, Path)),
    responses((status = 200, body = CampaignItemView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_link(
    auth: Auth<ConnWrite>,
    ApiPath2(id, cid): ApiPath2,
) -> ApiResult<Json<CampaignItemView>> {
    let p = auth
        .rekey
        .campaign_link_change(&auth.ctx, &id, &cid, false)
        .await?;
    Ok(Json(item_view(&p, true)))
}
