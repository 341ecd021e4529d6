//! Authorization URLs and token-endpoint operations.

use crate::http::Response;
use crate::{json_path, ClientAuth, Http, OAuthError};
use rekey_core::SecretString;
use serde_json::Value;

/// Endpoints from OIDC discovery.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
}

/// Fetch `{issuer}/.well-known/openid-configuration`. The document's
/// `issuer` must equal the configured one exactly (OIDC Discovery §4.3),
/// which defeats mix-ups between providers.
pub async fn discover(http: &Http, issuer: &str) -> Result<Discovery, OAuthError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let r = http.send(http.inner().get(&url)).await?;
    if r.status != 200 {
        return Err(status_error(&r));
    }
    parse_discovery(&r.body, issuer)
}

/// Parse a discovery document and check its `issuer`.
pub(crate) fn parse_discovery(body: &[u8], issuer: &str) -> Result<Discovery, OAuthError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| OAuthError::Malformed("discovery document is not JSON".into()))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let found = s("issuer")
        .ok_or_else(|| OAuthError::Malformed("discovery document lacks `issuer`".into()))?;
    if found != issuer {
        // `found` is the provider's text: no control characters (log and
        // page injection), and short.
        return Err(OAuthError::Malformed(format!(
            "discovery issuer `{}` does not match the configured issuer `{issuer}`",
            clip(&found, 200)
        )));
    }
    Ok(Discovery {
        issuer: found,
        authorization_endpoint: s("authorization_endpoint"),
        token_endpoint: s("token_endpoint"),
        revocation_endpoint: s("revocation_endpoint"),
        userinfo_endpoint: s("userinfo_endpoint"),
        jwks_uri: s("jwks_uri"),
    })
}

pub struct AuthorizeRequest<'a> {
    pub authorize_url: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    pub scope_separator: &'a str,
    pub state: &'a str,
    pub nonce: Option<&'a str>,
    pub code_challenge: &'a str,
    pub extra: &'a [(String, String)],
}

/// Build the authorization URL. PKCE S256 is always sent.
pub fn authorize_url(r: &AuthorizeRequest<'_>) -> Result<String, OAuthError> {
    let mut url = url::Url::parse(r.authorize_url)
        .map_err(|_| OAuthError::Config("authorize URL is not a valid URL".into()))?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in r.extra {
            q.append_pair(k, v);
        }
        q.append_pair("response_type", "code")
            .append_pair("client_id", r.client_id)
            .append_pair("redirect_uri", r.redirect_uri)
            .append_pair("state", r.state)
            .append_pair("code_challenge", r.code_challenge)
            .append_pair("code_challenge_method", "S256");
        if !r.scopes.is_empty() {
            q.append_pair("scope", &r.scopes.join(r.scope_separator));
        }
        if let Some(n) = r.nonce {
            q.append_pair("nonce", n);
        }
    }
    Ok(url.into())
}

/// A successful token response. Token values are secrets; `extra` holds
/// the rest of the response with anything token-like removed.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub token_type: String,
    pub expires_in: Option<i64>,
    pub refresh_token: Option<SecretString>,
    pub id_token: Option<SecretString>,
    pub scope: Option<String>,
    pub extra: Value,
}

const MAX_TOKEN: usize = 16 * 1024;

fn scrub(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| {
                let k = k.to_ascii_lowercase();
                !(k.contains("token")
                    || k.contains("secret")
                    || k.contains("password")
                    || k == "code")
            });
            m.values_mut().for_each(scrub);
        }
        Value::Array(a) => a.iter_mut().for_each(scrub),
        _ => {}
    }
}

pub(crate) fn status_error(r: &Response) -> OAuthError {
    if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return OAuthError::Provider {
                status: r.status,
                error: clip(e, 64),
                description: v
                    .get("error_description")
                    .and_then(Value::as_str)
                    .map(|d| clip(d, 300)),
            };
        }
    }
    if r.status >= 500 || r.status == 429 {
        OAuthError::Unavailable {
            status: r.status,
            retry_after: r.retry_after,
        }
    } else {
        OAuthError::Provider {
            status: r.status,
            error: format!("http_{}", r.status),
            description: None,
        }
    }
}

