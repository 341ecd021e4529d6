//! A real OpenID Provider for the OAuth tests: `oidc-provider` (Node) from
//! `tests/fixtures/oidc-provider/`, on an ephemeral loopback port, plus a
//! driver for its dev login/consent pages (plain HTTP: cookie jar and form
//! posts, no browser).
//!
//! Needs `npm ci` in `tests/fixtures/oidc-provider` (`.ci/run` does it).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A running `oidc-provider` process. Killed on drop.
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`, exactly as the provider puts it in `iss`.
    pub issuer: String,
    child: tokio::process::Child,
    http: reqwest::Client,
    stderr: Arc<Mutex<String>>,
}

/// `tests/fixtures/oidc-provider` in this workspace.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/oidc-provider")
}

impl OidcProvider {
    /// Start the provider with these clients (a JSON array of oidc-provider
    /// client metadata: `client_id`, `client_secret`, `redirect_uris`,
    /// `grant_types`, `token_endpoint_auth_method`, `jwks`, `scope`, …).
    /// Access and client-credentials tokens live 5 s.
    pub async fn start(clients: Value) -> OidcProvider {
        Self::start_with_env(clients, &[]).await
    }

    /// Like [`OidcProvider::start`], with extra environment for `server.mjs`:
    /// `ACCESS_TOKEN_TTL`, `CLIENT_CREDENTIALS_TTL`, `REFRESH_TOKEN_TTL`
    /// (seconds), `CONFORM_ID_TOKEN_CLAIMS=1` (email/name only from userinfo),
    /// `NO_REVOCATION=1` (no revocation endpoint, none in discovery),
    /// `STRICT_CLIENT_AUTH=0` (accept client_secret_basic and
    /// client_secret_post interchangeably; by default the registered
    /// `token_endpoint_auth_method` is enforced).
    pub async fn start_with_env(clients: Value, env: &[(&str, &str)]) -> OidcProvider {
        let dir = fixture_dir();
        if !dir.join("node_modules/oidc-provider/package.json").exists() {
            panic!(
                "oidc-provider is not installed in {}: run `npm ci` in tests/fixtures/oidc-provider \
                 (.ci/run does this)",
                dir.display()
            );
        }
        // Node has been seen (once, in a loaded CI run) to end without a word
        // before listening; one more start tells that apart from a fixture
        // that cannot start at all.
        let first = match Self::try_start(&dir, &clients, env).await {
            Ok(p) => return p,
            Err(e) => e,
        };
        match Self::try_start(&dir, &clients, env).await {
            Ok(p) => {
                eprintln!("[oidc-provider] first start failed, second worked: {first}");
                p
            }
            Err(second) => panic!(
                "oidc-provider did not print its issuer line (twice).\nfirst: {first}\nsecond: {second}\n\
                 (hint: run `npm ci` in tests/fixtures/oidc-provider)"
            ),
        }
    }

    async fn try_start(
        dir: &std::path::Path,
        clients: &Value,
        env: &[(&str, &str)],
    ) -> Result<OidcProvider, String> {
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg("server.mjs")
            .current_dir(dir)
            .env("PORT", "0")
            .env("OIDC_CLIENTS", clients.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning `node server.mjs` in {}: {e}", dir.display()));

        // Drain stderr for the whole life of the process (a full pipe would
        // block the provider); keep it for panic messages and echo it to the
        // test's captured output.
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let buf = stderr.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[oidc-provider] {line}");
                    if let Ok(mut b) = buf.lock() {
                        b.push_str(&line);
                        b.push('\n');
                    }
                }
            });
        }

        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        if let Some(iss) = line.strip_prefix("issuer=") {
                            return Some(iss.trim().to_string());
                        }
                    }
                    _ => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        let Some(issuer) = issuer else {
            // Its own exit status if it ends (stdout closed), else killed.
            let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(Ok(st)) => format!("exited by itself: {st}"),
                _ => {
                    let _ = child.start_kill();
                    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                    "no issuer line; killed".to_string()
                }
            };
            // Let the stderr task catch up.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let err = stderr.lock().map(|s| s.clone()).unwrap_or_default();
            return Err(format!("{status}; stderr:\n{err}"));
        };
        // Nothing else is printed on stdout, but keep the pipe drained.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        Ok(OidcProvider {
            issuer,
            child,
            http: reqwest::Client::new(),
            stderr,
        })
    }

    /// `issuer` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// `/.well-known/openid-configuration`.
    pub async fn discovery(&self) -> Value {
        self.get_json("/.well-known/openid-configuration").await
    }

    /// What the provider wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// POSTs seen at the token and revocation endpoints since start or the
    /// last [`OidcProvider::reset_stats`].
    pub async fn stats(&self) -> (u64, u64) {
        let s = self.stats_json().await;
        let n = |k: &str| {
            s[k].as_u64()
                .unwrap_or_else(|| panic!("/__stats without {k}: {s}"))
        };
        (n("token_requests"), n("revocation_requests"))
    }

    /// All counters: `token_requests`, `revocation_requests`,
    /// `introspection_requests`, `userinfo_requests`.
    pub async fn stats_json(&self) -> Value {
        self.get_json("/__stats").await
    }

    pub async fn reset_stats(&self) {
        self.post_json("/__stats/reset", Value::Null).await;
    }

    /// Test-only fault injection on the token endpoint (requests are still
    /// counted): `{"token_status": 503, "token_count": 2, "token_body": {…}}`
    /// answers the next `token_count` token POSTs with that status and JSON
    /// body (default `{"error":"temporarily_unavailable"}`) without reaching
    /// the provider; `{"token_delay_ms": 200}` delays every token POST.
    /// `set_faults(json!({}))` clears.
    pub async fn set_faults(&self, faults: Value) {
        self.post_json("/__faults", faults).await;
    }

    /// A second client secret for `client_id` that works as well as the
    /// registered one, as a provider's console makes during a rotation.
    pub async fn add_client_secret(&self, client_id: &str, secret: &str) {
        self.post_json(
            "/__client_secrets",
            serde_json::json!({"client_id": client_id, "add": secret}),
        )
        .await;
    }

    /// Register `keys` (a JWKS's `keys`) as the client's keys at its
    /// `jwks_uri` (`"{issuer}/__jwks/<client_id>"` in the client metadata).
    pub async fn set_client_jwks(&self, client_id: &str, keys: Value) {
        self.post_json(
            &format!("/__jwks/{client_id}"),
            serde_json::json!({ "keys": keys }),
        )
        .await;
    }

    /// Delete a client secret at the provider: it then fails with
    /// `invalid_client`.
    pub async fn retire_client_secret(&self, client_id: &str, secret: &str) {
        self.post_json(
            "/__client_secrets",
            serde_json::json!({"client_id": client_id, "retire": secret}),
        )
        .await;
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self
            .http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
    }

    async fn post_json(&self, path: &str, body: Value) {
        let mut req = self.http.post(self.url(path));
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path}: {status}: {text}");
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Walk an authorization request through the provider's dev login and
/// consent pages as the user `login` (any name is accepted; the account's
/// `sub` is `login` and its email `<login>@example.com`), then approve or
/// deny (`approve = false` → `error=access_denied`). Returns the final
/// redirect `Location` pointing at the client's `redirect_uri` (not
/// requested). Uses a fresh cookie jar, so every call is a new browser
/// session and always sees the login and consent pages.
pub async fn authorize_as(authorize_url: &str, login: &str, approve: bool) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = Url::parse(authorize_url)
        .unwrap_or_else(|e| panic!("authorize URL {authorize_url:?}: {e}"));
    let redirect_uri = start
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .and_then(|(_, v)| Url::parse(&v).ok());
    let mut jar = CookieJar::default();
    let mut url = start.clone();
    let mut form: Option<Vec<(String, String)>> = None;
    let mut saw_login = false;
    let mut saw_consent = false;

    for _ in 0..30 {
        let method = if form.is_some() { "POST" } else { "GET" };
        let mut req = match &form {
            Some(f) => http.post(url.clone()).form(f),
            None => http.get(url.clone()),
        };
        if let Some(c) = jar.header_for(&url) {
            req = req.header(COOKIE, c);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status();
        jar.store(resp.headers());
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();

        if status.is_redirection() {
            let loc = location
                .unwrap_or_else(|| panic!("{method} {url}: {status} without Location: {body}"));
            let next = url
                .join(&loc)
                .unwrap_or_else(|e| panic!("{method} {url}: bad Location {loc:?}: {e}"));
            let at_client = match &redirect_uri {
                Some(r) => without_query(&next) == without_query(r),
                None => next.origin() != start.origin(),
            };
            if at_client {
                return next.to_string();
            }
            url = next;
            form = None;
            continue;
        }
        if status != StatusCode::OK {
            panic!("{method} {url}: unexpected {status}: {body}");
        }

        let page = parse_form(&body)
            .unwrap_or_else(|| panic!("{method} {url}: expected a login or consent form: {body}"));
        let action = url
            .join(&page.action)
            .unwrap_or_else(|e| panic!("bad form action {:?}: {e}; page: {body}", page.action));
        if redirect_uri
            .as_ref()
            .is_some_and(|r| without_query(&action) == without_query(r))
        {
            panic!("response_mode=form_post is not supported by authorize_as: {body}");
        }
        let prompt = page
            .inputs
            .iter()
            .find(|(k, _)| k == "prompt")
            .map(|(_, v)| v.as_str());
        let has_login_field = page.inputs.iter().any(|(k, _)| k == "login");
        if prompt == Some("login") || (prompt.is_none() && has_login_field) {
            assert!(!saw_login, "login page shown twice: {body}");
            saw_login = true;
            let mut f: Vec<(String, String)> = page
                .inputs
                .into_iter()
                .filter(|(k, _)| k != "login" && k != "password")
                .collect();
            f.push(("login".into(), login.into()));
            f.push(("password".into(), "any-password".into()));
            url = action;
            form = Some(f);
        } else if prompt == Some("consent") {
            assert!(!saw_consent, "consent page shown twice: {body}");
            saw_consent = true;
            if approve {
                url = action;
                form = Some(page.inputs);
            } else {
                let abort = find_abort_link(&body).unwrap_or_else(|| {
                    panic!("no abort (Cancel) link on the consent page: {body}")
                });
                url = url
                    .join(&abort)
                    .unwrap_or_else(|e| panic!("bad abort link {abort:?}: {e}"));
                form = None;
            }
        } else {
            panic!("{method} {url}: unrecognised interaction page: {body}");
        }
    }
    panic!("authorize_as: too many steps, last URL {url}");
}

fn without_query(u: &Url) -> String {
    let mut u = u.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Just enough of a cookie jar for one host: name, value and path; cookies
/// cleared by the server (empty value, epoch expiry, `Max-Age=0`) are dropped.
#[derive(Default)]
struct CookieJar {
    cookies: Vec<(String, String, String)>, // (name, path, value)
}

impl CookieJar {
    fn store(&mut self, headers: &HeaderMap) {
        for h in headers.get_all(SET_COOKIE) {
            let Ok(h) = h.to_str() else { continue };
            let mut parts = h.split(';');
            let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim().to_string(), value.trim().to_string());
            let mut path = "/".to_string();
            let mut expired = value.is_empty();
            for attr in parts {
                let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
                match k.trim().to_ascii_lowercase().as_str() {
                    "path" => path = v.trim().to_string(),
                    "max-age" => expired |= v.trim().parse::<i64>().is_ok_and(|n| n <= 0),
                    "expires" => expired |= v.contains("1970"),
                    _ => {}
                }
            }
            self.cookies.retain(|(n, p, _)| !(n == &name && p == &path));
            if !expired {
                self.cookies.push((name, path, value));
            }
        }
    }

    fn header_for(&self, url: &Url) -> Option<String> {
        let req_path = url.path();
        let matching: Vec<String> = self
            .cookies
            .iter()
            .filter(|(_, p, _)| {
                req_path == p
                    || (req_path.starts_with(p.as_str())
                        && (p.ends_with('/') || req_path[p.len()..].starts_with('/')))
            })
            .map(|(n, _, v)| format!("{n}={v}"))
            .collect();
        (!matching.is_empty()).then(|| matching.join("; "))
    }
}

struct Form {
    action: String,
    /// Every named `<input>` (hidden or not) with its value (or "").
    inputs: Vec<(String, String)>,
}

/// The first `<form>` on the page: its action and named inputs.
fn parse_form(html: &str) -> Option<Form> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<form")?;
    let end = lower[start..]
        .find("</form")
        .map_or(html.len(), |e| start + e);
    let open_end = start + lower[start..].find('>')?;
    let attrs = parse_attrs(&html[start + 5..open_end]);
    let action = attr(&attrs, "action").unwrap_or_default();
    let mut inputs = Vec::new();
    let mut pos = open_end;
    while let Some(i) = lower[pos..end].find("<input") {
        let tag_start = pos + i + 6;
        let tag_end = tag_start + lower[tag_start..].find('>')?;
        let a = parse_attrs(&html[tag_start..tag_end]);
        if let Some(name) = attr(&a, "name") {
            inputs.push((name, attr(&a, "value").unwrap_or_default()));
        }
        pos = tag_end;
    }
    Some(Form { action, inputs })
}

/// The href of the first link whose target ends in `/abort` (the dev
/// interaction pages' "[ Cancel ]").
fn find_abort_link(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(i) = lower[pos..].find("<a") {
        let tag_start = pos + i + 2;
        let tag_end = tag_start + lower[tag_start..].find('>')?;
        let a = parse_attrs(&html[tag_start..tag_end]);
        if let Some(href) = attr(&a, "href") {
            if href
                .split(['?', '#'])
                .next()
                .is_some_and(|p| p.ends_with("/abort"))
            {
                return Some(href);
            }
        }
        pos = tag_end;
    }
    None
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// `name="v" name='v' name=v name` → lowercase names, entity-decoded values.
fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let ns = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        if ns == i {
            i += 1;
            continue;
        }
        let name = s[ns..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                i = vs;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                value = s[vs..i].to_string();
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = s[vs..i].to_string();
            }
        }
        out.push((name, decode_entities(&value)));
    }
    out
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(semi) = rest.find(';').filter(|&n| n <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..semi];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .or_else(|| ent.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The client secret the clients of [`code_client`] and [`m2m_client`] are
/// registered with.
pub fn client_secret(client_id: &str) -> String {
    format!("{client_id}-secret-0123456789abcdef")
}

/// An authorization-code client (with refresh tokens) whose redirect URI is
/// the OAuth callback of the rekey at `rekey_base`, authenticating at the
/// token endpoint with `method` and [`client_secret`].
pub fn code_client(rekey_base: &str, client_id: &str, method: &str) -> Value {
    serde_json::json!({"client_id": client_id, "client_secret": client_secret(client_id),
        "redirect_uris": [format!("{rekey_base}/oauth/callback")],
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "token_endpoint_auth_method": method})
}

/// A client-credentials client, authenticating with `method` and
/// [`client_secret`].
pub fn m2m_client(client_id: &str, method: &str) -> Value {
    serde_json::json!({"client_id": client_id, "client_secret": client_secret(client_id),
        "redirect_uris": [], "response_types": [], "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": method})
}

/// Create a `custom-oidc` integration of `op` for its registered `client`
/// (with `method`: [`client_secret`], or for `private_key_jwt` the fixture
/// key `rekey-test-1`) asking for `scopes`; its id.
pub async fn integration(
    s: &crate::TestServer,
    op: &OidcProvider,
    client: &str,
    method: &str,
    scopes: &[&str],
) -> String {
    let mut body = serde_json::json!({"provider": "custom-oidc", "display_name": format!("IdP {client}"),
        "client_id": client, "auth_method": method, "scopes": scopes, "endpoints": {"issuer": op.issuer}});
    if method == "private_key_jwt" {
        body["private_key_pem"] = crate::fixture("test-rsa-2048.pem").into();
        body["key_id"] = "rekey-test-1".into();
    } else {
        body["client_secret"] = client_secret(client).into();
    }
    s.post("/api/v1/integrations", &s.admin_key, body)
        .await
        .created_id()
}

/// The Connect link of a new session for the integration `integ`.
pub async fn connect_link(s: &crate::TestServer, integ: &str) -> String {
    let body = serde_json::json!({"integration": integ});
    let r = s.post("/api/v1/connect-sessions", &s.admin_key, body).await;
    r.json()["url"].as_str().unwrap().to_string()
}

/// Start the Connect page at `link` as a browser would: the provider's
/// authorization URL it redirects to.
pub async fn start_connect(link: &str) -> String {
    let start = crate::browser::browser()
        .post(format!("{link}/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    start.headers()[LOCATION].to_str().unwrap().to_string()
}

/// Open the callback URL that [`authorize_as`] returned: the status and the
/// page rekey answers.
pub async fn finish(callback: &str) -> (u16, String) {
    let r = crate::browser::browser()
        .get(callback)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dev_interaction_forms() {
        let html = r#"<form autocomplete="off" action="http://127.0.0.1:1/interaction/a&amp;b" method="post">
  <input type="hidden" name="prompt" value="login"/>
  <input required type="text" name="login" placeholder="Enter any login" autofocus="on" value="">
  <input required type="password" name="password" placeholder="and password" >
  <button type="submit" class="login login-submit">Sign-in</button>
</form><div class="login-help"><a href="http://127.0.0.1:1/interaction/x/abort">[ Cancel ]</a>"#;
        let f = parse_form(html).unwrap();
        assert_eq!(f.action, "http://127.0.0.1:1/interaction/a&b");
        assert_eq!(
            f.inputs,
            vec![
                ("prompt".to_string(), "login".to_string()),
                ("login".to_string(), String::new()),
                ("password".to_string(), String::new()),
            ]
        );
        assert_eq!(
            find_abort_link(html).as_deref(),
            Some("http://127.0.0.1:1/interaction/x/abort")
        );
        assert_eq!(decode_entities("a&#39;b&#x41;&bogus c&"), "a'bA&bogus c&");
    }

    #[test]
    fn cookie_jar_paths_and_deletion() {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, "_session=s1; path=/; httponly".parse().unwrap());
        h.append(
            SET_COOKIE,
            "_interaction=i1; path=/interaction/u1".parse().unwrap(),
        );
        let mut jar = CookieJar::default();
        jar.store(&h);
        let u = |p: &str| Url::parse(&format!("http://127.0.0.1:1{p}")).unwrap();
        assert_eq!(
            jar.header_for(&u("/interaction/u1")).as_deref(),
            Some("_session=s1; _interaction=i1")
        );
        assert_eq!(
            jar.header_for(&u("/interaction/u10")).as_deref(),
            Some("_session=s1")
        );
        let mut h = HeaderMap::new();
        h.append(
            SET_COOKIE,
            "_interaction=; path=/interaction/u1; expires=Thu, 01 Jan 1970 00:00:00 GMT"
                .parse()
                .unwrap(),
        );
        jar.store(&h);
        assert_eq!(
            jar.header_for(&u("/interaction/u1")).as_deref(),
            Some("_session=s1")
        );
    }
}
