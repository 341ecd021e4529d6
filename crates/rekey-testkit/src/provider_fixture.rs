//! A fake SaaS API on loopback for credential-health tests: one Slack-style
//! endpoint (`auth.test`: always 200, verdict in `ok`/`error`) and one
//! generic REST endpoint (`/v1/me`: verdict in the status code), switchable
//! per test between healthy, auth failures, errors, rate limits, slowness
//! and a body that leaks the presented secret. `/v1/echo/{status}` answers
//! `status` with the whole request echoed back in many encodings, the way
//! careless APIs quote what they were sent in an error.
//!
//! It is also driven by a benchmark with thousands of connections, so the
//! hot path is axum + atomics, with no per-request logging and a large
//! listen backlog.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The fake live secret that [`Mode::EchoSecretInBody`] puts in its body, so
/// tests can assert it never shows up in rekey's responses, logs or database.
pub const LEAKED_API_KEY: &str = "sk_live_FIXTURE4eC39HqLyjWDarjtT1zdp7dc";

/// How the fixture answers, on both paths. Every mode except `Ok` and `Slow`
/// answers the same way whatever credential is presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A healthy API; a missing or wrong credential still fails as that
    /// API would (Slack `not_authed`/`invalid_auth`, generic 401).
    Ok,
    /// Generic: 401 `invalid_token` with `WWW-Authenticate`; Slack: 200
    /// `{"ok":false,"error":"invalid_auth"}`.
    Unauthorized,
    /// Generic: 403 `insufficient_scope`; Slack: 200 `missing_scope`.
    Forbidden,
    /// Slack: 200 `{"ok":false,"error":<s>}`; generic: 400 `{"error":<s>}`.
    SlackError(String),
    /// 500 `{"error":"internal"}` on both paths.
    ServerError,
    /// 429 with `Retry-After: N` on both paths.
    RateLimited { retry_after_secs: u64 },
    /// Sleep this long, then answer like `Ok`.
    Slow(Duration),
    /// 401 whose JSON body echoes the presented credential and carries
    /// [`LEAKED_API_KEY`], to prove rekey scrubs provider bodies.
    EchoSecretInBody,
}

#[derive(Clone, Copy)]
enum Api {
    Slack,
    Rest,
}

enum Cred {
    Missing,
    Wrong,
    Good,
}

struct Shared {
    mode: Mutex<Mode>,
    valid: Mutex<Option<String>>,
    /// Tokens revoked through `auth.revoke` (as Slack: dead from then on).
    revoked: Mutex<Vec<String>>,
    /// Requests to `auth.revoke`, and when each arrived.
    revocations: AtomicUsize,
    revocation_times: Mutex<Vec<std::time::Instant>>,
    last_auth: Mutex<Option<String>>,
    hits: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Turns true (or its sender goes away) when the fixture stops, so
    /// `Slow` handlers do not hold the graceful shutdown up.
    shutdown: watch::Receiver<bool>,
}

