use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_api::{ErrorBody, Health};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn readyz(State(s): State<AppState>) -> Result<Json<Health>, ApiError> {
    s.rekey.ready().await?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics (OpenMetrics text): requests and latency by route, connections and webhook deliveries by status.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
async fn metrics(State(s): State<AppState>) -> Response {
    match s.rekey.connection_status_counts().await {
        Ok(counts) => s.metrics.set_connection_counts(&counts),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count connections"),
    }
    match s.rekey.webhook_delivery_counts().await {
        Ok(counts) => s.metrics.set_delivery_counts(&counts),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count webhook deliveries"),
    }
    match s.metrics.encode() {
        Ok(text) => {
            let mut r = (StatusCode::OK, text).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        Err(e) => ApiError(rekey_core::Error::internal(e)).into_response(),
    }
}
