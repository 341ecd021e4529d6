//! A plain OAuth 2.0 authorization server (no OIDC) for tests: the shape of
//! GitHub/Slack-style providers where the identity comes from an API
//! endpoint. It follows RFC 6749/7636/7009 strictly (PKCE S256 required,
//! codes single-use, exact redirect URI, refresh-token rotation) and can be
//! told to misbehave (5xx, 429, malformed or huge responses).

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Grant {
    user: String,
    scopes: Vec<String>,
}

#[derive(Default)]
pub struct FixtureState {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    /// Who "logs in" at /authorize.
    pub user: String,
    /// Scopes granted (None: as requested).
    pub grant_scopes: Option<Vec<String>>,
    pub access_ttl: i64,
    /// Issue a new refresh token on refresh.
    pub rotate_refresh: bool,
    /// Answer the next token requests with this (status, body, retry-after).
    pub override_token: Option<(u16, String, Option<u64>)>,
    /// Delay token responses (for single-flight tests).
    pub token_delay_ms: u64,
    /// Answer revocation requests with this status and revoke nothing (an
    /// outage at the provider's revocation endpoint).
    pub revoke_status: Option<u16>,
    codes: HashMap<String, (String, String, Grant)>,
    access: HashMap<String, Grant>,
    refresh: HashMap<String, Grant>,
    pub token_requests: u64,
    pub revocations: u64,
    pub counter: u64,
}

#[derive(Clone)]
pub struct OAuth2Fixture {
    pub base: String,
    pub state: Arc<Mutex<FixtureState>>,
}

impl OAuth2Fixture {
    pub async fn start(client_id: &str, client_secret: &str, redirect_uri: &str) -> OAuth2Fixture {
        let state = Arc::new(Mutex::new(FixtureState {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uri: redirect_uri.into(),
            user: "alice".into(),
            access_ttl: 3600,
            rotate_refresh: true,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/me", get(me))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OAuth2Fixture { base, state }
    }

    /// The fixture's endpoints as an integration's `endpoints` object
    /// (authorize, token, revocation, identity).
    pub fn endpoints(&self) -> Value {
        let at = |path: &str| format!("{}{path}", self.base);
        json!({
            "authorize_url": at("/authorize"),
            "token_url": at("/token"),
            "revocation_url": at("/revoke"),
            "identity_url": at("/me"),
        })
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut FixtureState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn token_requests(&self) -> u64 {
        self.with(|s| s.token_requests)
    }

    /// Kill every refresh token (as a provider does when a user revokes the app).
    pub fn revoke_all_grants(&self) {
        self.with(|s| {
            s.refresh.clear();
            s.access.clear();
        })
    }

    /// The refresh tokens the provider holds now.
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.with(|s| s.refresh.keys().cloned().collect())
    }

    /// Revoke exactly these tokens (refresh or access), nothing else.
    pub fn revoke_tokens(&self, tokens: &[String]) {
        self.with(|s| {
            for t in tokens {
                s.refresh.remove(t);
                s.access.remove(t);
            }
        })
    }

    /// Whether an access token is currently valid at the provider.
    pub fn access_valid(&self, token: &str) -> bool {
        self.with(|s| s.access.contains_key(token))
    }
}

type St = State<Arc<Mutex<FixtureState>>>;

fn oauth_error(status: StatusCode, error: &str, desc: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": desc})),
    )
        .into_response()
}

async fn authorize(State(st): St, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut s = st.lock().unwrap();
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("client_id") != s.client_id || get("redirect_uri") != s.redirect_uri {
        return (
            StatusCode::BAD_REQUEST,
            "unknown client or redirect_uri mismatch",
        )
            .into_response();
    }
    if get("response_type") != "code"
        || get("code_challenge_method") != "S256"
        || get("code_challenge").is_empty()
    {
        return (StatusCode::BAD_REQUEST, "PKCE S256 is required").into_response();
    }
    s.counter += 1;
    let code = format!("code-{}", s.counter);
    let scopes = s.grant_scopes.clone().unwrap_or_else(|| {
        get("scope")
            .split(' ')
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    });
    let grant = Grant {
        user: s.user.clone(),
        scopes,
    };
    s.codes.insert(
        code.clone(),
        (get("code_challenge"), get("redirect_uri"), grant),
    );
    let sep = if s.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    Redirect::to(&format!(
        "{}{sep}code={code}&state={}",
        s.redirect_uri,
        urlenc(&get("state"))
    ))
    .into_response()
}

fn urlenc(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

fn client_ok(s: &FixtureState, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    if let Some(h) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(h)
            .unwrap_or_default();
        return String::from_utf8_lossy(&decoded) == format!("{}:{}", s.client_id, s.client_secret);
    }
    form.get("client_id") == Some(&s.client_id)
        && form.get("client_secret") == Some(&s.client_secret)
}

fn issue(s: &mut FixtureState, grant: Grant, with_refresh: bool) -> Value {
    s.counter += 1;
    let at = format!("at-{}-{}", grant.user, s.counter);
    s.access.insert(at.clone(), grant.clone());
    let mut body = json!({"access_token": at, "token_type": "Bearer", "expires_in": s.access_ttl, "scope": grant.scopes.join(" ")});
    if with_refresh {
        let rt = format!("rt-{}-{}", grant.user, s.counter);
        s.refresh.insert(rt.clone(), grant);
        body["refresh_token"] = json!(rt);
    }
    body
}

async fn token(
    State(st): St,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let delay = {
        let mut s = st.lock().unwrap();
        s.token_requests += 1;
        s.token_delay_ms
    };
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let mut s = st.lock().unwrap();
    if let Some((status, body, retry)) = s.override_token.clone() {
        let mut r = (StatusCode::from_u16(status).unwrap(), body).into_response();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        if let Some(secs) = retry {
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
        }
        return r;
    }
    if !client_ok(&s, &headers, &form) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            // Single use: the code is gone whatever happens next.
            let Some((challenge, redirect, grant)) = s.codes.remove(&code) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown or used code",
                );
            };
            if form.get("redirect_uri") != Some(&redirect) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri mismatch",
                );
            }
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()));
            if verifier.is_empty() || computed != challenge {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            Json(issue(&mut s, grant, true)).into_response()
        }
        Some("refresh_token") => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            let Some(grant) = s.refresh.get(&rt).cloned() else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "refresh token revoked or unknown",
                );
            };
            let rotate = s.rotate_refresh;
            if rotate {
                s.refresh.remove(&rt);
            }
            Json(issue(&mut s, grant, rotate)).into_response()
        }
        Some("client_credentials") => {
            let scopes = form
                .get("scope")
                .map(|x| x.split(' ').map(String::from).collect())
                .unwrap_or_default();
            let grant = Grant {
                user: format!("client:{}", s.client_id),
                scopes,
            };
            Json(issue(&mut s, grant, false)).into_response()
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported grant_type",
        ),
    }
}

