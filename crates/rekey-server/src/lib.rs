//! HTTP transport for rekey: the axum router, authentication, error mapping,
//! OpenAPI document and metrics. Handlers extract, call one `rekey-service`
//! method, and map the result — no domain logic lives here.

pub mod error;
pub mod evidence;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod routes;
pub mod serve;
pub mod views;
pub mod workers;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use error::error_response;
use rekey_core::ErrorCode;
use rekey_service::Rekey;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// `POST /api/v1/connections/import` carries an inventory (up to
/// [`rekey_api::IMPORT_MAX_ROWS`] rows): its own, larger limit.
pub const IMPORT_BODY_LIMIT: usize = 1024 * 1024;

/// The body limit of a request to `path`.
fn body_limit(path: &str) -> usize {
    if path == "/api/v1/connections/import" {
        IMPORT_BODY_LIMIT
    } else {
        BODY_LIMIT
    }
}

#[derive(Clone)]
pub struct AppState {
    pub rekey: Rekey,
    pub metrics: Arc<metrics::Metrics>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "rekey", description = "Credential inventory, rotation and revocation service. Errors are always `{\"error\": {\"code\", \"message\"}}`."),
    modifiers(&BearerAuth),
    components(schemas(
        rekey_api::ErrorBody,
        rekey_api::enums::ConnectionKind,
        rekey_api::enums::ConnectionStatus,
        rekey_api::enums::Scope,
        rekey_api::enums::WebhookEventType,
        rekey_api::enums::WebhookEventFilter,
        rekey_api::enums::VersionLabel,
        rekey_api::enums::RotationState,
        rekey_api::enums::RotationStrategy,
        rekey_api::enums::CampaignState,
        rekey_api::enums::CampaignItemState,
        rekey_api::enums::ImportOutcome,
        rekey_api::enums::CampaignAction,
        rekey_api::enums::CampaignActor,
    )),
    tags(
        (name = "connections", description = "Connections and their credentials"),
        (name = "providers", description = "The provider catalog"),
        (name = "api-keys", description = "API keys and scopes"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "system", description = "Health and metrics"),
        (name = "integrations", description = "OAuth app registrations and connect sessions"),
        (name = "connect", description = "Hosted Connect page and OAuth callback (HTML)"),
        (name = "webhooks", description = "Webhook subscriptions, deliveries and replays"),
        (name = "rotations", description = "Credential rotations: rekey changes a credential at its target, tests, promotes and retires the old one"),
        (name = "campaigns", description = "Incident campaigns: every affected credential revoked, rotated or reauthorized by its owner, and verified, as one tracked run"),
    )
)]
struct ApiDoc;

struct BearerAuth;
impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("rk_…")
                        .build(),
                ),
            );
        }
    }
}

/// The API routes and their OpenAPI document, built together so a route
/// cannot exist without documentation. [`openapi::ApiContract`] then adds
/// what every operation must say (security, error answers, id patterns).
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::system::router())
        .merge(routes::providers::router())
        .merge(routes::connections::router())
        .merge(routes::versions::router())
        .merge(routes::rotations::router())
        .merge(routes::campaigns::router())
        .merge(routes::api_keys::router())
        .merge(routes::audit::router())
        .merge(routes::evidence::router())
        .merge(routes::integrations::router())
        .merge(routes::connect::router())
        .merge(routes::webhooks::router())
        .split_for_parts();
    openapi::ApiContract.modify(&mut doc);
    (router, doc)
}

pub fn router(rekey: Rekey) -> Router {
    let metrics = metrics::Metrics::new();
    let state = AppState {
        rekey,
        metrics: metrics.clone(),
    };
    let (api, doc) = api();
    let doc = Arc::new(doc);
    // The dashboard's HTML routes are not part of the REST contract.
    let routes = api
        .merge(routes::ui::router(state.clone()))
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let d = doc.clone();
                async move { Json(d.as_ref().clone()) }
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    around(
        routes,
        tower::ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<axum::body::Body>| {
                    // Never log query strings (OAuth `code`/`state`) or connect tokens.
                    tracing::info_span!("request", method = %req.method(), path = %log_path(req.uri().path()))
                },
            ))
            .layer(CatchPanicLayer::custom(|_| {
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "internal error; see server logs".into(),
                )
            }))
            .layer(DefaultBodyLimit::max(BODY_LIMIT)),
    )
}