fn clip(s: &str, n: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(n).collect()
}

/// The message for an authorization response that carries `error` (the
/// user or the provider refused): the error code cut to `[A-Za-z0-9_]`, 64
/// characters, and the description scrubbed of token-like words, without
/// control characters, 300 characters. Both come from the browser's query
/// string, so neither is trusted.
pub fn denial_message(error: &str, description: Option<&str>) -> String {
    let e: String = error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    let d = clip(
        &rekey_core::scrub::scrub_text(description.unwrap_or_default(), &[]),
        300,
    );
    if d.is_empty() {
        format!("the provider answered `{e}`")
    } else {
        format!("the provider answered `{e}`: {d}")
    }
}

/// Parse and validate a token endpoint response.
pub(crate) fn parse_token_response(r: Response) -> Result<TokenSet, OAuthError> {
    if r.status != 200 {
        return Err(status_error(&r));
    }
    let v: Value = serde_json::from_slice(&r.body)
        .map_err(|_| OAuthError::Malformed("token response is not JSON".into()))?;
    let Value::Object(m) = &v else {
        return Err(OAuthError::Malformed(
            "token response is not a JSON object".into(),
        ));
    };
    // Slack-style: HTTP 200 with {"ok": false, "error": "…"}.
    if m.get("ok") == Some(&Value::Bool(false))
        || (m.contains_key("error") && !m.contains_key("access_token"))
    {
        return Err(OAuthError::Provider {
            status: r.status,
            error: m
                .get("error")
                .and_then(Value::as_str)
                .map(|e| clip(e, 64))
                .unwrap_or_else(|| "unknown_error".into()),
            description: m
                .get("error_description")
                .and_then(Value::as_str)
                .map(|d| clip(d, 300)),
        });
    }
    let text = |k: &str| -> Result<Option<String>, OAuthError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= MAX_TOKEN => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(OAuthError::Malformed(format!("`{k}` is too long"))),
            Some(_) => Err(OAuthError::Malformed(format!("`{k}` is not a string"))),
        }
    };
    let access_token = text("access_token")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OAuthError::Malformed("token response lacks `access_token`".into()))?;
    let token_type = text("token_type")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OAuthError::Malformed("token response lacks `token_type`".into()))?;
    let expires_in = match m.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse::<i64>().ok(),
        Some(_) => None,
    }
    .map(|n| n.clamp(0, 10 * 365 * 86_400));
    let refresh_token = text("refresh_token")?
        .filter(|s| !s.is_empty())
        .map(SecretString::new);
    let id_token = text("id_token")?
        .filter(|s| !s.is_empty())
        .map(SecretString::new);
    let scope = text("scope")?;
    let mut extra = v.clone();
    scrub(&mut extra);
    Ok(TokenSet {
        access_token: SecretString::new(access_token),
        token_type,
        expires_in,
        refresh_token,
        id_token,
        scope,
        extra,
    })
}

async fn token_request(
    http: &Http,
    token_url: &str,
    auth: &ClientAuth,
    mut form: Vec<(String, String)>,
) -> Result<TokenSet, OAuthError> {
    let req = http
        .inner()
        .post(token_url)
        .header(reqwest::header::ACCEPT, "application/json");
    let req = auth.apply(req, &mut form, token_url)?;
    let r = http.send(req.form(&form)).await?;
    parse_token_response(r)
}

pub async fn exchange_code(
    http: &Http,
    token_url: &str,
    auth: &ClientAuth,
    code: &str,
    redirect_uri: &str,
    code_verifier: &SecretString,
) -> Result<TokenSet, OAuthError> {
    let form = vec![
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".into(), code.to_string()),
        ("redirect_uri".into(), redirect_uri.to_string()),
        ("code_verifier".into(), code_verifier.expose().to_string()),
    ];
    token_request(http, token_url, auth, form).await
}

