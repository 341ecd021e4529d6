//! The dashboard (server-rendered HTML): sign-in with local users, session
//! cookies, CSRF tokens on every form, and role checks on every action.
//! Handlers stay thin: the session and the use case come from rekey-service.

use crate::pages::page;
use crate::AppState;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use rekey_api::{AuditEntryView, AuditQuery, AuditVerifyReport, ConnectionQuery, ConnectionView};
use rekey_core::connection::Status;
use rekey_core::scope::Scope;
use rekey_core::SecretString;
use rekey_service::SessionUser;
use std::collections::{BTreeMap, HashMap};

mod bulk;

const COOKIE: &str = "rekey_session";

/// Content-Security-Policy of dashboard pages.
pub(crate) const UI_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Where the vendored htmx is served: versioned, so it can be cached for good.
const HTMX_PATH: &str = "/assets/htmx-2.0.11.min.js";

/// Vendored htmx (see assets/README.md), served by rekey: no CDN.
async fn htmx_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../../assets/htmx-2.0.11.min.js"),
    )
        .into_response()
}

/// Browsers send `Origin` on cross-site POSTs: refuse any dashboard POST
/// whose origin is not rekey's own, `null` included (this also covers the
/// sign-in form, which has no session and so no CSRF token yet).
async fn same_origin(
    State(s): State<AppState>,
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
    let mut r = next.run(req).await;
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

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/integrations") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/integrations", get(integrations))
        .route("/ui/audit", get(audit))
        .route("/ui/connections/{id}", get(connection))
        .route(HTMX_PATH, get(htmx_js))
        .route("/ui/bulk", post(bulk::bulk))
        .route("/ui/connections/{id}/check", post(check))
        .route("/ui/connections/{id}/rotate", get(rotate_page))
        .route("/ui/connections/{id}/confirm/{action}", get(confirm))
        .route("/ui/connections/{id}/update", get(update_form).post(update))
        .route("/ui/connections/{id}/{action}", post(act))
        .route_layer(axum::middleware::from_fn_with_state(state, same_origin))
}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    error: Option<String>,
    username: String,
}

#[derive(Template)]
#[template(path = "ui/message.html")]
struct MessagePage {
    heading: String,
    message: String,
    class: &'static str,
    icon: &'static str,
}

fn message(status: StatusCode, heading: &str, msg: String, class: &'static str) -> Response {
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
        },
    )
}

struct Tile {
    id: String,
    name: String,
    class: &'static str,
    icon: &'static str,
    status_label: &'static str,
    /// Drawn as a broken-chain icon.
    broken: bool,
    disabled: bool,
    /// Has the Update credentials form.
    api_key: bool,
    error: Option<String>,
    tags: Vec<String>,
    /// The result of an action just taken on this tile (htmx swaps).
    note: Option<(String, &'static str)>,
}

struct Group {
    provider: String,
    display: String,
    initials: String,
    tiles: Vec<Tile>,
}

#[derive(Template)]
#[template(path = "ui/integrations.html")]
struct IntegrationsPage {
    user: String,
    role: &'static str,
    csrf: String,
    can_write: bool,
    statuses: Vec<String>,
    /// (id, display name) of every catalog provider.
    providers: Vec<(String, String)>,
    f: Filter,
    filtered: bool,
    groups: Vec<Group>,
    shown: usize,
    /// More connections match than the page shows.
    more: bool,
    /// Query string of the next page, if any.
    next: Option<String>,
    /// This is not the first page.
    paged: bool,
    error: Option<String>,
}

/// Status shown as colour, icon and words (never colour alone).
fn look(status: &str) -> (&'static str, &'static str, &'static str) {
    match status {
        "active" => ("ok", "✔", "Active"),
        "degraded" => ("warn", "⚠", "Degraded"),
        "needs_reauth" => ("bad", "", "Broken: needs reauthorization"),
        "revoked" => ("bad", "", "Revoked"),
        "revoke_pending" => ("warn", "…", "Revocation pending"),
        "disabled" => ("", "–", "Disabled"),
        _ => ("", "…", "Pending verification"),
    }
}

fn session_token(headers: &HeaderMap) -> Option<SecretString> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        })
        .filter(|t| !t.is_empty())
        .map(SecretString::new)
}

