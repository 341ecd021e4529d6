use super::with_etag;
use crate::error::ApiResult;
use crate::extract::{
    ApiJson, ApiPath, ApiQuery, AuditRead, Auth, CachedAuth, ConnRead, ConnWrite, IfMatch,
    OptionalJson,
};
use crate::{views, AppState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_api::*;
use rekey_core::connection::Status;
use rekey_core::versions::VersionLabel;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_connections, create_connection))
        .merge(
            // An inventory is larger than one connection: its own body limit.
            OpenApiRouter::new()
                .routes(routes!(import_connections))
                .layer(axum::extract::DefaultBodyLimit::max(
                    crate::IMPORT_BODY_LIMIT,
                )),
        )
        .routes(routes!(
            get_connection,
            update_connection,
            delete_connection
        ))
        .routes(routes!(update_credentials, read_credentials))
        .routes(routes!(disable_connection))
        .routes(routes!(enable_connection))
        .routes(routes!(revoke_connection))
        .routes(routes!(confirm_revocation))
        .routes(routes!(verify_revocation))
        .routes(routes!(list_revocations))
        .routes(routes!(list_readers))
        .routes(routes!(reauthorize_connection))
        .routes(routes!(refresh_connection))
        .routes(routes!(check_connection))
        .routes(routes!(confirm_working))
}

