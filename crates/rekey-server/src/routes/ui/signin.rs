//! Sign-in and sign-out: the session cookie is set and cleared here.

use super::session::{cookie, TokenOnly, UiForm};
use super::CsrfForm;
use crate::extract::RequestOrigin;
use crate::pages::page;
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rekey_core::ErrorCode;
use rekey_core::SecretString;

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    error: Option<String>,
    username: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct LoginForm {
    username: String,
    password: SecretString,
}

pub(super) async fn login_page() -> Response {
    page(
        StatusCode::OK,
        &LoginPage {
            error: None,
            username: String::new(),
        },
    )
}

pub(super) async fn login(
    State(s): State<AppState>,
    origin: RequestOrigin,
    UiForm(form): UiForm<LoginForm>,
) -> Response {
    // The client address: sign-in throttling counts per address as well as per user.
    match s
        .rekey
        .login(
            &form.username,
            &form.password,
            origin.request_id,
            origin.source,
        )
        .await
    {
        Ok((token, _)) => {
            let mut r = Redirect::to("/ui/connections").into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, cookie(&s, token.expose(), 12 * 3600));
            r
        }
        Err(e) => {
            let (status, msg) = match e {
                rekey_core::Error::Unauthorized => (
                    StatusCode::UNAUTHORIZED,
                    "Wrong user name or password.".to_string(),
                ),
                e if e.code() == ErrorCode::TooManyAttempts => {
                    (StatusCode::TOO_MANY_REQUESTS, e.public_message())
                }
                other => (StatusCode::SERVICE_UNAVAILABLE, other.public_message()),
            };
            page(
                status,
                &LoginPage {
                    error: Some(msg),
                    username: form.username.chars().take(64).collect(),
                },
            )
        }
    }
}

pub(super) async fn logout(
    State(s): State<AppState>,
    CsrfForm { user: u, .. }: CsrfForm<TokenOnly>,
) -> Response {
    if let Err(e) = s.rekey.logout(&u.token).await {
        tracing::warn!(error = %e, "logout failed");
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&s, "", 0));
    r
}
