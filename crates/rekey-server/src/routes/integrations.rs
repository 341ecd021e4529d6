use crate::error::ApiResult;
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery, Auth, ConnRead, ConnWrite, IfMatch};
use crate::{views, AppState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_api::*;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_integrations, create_integration))
        .routes(routes!(
            get_integration,
            update_integration,
            delete_integration
        ))
        .routes(routes!(
            rotate_client_secret,
            pending_client_key,
            discard_client_secret
        ))
        .routes(routes!(confirm_client_secret))
        .routes(routes!(create_connect_session))
}

/// OAuth app registrations of the caller's tenant (secrets are never shown),
/// filtered by provider, tag and custody place like the connection list.
#[utoipa::path(get, path = "/api/v1/integrations", tag = "integrations", params(IntegrationQuery),
    responses((status = 200, body = IntegrationList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_integrations(
    auth: Auth<ConnRead>,
    ApiQuery(q): ApiQuery<IntegrationQuery>,
) -> ApiResult<Json<IntegrationList>> {
    Ok(Json(views::integration_list(
        &auth
            .rekey
            .list_integrations_filtered(&auth.ctx.tenant, &q)
            .await?,
    )))
}

/// Register an OAuth app (client id and secret or private key) for a provider.
#[utoipa::path(post, path = "/api/v1/integrations", tag = "integrations", request_body = CreateIntegration,
    responses((status = 201, body = IntegrationView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_integration(
    auth: Auth<Admin>,
    ApiJson(req): ApiJson<CreateIntegration>,
) -> ApiResult<Response> {
    let v = auth.rekey.create_integration(&auth.ctx, req).await?;
    Ok((StatusCode::CREATED, Json(views::integration(&v))).into_response())
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}", tag = "integrations", params(("id" = String, Path)),
    responses((status = 200, body = IntegrationView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_integration(
    auth: Auth<ConnRead>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<IntegrationView>> {
    Ok(Json(views::integration(
        &auth.rekey.get_integration(&auth.ctx.tenant, &id).await?,
    )))
}

/// Update an integration; a new `client_secret` / `private_key_pem` replaces the stored one.
#[utoipa::path(patch, path = "/api/v1/integrations/{id}", tag = "integrations", params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateIntegration,
    responses((status = 200, body = IntegrationView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_integration(
    auth: Auth<Admin>,
    ApiPath(id): ApiPath,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<UpdateIntegration>,
) -> ApiResult<Json<IntegrationView>> {
    Ok(Json(views::integration(
        &auth
            .rekey
            .update_integration(&auth.ctx, &id, req, v)
            .await?,
    )))
}

/// Delete an integration that no connection uses.
#[utoipa::path(delete, path = "/api/v1/integrations/{id}", tag = "integrations", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_integration(auth: Auth<Admin>, ApiPath(id): ApiPath) -> ApiResult<StatusCode> {
    auth.rekey.delete_integration(&auth.ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a short-lived, single-use connect session; send its `url` to whoever authorizes.
#[utoipa::path(post, path = "/api/v1/connect-sessions", tag = "integrations", request_body = CreateConnectSession,
    responses((status = 201, body = ConnectSessionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_connect_session(
    auth: Auth<ConnWrite>,
    ApiJson(req): ApiJson<CreateConnectSession>,
) -> ApiResult<Response> {
    let v = views::connect_session(auth.rekey.create_connect_session(&auth.ctx, req).await?);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// Rotate the integration's client secret (or `private_key_jwt` key) made
/// in the provider's console: rekey first tries it at the token endpoint
/// (a client-credentials token request when connections use that grant,
/// else an unknown authorization code, which only an authenticated client
/// gets `invalid_grant` for) and switches to it only if it works (200);
/// every connection of the integration then uses it. 422
/// `client_secret_rejected` / `client_secret_untested` change nothing.
/// Delete the old secret in the provider's console afterwards. With
/// `generate_key` (private_key_jwt), rekey makes the key pair and answers
/// 202 with the public JWK to register; then `POST …/rotate-secret/confirm`.
#[utoipa::path(post, path = "/api/v1/integrations/{id}/rotate-secret", tag = "integrations", params(("id" = String, Path)),
    request_body = RotateClientSecret,
    responses((status = 200, body = ClientSecretRotationView), (status = 202, body = ClientSecretRotationView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rotate_client_secret(
    auth: Auth<Admin>,
    ApiPath(id): ApiPath,
    ApiJson(b): ApiJson<RotateClientSecret>,
) -> ApiResult<(StatusCode, Json<ClientSecretRotationView>)> {
    let r = auth
        .rekey
        .rotate_client_secret(
            &auth.ctx,
            &id,
            rekey_service::NewClientSecret {
                client_secret: b.client_secret,
                private_key_pem: b.private_key_pem,
                key_id: b.key_id,
                generate_key: b.generate_key,
            },
        )
        .await?;
    Ok(rotation_answer(r))
}

/// Test the generated key (registered at the provider meanwhile) and
/// switch to it, as for a pasted secret. 409 `no_pending_secret` without
/// one; a refusal keeps it waiting.
#[utoipa::path(post, path = "/api/v1/integrations/{id}/rotate-secret/confirm", tag = "integrations", params(("id" = String, Path)),
    responses((status = 200, body = ClientSecretRotationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn confirm_client_secret(
    auth: Auth<Admin>,
    ApiPath(id): ApiPath,
) -> ApiResult<(StatusCode, Json<ClientSecretRotationView>)> {
    let r = auth.rekey.confirm_client_secret(&auth.ctx, &id).await?;
    Ok(rotation_answer(r))
}

/// The generated key waiting for registration: its public JWK again (for
/// an operator who lost the answer of `POST …/rotate-secret`). 409
/// `no_pending_secret` without one.
#[utoipa::path(get, path = "/api/v1/integrations/{id}/rotate-secret", tag = "integrations", params(("id" = String, Path)),
    responses((status = 200, body = ClientSecretRotationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn pending_client_key(
    auth: Auth<Admin>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<ClientSecretRotationView>> {
    let r = auth.rekey.pending_client_key(&auth.ctx, &id).await?;
    Ok(rotation_answer(r).1)
}

/// Forget the generated key waiting for registration (204). 409
/// `no_pending_secret` without one.
#[utoipa::path(delete, path = "/api/v1/integrations/{id}/rotate-secret", tag = "integrations", params(("id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn discard_client_secret(auth: Auth<Admin>, ApiPath(id): ApiPath) -> ApiResult<StatusCode> {
    auth.rekey.discard_client_secret(&auth.ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn rotation_answer(
    r: rekey_service::ClientSecretRotation,
) -> (StatusCode, Json<ClientSecretRotationView>) {
    let status = if r.state == "rotated" {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (
        status,
        Json(ClientSecretRotationView {
            integration: views::integration(&r.integration),
            state: r.state.to_string(),
            tested_with: r.tested_with.map(str::to_string),
            public_jwk: r.public_jwk,
            old_fingerprint: r.old_fingerprint,
            new_fingerprint: r.new_fingerprint,
            connections: r.connections,
        }),
    )
}