/// `routes` behind `layers`, applied once around the whole router.
///
/// Why not `Router::layer`: it wraps every route on its own, and a route
/// is cloned (each of its boxed layers, one allocation apiece) on every
/// request it serves; measured with callgrind, a request cloned 26 boxed
/// services that way. Around the router the layers run once per request
/// and the router underneath is cloned by reference count.
pub fn around<L>(routes: Router, layers: L) -> Router
where
    L: tower::Layer<Router>,
    L::Service: tower::Service<axum::extract::Request, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower::Service<axum::extract::Request>>::Response: IntoResponse,
    <L::Service as tower::Service<axum::extract::Request>>::Future: Send + 'static,
{
    Router::new().fallback_service(layers.layer(routes))
}

/// The request path as it may appear in logs: capability tokens in the path
/// are replaced by their placeholder.
pub fn log_path(path: &str) -> String {
    match path.strip_prefix("/connect/") {
        Some(rest) => match rest.split_once('/') {
            Some((_, tail)) => format!("/connect/{{token}}/{tail}"),
            None => "/connect/{token}".to_string(),
        },
        None => path.chars().take(200).collect(),
    }
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        ErrorCode::RouteNotFound,
        "no such route; see /api/v1/openapi.json".into(),
    )
}

async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route".into(),
    )
    .into_response()
}

/// Serve until `shutdown` resolves, then drain in-flight requests, with
/// the default [`serve::ServeLimits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    rekey: Rekey,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_limited(listener, rekey, serve::ServeLimits::default(), shutdown).await
}

/// Serve with explicit connection limits (timeouts, cap, shutdown deadline).
pub async fn serve_limited(
    listener: tokio::net::TcpListener,
    rekey: Rekey,
    limits: serve::ServeLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve::serve_with_limits(listener, router(rekey), limits, shutdown).await
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = src {
        if x.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        src = x.source();
    }
    false
}

/// Read a request body whole within the deadline (`--body-timeout`), so a
/// client trickling its body cannot hold a connection and a handler open;
/// larger than [`BODY_LIMIT`] answers 413 without reading further.
async fn body_deadline(
    axum::extract::State(deadline): axum::extract::State<std::time::Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    let has_body = req.headers().contains_key(TRANSFER_ENCODING)
        || req
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if !has_body {
        return next.run(req).await;
    }
    let limit = body_limit(req.uri().path());
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Err(_) => error_response(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!(
                "the request body was not received within {} s",
                deadline.as_secs()
            ),
        ),
        Ok(Err(e)) if is_length_limit(&e) => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than the limit of {limit} bytes"),
        ),
        Ok(Err(_)) => error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
            "the request body could not be read".into(),
        ),
        Ok(Ok(bytes)) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_path_hides_tokens() {
        assert_eq!(
            super::log_path("/connect/abcDEF123/start"),
            "/connect/{token}/start"
        );
        assert_eq!(super::log_path("/connect/abcDEF123"), "/connect/{token}");
        assert_eq!(
            super::log_path("/api/v1/connections"),
            "/api/v1/connections"
        );
    }

    /// What schemathesis (`.ci/schemathesis.sh`) holds the server to: the
    /// error answers every API operation can give are in the document.
    #[test]
    fn every_api_operation_documents_its_common_errors() {
        let (_, doc) = super::api();
        let doc = serde_json::to_value(&doc).unwrap();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            if !path.starts_with("/api/v1/") {
                continue;
            }
            for (method, op) in item.as_object().unwrap() {
                let has = |s: &str| op["responses"].get(s).is_some();
                let what = format!("{method} {path}");
                if op.get("security").is_some() {
                    assert!(has("401") && has("403"), "{what}: 401/403");
                }
                if path.contains('{') {
                    assert!(has("400") && has("404"), "{what}: 400/404");
                }
                if op["requestBody"]["content"]
                    .get("application/json")
                    .is_some()
                {
                    assert!(
                        has("400") && has("413") && has("415"),
                        "{what}: 400/413/415"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 30, "{checked}");
    }
}