/// List connections (never includes secrets).
#[utoipa::path(get, path = "/api/v1/connections", tag = "connections", params(ConnectionQuery),
    responses((status = 200, body = ConnectionList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_connections(
    auth: Auth<ConnRead>,
    ApiQuery(q): ApiQuery<ConnectionQuery>,
) -> ApiResult<Json<ConnectionList>> {
    let page = auth.rekey.list_connections(&auth.ctx.tenant, &q).await?;
    Ok(Json(views::connection_list(&page)))
}

/// Create a connection with static credential material.
#[utoipa::path(post, path = "/api/v1/connections", tag = "connections", request_body = CreateConnection,
    responses((status = 201, body = ConnectionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_connection(
    auth: Auth<ConnWrite>,
    ApiJson(req): ApiJson<CreateConnection>,
) -> ApiResult<Response> {
    rekey_service::authorize_probe_target(
        &auth.principal,
        req.probe_url.as_deref(),
        !req.params.is_empty(),
    )?;
    let v = views::connection(&auth.rekey.create_connection(&auth.ctx, req).await?);
    let mut r = with_etag(StatusCode::CREATED, v.version, &v);
    if let Ok(loc) = format!("/api/v1/connections/{}", v.id).parse() {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

/// Create many connections at once (an inventory import): up to 1,000 rows, each the body
/// of `POST /api/v1/connections`, in a body of up to 1 MiB. Every row is checked on its own;
/// the rows that pass are created in one transaction, each with its audit entry and
/// `connection.created` event. The answer lists each row's outcome in order (200 even when
/// some rows failed: see `failed`). With `dry_run` nothing is created.
#[utoipa::path(post, path = "/api/v1/connections/import", tag = "connections", request_body = ImportConnections,
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn import_connections(
    auth: Auth<ConnWrite>,
    ApiJson(req): ApiJson<ImportConnections>,
) -> ApiResult<Json<ImportReport>> {
    // Rows must be objects (the schema says so); what is inside each one
    // is checked per row.
    if let Some(i) = req.connections.iter().position(|v| !v.is_object()) {
        return Err(rekey_core::Error::invalid(
            rekey_core::ErrorCode::InvalidBody,
            format!("`connections[{i}]` is not a JSON object"),
        )
        .into());
    }
    let rows = req
        .connections
        .into_iter()
        .map(|v| {
            let c: CreateConnection = crate::extract::from_json_value(v)?;
            rekey_service::authorize_probe_target(
                &auth.principal,
                c.probe_url.as_deref(),
                !c.params.is_empty(),
            )?;
            Ok(c)
        })
        .collect();
    let out = auth
        .rekey
        .import_connections(&auth.ctx, rows, req.dry_run)
        .await?;
    Ok(Json(views::import_report(req.dry_run, out)))
}

/// Show one connection (never includes secrets).
#[utoipa::path(get, path = "/api/v1/connections/{id}", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_connection(auth: Auth<ConnRead>, ApiPath(id): ApiPath) -> ApiResult<Response> {
    let v = views::connection(&auth.rekey.get_connection(&auth.ctx.tenant, &id).await?);
    Ok(with_etag(StatusCode::OK, v.version, &v))
}

/// Update a connection's metadata. Send `If-Match` (or `version`) to avoid lost updates.
#[utoipa::path(patch, path = "/api/v1/connections/{id}", tag = "connections", params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateConnection,
    responses((status = 200, body = ConnectionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_connection(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<UpdateConnection>,
) -> ApiResult<Response> {
    rekey_service::authorize_probe_target(
        &auth.principal,
        req.probe_url.as_deref(),
        req.params.is_some(),
    )?;
    let c = views::connection(&auth.rekey.update_connection(&auth.ctx, &id, req, v).await?);
    Ok(with_etag(StatusCode::OK, c.version, &c))
}

/// Delete a connection and destroy its stored secrets.
#[utoipa::path(delete, path = "/api/v1/connections/{id}", tag = "connections", params(("id" = String, Path), ("If-Match" = Option<String>, Header), DeleteQuery),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete_connection(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    IfMatch(v): IfMatch,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<StatusCode> {
    auth.rekey
        .delete_connection(&auth.ctx, &id, v, q.revoke.unwrap_or(true))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the credential material (e.g. after rotating at the provider).
#[utoipa::path(put, path = "/api/v1/connections/{id}/credentials", tag = "connections", params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateCredentials,
    responses((status = 200, body = ConnectionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_credentials(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<UpdateCredentials>,
) -> ApiResult<Response> {
    let c = views::connection(
        &auth
            .rekey
            .update_credentials(&auth.ctx, &id, req, v)
            .await?,
    );
    Ok(with_etag(StatusCode::OK, c.version, &c))
}

/// Decrypt and return the credential material. Requires `credentials:read`; every call is audited.
/// `?version=previous` returns the credential replaced last while its grace lasts (404 `no_previous_version` otherwise).
#[utoipa::path(get, path = "/api/v1/connections/{id}/credentials", tag = "connections", params(("id" = String, Path), CredentialsQuery),
    responses((status = 200, body = CredentialsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn read_credentials(
    auth: CachedAuth,
    ApiPath(id): ApiPath,
    q: Result<ApiQuery<CredentialsQuery>, Response>,
) -> ApiResult<Response> {
    // Every path but the cached read is boxed: their state would otherwise
    // make this handler's future several KiB, copied on every fetch.
    // The caller comes from the key cache: any refusal is answered only
    // after the key is proven active (a revoked key gets 401 first, as on
    // every other route).
    let label = match q {
        Ok(ApiQuery(q)) => match q.version.as_deref() {
            None => Ok(VersionLabel::Current),
            Some(v) => v.parse::<VersionLabel>(),
        },
        Err(rejection) => {
            Box::pin(auth.rekey.confirm(&auth.principal)).await?;
            return Ok(rejection);
        }
    };
    let v = match label {
        // The hot path: proven active when the read is audited.
        Ok(VersionLabel::Current) => {
            auth.rekey
                .read_credentials_cached(&auth.principal, &auth.ctx, &id)
                .await?
        }
        Ok(VersionLabel::Previous) => {
            let p = Box::pin(auth.rekey.confirm(&auth.principal)).await?;
            Box::pin(auth.rekey.read_previous_credentials(&p, &auth.ctx, &id)).await?
        }
        Ok(other) => {
            Box::pin(auth.rekey.confirm(&auth.principal)).await?;
            return Err(rekey_core::Error::invalid(
                rekey_core::ErrorCode::InvalidVersion,
                format!("`version` must be `current` or `previous`; a `{other}` credential is not handed out"),
            )
            .into());
        }
        Err(e) => {
            Box::pin(auth.rekey.confirm(&auth.principal)).await?;
            return Err(e.into());
        }
    };
    let mut r = Json(views::credentials(v)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// Disable a connection: its credentials are no longer handed out.
#[utoipa::path(post, path = "/api/v1/connections/{id}/disable", tag = "connections", params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body(content = Option<DisableConnection>),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn disable_connection(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    IfMatch(v): IfMatch,
    OptionalJson(req): OptionalJson<DisableConnection>,
) -> ApiResult<Response> {
    let c = auth
        .rekey
        .set_status(&auth.ctx, &id, Status::Disabled, req, v)
        .await?;
    let c = views::connection(&c);
    Ok(with_etag(StatusCode::OK, c.version, &c))
}

/// Re-enable a disabled connection; it returns to `pending` until verified.
#[utoipa::path(post, path = "/api/v1/connections/{id}/enable", tag = "connections", params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn enable_connection(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    IfMatch(v): IfMatch,
) -> ApiResult<Response> {
    let c = auth
        .rekey
        .set_status(&auth.ctx, &id, Status::Pending, Default::default(), v)
        .await?;
    let c = views::connection(&c);
    Ok(with_etag(StatusCode::OK, c.version, &c))
}

/// Revoke at the provider (RFC 7009) and mark `revoked`; without a revocation
/// endpoint the connection becomes `revoke_pending` and the runbook steps are returned.
#[utoipa::path(post, path = "/api/v1/connections/{id}/revoke", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = RevokeResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn revoke_connection(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<RevokeResult>> {
    let r = auth.rekey.revoke_connection(&auth.ctx, &id).await?;
    Ok(Json(views::revocation(&r)))
}

/// Confirm a manual revocation's runbook steps done at the provider: one
/// `step` (1-based) or, without it, every step left, with an optional note
/// (a ticket number) for the audit log. Once every step is confirmed the
/// connection (if still `revoke_pending`) becomes `revoked` and rekey
/// tries the old credential; see `GET …/revocations`. 422 `invalid_step`,
/// 409 `step_already_confirmed`.
#[utoipa::path(post, path = "/api/v1/connections/{id}/revoke/confirm", tag = "connections", params(("id" = String, Path)), request_body(content = Option<ConfirmRevocation>),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn confirm_revocation(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    OptionalJson(req): OptionalJson<ConfirmRevocation>,
) -> ApiResult<Json<ConnectionView>> {
    let (c, _) = auth.rekey.confirm_revocation(&auth.ctx, &id, &req).await?;
    Ok(Json(views::connection(&c)))
}

/// Try the connection's latest revoked credential at the provider now and
/// record the verdict: `verified_rejected` (the provider refused it:
/// proof), `still_accepted` (an alarm: rekey keeps trying, and a connection
/// still `revoked` with that credential becomes `revocation_failed`) or
/// `unverifiable` (why is in `checks`). 409 `not_revoked` when no
/// credential of the connection counts as revoked yet (none was, or the
/// runbook has steps left).
#[utoipa::path(post, path = "/api/v1/connections/{id}/revoke/verify", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = RevocationView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn verify_revocation(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<RevocationView>> {
    let r = auth.rekey.verify_revocation(&auth.ctx, &id).await?;
    Ok(Json(views::revocation_record(&r)))
}

/// Every revocation of the connection's credentials, newest first: the
/// fingerprint, how and by whom, the runbook steps and the verdict.
#[utoipa::path(get, path = "/api/v1/connections/{id}/revocations", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = RevocationList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_revocations(
    auth: Auth<ConnRead>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<RevocationList>> {
    let items = auth.rekey.revocations(&auth.ctx.tenant, &id).await?;
    Ok(Json(RevocationList {
        items: items.iter().map(views::revocation_record).collect(),
    }))
}

/// Start a reauthorization ("Connect new account"): a connect session for the
/// original authorizer. With `accept_mismatch=true`, switch to a parked grant instead (audited).
#[utoipa::path(post, path = "/api/v1/connections/{id}/reauthorize", tag = "connections", params(("id" = String, Path), ReauthorizeQuery),
    responses((status = 200, body = ReauthorizeResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reauthorize_connection(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<ReauthorizeQuery>,
) -> ApiResult<Json<ReauthorizeResult>> {
    let r = auth
        .rekey
        .reauthorize(&auth.ctx, &id, q.accept_mismatch.unwrap_or(false))
        .await?;
    Ok(Json(views::reauthorization(r)))
}

/// Refresh an OAuth connection's access token now.
#[utoipa::path(post, path = "/api/v1/connections/{id}/refresh", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn refresh_connection(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<ConnectionView>> {
    let c = auth.rekey.refresh_connection(&auth.ctx, &id).await?;
    Ok(Json(views::connection(&c)))
}

/// Probe the connection now with its current credential (refreshing an
/// OAuth token first when due) and return what was found. Status moves
/// through the status machine; a transition is audited and sent to webhooks.
#[utoipa::path(post, path = "/api/v1/connections/{id}/check", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = CheckResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn check_connection(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<CheckResult>> {
    let r = auth.rekey.check_connection(&auth.ctx, &id).await?;
    Ok(Json(views::check(&r)))
}

/// Record an operator's confirmation that the connection's data flows: for
/// connections no probe can check. `pending` becomes `active` (audited, and
/// sent to webhooks as a status change); an `active` one keeps its status
/// and records the new confirmation. Refused (409) for a connection that a
/// probe checks, one whose last check or refresh failed, or one out of service.
#[utoipa::path(post, path = "/api/v1/connections/{id}/confirm-working", tag = "connections",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)), request_body(content = Option<ConfirmWorking>),
    responses((status = 200, body = ConnectionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn confirm_working(
    auth: Auth<ConnWrite>,
    ApiPath(id): ApiPath,
    IfMatch(v): IfMatch,
    OptionalJson(req): OptionalJson<ConfirmWorking>,
) -> ApiResult<Response> {
    let c = views::connection(&auth.rekey.confirm_working(&auth.ctx, &id, req, v).await?);
    Ok(with_etag(StatusCode::OK, c.version, &c))
}

/// Who read this connection's credential: per API key (or user) and client
/// address, how many reads, first and last, refused and failed reads
/// apart; from the audit log, newest first. The first question after a
/// breach. Needs `audit:read`.
#[utoipa::path(get, path = "/api/v1/connections/{id}/readers", tag = "connections", params(("id" = String, Path), ReadersQuery),
    responses((status = 200, body = ReaderList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_readers(
    auth: Auth<AuditRead>,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<ReadersQuery>,
) -> ApiResult<Json<ReaderList>> {
    let items = auth
        .rekey
        .credential_readers(&auth.ctx.tenant, &id, q.since.as_deref())
        .await?;
    Ok(Json(views::readers(&items)))
}