/// The signed-in user, or a redirect to the sign-in page.
async fn signed_in(
    s: &AppState,
    headers: &HeaderMap,
) -> Result<(SessionUser, SecretString), Response> {
    let to_login = || Redirect::to("/ui/login").into_response();
    let token = session_token(headers).ok_or_else(to_login)?;
    match s.rekey.session_user(&token).await {
        Ok(Some(u)) => Ok((u, token)),
        Ok(None) => Err(to_login()),
        Err(e) => Err(message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            e.public_message(),
            "bad",
        )),
    }
}

/// The signed-in user and the connection a page is about.
async fn signed_in_for(
    s: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(SessionUser, ConnectionView), Response> {
    let (u, _) = signed_in(s, headers).await?;
    let c = s
        .rekey
        .get_connection(&u.principal.tenant, id)
        .await
        .map_err(|e| error_page("Not found", &e))?;
    Ok((u, c))
}

/// Every state-changing form carries the session's CSRF token.
fn csrf_ok(u: &SessionUser, form: &HashMap<String, String>) -> bool {
    SecretString::new(form.get("csrf").cloned().unwrap_or_default())
        == SecretString::new(u.csrf.clone())
}

/// An error from the service as a page with its status.
fn error_page(heading: &str, e: &rekey_core::Error) -> Response {
    message(
        crate::error::status_of(e.class()),
        heading,
        e.public_message(),
        "bad",
    )
}

fn csrf_refused() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form is missing its security token or it has expired. Reload the page and try again."
            .into(),
        "bad",
    )
}

/// The signed-in user behind a state-changing POST, once its CSRF token
/// matched, with the rest of the form.
async fn posted(
    s: &AppState,
    headers: &HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<(SessionUser, HashMap<String, String>), Response> {
    let form = form.map(|f| f.0).unwrap_or_default();
    let u = posted_fields(s, headers, &form).await?;
    Ok((u, form))
}

/// Like [`posted`], for handlers that parse their form themselves.
async fn posted_fields(
    s: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<SessionUser, Response> {
    let (u, _) = signed_in(s, headers).await?;
    if !csrf_ok(&u, form) {
        return Err(csrf_refused());
    }
    Ok(u)
}

/// The refusal page when `u`'s role may not change connections.
fn refuse_write(u: &SessionUser, what: &str) -> Option<Response> {
    u.principal
        .require(Scope::ConnectionsWrite)
        .is_err()
        .then(|| {
            message(
                StatusCode::FORBIDDEN,
                "Not allowed",
                format!("The {} role cannot {what}.", u.role.as_str()),
                "bad",
            )
        })
}

fn cookie(s: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if s.rekey.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("rekey_session=; Path=/; Max-Age=0"))
}

async fn login_page() -> Response {
    page(
        StatusCode::OK,
        &LoginPage {
            error: None,
            username: String::new(),
        },
    )
}

async fn login(
    State(s): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let username = form.get("username").cloned().unwrap_or_default();
    let password = SecretString::new(form.get("password").cloned().unwrap_or_default());
    // The client address: sign-in throttling counts per address as well as per user.
    let source = peer.map(|p| p.0 .0.ip().to_string());
    match s.rekey.login(&username, &password, source).await {
        Ok((token, _)) => {
            let mut r = Redirect::to("/ui/integrations").into_response();
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
                e if e.code() == "too_many_attempts" => {
                    (StatusCode::TOO_MANY_REQUESTS, e.public_message())
                }
                other => (StatusCode::SERVICE_UNAVAILABLE, other.public_message()),
            };
            page(
                status,
                &LoginPage {
                    error: Some(msg),
                    username: username.chars().take(64).collect(),
                },
            )
        }
    }
}

