use crate::error::ApiResult;
use crate::extract::{Admin, ApiJson, ApiPath, Auth, OptionalJson};
use crate::{views, AppState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_api::*;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
        .routes(routes!(rotate_api_key))
}

/// List API keys of the caller's tenant (hashes and keys are never shown).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys",
    responses((status = 200, body = ApiKeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_api_keys(auth: Auth<Admin>) -> ApiResult<Json<ApiKeyList>> {
    Ok(Json(views::api_key_list(
        &auth.rekey.list_api_keys(&auth.ctx.tenant).await?,
    )))
}

/// Create an API key in the caller's tenant. The key is returned once.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_api_key(
    auth: Auth<Admin>,
    ApiJson(req): ApiJson<CreateApiKey>,
) -> ApiResult<Response> {
    let created = auth.rekey.create_api_key(&auth.ctx, &req).await?;
    let mut r = (StatusCode::CREATED, Json(views::created_api_key(&created))).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Revoke an API key; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 200, body = ApiKeyView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn revoke_api_key(auth: Auth<Admin>, ApiPath(id): ApiPath) -> ApiResult<Json<ApiKeyView>> {
    Ok(Json(views::api_key(
        &auth.rekey.revoke_api_key(&auth.ctx, &id).await?,
    )))
}

/// Replace an API key with a new one of the same name and scopes, returned
/// once. The old key keeps working for `grace` (default 1h) so its users
/// can switch, or stops at once with `"grace": 0`. 409 `already_revoked`,
/// `already_rotated` or `api_key_expired` for a key that is no longer the
/// live one.
#[utoipa::path(post, path = "/api/v1/api-keys/{id}/rotate", tag = "api-keys", params(("id" = String, Path)),
    request_body(content = Option<RotateApiKey>),
    responses((status = 201, body = RotatedApiKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rotate_api_key(
    auth: Auth<Admin>,
    ApiPath(id): ApiPath,
    OptionalJson(b): OptionalJson<RotateApiKey>,
) -> ApiResult<Response> {
    let grace = super::rotations::grace(b.grace)?;
    let rotated = auth.rekey.rotate_api_key(&auth.ctx, &id, grace).await?;
    let mut r = (StatusCode::CREATED, Json(views::rotated_api_key(&rotated))).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
