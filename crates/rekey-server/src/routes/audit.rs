use crate::error::ApiResult;
use crate::extract::{Admin, ApiQuery, AuditRead, Auth};
use crate::{views, AppState};
use axum::Json;
use rekey_api::*;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
}

/// Audit entries of the caller's tenant, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_audit(
    auth: Auth<AuditRead>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    Ok(Json(views::audit_list(
        &auth.rekey.audit_list(&auth.ctx.tenant, &q).await?,
    )))
}

/// Verify the whole hash chain (every tenant's entries, so tampering anywhere
/// is found) and report the verdict with figures about the caller's tenant
/// only: its entries checked, and where the chain breaks if that entry is its own.
/// With `incremental=true` the walk starts after the last entry an earlier
/// walk verified.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", params(AuditVerifyQuery),
    responses((status = 200, body = AuditVerifyReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn verify_audit(
    auth: Auth<Admin>,
    ApiQuery(q): ApiQuery<AuditVerifyQuery>,
) -> ApiResult<Json<AuditVerifyReport>> {
    let walk = if q.incremental == Some(true) {
        rekey_service::Walk::FromCheckpoint { max: u64::MAX }
    } else {
        rekey_service::Walk::Full
    };
    Ok(Json(views::audit_verify(
        &auth
            .rekey
            .audit_verify_tenant(&auth.ctx.tenant, walk)
            .await?,
    )))
}
