//! `/api/v1/webhooks`: subscriptions, their deliveries and replays.

use crate::error::ApiResult;
use crate::extract::{Admin, ApiJson, ApiPath, ApiPath2, ApiQuery, Auth, IfMatch};
use crate::{views, AppState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_api::*;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(rotate_secret))
        .routes(routes!(test_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(replay_delivery))
}

fn secret_response(created: CreatedWebhook, status: StatusCode) -> Response {
    let mut r = (status, Json(created)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// List the tenant's webhook subscriptions in id order, a page at a time
/// (secrets are never shown).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", params(WebhookQuery),
    responses((status = 200, body = WebhookList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_webhooks(
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<WebhookQuery>,
) -> ApiResult<Json<WebhookList>> {
    let page = auth.rekey.list_webhooks(&auth.ctx.tenant, &q).await?;
    Ok(Json(views::webhook_list(&page)))
}

/// Subscribe a URL to events. The signing secret is in the answer, once.
/// A tenant has at most `--max-webhooks` subscriptions (409 `webhook_limit`).
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, body = CreatedWebhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_webhook(
    auth: Auth<Admin>,
    ApiJson(req): ApiJson<CreateWebhook>,
) -> ApiResult<Response> {
    let created = views::created_webhook(auth.rekey.create_webhook(&auth.ctx, &req).await?);
    Ok(secret_response(created, StatusCode::CREATED))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 404, body = ErrorBody)))]
async fn get_webhook(auth: Auth<Admin>, ApiPath(id): ApiPath) -> ApiResult<Json<WebhookView>> {
    let w = auth.rekey.get_webhook(&auth.ctx.tenant, &id).await?;
    Ok(Json(views::webhook(&w)))
}

/// Change URL, events, description, or pause (`enabled: false`).
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), request_body = UpdateWebhook,
    responses((status = 200, body = WebhookView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_webhook(
    auth: Auth<Admin>,
    ApiPath(id): ApiPath,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<UpdateWebhook>,
) -> ApiResult<Json<WebhookView>> {
    let w = auth.rekey.update_webhook(&auth.ctx, &id, &req, v).await?;
    Ok(Json(views::webhook(&w)))
}

/// Delete the subscription with its delivery history.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_webhook(auth: Auth<Admin>, ApiPath(id): ApiPath) -> ApiResult<StatusCode> {
    auth.rekey.delete_webhook(&auth.ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the signing secret; the new one is in the answer, once.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = CreatedWebhook), (status = 404, body = ErrorBody)))]
async fn rotate_secret(auth: Auth<Admin>, ApiPath(id): ApiPath) -> ApiResult<Response> {
    let created = views::created_webhook(auth.rekey.rotate_webhook_secret(&auth.ctx, &id).await?);
    Ok(secret_response(created, StatusCode::OK))
}

/// Queue a `webhook.test` event for this subscription.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 202, body = DeliveryView), (status = 404, body = ErrorBody)))]
async fn test_webhook(
    auth: Auth<Admin>,
    ApiPath(id): ApiPath,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(views::delivery(
            &auth.rekey.test_webhook(&auth.ctx, &id).await?,
        )),
    ))
}

/// Deliveries of this subscription, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path), DeliveryQuery),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_deliveries(
    auth: Auth<Admin>,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<DeliveryList>> {
    Ok(Json(views::delivery_list(
        &auth
            .rekey
            .list_deliveries(&auth.ctx.tenant, &id, &q)
            .await?,
    )))
}

/// One delivery with every attempt (status, error, duration, scrubbed answer).
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}", tag = "webhooks", params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = DeliveryView), (status = 404, body = ErrorBody)))]
async fn get_delivery(
    auth: Auth<Admin>,
    ApiPath2(id, did): ApiPath2,
) -> ApiResult<Json<DeliveryView>> {
    Ok(Json(views::delivery(
        &auth.rekey.get_delivery(&auth.ctx.tenant, &id, &did).await?,
    )))
}

/// Send a delivery again with the same `webhook-id` and a fresh attempt budget.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay", tag = "webhooks", params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, body = DeliveryView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "`delivery_in_flight`: being sent right now")))]
async fn replay_delivery(
    auth: Auth<Admin>,
    ApiPath2(id, did): ApiPath2,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(views::delivery(
            &auth.rekey.replay_delivery(&auth.ctx, &id, &did).await?,
        )),
    ))
}