/// Locks ignoring poison: a panicking test must not cascade into every
/// later request.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running fake API. Dropping it shuts the server down too (gracefully,
/// in the background); [`ProviderFixture::stop`] also waits for that.
pub struct ProviderFixture {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ProviderFixture {
    /// Binds 127.0.0.1 on an ephemeral port, in `Mode::Ok`, accepting any
    /// non-empty credential.
    pub async fn start() -> ProviderFixture {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Ok),
            valid: Mutex::new(None),
            revoked: Mutex::new(Vec::new()),
            revocations: AtomicUsize::new(0),
            revocation_times: Mutex::new(Vec::new()),
            last_auth: Mutex::new(None),
            hits: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            shutdown: shutdown_rx.clone(),
        });
        let app = Router::new()
            .route("/api/auth.test", get(slack).post(slack))
            .route("/api/auth.revoke", get(slack_revoke).post(slack_revoke))
            .route("/v1/me", get(rest))
            .route("/v1/echo/{status}", get(echo).post(echo))
            .with_state(shared.clone());
        let listener = bind_loopback();
        let addr = listener.local_addr().expect("local addr");
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = serve_until(listener, app, shutdown_rx);
        ProviderFixture {
            addr,
            shared,
            shutdown,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Slack `auth.test` semantics; GET and POST.
    pub fn slack_url(&self) -> String {
        format!("{}/api/auth.test", self.base_url())
    }

    /// Generic REST semantics (verdict in the status code); GET.
    pub fn rest_url(&self) -> String {
        format!("{}/v1/me", self.base_url())
    }

    /// Answers `status` (e.g. 400, 500) with the request echoed in the
    /// body: the request line, and the query, each query value and each
    /// header value (but `Host`, `Accept`, `User-Agent`…) in every spelling
    /// of [`ECHO_SPELLINGS`]: as sent, percent-encoded (upper and lower case
    /// hex, `+` for space), JSON- and HTML-escaped, base64 (standard and
    /// URL-safe, padded and not), `Basic` decoded. `?spell=<one>` echoes
    /// that spelling alone (answers are cut at 1 KiB by rekey, so a test
    /// can look at one at a time); `?format=json` answers JSON
    /// (`{"error", "echo": [[what, value]…]}`) instead of text. Counted in
    /// `hits`.
    pub fn echo_url(&self, status: u16) -> String {
        format!("{}/v1/echo/{status}", self.base_url())
    }

    /// Slack's `auth.revoke` on this fixture.
    pub fn slack_revoke_url(&self) -> String {
        format!("{}/api/auth.revoke", self.base_url())
    }

    /// How many `auth.revoke` requests arrived.
    pub fn revocations(&self) -> usize {
        self.shared.revocations.load(Ordering::SeqCst)
    }

    /// The tokens `auth.revoke` revoked, in order (each at most once: a
    /// revoked token is refused from then on).
    pub fn revoked_tokens(&self) -> Vec<String> {
        lock(&self.shared.revoked).clone()
    }

    /// When each `auth.revoke` request arrived, in order.
    pub fn revocation_times(&self) -> Vec<std::time::Instant> {
        lock(&self.shared.revocation_times).clone()
    }

    pub fn set_mode(&self, m: Mode) {
        *lock(&self.shared.mode) = m;
    }

    /// Only this credential is accepted (compared to the whole Authorization
    /// header value, e.g. "Bearer xoxb-1", or to the `X-Api-Key` header
    /// value if present). None = accept any non-empty credential.
    pub fn set_valid_credential(&self, v: Option<&str>) {
        *lock(&self.shared.valid) = v.map(str::to_owned);
    }

    /// Requests received on either path since start or the last reset.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// The credential the most recent request presented (`X-Api-Key` if
    /// present, else `Authorization`); None if it presented none.
    pub fn last_authorization(&self) -> Option<String> {
        lock(&self.shared.last_auth).clone()
    }

    /// Highest number of requests in flight at once (for concurrency limits).
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Zeroes hits and max_concurrent and forgets the last credential; the
    /// mode and the valid credential stay.
    pub fn reset_stats(&self) {
        self.shared.hits.store(0, Ordering::SeqCst);
        self.shared.max_in_flight.store(0, Ordering::SeqCst);
        *lock(&self.shared.last_auth) = None;
    }

    /// Stops listening (later connections are refused), closes idle
    /// keep-alive connections, cuts `Slow` sleeps short (they answer 503)
    /// and waits up to 5 s for in-flight requests.
    pub async fn stop(self) {
        stop_serving(&self.shutdown, self.task).await
    }
}