pub async fn refresh(
    http: &Http,
    token_url: &str,
    auth: &ClientAuth,
    refresh_token: &SecretString,
) -> Result<TokenSet, OAuthError> {
    let form = vec![
        ("grant_type".to_string(), "refresh_token".to_string()),
        ("refresh_token".into(), refresh_token.expose().to_string()),
    ];
    token_request(http, token_url, auth, form).await
}

pub async fn client_credentials(
    http: &Http,
    token_url: &str,
    auth: &ClientAuth,
    scopes: &[String],
    sep: &str,
) -> Result<TokenSet, OAuthError> {
    let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
    if !scopes.is_empty() {
        form.push(("scope".into(), scopes.join(sep)));
    }
    token_request(http, token_url, auth, form).await
}

/// The token request a client-credential check sends.
#[derive(Debug, Clone, Copy)]
pub enum CheckGrant<'a> {
    /// The client uses the client-credentials grant: a real token request
    /// (the token is dropped unread).
    ClientCredentials { scopes: &'a [String], sep: &'a str },
    /// Any other client: an authorization code that does not exist. The
    /// token endpoint authenticates the client before it looks at the code
    /// (RFC 6749 §5.2), so `invalid_grant` means the credentials worked and
    /// nothing was issued.
    UnknownCode { redirect_uri: &'a str },
}

/// What the token endpoint made of the client's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuthCheck {
    Accepted,
    /// `invalid_client` or HTTP 401, with the provider's description.
    Rejected(String),
}

/// Ask the token endpoint whether it accepts `auth` (for a new client
/// secret or key, before rekey switches to it). A token, or `invalid_client`
/// / HTTP 401, is a clear answer. A grant-level refusal (`invalid_grant`
/// for the unknown code, `unauthorized_client`…) proves the credential only
/// if the same request with `control` (a credential nobody registered) is
/// refused as `invalid_client`: RFC 6749 does not make servers check the
/// client before the grant. Anything else is an `Err`: untested.
pub async fn check_client_auth(
    http: &Http,
    token_url: &str,
    auth: &ClientAuth,
    control: &ClientAuth,
    grant: CheckGrant<'_>,
) -> Result<ClientAuthCheck, OAuthError> {
    let form = || match grant {
        CheckGrant::ClientCredentials { scopes, sep } => {
            let mut f = vec![("grant_type".to_string(), "client_credentials".to_string())];
            if !scopes.is_empty() {
                f.push(("scope".into(), scopes.join(sep)));
            }
            f
        }
        CheckGrant::UnknownCode { redirect_uri } => vec![
            ("grant_type".to_string(), "authorization_code".to_string()),
            (
                "code".into(),
                format!("rekey-client-check-{}", crate::pkce::random_token()),
            ),
            ("redirect_uri".into(), redirect_uri.to_string()),
            ("code_verifier".into(), crate::pkce::random_token()),
        ],
    };
    let refused = |status: u16, error: &str| error == "invalid_client" || status == 401;
    let grant_level = |error: &str| {
        matches!(
            error,
            "invalid_grant" | "unauthorized_client" | "unsupported_grant_type" | "invalid_scope"
        )
    };
    match token_request(http, token_url, auth, form()).await {
        Ok(_) => Ok(ClientAuthCheck::Accepted),
        Err(OAuthError::Provider {
            status,
            error,
            description,
        }) if refused(status, &error) => Ok(ClientAuthCheck::Rejected(description.unwrap_or(error))),
        Err(OAuthError::Provider { status, error, .. }) if grant_level(&error) => match token_request(http, token_url, control, form()).await {
            Err(OAuthError::Provider {
                status: s, error: e, ..
            }) if refused(s, &e) => Ok(ClientAuthCheck::Accepted),
            _ => Err(OAuthError::Provider {
                status,
                error,
                description: Some(
                    "the token endpoint answers a wrong client credential the same way, so this answer does not prove the new one".into(),
                ),
            }),
        },
        Err(e) => Err(e),
    }
}

/// How a provider's revocation endpoint takes the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevokeStyle {
    /// RFC 7009: form `token` + `token_type_hint`, with client authentication.
    #[default]
    Rfc7009,
    /// `POST …?token=…` and nothing else (Zoho's
    /// `/oauth/v2/token/revoke`, ServiceNow's `/oauth_revoke_token.do`, as
    /// their docs show it).
    TokenQuery,
    /// The token itself as `Authorization: Bearer` (Slack `auth.revoke`).
    Bearer,
}

