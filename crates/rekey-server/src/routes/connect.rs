//! The hosted Connect page and the OAuth callback (HTML, no API key: the
//! connect token / `state` are the capability).

use crate::pages::{page, ResultPage};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rekey_core::Error;
use rekey_core::ErrorCode;
use rekey_service::{CallbackOutcome, CallbackParams};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(connect_page))
        .routes(routes!(connect_start))
        .routes(routes!(connect_submit))
        .routes(routes!(oauth_callback))
        .routes(routes!(css))
}

#[derive(Template)]
#[template(path = "connect.html")]
struct ConnectTemplate {
    token: String,
    title: String,
    form: Option<rekey_service::ConnectForm>,
    error: Option<String>,
    provider: String,
    integration: String,
    owner_hint: Option<String>,
    reauthorize: bool,
    expires_at: String,
    expires_at_readable: String,
}

impl ConnectTemplate {
    fn new(token: String, p: rekey_service::ConnectPage, error: Option<String>) -> Self {
        ConnectTemplate {
            token,
            title: p.title,
            form: p.form,
            error,
            provider: p.provider_name,
            integration: p.integration_name,
            owner_hint: p.owner_hint,
            reauthorize: p.reauthorize,
            expires_at: p.expires_at,
            expires_at_readable: p.expires_at_readable,
        }
    }
}

fn error_page(e: &Error) -> Response {
    let status = crate::error::status_of(e.class());
    let (heading, message) = match e.code() {
        ErrorCode::ConnectSessionNotFound => (
            "Link not found",
            "This connect link is not valid. Ask whoever sent it for a new one.".to_string(),
        ),
        ErrorCode::ConnectSessionExpired => ("Link expired", e.public_message()),
        ErrorCode::ConnectSessionUsed => ("Link already used", e.public_message()),
        ErrorCode::ConnectSessionSuperseded => ("Link replaced", e.public_message()),
        ErrorCode::ProviderDenied => (
            "Authorization was not granted",
            format!("{} Nothing was changed.", e.public_message()),
        ),
        _ => (
            "Could not connect",
            format!("{} Nothing was changed.", e.public_message()),
        ),
    };
    page(
        status,
        &ResultPage::bad(heading, message, Some(e.code().to_string())),
    )
}

/// The hosted Connect page (HTML) for a connect-session token.
#[utoipa::path(get, path = "/connect/{token}", tag = "connect", params(("token" = String, Path)),
    responses((status = 200, content_type = "text/html", body = String), (status = 400, content_type = "text/html", body = String, description = "link used, expired or replaced"),
        (status = 404, content_type = "text/html", body = String)))]
async fn connect_page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    match s.rekey.connect_page(&token).await {
        Ok(p) => page(StatusCode::OK, &ConnectTemplate::new(token, p, None)),
        Err(e) => error_page(&e),
    }
}

/// Start the OAuth redirect (303 to the provider's authorization endpoint).
#[utoipa::path(post, path = "/connect/{token}/start", tag = "connect", params(("token" = String, Path)),
    responses((status = 303, description = "redirect to the provider"), (status = 400, content_type = "text/html", body = String), (status = 404, content_type = "text/html", body = String),
        (status = 422, content_type = "text/html", body = String), (status = 503, content_type = "text/html", body = String)))]
async fn connect_start(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    match s.rekey.connect_start(&token).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => error_page(&e),
    }
}

/// Key-based kinds: the Connect page form (application/x-www-form-urlencoded).
#[utoipa::path(post, path = "/connect/{token}/submit", tag = "connect", params(("token" = String, Path)),
    responses((status = 200, content_type = "text/html", body = String), (status = 400, content_type = "text/html", body = String), (status = 404, content_type = "text/html", body = String)))]
async fn connect_submit(
    State(s): State<AppState>,
    Path(token): Path<String>,
    form: Result<
        axum::extract::Form<std::collections::BTreeMap<String, String>>,
        axum::extract::rejection::FormRejection,
    >,
) -> Response {
    let Ok(axum::extract::Form(values)) = form else {
        return error_page(&Error::invalid(
            ErrorCode::InvalidBody,
            "the form could not be read",
        ));
    };
    match s.rekey.connect_submit(&token, &values).await {
        Ok(outcome) => outcome_page(outcome),
        // Bad input: show the form again with the reason (never the values).
        Err(e) if e.code() == ErrorCode::InvalidCredentials => {
            match s.rekey.connect_page(&token).await {
                Ok(p) => page(
                    StatusCode::BAD_REQUEST,
                    &ConnectTemplate::new(token, p, Some(e.public_message())),
                ),
                Err(e) => error_page(&e),
            }
        }
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// OAuth redirect URI: finishes the authorization-code flow (HTML result page).
#[utoipa::path(get, path = "/oauth/callback", tag = "connect",
    params(("code" = Option<String>, Query), ("state" = Option<String>, Query), ("iss" = Option<String>, Query), ("error" = Option<String>, Query)),
    responses((status = 200, content_type = "text/html", body = String), (status = 400, content_type = "text/html", body = String)))]
async fn oauth_callback(
    State(s): State<AppState>,
    q: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error_page(&Error::invalid(
            ErrorCode::InvalidState,
            "the authorization response is malformed",
        ));
    };
    let params = CallbackParams {
        code: q.code,
        state: q.state,
        iss: q.iss,
        error: q.error,
        error_description: q.error_description,
    };
    match s.rekey.oauth_callback(params).await {
        Ok(outcome) => outcome_page(outcome),
        Err(e) => error_page(&e),
    }
}

fn outcome_page(outcome: CallbackOutcome) -> Response {
    match outcome {
        // Only a reauthorization restores a flow that had stopped; a first
        // connection has none yet.
        CallbackOutcome::Connected { connection_id, display_name, reauthorized: true } => page(
            StatusCode::OK,
            &ResultPage::ok(
                "Reconnected",
                format!("{display_name} is reconnected. Data will flow again with the next sync."),
                connection_id,
            ),
        ),
        CallbackOutcome::Connected { connection_id, display_name, reauthorized: false } => page(
            StatusCode::OK,
            &ResultPage::ok(
                "Connected",
                format!("{display_name} is connected. rekey checks it with the provider where it can; where no check exists, an operator confirms that data flows."),
                connection_id,
            ),
        ),
        CallbackOutcome::Parked { connection_id, reasons } => page(
            StatusCode::OK,
            &ResultPage::warn(
                "Not switched over",
                format!("The new authorization was saved but not used: {}. Authorize again as the original account with the same permissions, or ask an administrator to accept it.", reasons.join("; ")),
                connection_id,
            ),
        ),
    }
}

/// Stylesheet of the hosted pages.
#[utoipa::path(get, path = "/assets/rekey.css", tag = "connect", responses((status = 200, content_type = "text/css", body = String)))]
async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/rekey.css"),
    )
        .into_response()
}
