//! Evidence exports: the file, and the record that shows one unaltered.

use crate::error::ApiResult;
use crate::extract::{ApiPath, ApiQuery, AuditRead, Auth};
use crate::AppState;
use axum::http::Method;
use axum::response::Response;
use axum::Json;
use rekey_api::*;
use rekey_core::time::ms_to_rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_evidence))
        .routes(routes!(get_evidence))
}

/// Export evidence of the response for every connection the filter
/// selects: one row per connection (the credential revoked, how, by whom,
/// what the provider answered when rekey tried it; the credential that
/// replaced it and when it was seen working). Streamed; the last line
/// seals the file with its SHA-256, which is also recorded in the audit
/// chain (`evidence.exported`). Needs `audit:read`.
#[utoipa::path(get, path = "/api/v1/evidence", tag = "audit", params(EvidenceQuery),
    responses((status = 200, description = "The export, sealed by its last line",
            content((String = "text/csv"), (Object = "application/json"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn export_evidence(
    method: Method,
    auth: Auth<AuditRead>,
    ApiQuery(q): ApiQuery<EvidenceQuery>,
) -> ApiResult<Response> {
    let head = method == Method::HEAD;
    Ok(crate::evidence::export(auth.rekey.clone(), auth.ctx, q, head).await?)
}

/// What the audit chain recorded of an export (`rekey evidence verify`
/// compares a file's SHA-256 with it), and whether the chain is intact.
#[utoipa::path(get, path = "/api/v1/evidence/{id}", tag = "audit", params(("id" = String, Path)),
    responses((status = 200, body = EvidenceRecordView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_evidence(
    auth: Auth<AuditRead>,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<EvidenceRecordView>> {
    let r = auth.rekey.evidence_record(&auth.ctx.tenant, &id).await?;
    let d = &r.details;
    let text = |k: &str| {
        d.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Ok(Json(EvidenceRecordView {
        id: r.entry.entry.target.clone().unwrap_or_default(),
        sha256: text("sha256"),
        format: text("format"),
        generated_at: d
            .get("generated_at")
            .and_then(|v| v.as_str())
            .map_or_else(|| ms_to_rfc3339(r.entry.entry.at), str::to_string),
        generated_by: r.entry.entry.actor.clone(),
        rows: d.get("rows").and_then(|v| v.as_u64()).unwrap_or(0),
        counts: d.get("counts").cloned().unwrap_or_default(),
        filter: d.get("filter").cloned().unwrap_or_default(),
        audit_seq: r.entry.entry.seq,
        chain_intact: r.chain.ok,
        chain_message: r.chain.message.clone(),
    }))
}
