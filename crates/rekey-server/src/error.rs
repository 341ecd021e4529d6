//! Domain errors → JSON responses. The one place HTTP statuses are chosen.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rekey_api::{ErrorBody, ErrorDetail};
use rekey_core::{Error, ErrorClass, ErrorCode};

pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn status_of(class: ErrorClass) -> StatusCode {
    match class {
        ErrorClass::BadRequest => StatusCode::BAD_REQUEST,
        ErrorClass::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorClass::Forbidden => StatusCode::FORBIDDEN,
        ErrorClass::NotFound => StatusCode::NOT_FOUND,
        ErrorClass::Conflict => StatusCode::CONFLICT,
        ErrorClass::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorClass::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn error_response(status: StatusCode, code: ErrorCode, message: String) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.as_str().to_string(),
            message,
        },
    };
    let mut resp = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer realm=\"rekey\""),
        );
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = status_of(e.class());
        if status.is_server_error() {
            // Full detail for operators; clients get the public message.
            tracing::error!(code = %e.code(), error = %e, "request failed");
        }
        error_response(status, e.code(), e.public_message())
    }
}

/// serde messages can quote the offending value ("invalid type: string
/// \"sk_live…\""); a secret typed into the wrong field must not come back.
/// Keep the shape of the message, drop quoted values.
pub fn scrub_serde_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars().peekable();
    let mut in_quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match in_quote {
            Some(q) if c == q => {
                in_quote = None;
                out.push('…');
                out.push(c);
            }
            Some(_) => {}
            None if c == '"' || c == '`' => {
                // Backticked field names after "field" / "one of" stay; values go.
                let keep =
                    out.ends_with("field ") || out.ends_with("one of ") || out.ends_with(", ");
                if keep && c == '`' {
                    // A name the client sent (an unknown field) is kept,
                    // but only its start: the message stays short.
                    out.push(c);
                    let mut kept = 0;
                    for n in chars.by_ref() {
                        if n == '`' {
                            out.push(n);
                            break;
                        }
                        kept += 1;
                        if kept <= 64 {
                            out.push(n);
                        } else if kept == 65 {
                            out.push('…');
                        }
                    }
                } else {
                    in_quote = Some(c);
                    out.push(c);
                }
            }
            None => out.push(c),
        }
    }
    out.replace("`…`", "(value hidden)")
        .replace("\"…\"", "(value hidden)")
}

#[cfg(test)]
mod tests {
    use super::scrub_serde_message;

    #[test]
    fn scrubs_values_keeps_field_names() {
        let m = scrub_serde_message(
            "tags: invalid type: string \"sk_live_abc\", expected a sequence at line 1 column 20",
        );
        assert!(!m.contains("sk_live_abc"), "{m}");
        assert!(m.contains("expected a sequence"));
        let m = scrub_serde_message("unknown field `pasword`, expected one of `provider`, `kind`");
        assert!(m.contains("`pasword`") && m.contains("`provider`"), "{m}");
        let m = scrub_serde_message("invalid type: integer `1234567`, expected a string");
        assert!(!m.contains("1234567"), "{m}");
        // A long unknown name comes back cut short.
        let long = "x".repeat(20_000);
        let m = scrub_serde_message(&format!("unknown field `{long}`, expected `q`"));
        assert!(m.len() < 200 && m.contains("xxx…`"), "{}", m.len());
    }
}
