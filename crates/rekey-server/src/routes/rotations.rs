//! Credential rotations: start one, follow it, list them.

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ConnRead, ConnWrite, OptionalJson};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_api::{
    CancelRotation, ConfirmRotation, ErrorBody, Grace, RotationConfirmationView,
    RotationInstructions, RotationList, RotationQuery, RotationScheduleView, RotationView,
    SetRotationSchedule, StartRotation,
};
use rekey_core::time::ms_to_rfc3339;
use rekey_core::versions::{grace_from_secs, parse_grace};
use rekey_service::{
    ConfirmRequest, RotateRequest, Rotation, RotationInstructions as Instructions, RotationOptions,
    RotationSchedule, ScheduleRequest,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_rotation))
        .routes(routes!(list_rotations))
        .routes(routes!(get_rotation))
        .routes(routes!(confirm_rotation))
        .routes(routes!(cancel_rotation))
        .routes(routes!(
            set_rotation_schedule,
            get_rotation_schedule,
            delete_rotation_schedule
        ))
}

/// The wire view of a rotation.
pub fn view(r: &Rotation) -> RotationView {
    let finished = r.state.is_finished();
    RotationView {
        id: r.id.clone(),
        connection_id: r.connection_id.clone(),
        rotator: r.rotator.clone(),
        strategy: r.strategy.clone(),
        state: r.state.as_str().to_string(),
        finished,
        grace_secs: r.grace_ms / 1000,
        new_version_id: r.pending_version_id.clone(),
        old_version_id: r.old_version_id.clone(),
        last_error: r
            .last_error
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok()),
        next_action: r.next_action.clone(),
        attempts: r.attempts,
        next_step_at: (!finished).then(|| ms_to_rfc3339(r.due_at)),
        requested_by: r.requested_by.clone(),
        created_at: ms_to_rfc3339(r.created_at),
        updated_at: ms_to_rfc3339(r.updated_at),
        finished_at: r.finished_at.map(ms_to_rfc3339),
        awaiting: r.awaiting.clone(),
        instructions: r
            .instructions
            .as_deref()
            .and_then(|i| serde_json::from_str::<Instructions>(i).ok())
            .map(|i| RotationInstructions {
                step: i.step,
                summary: i.summary,
                steps: i.steps,
                statements: i.statements,
                needs_credentials: i.needs_credentials,
            }),
        confirmations: RotationOptions::of(r)
            .confirmed
            .into_iter()
            .map(|c| RotationConfirmationView {
                step: c.step,
                by: c.by,
                at: ms_to_rfc3339(c.at),
                note: c.note,
            })
            .collect(),
    }
}

/// A request's `grace`: seconds, or `90s`/`15m`/`1h`/`7d` (at most 30 days).
pub(crate) fn grace(g: Option<Grace>) -> Result<Option<std::time::Duration>, rekey_core::Error> {
    Ok(match g {
        None => None,
        Some(Grace::Seconds(n)) => Some(grace_from_secs(n)?),
        Some(Grace::Text(t)) => Some(parse_grace(&t)?),
    })
}

