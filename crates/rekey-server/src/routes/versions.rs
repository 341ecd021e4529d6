//! Credential versions: the history of a connection's credentials.

use crate::error::ApiResult;
use crate::extract::{ApiPath, Auth, ConnRead};
use crate::AppState;
use axum::Json;
use rekey_api::{ErrorBody, VersionList, VersionView};
use rekey_core::time::ms_to_rfc3339;
use rekey_service::CredentialVersion as VersionRow;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_versions))
}

/// The wire view of a version (never material).
pub fn view(v: &VersionRow) -> VersionView {
    VersionView {
        id: v.id.clone(),
        seq: v.seq,
        label: v.label.as_str().to_string(),
        fingerprint: v.fingerprint.clone(),
        fingerprint_kind: v.fingerprint_kind.clone(),
        source: v.source.clone(),
        created_at: ms_to_rfc3339(v.created_at),
        created_by: v.created_by.clone(),
        promoted_at: v.promoted_at.map(ms_to_rfc3339),
        promoted_by: v.promoted_by.clone(),
        grace_until: v.grace_until.map(ms_to_rfc3339),
        retired_at: v.retired_at.map(ms_to_rfc3339),
        retired_by: v.retired_by.clone(),
        revocation_id: None,
        revoked_at: None,
        revoked_by: None,
        verdict: None,
        verified_at: None,
    }
}

/// List a connection's credential versions, newest first: labels,
/// fingerprints, who made, promoted and retired each. Never values.
#[utoipa::path(get, path = "/api/v1/connections/{id}/versions", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = VersionList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_versions(auth: Auth<ConnRead>, ApiPath(id): ApiPath) -> ApiResult<Json<VersionList>> {
    let rows = auth.rekey.list_versions(&auth.ctx.tenant, &id).await?;
    Ok(Json(VersionList {
        items: rows
            .iter()
            .map(|h| {
                let mut v = view(&h.version);
                if let Some(r) = &h.revocation {
                    v.revocation_id = Some(r.id.clone());
                    v.revoked_at = r.revoked_at.map(ms_to_rfc3339);
                    v.revoked_by = r.revoked_by.clone();
                    v.verdict = r.verdict.clone();
                    v.verified_at = r.verified_at.map(ms_to_rfc3339);
                }
                v
            })
            .collect(),
    }))
}
