//! Extractors that turn every rejection into the JSON error shape.

use crate::error::{error_response, scrub_serde_message, ApiError};
use crate::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rekey_core::ErrorCode;
use rekey_core::{Error, SecretString};
use rekey_service::{Ctx, Principal, Rekey};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

/// JSON body with errors in our shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        if !is_json_content_type(req.headers()) {
            return Err(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "expected `Content-Type: application/json`".to_string(),
            ));
        }
        let body = read_body(req, state).await?;
        object_json(&body)
            .map(ApiJson)
            .map_err(|e| ApiError(e).into_response())
    }
}

/// The request body, with 413 past the limit.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<axum::body::Bytes, Response> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "request body is larger than the limit of {} bytes",
                        crate::BODY_LIMIT
                    ),
                )
            } else {
                error_response(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidBody,
                    "could not read the request body".to_string(),
                )
            }
        })
}

/// A body that must be one JSON object of `T`'s shape. serde would also
/// build a struct from an array of its fields in order (`[null, null]`),
/// which no client means, so anything but an object is refused first.
/// One JSON value of a larger body (an import's row) as `T`, with the
/// same scrubbed messages as a whole body.
pub(crate) fn from_json_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, Error> {
    if !v.is_object() {
        return Err(Error::invalid(
            ErrorCode::InvalidBody,
            "row does not match the schema: expected a JSON object",
        ));
    }
    serde_json::from_value(v).map_err(|e| {
        Error::invalid(
            ErrorCode::InvalidBody,
            format!(
                "row does not match the schema: {}",
                scrub_serde_message(&e.to_string())
            ),
        )
    })
}

fn object_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return Err(Error::invalid(
            ErrorCode::InvalidBody,
            "request body does not match the schema: expected a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let (code, what) = if e.is_syntax() || e.is_eof() {
            (ErrorCode::MalformedJson, "request body is not valid JSON")
        } else {
            (
                ErrorCode::InvalidBody,
                "request body does not match the schema",
            )
        };
        Error::invalid(
            code,
            format!("{what}: {}", scrub_serde_message(&e.to_string())),
        )
    })
}

fn source_text(e: &dyn std::error::Error) -> String {
    // The innermost cause is serde's message, e.g. "unknown field `x` at line 1 column 5".
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Query string with errors in our shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidQuery,
                format!(
                    "invalid query string: {}",
                    scrub_serde_message(&source_text(&e))
                ),
            )),
            Err(_) => Err(error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidQuery,
                "invalid query string".into(),
            )),
        }
    }
}

/// A single path parameter.
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(_)) | Err(_) => Err(error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidId,
                "the id in the path is not valid".into(),
            )),
        }
    }
}

/// Two path parameters (a parent id and a child id).
pub struct ApiPath2(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath2 {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match axum::extract::Path::<(String, String)>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path((a, b))) => Ok(ApiPath2(a, b)),
            Err(_) => Err(error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidId,
                "an id in the path is not valid".into(),
            )),
        }
    }
}

/// `If-Match: "3"` (or `3`, `W/"3"`) → expected version.
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let Some(v) = parts.headers.get(axum::http::header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let parsed = v
            .to_str()
            .ok()
            .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|s| s.parse::<i64>().ok());
        match parsed {
            Some(n) => Ok(IfMatch(Some(n))),
            None => Err(error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidIfMatch,
                "`If-Match` must be the version from the connection's ETag, e.g. \"3\"".into(),
            )),
        }
    }
}

/// What scope a handler needs; checked in the extractor, so a caller
/// without it gets 403 before the body is even read.
pub trait NeedScope {
    const SCOPE: Option<rekey_core::scope::Scope>;
}

macro_rules! need_scope {
    ($($name:ident => $scope:expr),* $(,)?) => {$(
        pub struct $name;
        impl NeedScope for $name {
            const SCOPE: Option<rekey_core::scope::Scope> = $scope;
        }
    )*};
}

need_scope!(
    AnyScope => None,
    ConnRead => Some(rekey_core::scope::Scope::ConnectionsRead),
    ConnWrite => Some(rekey_core::scope::Scope::ConnectionsWrite),
    AuditRead => Some(rekey_core::scope::Scope::AuditRead),
    Admin => Some(rekey_core::scope::Scope::Admin),
);