async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let (u, token) = match signed_in(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !csrf_ok(&u, &form.map(|f| f.0).unwrap_or_default()) {
        return csrf_refused();
    }
    if let Err(e) = s.rekey.logout(&token).await {
        tracing::warn!(error = %e, "logout failed");
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&s, "", 0));
    r
}

/// The integrations page's filters, as given in its query string (and
/// carried by the bulk form so "all matching the filter" means the same set).
#[derive(Clone, Default)]
pub(crate) struct Filter {
    pub q: String,
    pub status: String,
    pub provider: String,
    pub tag: String,
    pub custody: String,
}

impl Filter {
    pub(crate) fn from_map(m: &HashMap<String, String>) -> Filter {
        let f = |k: &str| m.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        Filter {
            q: f("q"),
            status: f("status"),
            provider: f("provider"),
            tag: f("tag"),
            custody: f("custody"),
        }
    }

    /// The integrations page's query string for this filter (at `cursor`).
    fn link(&self, cursor: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", self.q.as_str()),
            ("status", &self.status),
            ("provider", &self.provider),
            ("tag", &self.tag),
            ("custody", &self.custody),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        q.finish()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.link(None).is_empty()
    }

    pub(crate) fn query(&self, cursor: Option<String>, limit: i64) -> ConnectionQuery {
        let opt = |v: &String| (!v.is_empty()).then(|| v.clone());
        ConnectionQuery {
            q: opt(&self.q),
            status: opt(&self.status),
            provider: opt(&self.provider),
            tag: opt(&self.tag),
            custody: opt(&self.custody),
            cursor,
            limit: Some(limit),
            ..Default::default()
        }
    }
}

/// How many tiles the page shows; bulk actions on "all matching" go further.
const PAGE_TILES: i64 = 200;

/// Drawn as a broken chain: the credential no longer works until reauthorized.
fn is_broken(status: &str) -> bool {
    matches!(status, "needs_reauth" | "revoked")
}

fn tile_of(c: ConnectionView) -> Tile {
    let (class, icon, status_label) = look(&c.status);
    Tile {
        broken: is_broken(&c.status),
        disabled: c.status == "disabled",
        api_key: c.kind == "api_key",
        error: c
            .last_error
            .as_ref()
            .and_then(|e| e.get("message").and_then(|m| m.as_str()))
            .map(|m| m.chars().take(160).collect()),
        tags: c.tags,
        note: None,
        id: c.id,
        name: c.display_name,
        class,
        icon,
        status_label,
    }
}

