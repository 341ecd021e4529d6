//! HTML rendering helpers shared by server-rendered pages.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Render `t` with security headers for HTML.
pub fn page<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = (status, html).into_response();
            for (name, value) in [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // One script of rekey's own (local times); nothing inline.
                (header::CONTENT_SECURITY_POLICY, "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'"),
                (header::X_FRAME_OPTIONS, "DENY"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "no-referrer"),
                (header::CACHE_CONTROL, "no-store"),
            ] {
                r.headers_mut().insert(name, HeaderValue::from_static(value));
            }
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "result.html")]
pub struct ResultPage {
    pub heading: String,
    pub message: String,
    pub class: &'static str,
    pub icon: &'static str,
    pub code: Option<String>,
    pub connection: Option<String>,
}

impl ResultPage {
    pub fn ok(heading: &str, message: String, connection: String) -> ResultPage {
        ResultPage {
            heading: heading.into(),
            message,
            class: "ok",
            icon: "✔",
            code: None,
            connection: Some(connection),
        }
    }
    pub fn warn(heading: &str, message: String, connection: String) -> ResultPage {
        ResultPage {
            heading: heading.into(),
            message,
            class: "warn",
            icon: "⚠",
            code: None,
            connection: Some(connection),
        }
    }
    pub fn bad(heading: &str, message: String, code: Option<String>) -> ResultPage {
        ResultPage {
            heading: heading.into(),
            message,
            class: "bad",
            icon: "✖",
            code,
            connection: None,
        }
    }
}