/// A loopback URL (`http://127.0.0.1:PORT`) where nothing listens, for
/// "connection refused": binds an ephemeral port, reads it and drops the
/// listener. (Another process could in theory grab the port meanwhile.)
pub fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().expect("local addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// tokio's `TcpListener::bind` uses a backlog of 1024, too small for a
/// benchmark opening 10k connections at once; the kernel caps this at
/// `net.core.somaxconn` anyway.
/// Serve `app` on `listener` in a task of its own until `stop` turns true
/// (graceful: requests in flight finish).
pub(crate) fn serve_until<L>(
    listener: L,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await;
    })
}

/// Stop a server started by [`serve_until`] and wait up to 5 s for the
/// requests in flight (then abort it).
pub(crate) async fn stop_serving(shutdown: &watch::Sender<bool>, mut task: JoinHandle<()>) {
    let _ = shutdown.send(true);
    if tokio::time::timeout(Duration::from_secs(5), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}

pub(crate) fn bind_loopback() -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let _ = socket.set_reuseaddr(true);
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind 127.0.0.1:0");
    socket.listen(16_384).expect("listen")
}

/// Counts a request in flight for as long as its handler runs (including
/// when the client goes away and the handler future is dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type St = State<Arc<Shared>>;

/// Slack's `auth.revoke` (api.slack.com/methods/auth.revoke): the token
/// from the Authorization header is revoked, `{"ok": true, "revoked":
/// true}`; without a valid token, `{"ok": false, "error": "invalid_auth"}`
/// (or `not_authed`), HTTP 200 as Slack answers.
async fn slack_revoke(State(s): St, headers: HeaderMap) -> Response {
    s.revocations.fetch_add(1, Ordering::SeqCst);
    lock(&s.revocation_times).push(std::time::Instant::now());
    let cred = presented(&headers);
    match check(&s, cred.as_ref()) {
        Cred::Good => {
            if let Some((v, _)) = cred {
                lock(&s.revoked).push(v);
            }
            ok_json(json!({"ok": true, "revoked": true}))
        }
        Cred::Missing => slack_error("not_authed"),
        Cred::Wrong => slack_error("invalid_auth"),
    }
}

async fn slack(State(s): St, headers: HeaderMap) -> Response {
    answer(&s, Api::Slack, &headers).await
}

async fn rest(State(s): St, headers: HeaderMap) -> Response {
    answer(&s, Api::Rest, &headers).await
}

fn pct(s: &str, lower: bool, space_plus: bool) -> String {
    let mut o = String::new();
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                o.push(char::from(b))
            }
            b' ' if space_plus => o.push('+'),
            _ if lower => o.push_str(&format!("%{b:02x}")),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