async fn integrations(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (u, _) = match signed_in(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let filter = Filter::from_map(&q);
    let cursor = q.get("cursor").cloned().filter(|c| !c.is_empty());
    let paged = cursor.is_some();
    let (list, error) = match s
        .rekey
        .list_connections(&u.principal.tenant, &filter.query(cursor, PAGE_TILES))
        .await
    {
        Ok(l) => (l, None),
        // A bad filter value is shown above an empty list, with the form kept.
        Err(e) => (Default::default(), Some(e)),
    };
    let next = list.next_cursor.as_deref().map(|c| filter.link(Some(c)));
    let more = next.is_some() || paged;
    let mut by_provider: BTreeMap<String, Vec<ConnectionView>> = BTreeMap::new();
    for c in list.items {
        by_provider.entry(c.provider.clone()).or_default().push(c);
    }
    let groups = by_provider
        .into_iter()
        .map(|(p, conns)| {
            let display = s
                .rekey
                .catalog()
                .get(&p)
                .map(|e| e.display_name.clone())
                .unwrap_or_else(|| p.clone());
            let initials: String = display
                .split_whitespace()
                .filter_map(|w| w.chars().next())
                .take(2)
                .collect::<String>()
                .to_uppercase();
            Group {
                provider: p,
                display,
                initials,
                tiles: conns.into_iter().map(tile_of).collect(),
            }
        })
        .collect::<Vec<_>>();
    let mut providers: Vec<(String, String)> = s
        .rekey
        .catalog()
        .all()
        .map(|p| (p.id.clone(), p.display_name.clone()))
        .collect();
    providers.sort_by_key(|p| p.1.to_lowercase());
    let shown = groups.iter().map(|g| g.tiles.len()).sum();
    let status = error
        .as_ref()
        .map_or(StatusCode::OK, |e| crate::error::status_of(e.class()));
    let error = error.map(|e| e.public_message());
    page(
        status,
        &IntegrationsPage {
            user: u.username.clone(),
            role: u.role.as_str(),
            csrf: u.csrf.clone(),
            can_write: u.principal.require(Scope::ConnectionsWrite).is_ok(),
            statuses: Status::ALL.iter().map(|s| s.as_str().to_string()).collect(),
            providers,
            filtered: !filter.is_empty(),
            f: filter,
            groups,
            shown,
            more,
            next,
            paged,
            error,
        },
    )
}

async fn check(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let htmx = is_htmx(&headers);
    let (u, _) = match posted(&s, &headers, form).await {
        Ok(x) => x,
        Err(r) => return if htmx { reload(r) } else { r },
    };
    if let Some(r) = refuse_write(&u, "run checks") {
        return if htmx { reload(r) } else { r };
    }
    // htmx swaps the tile in place, with the result on it.
    let fragment = |c: ConnectionView, note: String, class: &'static str| {
        let mut t = tile_of(c);
        t.note = Some((note, class));
        page(
            StatusCode::OK,
            &TileFragment {
                t,
                csrf: u.csrf.clone(),
                can_write: true,
            },
        )
    };
    match s.rekey.check_connection(&u.ctx(None, None), &id).await {
        Ok(r) => {
            let (class, _, label) = look(&r.status);
            let detail = r.message.map(|m| format!(" {m}")).unwrap_or_default();
            let class = if class.is_empty() { "warn" } else { class };
            if htmx {
                let note = format!("Checked: {} — {label}.{detail}", r.outcome);
                return fragment(r.connection, note, class);
            }
            let text = format!(
                "{}: {} — {label}.{detail}",
                r.connection.display_name, r.outcome
            );
            message(StatusCode::OK, "Check finished", text, class)
        }
        Err(e) if htmx => match s.rekey.get_connection(&u.principal.tenant, &id).await {
            Ok(c) => fragment(c, format!("Check failed: {}", e.public_message()), "bad"),
            Err(_) => reload(error_page("Check failed", &e)),
        },
        Err(e) => error_page("Check failed", &e),
    }
}

/// htmx swaps only successful answers: for a refusal (expired form, role)
/// it reloads the page instead, which shows the real state. A redirect to
/// the sign-in page (expired session) would be followed by the browser and
/// the sign-in page swapped into the tile, so it becomes `HX-Redirect`.
fn reload(mut r: Response) -> Response {
    if r.status().is_redirection() {
        return (
            StatusCode::UNAUTHORIZED,
            [("hx-redirect", "/ui/login")],
            "Sign in again.",
        )
            .into_response();
    }
    r.headers_mut()
        .insert("hx-refresh", HeaderValue::from_static("true"));
    r
}

/// A request made by htmx (which wants a fragment, not a page).
fn is_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").and_then(|v| v.to_str().ok()) == Some("true")
}

/// One tile, for htmx to swap in place.
#[derive(Template)]
#[template(path = "ui/tile.html")]
struct TileFragment {
    t: Tile,
    csrf: String,
    can_write: bool,
}

#[derive(Template)]
#[template(path = "ui/rotate.html")]
struct RotatePage {
    id: String,
    name: String,
    provider: String,
    csrf: String,
    api_key: bool,
    oauth: bool,
    overlap: Option<bool>,
    invalidates_old: bool,
    rotate_steps: Vec<String>,
    revoke_steps: Vec<String>,
}

