//! The dashboard (server-rendered HTML): sign-in with local users, session
//! cookies, CSRF tokens on every form, and role checks on every action.
//! Handlers stay thin: the session and the form come from the extractors
//! in `session` ([`SessionUser`], [`CsrfForm`]), the use case from
//! rekey-service, and every refusal is a [`UiError`] rendered as a page.
//!
//! One module per page: `signin` (sign-in, sign-out), `connections` (the
//! tiles), `connection_detail` (one connection, its Rotate and Update
//! pages), `rotations` (a rotation's steps, confirmations and Cancel),
//! `actions` (Check now and the three-dot menu's actions), `bulk`,
//! `audit`, `integrations` (OAuth apps), `webhooks` (subscriptions and
//! deliveries), `campaigns` (incident campaigns: new, plan, progress); `error` holds [`UiError`] and the message page, `show` how
//! times and actors read.
//!
//! Words: "connections" are the credentials to platforms; "integrations"
//! are OAuth client registrations (the API's `/api/v1/integrations`).

use crate::AppState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use rekey_core::connection::Status;

mod actions;
mod audit;
mod bulk;
mod campaigns;
mod confirm_working;
mod connection_detail;
mod connections;
mod error;
mod integrations;
mod rotations;
mod session;
mod show;
mod signin;
mod webhooks;

pub(crate) use error::{message, message_to, UiError, UiResult};
pub(crate) use session::{signed_in, CsrfForm, SessionUser};

/// Content-Security-Policy of dashboard pages.
pub(crate) const UI_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Where the vendored htmx is served: versioned, so it can be cached for good.
const HTMX_PATH: &str = "/assets/htmx-2.0.11.min.js";

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        // A browser pointed at rekey's address lands on the dashboard.
        .route("/", get(|| async { Redirect::to("/ui/connections") }))
        .route("/favicon.ico", get(favicon))
        .route("/favicon.svg", get(favicon))
        .route("/ui", get(|| async { Redirect::to("/ui/connections") }))
        .route("/ui/login", get(signin::login_page).post(signin::login))
        .route("/ui/logout", post(signin::logout))
        .route("/ui/connections", get(connections::connections))
        .route("/ui/evidence", get(connections::evidence))
        .route(
            "/ui/integrations",
            get(integrations::list).post(integrations::create),
        )
        .route(
            "/ui/integrations/{id}/rotate-secret",
            get(integrations::rotate_form).post(integrations::rotate),
        )
        .route("/ui/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/ui/webhooks/{id}", get(webhooks::detail))
        .route("/ui/webhooks/{id}/delete", post(webhooks::delete))
        .route(
            "/ui/webhooks/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route(
            "/ui/webhooks/{id}/deliveries/{delivery}/replay",
            post(webhooks::replay),
        )
        .route(
            "/ui/campaigns",
            get(campaigns::list).post(campaigns::create),
        )
        .route("/ui/campaigns/new", get(campaigns::new_form))
        .route("/ui/campaigns/{id}", get(campaigns::show))
        .route("/ui/campaigns/{id}/live", get(campaigns::live_fragment))
        .route("/ui/campaigns/{id}/evidence", get(campaigns::evidence))
        .route("/ui/campaigns/{id}/links.csv", get(campaigns::links_csv))
        .route(
            "/ui/campaigns/{id}/items/{connection_id}",
            get(campaigns::item),
        )
        .route(
            "/ui/campaigns/{id}/items/{connection_id}/{action}",
            post(campaigns::item_action),
        )
        .route("/ui/campaigns/{id}/{action}", post(campaigns::control))
        .route("/ui/audit", get(audit::audit))
        .route("/ui/connections/{id}", get(connection_detail::connection))
        .route(HTMX_PATH, get(htmx_js))
        .route("/assets/local-time.js", get(local_time_js))
        .route("/ui/bulk", post(bulk::bulk))
        .route("/ui/connections/{id}/check", post(actions::check))
        .route(
            "/ui/connections/{id}/rotate",
            get(connection_detail::rotate_page).post(rotations::start),
        )
        .route("/ui/rotations/{id}", get(rotations::show))
        .route("/ui/rotations/{id}/panel", get(rotations::panel_fragment))
        .route("/ui/rotations/{id}/confirm", post(rotations::confirm))
        .route("/ui/rotations/{id}/cancel", post(rotations::cancel))
        .route(
            "/ui/connections/{id}/confirm/{action}",
            get(actions::confirm),
        )
        .route(
            "/ui/connections/{id}/update",
            get(connection_detail::update_form).post(actions::update),
        )
        .route(
            "/ui/connections/{id}/confirm-working",
            post(confirm_working::confirm_working),
        )
        .route(
            "/ui/connections/{id}/confirm-revocation",
            post(confirm_working::confirm_revocation),
        )
        .route(
            "/ui/connections/{id}/verify-revocation",
            post(confirm_working::verify_revocation),
        )
        .route("/ui/connections/{id}/{action}", post(actions::act))
        .route("/ui/{*rest}", get(not_found))
        .route_layer(axum::middleware::from_fn_with_state(state, same_origin))
}