async fn revoke(
    State(st): St,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut s = st.lock().unwrap();
    if !client_ok(&s, &headers, &form) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    if let Some(code) = s.revoke_status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (status, "revocation unavailable").into_response();
    }
    s.revocations += 1;
    let t = form.get("token").cloned().unwrap_or_default();
    // RFC 7009 §2.1: revoking a refresh token also invalidates its access tokens.
    if let Some(g) = s.refresh.remove(&t) {
        s.access.retain(|_, a| a.user != g.user);
    }
    s.access.remove(&t);
    StatusCode::OK.into_response()
}

async fn me(State(st): St, headers: HeaderMap) -> Response {
    let s = st.lock().unwrap();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match s.access.get(token) {
        Some(g) => Json(json!({"user": {"id": format!("uid-{}", g.user), "email": format!("{}@example.com", g.user), "name": g.user}})).into_response(),
        None => (StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials"}))).into_response(),
    }
}

/// A browser without automatic redirects, as the connect tests drive it.
pub use crate::browser::browser;

/// Walk a connect link against this fixture (which approves at once):
/// Connect page → start → provider → the callback URL (not yet requested).
pub async fn walk_connect(browser: &reqwest::Client, connect_url: &str) -> String {
    let page = browser.get(connect_url).send().await.unwrap();
    assert_eq!(page.status(), 200, "connect page");
    let start = browser
        .post(format!("{connect_url}/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303, "start must redirect to the provider");
    let to_provider = start.headers()["location"].to_str().unwrap().to_string();
    let back = browser.get(&to_provider).send().await.unwrap();
    assert_eq!(back.status(), 303, "provider must redirect back");
    back.headers()["location"].to_str().unwrap().to_string()
}