/// Rotate: the provider's rotation runbook with the way to hand rekey the
/// new credential (the key form in place for API keys, otherwise the
/// Connect page through Reauthorize).
async fn rotate_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (u, c) = match signed_in_for(&s, &headers, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(r) = refuse_write(&u, "rotate credentials") {
        return r;
    }
    let entry = s.rekey.catalog().get(&c.provider);
    let rotate = entry.map(|p| p.rotate_for(&c.kind).clone());
    page(
        StatusCode::OK,
        &RotatePage {
            provider: entry
                .map(|p| p.display_name.clone())
                .unwrap_or_else(|| c.provider.clone()),
            api_key: c.kind == "api_key",
            oauth: c.kind == "oauth2_authorization_code",
            overlap: rotate.as_ref().and_then(|r| r.overlap),
            invalidates_old: rotate
                .as_ref()
                .and_then(|r| r.invalidates_old_immediately)
                .unwrap_or(false),
            rotate_steps: rotate.map(|r| r.steps).unwrap_or_default(),
            revoke_steps: entry
                .map(|p| p.revoke_for(&c.kind).steps.clone())
                .unwrap_or_default(),
            csrf: u.csrf.clone(),
            id: c.id,
            name: c.display_name,
        },
    )
}

struct ErrorInfo {
    message: String,
    code: String,
    http_status: Option<i64>,
    at: String,
    source: String,
    body: Option<String>,
}

struct HistoryItem {
    at: String,
    action: String,
    outcome: String,
    actor: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "ui/connection.html")]
struct ConnectionPage {
    user: String,
    role: &'static str,
    csrf: String,
    can_write: bool,
    c: ConnectionView,
    provider: String,
    owner: String,
    class: &'static str,
    icon: &'static str,
    status_label: &'static str,
    broken: bool,
    error: Option<ErrorInfo>,
    rotated: String,
    last_ok: String,
    last_checked: String,
    failing_since: String,
    history: Vec<HistoryItem>,
    revoke_steps: Vec<String>,
    rotate_steps: Vec<String>,
}