fn html(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            '+' => "&#x2B;".to_string(),
            c if !c.is_ascii() => format!("&#{};", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// The spellings the echo knows (`?spell=` picks one; default all).
pub const ECHO_SPELLINGS: &[&str] = &[
    "as-sent",
    "url",
    "url-lower",
    "form",
    "json",
    "json-slash",
    "html",
    "base64",
    "base64-nopad",
    "base64url",
    "base64url-nopad",
    "basic",
];

/// One value the echo was sent, in the spelling `how`.
fn spell(how: &str, label: &str, v: &str, out: &mut Vec<(String, String)>) {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let json = serde_json::to_string(v).unwrap_or_default();
    let b = v.as_bytes();
    let s = match how {
        "as-sent" => v.to_string(),
        "url" => pct(v, false, false),
        "url-lower" => pct(v, true, false),
        "form" => pct(v, false, true),
        "json" => json,
        "json-slash" => json.replace('/', "\\/"),
        "html" => html(v),
        "base64" => STANDARD.encode(b),
        "base64-nopad" => STANDARD_NO_PAD.encode(b),
        "base64url" => URL_SAFE.encode(b),
        "base64url-nopad" => URL_SAFE_NO_PAD.encode(b),
        "basic" => {
            // A Basic credential, decoded, and its password alone.
            let pair = v
                .strip_prefix("Basic ")
                .and_then(|e| STANDARD.decode(e.trim()).ok())
                .and_then(|d| String::from_utf8(d).ok());
            if let Some(pair) = pair {
                out.push((format!("{label} (decoded)"), pair.clone()));
                if let Some((_, pw)) = pair.split_once(':') {
                    out.push((format!("{label} (password)"), pw.to_string()));
                    out.push((format!("{label} (password, form)"), pct(pw, false, true)));
                }
            }
            return;
        }
        _ => return,
    };
    out.push((format!("{label} ({how})"), s));
}

/// Headers every client sends: not echoed, to keep the answer short.
const BORING: &[&str] = &[
    "host",
    "accept",
    "accept-encoding",
    "user-agent",
    "content-length",
];

async fn echo(
    State(s): St,
    Path(status): Path<u16>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let query = uri.query().unwrap_or("");
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let opt = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let json = opt("format").as_deref() == Some("json");
    let hows: Vec<&str> = match opt("spell") {
        Some(h) => ECHO_SPELLINGS.iter().copied().filter(|x| *x == h).collect(),
        None => ECHO_SPELLINGS.to_vec(),
    };
    let mut lines: Vec<(String, String)> = vec![("request".into(), format!("GET {uri}"))];
    let mut values: Vec<(String, String)> = vec![("query".into(), query.to_string())];
    for (k, v) in &params {
        if k != "format" && k != "spell" {
            values.push((format!("query {k}"), v.clone()));
        }
    }
    for (k, v) in &headers {
        if !BORING.contains(&k.as_str()) {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            lines.push((format!("header {k}"), v.clone()));
            values.push((format!("header {k}"), v));
        }
    }
    for (label, v) in &values {
        for how in &hows {
            spell(how, label, v, &mut lines);
        }
    }
    if json {
        // Pairs, not an object: field names like `x-api-key` would be
        // redacted by name alone, and the echo must test the values.
        let pairs: Vec<Value> = lines.into_iter().map(|(k, v)| json!([k, v])).collect();
        return (status, Json(json!({"error": "bad_request", "echo": pairs}))).into_response();
    }
    let mut body = String::from("error: your request was not understood; the echo of it:\n");
    for (k, v) in lines {
        body.push_str(&format!("{k}: {v}\n"));
    }
    (status, body).into_response()
}

/// The credential as presented: `X-Api-Key` wins over `Authorization`.
fn presented(headers: &HeaderMap) -> Option<(String, bool)> {
    let (v, is_authz) = match headers.get("x-api-key") {
        Some(v) => (v, false),
        None => (headers.get(AUTHORIZATION)?, true),
    };
    Some((String::from_utf8_lossy(v.as_bytes()).into_owned(), is_authz))
}

fn check(s: &Shared, presented: Option<&(String, bool)>) -> Cred {
    let Some((value, is_authz)) = presented else {
        return Cred::Missing;
    };
    // "Bearer " with nothing after it carries no credential (hyper trims the
    // trailing space, so a lone scheme word arrives).
    let token = if *is_authz {
        match value.trim().split_once(' ') {
            Some((_, t)) => t,
            None if is_scheme(value.trim()) => "",
            None => value.as_str(),
        }
    } else {
        value.as_str()
    };
    if token.trim().is_empty() {
        return Cred::Missing;
    }
    if lock(&s.revoked).iter().any(|r| r == value) {
        return Cred::Wrong;
    }
    match lock(&s.valid).as_deref() {
        None => Cred::Good,
        Some(v) if v == value => Cred::Good,
        Some(_) => Cred::Wrong,
    }
}

fn is_scheme(v: &str) -> bool {
    ["bearer", "basic", "token", "bot"]
        .iter()
        .any(|s| v.eq_ignore_ascii_case(s))
}

async fn answer(s: &Shared, api: Api, headers: &HeaderMap) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&s.in_flight);
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);

    let cred = presented(headers);
    *lock(&s.last_auth) = cred.as_ref().map(|(v, _)| v.clone());
    let mode = lock(&s.mode).clone();

    match (mode, api) {
        (Mode::Ok, _) => healthy_or_auth_failure(s, api, cred.as_ref()),
        (Mode::Slow(d), _) => {
            let mut stop = s.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(d) => healthy_or_auth_failure(s, api, cred.as_ref()),
                _ = stop.wait_for(|stop| *stop) => {
                    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "shutting_down"})))
                        .into_response()
                }
            }
        }
        (Mode::Unauthorized, Api::Slack) => slack_error("invalid_auth"),
        (Mode::Unauthorized, Api::Rest) => invalid_token(),
        (Mode::Forbidden, Api::Slack) => {
            ok_json(json!({"ok": false, "error": "missing_scope", "needed": "users:read"}))
        }
        (Mode::Forbidden, Api::Rest) => with_header(
            (
                StatusCode::FORBIDDEN,
                Json(json!({"error": "insufficient_scope"})),
            )
                .into_response(),
            WWW_AUTHENTICATE,
            r#"Bearer error="insufficient_scope""#,
        ),
        (Mode::SlackError(e), Api::Slack) => slack_error(&e),
        (Mode::SlackError(e), Api::Rest) => {
            (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response()
        }
        (Mode::ServerError, _) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "internal"})),
        )
            .into_response(),
        (Mode::RateLimited { retry_after_secs }, api) => {
            let body = match api {
                Api::Slack => json!({"ok": false, "error": "ratelimited"}),
                Api::Rest => json!({"error": "rate_limited"}),
            };
            let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            r
        }
        (Mode::EchoSecretInBody, api) => {
            let v = cred.map(|(v, _)| v).unwrap_or_default();
            let mut body = json!({
                "error": "invalid_token",
                "error_description": format!("The access token {v} is invalid"),
                "authorization": v,
                "api_key": LEAKED_API_KEY,
            });
            if let (Api::Slack, Some(o)) = (api, body.as_object_mut()) {
                o.insert("ok".into(), Value::Bool(false));
                o.insert("error".into(), Value::from("invalid_auth"));
            }
            (StatusCode::UNAUTHORIZED, Json(body)).into_response()
        }
    }
}