/// Rotate a connection's credential with the catalog's rotator: the new
/// secret is made and stored as the pending version, set at the target,
/// tested, promoted to current, and the old one retired after the grace.
/// Answers at once (202) with the rotation, which runs in the background;
/// follow it at `GET /api/v1/rotations/{id}`. A crash resumes it.
#[utoipa::path(post, path = "/api/v1/connections/{id}/rotate", tag = "rotations", params(("id" = String, Path)),
    request_body(content = Option<StartRotation>),
    responses((status = 202, body = RotationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn start_rotation(
    State(s): State<AppState>,
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    OptionalJson(body): OptionalJson<StartRotation>,
) -> ApiResult<Response> {
    let req = RotateRequest::from_wire(body)?;
    let r = s.rekey.start_rotation(&auth.ctx, &id, req).await?;
    drive_in_background(&s, &r);
    let mut resp = (StatusCode::ACCEPTED, Json(view(&r))).into_response();
    if let Ok(loc) = format!("/api/v1/rotations/{}", r.id).parse() {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// Run the rotation's next steps now, off the request (the worker would
/// otherwise pick it up within its interval).
pub(crate) fn drive_in_background(s: &AppState, r: &Rotation) {
    let rekey = s.rekey.clone();
    let (tenant, rid) = (r.tenant.clone(), r.id.clone());
    tokio::spawn(async move {
        if let Err(e) = rekey.drive_rotation(&tenant, &rid).await {
            tracing::warn!(rotation = %rid, error = %e, "rotation could not run now; the worker resumes it");
        }
    });
}

/// Confirm that the step a rotation waits for (`awaiting`: `set` or
/// `retired`) is done at the target, following its `instructions`. A
/// guided rotation's `set` carries the new credential in `credentials`.
/// The rotation then goes on in the background (202). 409
/// `rotation_not_awaiting` when it does not wait for that step.
#[utoipa::path(post, path = "/api/v1/rotations/{id}/confirm", tag = "rotations", params(("id" = String, Path)),
    request_body = ConfirmRotation,
    responses((status = 202, body = RotationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn confirm_rotation(
    State(s): State<AppState>,
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    ApiJson(b): ApiJson<ConfirmRotation>,
) -> ApiResult<(StatusCode, Json<RotationView>)> {
    let r = s
        .rekey
        .confirm_rotation(
            &auth.ctx,
            &id,
            ConfirmRequest {
                step: b.step,
                note: b.note,
                credentials: b.credentials,
            },
        )
        .await?;
    drive_in_background(&s, &r);
    Ok((StatusCode::ACCEPTED, Json(view(&r))))
}

/// Cancel a rotation while the current credential is untouched (at
/// `created`, or at `set` where the old credential still works): it ends
/// `rolled_back` and the pending version is retired. 409
/// `rotation_not_cancellable` later on.
#[utoipa::path(post, path = "/api/v1/rotations/{id}/cancel", tag = "rotations", params(("id" = String, Path)),
    request_body(content = Option<CancelRotation>),
    responses((status = 200, body = RotationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_rotation(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    OptionalJson(b): OptionalJson<CancelRotation>,
) -> ApiResult<Json<RotationView>> {
    let r = auth
        .rekey
        .cancel_rotation(&auth.ctx, &id, b.note.as_deref())
        .await?;
    Ok(Json(view(&r)))
}

/// Rotations, newest first; `connection` limits them to one connection.
#[utoipa::path(get, path = "/api/v1/rotations", tag = "rotations", params(RotationQuery),
    responses((status = 200, body = RotationList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_rotations(
    auth: Auth<ConnRead>,
    ApiQuery(q): ApiQuery<RotationQuery>,
) -> ApiResult<Json<RotationList>> {
    let (rows, next_cursor) = auth
        .rekey
        .list_rotations(
            &auth.ctx.tenant,
            q.connection.as_deref(),
            q.cursor.as_deref(),
            q.limit,
        )
        .await?;
    Ok(Json(RotationList {
        items: rows.iter().map(view).collect(),
        next_cursor,
    }))
}

/// One rotation: its state, last error and what happens next.
#[utoipa::path(get, path = "/api/v1/rotations/{id}", tag = "rotations", params(("id" = String, Path)),
    responses((status = 200, body = RotationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_rotation(auth: Auth<ConnRead>, ApiPath(id): ApiPath) -> ApiResult<Json<RotationView>> {
    Ok(Json(view(
        &auth.rekey.get_rotation(&auth.ctx.tenant, &id).await?,
    )))
}

fn schedule_view(s: &RotationSchedule) -> RotationScheduleView {
    RotationScheduleView {
        connection_id: s.connection_id.clone(),
        period_secs: s.period_secs,
        window: rekey_core::rotation::window_text(s.window_start, s.window_end),
        next_due_at: ms_to_rfc3339(s.next_due_at),
        options: rekey_service::schedule_options(s),
        last_rotation_id: s.last_rotation_id.clone(),
        last_error: s
            .last_error
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok()),
        updated_at: ms_to_rfc3339(s.updated_at),
    }
}

/// Rotate the connection's credential every `period`, starting inside the
/// daily `window` (UTC), with the options of `POST …/rotate`. Replaces any
/// schedule it had. 422 `no_rotator` when rekey cannot rotate it.
#[utoipa::path(put, path = "/api/v1/connections/{id}/rotation-schedule", tag = "rotations", params(("id" = String, Path)),
    request_body = SetRotationSchedule,
    responses((status = 200, body = RotationScheduleView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_rotation_schedule(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    ApiJson(b): ApiJson<SetRotationSchedule>,
) -> ApiResult<Json<RotationScheduleView>> {
    let period = match &b.period {
        Grace::Seconds(n) => rekey_core::rotation::parse_period(&n.to_string())?,
        Grace::Text(t) => rekey_core::rotation::parse_period(t)?,
    };
    let window = rekey_core::rotation::parse_window(b.window.as_deref())?;
    let rotate = RotateRequest::from_wire(StartRotation {
        grace: b.grace,
        strategy: b.strategy,
        admin_connection_id: b.admin_connection_id,
        alternate_username: b.alternate_username,
        user_host: b.user_host,
        endpoint: b.endpoint,
        iam_user: b.iam_user,
        delete_inactive_key: b.delete_inactive_key,
        method: None,
        current_slot: None,
    })?;
    let sched = auth
        .rekey
        .set_rotation_schedule(
            &auth.ctx,
            &id,
            ScheduleRequest {
                period,
                window,
                rotate,
            },
        )
        .await?;
    Ok(Json(schedule_view(&sched)))
}

/// The connection's rotation schedule. 404 `rotation_schedule_not_found`.
#[utoipa::path(get, path = "/api/v1/connections/{id}/rotation-schedule", tag = "rotations", params(("id" = String, Path)),
    responses((status = 200, body = RotationScheduleView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_rotation_schedule(
    auth: Auth<ConnRead>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<RotationScheduleView>> {
    let sched = auth
        .rekey
        .get_rotation_schedule(&auth.ctx.tenant, &id)
        .await?;
    Ok(Json(schedule_view(&sched)))
}

/// Stop rotating the connection on a schedule (rotations already started go on).
#[utoipa::path(delete, path = "/api/v1/connections/{id}/rotation-schedule", tag = "rotations", params(("id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_rotation_schedule(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
) -> ApiResult<StatusCode> {
    auth.rekey.delete_rotation_schedule(&auth.ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