/// One connection: facts, the last error with its context, health, its
/// audit history and the provider's runbooks.
async fn connection(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (u, c) = match signed_in_for(&s, &headers, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let tenant = u.principal.tenant.clone();
    let history = match s
        .rekey
        .audit_list(
            &tenant,
            &AuditQuery {
                target: Some(c.id.clone()),
                limit: Some(30),
                ..Default::default()
            },
        )
        .await
    {
        Ok(l) => l
            .items
            .into_iter()
            .map(|e| {
                let d = &e.details;
                let detail = match (d.get("from"), d.get("to")) {
                    (Some(f), Some(t)) => format!(
                        "{} → {}",
                        f.as_str().unwrap_or(""),
                        t.as_str().unwrap_or("")
                    ),
                    _ => d
                        .get("error")
                        .or_else(|| d.get("outcome"))
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string(),
                };
                HistoryItem {
                    at: e.at,
                    action: e.action,
                    outcome: e.outcome,
                    actor: e.actor,
                    detail,
                }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let entry = s.rekey.catalog().get(&c.provider);
    let (revoke_steps, rotate_steps) = entry
        .map(|p| {
            (
                p.revoke_for(&c.kind).steps.clone(),
                p.rotate_for(&c.kind).steps.clone(),
            )
        })
        .unwrap_or_default();
    let error = c.last_error.as_ref().map(|e| {
        let str_of = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        ErrorInfo {
            message: str_of("message"),
            code: str_of("code"),
            http_status: e.get("http_status").and_then(|v| v.as_i64()),
            at: str_of("at"),
            source: str_of("source"),
            body: e
                .get("provider_body")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        }
    });
    let (class, icon, status_label) = look(&c.status);
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let owner = [
        c.owner.name.clone(),
        c.owner.email.clone(),
        c.owner.subject.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");
    page(
        StatusCode::OK,
        &ConnectionPage {
            user: u.username.clone(),
            role: u.role.as_str(),
            csrf: u.csrf.clone(),
            can_write: u.principal.require(Scope::ConnectionsWrite).is_ok(),
            provider: entry
                .map(|p| p.display_name.clone())
                .unwrap_or_else(|| c.provider.clone()),
            owner: if owner.is_empty() {
                "—".into()
            } else {
                owner
            },
            class,
            icon,
            status_label,
            broken: is_broken(&c.status),
            error,
            rotated: dash(&c.rotated_at),
            last_ok: dash(&c.health.last_ok_at),
            last_checked: dash(&c.health.last_checked_at),
            failing_since: dash(&c.health.first_failed_at),
            history,
            revoke_steps,
            rotate_steps,
            c,
        },
    )
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    user: String,
    role: &'static str,
    csrf: String,
    action: String,
    target: String,
    actor: String,
    entries: Vec<AuditEntryView>,
    error: Option<String>,
    /// Admins see whether the hash chain is intact.
    verify: Option<AuditVerifyReport>,
}

/// The tenant's audit log with filters; for admins, the chain's state.
async fn audit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (u, _) = match signed_in(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if u.principal.require(Scope::AuditRead).is_err() {
        return message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "This role cannot read the audit log.".into(),
            "bad",
        );
    }
    let field = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let (action, target, actor) = (field("action"), field("target"), field("actor"));
    let opt = |v: &String| (!v.is_empty()).then(|| v.clone());
    let query = AuditQuery {
        action: opt(&action),
        target: opt(&target),
        actor: opt(&actor),
        limit: Some(100),
        ..Default::default()
    };
    let (entries, error) = match s.rekey.audit_list(&u.principal.tenant, &query).await {
        Ok(l) => (l.items, None),
        Err(e) => (Vec::new(), Some(e.public_message())),
    };
    let verify = if u.principal.require(Scope::Admin).is_ok() {
        s.rekey.audit_verify_tenant(&u.principal.tenant).await.ok()
    } else {
        None
    };
    page(
        StatusCode::OK,
        &AuditPage {
            user: u.username.clone(),
            role: u.role.as_str(),
            csrf: u.csrf.clone(),
            action,
            target,
            actor,
            entries,
            error,
            verify,
        },
    )
}

#[derive(Template)]
#[template(path = "ui/confirm.html")]
struct ConfirmPage {
    id: String,
    action: String,
    heading: String,
    explain: String,
    button: &'static str,
    class: &'static str,
    csrf: String,
}

/// (heading, explanation, button, danger?) for each menu action.
fn action_text(action: &str, name: &str) -> Option<(String, String, &'static str, bool)> {
    Some(match action {
        "reauthorize" => (
            format!("Reauthorize {name}"),
            "Opens the hosted Connect page: sign in at the provider (or enter the new key) to replace this connection's credential. The old grant is revoked once the new one works.".into(),
            "Connect new account",
            false,
        ),
        "disable" => (
            format!("Disable {name}"),
            "Its credentials stop being handed out and it is no longer checked, until enabled again.".into(),
            "Disable",
            true,
        ),
        "enable" => (
            format!("Enable {name}"),
            "It goes back to pending and is verified by the next check.".into(),
            "Enable",
            false,
        ),
        "revoke" => (
            format!("Revoke {name}"),
            "rekey revokes the credential at the provider where it can; otherwise it shows the manual steps. This cannot be undone: the connection must be reauthorized to work again.".into(),
            "Revoke",
            true,
        ),
        "delete" => (
            format!("Delete {name}"),
            "OAuth grants are revoked at the provider first; then the stored secrets are destroyed. This cannot be undone.".into(),
            "Delete",
            true,
        ),
        _ => return None,
    })
}

async fn confirm(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let (u, c) = match signed_in_for(&s, &headers, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some((heading, explain, button, danger)) = action_text(&action, &c.display_name) else {
        return message(
            StatusCode::NOT_FOUND,
            "Unknown action",
            "There is no such action.".into(),
            "bad",
        );
    };
    page(
        StatusCode::OK,
        &ConfirmPage {
            id: c.id,
            action,
            heading,
            explain,
            button,
            class: if danger { "danger" } else { "" },
            csrf: u.csrf.clone(),
        },
    )
}

/// Carry out a confirmed menu action; the result is shown on its own page.
async fn act(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let (u, _) = match posted(&s, &headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if action_text(&action, "").is_none() {
        return message(
            StatusCode::NOT_FOUND,
            "Unknown action",
            "There is no such action.".into(),
            "bad",
        );
    }
    if let Some(r) = refuse_write(&u, "change connections") {
        return r;
    }
    let ctx = u.ctx(None, None);
    let reason = rekey_api::DisableConnection {
        reason: Some(format!("dashboard: {}", u.username)),
        version: None,
    };
    let done = match action.as_str() {
        "reauthorize" => match s.rekey.reauthorize(&ctx, &id, false).await {
            Ok(r) => match r.session {
                Some(sess) => return Redirect::to(&sess.url).into_response(),
                None => Ok("Switched to the new grant.".to_string()),
            },
            Err(e) => Err(e),
        },
        "disable" => s
            .rekey
            .set_status(&ctx, &id, Status::Disabled, reason, None)
            .await
            .map(|c| format!("{} is disabled.", c.display_name)),
        "enable" => s
            .rekey
            .set_status(&ctx, &id, Status::Pending, reason, None)
            .await
            .map(|c| format!("{} is enabled and will be verified.", c.display_name)),
        "revoke" => s.rekey.revoke_connection(&ctx, &id).await.map(|r| {
            if r.revoked_at_provider {
                format!("{} is revoked at the provider.", r.connection.display_name)
            } else {
                format!(
                    "{} is waiting for manual revocation: {}",
                    r.connection.display_name,
                    r.manual_steps.join(" ")
                )
            }
        }),
        _ => s
            .rekey
            .delete_connection(&ctx, &id, None, true)
            .await
            .map(|_| "The connection and its stored secrets are deleted.".to_string()),
    };
    match done {
        Ok(m) => message(StatusCode::OK, "Done", m, "ok"),
        Err(e) => error_page("Not done", &e),
    }
}

#[derive(Template)]
#[template(path = "ui/update.html")]
struct UpdatePage {
    id: String,
    name: String,
    csrf: String,
}

async fn update_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (u, c) = match signed_in_for(&s, &headers, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if c.kind != "api_key" {
        return message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Use Reauthorize",
            "This kind of credential is replaced through the Connect page (Reauthorize).".into(),
            "warn",
        );
    }
    page(
        StatusCode::OK,
        &UpdatePage {
            id: c.id,
            name: c.display_name,
            csrf: u.csrf.clone(),
        },
    )
}

/// Replace an API key, keeping how it is sent (header name, prefix…).
async fn update(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let (u, form) = match posted(&s, &headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(r) = refuse_write(&u, "change connections") {
        return r;
    }
    let c = match s.rekey.get_connection(&u.principal.tenant, &id).await {
        Ok(c) if c.kind == "api_key" => c,
        Ok(_) => {
            return message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Use Reauthorize",
                "Only API keys are updated here.".into(),
                "warn",
            )
        }
        Err(e) => return error_page("Not found", &e),
    };
    let key = SecretString::new(form.get("key").cloned().unwrap_or_default());
    let mut creds = serde_json::Map::new();
    creds.insert("key".into(), key.expose().into());
    for k in ["placement", "name", "prefix", "username"] {
        if let Some(v) = c.credential.get(k) {
            creds.insert(k.into(), v.clone());
        }
    }
    let req = rekey_api::UpdateCredentials {
        credentials: serde_json::Value::Object(creds),
        version: None,
    };
    match s
        .rekey
        .update_credentials(&u.ctx(None, None), &id, req, None)
        .await
    {
        Ok(v) => message(
            StatusCode::OK,
            "Saved",
            format!(
                "{} has its new key; it is {} until the next check.",
                v.display_name, v.status
            ),
            "ok",
        ),
        // Validation messages name the field, never the value.
        Err(e) => error_page("Not saved", &e),
    }
}