/// Unknown dashboard paths: the HTML error page with the header (the
/// service-wide fallback answers with the API's JSON).
async fn not_found(_u: SessionUser) -> UiResult {
    Err(UiError::page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such dashboard page.",
        "bad",
    ))
}

/// rekey's icon. Browsers ask for /favicon.ico whatever the pages say, and
/// accept an SVG there.
async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../../../assets/favicon.svg"),
    )
        .into_response()
}

/// Vendored htmx (see assets/README.md), served by rekey: no CDN.
async fn htmx_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../../../assets/htmx-2.0.11.min.js"),
    )
        .into_response()
}

/// The Connect pages' one script: times in the reader's own zone.
async fn local_time_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../../../assets/local-time.js"),
    )
        .into_response()
}

/// Browsers send `Origin` on cross-site POSTs: refuse any dashboard POST
/// whose origin is not rekey's own, `null` included (this also covers the
/// sign-in form, which has no session and so no CSRF token yet).
async fn same_origin(
    axum::extract::State(s): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.method() == axum::http::Method::POST {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let public = s.rekey.public_url();
            // scheme://authority of the public URL.
            let own = public
                .split_once("://")
                .map(|(scheme, rest)| {
                    format!("{scheme}://{}", rest.split('/').next().unwrap_or(""))
                })
                .unwrap_or_default();
            if origin.to_str().ok() != Some(own.as_str()) {
                return message(
                    StatusCode::FORBIDDEN,
                    "Refused",
                    "This form was posted from another site.".into(),
                    "bad",
                );
            }
        }
    }
    let mut r = session::with_nav(next.run(req)).await;
    // Dashboard pages load htmx from rekey itself (and its requests go back
    // to rekey): the Connect page's policy plus exactly that.
    if r.headers().contains_key(header::CONTENT_SECURITY_POLICY) {
        r.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(UI_CSP),
        );
    }
    // With `no-referrer` browsers send `Origin: null` on same-site POSTs;
    // `same-origin` keeps the Origin header (and leaks nothing off-site).
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if s.rekey.public_url().starts_with("https://") {
        r.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    r
}

/// Status shown as colour, icon and words (never colour alone).
fn look(status: Status) -> (&'static str, &'static str, &'static str) {
    match status {
        Status::Active => ("ok", "✔", "Active"),
        Status::Degraded => ("warn", "⚠", "Degraded"),
        Status::NeedsReauth => ("bad", "", "Broken: needs reauthorization"),
        Status::Revoked => ("bad", "", "Revoked"),
        Status::RevocationFailed => ("bad", "⚠", "Revoked, but still accepted"),
        Status::RevokePending => ("warn", "…", "Revocation pending"),
        Status::Disabled => ("", "–", "Disabled"),
        Status::Pending => ("", "…", "Pending verification"),
    }
}

/// [`look`] for a status by name (summary counts, an integration's uses);
/// a name that is no status reads as pending, as it always did.
fn look_name(status: &str) -> (&'static str, &'static str, &'static str) {
    look(status.parse().unwrap_or(Status::Pending))
}

/// Drawn as a broken chain: the credential no longer works until reauthorized.
fn is_broken(status: Status) -> bool {
    matches!(
        status,
        Status::NeedsReauth | Status::Revoked | Status::RevocationFailed
    )
}

/// Checks and confirmations of data flow can only fail once the connection
/// is out of service.
fn is_checkable(status: Status) -> bool {
    !matches!(
        status,
        Status::RevokePending | Status::Revoked | Status::RevocationFailed | Status::Disabled
    )
}

/// The connection `id` of the signed-in user's tenant, or its error page.
async fn connection_of(
    s: &AppState,
    u: &SessionUser,
    id: &str,
) -> UiResult<rekey_service::Connection> {
    s.rekey
        .get_connection(u.tenant(), id)
        .await
        .map_err(UiError::service("Not found"))
}