/// RFC 7009 revocation. A 200 means the token is gone (or was already).
pub async fn revoke(
    http: &Http,
    revocation_url: &str,
    auth: &ClientAuth,
    token: &SecretString,
    hint: &str,
) -> Result<(), OAuthError> {
    revoke_with(
        http,
        revocation_url,
        auth,
        token,
        hint,
        RevokeStyle::Rfc7009,
    )
    .await
}

/// Revoke in the provider's style.
pub async fn revoke_with(
    http: &Http,
    revocation_url: &str,
    auth: &ClientAuth,
    token: &SecretString,
    hint: &str,
    style: RevokeStyle,
) -> Result<(), OAuthError> {
    let req = match style {
        RevokeStyle::Rfc7009 => {
            let mut form = vec![
                ("token".to_string(), token.expose().to_string()),
                ("token_type_hint".into(), hint.to_string()),
            ];
            auth.apply(http.inner().post(revocation_url), &mut form, revocation_url)?
                .form(&form)
        }
        RevokeStyle::TokenQuery => http
            .inner()
            .post(revocation_url)
            .query(&[("token", token.expose())]),
        RevokeStyle::Bearer => return revoke_bearer(http, revocation_url, token).await,
    };
    revoke_answer(http.send(req).await?)
}

/// Revoke a token that authenticates itself (Slack's `auth.revoke`): no
/// client credentials, the token as the bearer. Static API tokens use this.
pub async fn revoke_bearer(
    http: &Http,
    revocation_url: &str,
    token: &SecretString,
) -> Result<(), OAuthError> {
    let req = http
        .inner()
        .post(revocation_url)
        .bearer_auth(token.expose());
    revoke_answer(http.send(req).await?)
}

fn revoke_answer(r: Response) -> Result<(), OAuthError> {
    if r.status == 200 || r.status == 204 {
        // Slack's auth.revoke answers 200 {"ok": false, …} on failure.
        if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
            if v.get("ok") == Some(&Value::Bool(false)) {
                return Err(status_error(&Response {
                    status: 400,
                    retry_after: None,
                    body: r.body,
                }));
            }
        }
        return Ok(());
    }
    Err(status_error(&r))
}

/// GET the identity endpoint with the access token; returns its JSON.
pub async fn fetch_identity(
    http: &Http,
    url: &str,
    access_token: &SecretString,
) -> Result<Value, OAuthError> {
    let r = http
        .send(
            http.inner()
                .get(url)
                .bearer_auth(access_token.expose())
                .header(reqwest::header::ACCEPT, "application/json"),
        )
        .await?;
    if r.status != 200 {
        return Err(status_error(&r));
    }
    let v: Value = serde_json::from_slice(&r.body)
        .map_err(|_| OAuthError::Malformed("identity response is not JSON".into()))?;
    if v.get("ok") == Some(&Value::Bool(false)) {
        return Err(status_error(&Response {
            status: 401,
            retry_after: None,
            body: r.body,
        }));
    }
    Ok(v)
}

