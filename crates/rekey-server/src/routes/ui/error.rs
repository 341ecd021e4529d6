//! The dashboard's one error type, [`UiError`], and the message page it
//! renders (also used for the result of an action that worked).

use crate::pages::page;
use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

/// Why a dashboard request was refused or failed. Every handler and
/// extractor returns it; it renders as the message page with its status
/// (or, without a session, as the redirect to the sign-in page).
#[derive(Debug)]
pub(crate) enum UiError {
    /// No live session: to the sign-in page.
    SignIn,
    /// The form's CSRF token is missing or is not this session's.
    Csrf,
    /// The session could not be looked up.
    Unavailable(rekey_core::Error),
    /// The role may not do this; the message says what.
    Forbidden(String),
    /// A refusal or failure from rekey-service, under a heading.
    Service(&'static str, rekey_core::Error),
    /// Any other answer: status, heading, message, class (`bad`, `warn`).
    Page {
        status: StatusCode,
        heading: &'static str,
        message: String,
        class: &'static str,
    },
}

/// `UiError` with a plain page.
pub(crate) type UiResult<T = Response> = Result<T, UiError>;

impl UiError {
    pub(crate) fn page(
        status: StatusCode,
        heading: &'static str,
        message: impl Into<String>,
        class: &'static str,
    ) -> UiError {
        UiError::Page {
            status,
            heading,
            message: message.into(),
            class,
        }
    }

    /// `f(error)` turns a service error into a page under `heading`.
    pub(crate) fn service(heading: &'static str) -> impl Fn(rekey_core::Error) -> UiError {
        move |e| UiError::Service(heading, e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        self.render(("/ui/connections", "Back to connections"))
    }
}

impl UiError {
    /// The page, leading back to `back` (path, label).
    pub(crate) fn render(self, back: (&'static str, &'static str)) -> Response {
        let message =
            |status, heading: &str, m: String, class| message_to(status, heading, m, class, back);
        match self {
            UiError::SignIn => Redirect::to("/ui/login").into_response(),
            UiError::Csrf => message(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form is missing its security token or it has expired. Reload the page and try again."
                    .into(),
                "bad",
            ),
            UiError::Unavailable(e) => {
                log_server_error(&e);
                message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    e.public_message(),
                    "bad",
                )
            }
            UiError::Forbidden(m) => message(StatusCode::FORBIDDEN, "Not allowed", m, "bad"),
            UiError::Service(heading, e) => {
                log_server_error(&e);
                message(
                    crate::error::status_of(e.class()),
                    heading,
                    e.public_message(),
                    "bad",
                )
            }
            UiError::Page {
                status,
                heading,
                message: m,
                class,
            } => message(status, heading, m, class),
        }
    }
}

/// Internal errors are shown by their public message only; operators get
/// the detail in the log (as for the API).
fn log_server_error(e: &rekey_core::Error) {
    if crate::error::status_of(e.class()).is_server_error() {
        tracing::error!(code = %e.code(), error = %e, "dashboard request failed");
    }
}

#[derive(Template)]
#[template(path = "ui/message.html")]
struct MessagePage {
    heading: String,
    message: String,
    class: &'static str,
    icon: &'static str,
    /// Where the page leads back to: (path, label).
    back: (&'static str, &'static str),
}

/// The message page: a heading and one message, marked `ok`, `warn` or
/// `bad` (by icon and words as well as colour).
pub(crate) fn message(
    status: StatusCode,
    heading: &str,
    msg: String,
    class: &'static str,
) -> Response {
    message_to(
        status,
        heading,
        msg,
        class,
        ("/ui/connections", "Back to connections"),
    )
}

/// [`message`] leading back to another page than the connections.
pub(crate) fn message_to(
    status: StatusCode,
    heading: &str,
    msg: String,
    class: &'static str,
    back: (&'static str, &'static str),
) -> Response {
    let icon = match class {
        "ok" => "✔",
        "warn" => "⚠",
        _ => "✖",
    };
    page(
        status,
        &MessagePage {
            heading: heading.into(),
            message: msg,
            class,
            icon,
            back,
        },
    )
}