/// Where a request came from, as its audit entries record it: the request
/// id (`X-Request-Id`, set or propagated by the router's middleware) and
/// the client address. API calls ([`Auth`]) and dashboard sessions
/// (`routes::ui`) both take it from here.
#[derive(Clone, Debug, Default)]
pub struct RequestOrigin {
    pub request_id: Option<String>,
    pub source: Option<String>,
}

impl RequestOrigin {
    pub fn of(parts: &Parts) -> RequestOrigin {
        RequestOrigin {
            request_id: parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                // `to_str` accepts visible ASCII only: bytes are characters.
                .map(|s| s[..s.len().min(128)].to_string()),
            source: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestOrigin {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestOrigin::of(parts))
    }
}

/// An authenticated caller holding scope `N`, plus the audit context of
/// this request.
pub struct Auth<N: NeedScope = AnyScope> {
    pub principal: Principal,
    pub ctx: Ctx,
    /// The service to act with as this caller (handlers need no `State`).
    pub rekey: Rekey,
    _need: std::marker::PhantomData<N>,
}

/// The bearer token of a request, if it has one.
fn bearer(parts: &Parts) -> Option<SecretString> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| SecretString::from(t.trim()))
}

/// The credential fetch's caller, from the key cache: only
/// [`Rekey::read_credentials_cached`] takes it as it is (it proves the key
/// active when it audits the read); anything else calls
/// [`Rekey::confirm`] first. Scopes are checked by the service.
pub struct CachedAuth {
    pub principal: rekey_service::CachedPrincipal,
    pub ctx: Ctx,
    pub rekey: Rekey,
}

impl FromRequestParts<AppState> for CachedAuth {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let token = bearer(parts).ok_or_else(|| ApiError(Error::Unauthorized).into_response())?;
        let principal = state
            .rekey
            .authenticate_cached(&token)
            .await
            .map_err(|e| ApiError(e).into_response())?;
        let origin = RequestOrigin::of(parts);
        let ctx = principal.ctx(origin.request_id, origin.source);
        Ok(CachedAuth {
            principal,
            ctx,
            rekey: state.rekey.clone(),
        })
    }
}

impl<N: NeedScope> FromRequestParts<AppState> for Auth<N> {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let token = bearer(parts).ok_or_else(|| ApiError(Error::Unauthorized).into_response())?;
        let principal = state
            .rekey
            .authenticate(&token)
            .await
            .map_err(|e| ApiError(e).into_response())?;
        if let Some(scope) = N::SCOPE {
            principal
                .require(scope)
                .map_err(|e| ApiError(e).into_response())?;
        }
        let origin = RequestOrigin::of(parts);
        let ctx = principal.ctx(origin.request_id, origin.source);
        Ok(Auth {
            principal,
            ctx,
            rekey: state.rekey.clone(),
            _need: std::marker::PhantomData,
        })
    }
}

/// An optional JSON body: empty means `T::default()`; a non-empty one must
/// say `Content-Type: application/json` (415 otherwise), like [`ApiJson`].
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let json_type = is_json_content_type(req.headers());
        let body = read_body(req, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json_type {
            return Err(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "expected `Content-Type: application/json`".to_string(),
            ));
        }
        optional_json(&body)
            .map(OptionalJson)
            .map_err(|e| ApiError(e).into_response())
    }
}

/// `application/json` or `application/…+json`, as axum's `Json` accepts.
fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(v) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json"
        || mime
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// An optional JSON body: empty means `T::default()`.
pub fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    object_json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(request_id: &str) -> RequestOrigin {
        let req = axum::http::Request::builder()
            .header("x-request-id", request_id)
            .body(())
            .unwrap_or_default();
        RequestOrigin::of(&req.into_parts().0)
    }

    #[test]
    fn a_request_id_is_kept_up_to_128_characters() {
        assert_eq!(
            origin("req-abc-123").request_id.as_deref(),
            Some("req-abc-123")
        );
        let long = "a".repeat(300);
        assert_eq!(origin(&long).request_id.as_deref(), Some(&long[..128]));
        assert_eq!(origin("").request_id.as_deref(), Some(""));
    }
}
