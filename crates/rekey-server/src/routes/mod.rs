pub mod api_keys;
pub mod audit;
pub mod campaigns;
pub mod connect;
pub mod connections;
pub mod evidence;
pub mod integrations;
pub mod providers;
pub mod rotations;
pub mod system;
pub mod ui;
pub mod versions;
pub mod webhooks;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// JSON with an `ETag` carrying the connection version (for `If-Match`).
pub fn with_etag<T: serde::Serialize>(
    status: axum::http::StatusCode,
    version: i64,
    body: T,
) -> Response {
    let mut r = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}