/// Granted scopes: the response's `scope` (or a provider-specific path), split on `sep`.
pub fn granted_scopes(t: &TokenSet, path: Option<&str>, sep: &str) -> Option<Vec<String>> {
    let raw = match path {
        Some(p) => json_path(&t.extra, p)
            .and_then(Value::as_str)
            .map(str::to_string),
        None => t.scope.clone(),
    }?;
    let mut v: Vec<String> = raw
        .split(|c: char| sep.contains(c) || c == ' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn discovery_issuer_mismatch_does_not_echo_control_characters() {
        // Found by the token_response fuzz target: the provider's `issuer`
        // went verbatim into the error text (and from there into logs,
        // `last_error` and pages).
        let body = format!(
            r#"{{"issuer": "https:/\u007fissuer.example\r\nforged: line{}"}}"#,
            "x".repeat(10_000)
        );
        let Err(OAuthError::Malformed(m)) =
            parse_discovery(body.as_bytes(), "https://issuer.example")
        else {
            panic!("a mismatching issuer is refused");
        };
        assert!(!m.chars().any(char::is_control), "{m:?}");
        assert!(m.len() < 400, "{}", m.len());
        assert!(m.contains("https:/issuer.exampleforged: line"), "{m}");
    }

    #[test]
    fn denial_message_keeps_the_code_and_a_clean_description() {
        assert_eq!(
            denial_message("access_denied", None),
            "the provider answered `access_denied`"
        );
        let m = denial_message(
            "bad`code<script>\n",
            Some("token xoxb-1234567890-abcdefghij revoked\r\nX-Injected: 1"),
        );
        assert!(
            m.starts_with("the provider answered `badcodescript`: "),
            "{m}"
        );
        assert!(!m.contains("xoxb-1234567890"), "{m}");
        assert!(!m.chars().any(char::is_control), "{m}");
        let long = denial_message(&"e".repeat(500), Some(&"d".repeat(5000)));
        assert!(long.chars().count() <= 29 + 64 + 2 + 300, "{}", long.len());
    }

    #[test]
    fn parses_standard_response_and_scrubs_extra() {
        let t = parse_token_response(resp(200, r#"{"access_token":"at","token_type":"Bearer","expires_in":"3600","refresh_token":"rt","scope":"a b","authed_user":{"id":"U1","access_token":"xoxp"}}"#)).unwrap();
        assert_eq!(t.access_token.expose(), "at");
        assert_eq!(t.expires_in, Some(3600));
        assert_eq!(t.extra["authed_user"]["id"], "U1");
        assert!(!t.extra.to_string().contains("xoxp") && !t.extra.to_string().contains("\"rt\""));
        assert_eq!(granted_scopes(&t, None, " ").unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn rejects_incomplete_or_odd_responses() {
        for body in [
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":"at"}"#,
            r#"{"access_token":5,"token_type":"Bearer"}"#,
            r#"[1,2]"#,
            "<html>",
        ] {
            let e = parse_token_response(resp(200, body)).unwrap_err();
            assert!(matches!(e, OAuthError::Malformed(_)), "{body}: {e:?}");
        }
    }

    #[test]
    fn classifies_errors() {
        let e = parse_token_response(resp(
            400,
            r#"{"error":"invalid_grant","error_description":"grant revoked"}"#,
        ))
        .unwrap_err();
        assert_eq!(e.severity(), crate::Severity::Auth);
        let e = parse_token_response(resp(200, r#"{"ok":false,"error":"invalid_refresh_token"}"#))
            .unwrap_err();
        assert_eq!(e.severity(), crate::Severity::Auth);
        let e = parse_token_response(resp(503, "busy")).unwrap_err();
        assert_eq!(e.severity(), crate::Severity::Transient);
        let e = parse_token_response(resp(429, "{}")).unwrap_err();
        assert_eq!(e.severity(), crate::Severity::Transient);
        let e = parse_token_response(resp(401, "nope")).unwrap_err();
        assert_eq!(e.severity(), crate::Severity::Auth);
    }

    #[test]
    fn authorize_url_always_has_pkce_and_state() {
        let u = authorize_url(&AuthorizeRequest {
            authorize_url: "https://idp.example/authorize?tenant=x",
            client_id: "c",
            redirect_uri: "https://rekey.example/oauth/callback",
            scopes: &["read".into(), "write".into()],
            scope_separator: ",",
            state: "st",
            nonce: Some("n"),
            code_challenge: "ch",
            extra: &[("prompt".into(), "consent".into())],
        })
        .unwrap();
        for part in [
            "tenant=x",
            "code_challenge=ch",
            "code_challenge_method=S256",
            "state=st",
            "nonce=n",
            "scope=read%2Cwrite",
            "prompt=consent",
            "redirect_uri=https%3A%2F%2Frekey.example%2Foauth%2Fcallback",
        ] {
            assert!(u.contains(part), "{u} lacks {part}");
        }
    }
}