fn healthy_or_auth_failure(s: &Shared, api: Api, cred: Option<&(String, bool)>) -> Response {
    match (check(s, cred), api) {
        (Cred::Good, Api::Slack) => ok_json(json!({
            "ok": true,
            "url": "https://fixture.slack.com/",
            "team": "Fixture",
            "user": "bot",
            "team_id": "T0001",
            "user_id": "U0001",
        })),
        (Cred::Good, Api::Rest) => ok_json(json!({"id": "u_1", "email": "bot@example.com"})),
        (Cred::Missing, Api::Slack) => slack_error("not_authed"),
        (Cred::Wrong, Api::Slack) => slack_error("invalid_auth"),
        // RFC 6750 §3.1: no error code when no credential was presented.
        (Cred::Missing, Api::Rest) => with_header(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "error": "unauthorized",
                    "error_description": "No access token was presented",
                })),
            )
                .into_response(),
            WWW_AUTHENTICATE,
            r#"Bearer realm="fixture""#,
        ),
        (Cred::Wrong, Api::Rest) => invalid_token(),
    }
}

fn ok_json(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

/// Slack reports failures with 200 and `ok: false`.
fn slack_error(e: &str) -> Response {
    ok_json(json!({"ok": false, "error": e}))
}

fn invalid_token() -> Response {
    with_header(
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "error": "invalid_token",
                "error_description": "The access token is invalid",
            })),
        )
            .into_response(),
        WWW_AUTHENTICATE,
        r#"Bearer error="invalid_token""#,
    )
}

fn with_header(mut r: Response, name: axum::http::HeaderName, value: &'static str) -> Response {
    r.headers_mut()
        .insert(name, HeaderValue::from_static(value));
    r
}
