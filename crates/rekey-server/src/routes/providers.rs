use crate::error::ApiResult;
use crate::extract::{ApiPath, ApiQuery, Auth, ConnRead};
use crate::AppState;
use axum::Json;
use rekey_api::*;
use rekey_core::Error;
use rekey_core::ErrorCode;
use rekey_providers::{Provider, Runbook, RunbookMethod};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_providers))
        .routes(routes!(get_provider))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ProviderQuery {
    category: Option<String>,
    #[param(value_type = Option<rekey_api::enums::ConnectionKind>)]
    auth_kind: Option<String>,
}

fn runbook(r: &Runbook) -> RunbookView {
    RunbookView {
        method: match r.method {
            RunbookMethod::Api => "api",
            RunbookMethod::Manual => "manual",
        }
        .into(),
        steps: r.steps.clone(),
        overlap: r.overlap,
        rotator: r.rotator.map(|x| x.as_str().to_string()),
        invalidates_old_immediately: r.invalidates_old_immediately,
        console_url: r.console_url.clone(),
        kinds: (!r.kinds.is_empty()).then(|| serde_json::to_value(&r.kinds).unwrap_or_default()),
    }
}

fn view(p: &Provider) -> ProviderView {
    ProviderView {
        id: p.id.clone(),
        display_name: p.display_name.clone(),
        category: p.category.clone(),
        docs_url: p.docs_url.clone(),
        auth_kinds: p.auth_kinds.clone(),
        params: p.params.clone(),
        oauth: p.oauth.as_ref().and_then(|o| serde_json::to_value(o).ok()),
        revoke: runbook(&p.revoke),
        rotate: runbook(&p.rotate),
        pitfalls: p.pitfalls.clone(),
        aliases: p.aliases.clone(),
        references: p.references.clone(),
        param_info: serde_json::to_value(&p.param_info).unwrap_or_default(),
        key_forms: serde_json::to_value(&p.key_forms).unwrap_or_default(),
        probes: serde_json::to_value(&p.probes).unwrap_or_default(),
        probe_unavailable: p.probe_unavailable.clone(),
    }
}

/// The provider catalog.
#[utoipa::path(get, path = "/api/v1/providers", tag = "providers", params(ProviderQuery),
    responses((status = 200, body = ProviderList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_providers(
    auth: Auth<ConnRead>,
    ApiQuery(q): ApiQuery<ProviderQuery>,
) -> ApiResult<Json<ProviderList>> {
    if let Some(k) = &q.auth_kind {
        k.parse::<rekey_core::connection::ConnectionKind>()?;
    }
    let items = auth
        .rekey
        .catalog()
        .all()
        .filter(|p| q.category.as_ref().is_none_or(|c| &p.category == c))
        .filter(|p| {
            q.auth_kind
                .as_ref()
                .is_none_or(|k| p.auth_kinds.contains(k))
        })
        .map(view)
        .collect();
    Ok(Json(ProviderList { items }))
}

/// One provider with its revoke and rotate runbooks.
#[utoipa::path(get, path = "/api/v1/providers/{id}", tag = "providers", params(("id" = String, Path)),
    responses((status = 200, body = ProviderView), (status = 404, body = ErrorBody)))]
async fn get_provider(auth: Auth<ConnRead>, ApiPath(id): ApiPath) -> ApiResult<Json<ProviderView>> {
    let p = auth.rekey.catalog().find(&id).ok_or_else(|| {
        Error::not_found(
            ErrorCode::ProviderNotFound,
            format!("provider `{}`", rekey_core::ids::truncate_for_message(&id)),
        )
    })?;
    Ok(Json(view(p)))
}
