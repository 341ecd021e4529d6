//! The oidc-provider fixture works end to end, without any rekey code:
//! authorization code + PKCE through the dev login/consent pages, token
//! exchange, refresh rotation and reuse detection, revocation,
//! client_credentials, PKCE enforcement, denial, request counting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rekey_testkit::oidc::{authorize_as, OidcProvider};
use reqwest::Url;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";
const CLIENT: &str = "basic-client";
const SECRET: &str = "basic-secret-0123456789";

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn query(u: &str) -> Vec<(String, String)> {
    Url::parse(u)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(q: &[(String, String)], k: &str) -> Option<String> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

fn jwt_payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn jwt_header(jwt: &str) -> Value {
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

struct Flow {
    url: String,
    state: String,
    nonce: String,
    verifier: String,
}

fn auth_url(auth_endpoint: &str, scope: &str, tag: &str, extra: &[(&str, &str)]) -> Flow {
    let state = format!("state-{tag}-0123456789");
    let nonce = format!("nonce-{tag}-0123456789");
    let verifier = format!("verifier-{tag}-{}", "x".repeat(43));
    let mut u = Url::parse(auth_endpoint).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &s256(&verifier))
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(extra);
    Flow {
        url: u.to_string(),
        state,
        nonce,
        verifier,
    }
}

/// Send `req` and read the answer as JSON.
async fn json_of(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// The form of an authorization-code grant (PKCE).
fn code_grant<'a>(code: &'a str, verifier: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ]
}

/// The form of a refresh-token grant.
fn refresh_grant(refresh_token: &str) -> [(&str, &str); 2] {
    [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ]
}

/// A token endpoint's `400 invalid_grant`; `why` prefixes the message.
fn assert_invalid_grant(st: reqwest::StatusCode, err: &Value, why: &str) {
    assert_eq!(
        (st.as_u16(), err["error"].as_str()),
        (400, Some("invalid_grant")),
        "{why}{err}"
    );
}

async fn post_form(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> (reqwest::StatusCode, Value) {
    let r = http
        .post(url)
        .basic_auth(CLIENT, Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
    };
    (status, body)
}

/// Authorize as `login` and exchange the code; returns the token response.
async fn authorize_and_exchange(
    op: &OidcProvider,
    d: &Value,
    http: &reqwest::Client,
    tag: &str,
    login: &str,
) -> Value {
    let flow = auth_url(
        d["authorization_endpoint"].as_str().unwrap(),
        "openid email read offline_access",
        tag,
        &[("prompt", "consent")],
    );
    let cb = authorize_as(&flow.url, login, true).await;
    let q = query(&cb);
    assert_eq!(param(&q, "state").as_deref(), Some(flow.state.as_str()));
    let code = param(&q, "code").unwrap_or_else(|| panic!("no code: {cb}"));
    let (st, tok) = post_form(
        http,
        d["token_endpoint"].as_str().unwrap(),
        &code_grant(&code, &flow.verifier),
    )
    .await;
    assert_eq!(st, 200, "{tok}");
    assert_eq!(
        jwt_payload(tok["id_token"].as_str().unwrap())["iss"],
        op.issuer
    );
    // With prompt=consent, offline_access is kept.
    let scope: Vec<&str> = tok["scope"].as_str().unwrap().split(' ').collect();
    assert!(scope.contains(&"offline_access"), "{tok}");
    tok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_fixture_end_to_end() {
    let op = OidcProvider::start(json!([{
        "client_id": CLIENT,
        "client_secret": SECRET,
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
    }]))
    .await;
    assert!(op.issuer.starts_with("http://127.0.0.1:"), "{}", op.issuer);
    let http = reqwest::Client::new();
    let d = op.discovery().await;
    assert_eq!(d["issuer"], op.issuer);
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    for s in [
        "openid",
        "email",
        "profile",
        "offline_access",
        "read",
        "write",
        "admin",
    ] {
        assert!(
            d["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(s)),
            "{s}: {d}"
        );
    }
    let token_ep = d["token_endpoint"].as_str().unwrap().to_string();
    let revoke_ep = d["revocation_endpoint"].as_str().unwrap().to_string();
    let auth_ep = d["authorization_endpoint"].as_str().unwrap().to_string();
    op.reset_stats().await;

    // Authorization code with PKCE through login + consent.
    let flow = auth_url(&auth_ep, "openid email read offline_access", "a", &[]);
    let cb = authorize_as(&flow.url, "alice", true).await;
    assert!(cb.starts_with(&format!("{REDIRECT}?")), "{cb}");
    let q = query(&cb);
    let code = param(&q, "code").unwrap_or_else(|| panic!("no code: {cb}"));
    assert_eq!(param(&q, "state").as_deref(), Some(flow.state.as_str()));
    assert_eq!(param(&q, "iss").as_deref(), Some(op.issuer.as_str()));

    // Exchange: access, refresh and ID tokens.
    let (st, tok) = post_form(&http, &token_ep, &code_grant(&code, &flow.verifier)).await;
    assert_eq!(st, 200, "{tok}");
    assert_eq!(tok["token_type"], "Bearer", "{tok}");
    assert_eq!(tok["expires_in"], 5, "{tok}");
    let scope: Vec<&str> = tok["scope"].as_str().unwrap().split(' ').collect();
    for s in ["openid", "email", "read"] {
        assert!(scope.contains(&s), "{s} not granted: {tok}");
    }
    // OIDC Core: offline_access is dropped unless prompt=consent; the
    // fixture issues a refresh token anyway.
    assert!(!scope.contains(&"offline_access"), "{tok}");
    let at = tok["access_token"].as_str().unwrap().to_string();
    let rt1 = tok["refresh_token"].as_str().unwrap().to_string();
    let id_token = tok["id_token"].as_str().unwrap();
    assert_eq!(jwt_header(id_token)["alg"], "RS256");
    let claims = jwt_payload(id_token);
    assert_eq!(claims["iss"], op.issuer);
    assert_eq!(claims["aud"], CLIENT);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["nonce"], flow.nonce.as_str());
    let jwks = json_of(http.get(d["jwks_uri"].as_str().unwrap())).await;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == jwt_header(id_token)["kid"]),
        "{jwks}"
    );

    // Userinfo with the access token.
    let ui = json_of(
        http.get(d["userinfo_endpoint"].as_str().unwrap())
            .bearer_auth(&at),
    )
    .await;
    assert_eq!(ui["sub"], "alice", "{ui}");
    assert_eq!(ui["email"], "alice@example.com", "{ui}");

    // Refresh rotates the refresh token.
    let (st, tok2) = post_form(&http, &token_ep, &refresh_grant(&rt1)).await;
    assert_eq!(st, 200, "{tok2}");
    let rt2 = tok2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt2, rt1);
    assert_ne!(tok2["access_token"].as_str().unwrap(), at);
    assert_eq!(
        jwt_payload(tok2["id_token"].as_str().unwrap())["sub"],
        "alice"
    );
    // Reusing the rotated one fails (and revokes the whole grant).
    let (st, err) = post_form(&http, &token_ep, &refresh_grant(&rt1)).await;
    assert_invalid_grant(st, &err, "");
    let (st, err) = post_form(&http, &token_ep, &refresh_grant(&rt2)).await;
    assert_invalid_grant(st, &err, "reuse detection revokes the grant: ");

    // Revocation (RFC 7009) of a fresh grant's refresh token.
    let tok = authorize_and_exchange(&op, &d, &http, "b", "bob").await;
    let rt = tok["refresh_token"].as_str().unwrap();
    let (st, body) = post_form(
        &http,
        &revoke_ep,
        &[("token", rt), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, err) = post_form(&http, &token_ep, &refresh_grant(rt)).await;
    assert_invalid_grant(st, &err, "");

    // The code is single-use, and replaying it revokes what it produced.
    let flow = auth_url(&auth_ep, "openid email", "r", &[]);
    let code = param(&query(&authorize_as(&flow.url, "erin", true).await), "code").unwrap();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", flow.verifier.as_str()),
    ];
    let (st, tok) = post_form(&http, &token_ep, &exchange).await;
    assert_eq!(st, 200, "{tok}");
    let (st, err) = post_form(&http, &token_ep, &exchange).await;
    assert_invalid_grant(st, &err, "");
    let (st, err) = post_form(
        &http,
        &token_ep,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tok["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_invalid_grant(st, &err, "code replay revokes the grant: ");

    // Client credentials.
    let (st, cc) = post_form(
        &http,
        &token_ep,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "read write"),
        ],
    )
    .await;
    assert_eq!(st, 200, "{cc}");
    assert_eq!(cc["token_type"], "Bearer");
    assert_eq!(cc["expires_in"], 5);
    assert_eq!(cc["scope"], "read write");
    assert!(cc["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(cc.get("refresh_token").is_none(), "{cc}");

    // PKCE is enforced: no verifier, wrong verifier.
    for verifier in [
        None,
        Some("wrong-verifier-0123456789012345678901234567890123"),
    ] {
        let flow = auth_url(&auth_ep, "openid email", "p", &[]);
        let cb = authorize_as(&flow.url, "carol", true).await;
        let code = param(&query(&cb), "code").unwrap();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        let (st, err) = post_form(&http, &token_ep, &form).await;
        assert_invalid_grant(st, &err, "");
    }
    // ... and the authorization request itself needs a code_challenge.
    let mut no_pkce = Url::parse(&auth_ep).unwrap();
    no_pkce
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid")
        .append_pair("state", "s-no-pkce")
        .append_pair("nonce", "n-no-pkce");
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(no_pkce)
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        param(&query(&loc), "error").as_deref(),
        Some("invalid_request"),
        "{loc}"
    );

    // Denying consent.
    let flow = auth_url(&auth_ep, "openid email read", "d", &[]);
    let cb = authorize_as(&flow.url, "dave", false).await;
    let q = query(&cb);
    assert!(cb.starts_with(&format!("{REDIRECT}?")), "{cb}");
    assert_eq!(param(&q, "error").as_deref(), Some("access_denied"), "{cb}");
    assert_eq!(param(&q, "state").as_deref(), Some(flow.state.as_str()));
    assert_eq!(param(&q, "iss").as_deref(), Some(op.issuer.as_str()));
    assert!(param(&q, "code").is_none());

    // Every POST to /token and /token/revocation was counted.
    // token: alice exchange, refresh, reuse, rt2 (4); bob exchange, refresh
    // after revoke (2); erin exchange, replay, refresh (3);
    // client_credentials (1); 2 PKCE failures (2) = 12.
    assert_eq!(op.stats().await, (12, 1));
    op.reset_stats().await;
    assert_eq!(op.stats().await, (0, 0));

    // Fault injection: next token request answers 503, then back to normal.
    op.set_faults(json!({"token_status": 503, "token_count": 1}))
        .await;
    let (st, err) = post_form(&http, &token_ep, &[("grant_type", "client_credentials")]).await;
    assert_eq!(st, 503, "{err}");
    assert_eq!(err["error"], "temporarily_unavailable");
    let (st, cc) = post_form(&http, &token_ep, &[("grant_type", "client_credentials")]).await;
    assert_eq!(st, 200, "{cc}");
    assert_eq!(op.stats().await, (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_client_auth_methods_and_ttl() {
    // client_secret_post, and a TTL override; each test gets its own process.
    let op = OidcProvider::start_with_env(
        json!([{
            "client_id": "post-client",
            "client_secret": "post-secret-0123456789",
            "grant_types": ["client_credentials"],
            "redirect_uris": [],
            "response_types": [],
            "token_endpoint_auth_method": "client_secret_post",
        }]),
        &[("ACCESS_TOKEN_TTL", "2")],
    )
    .await;
    let d = op.discovery().await;
    let token_ep = d["token_endpoint"].as_str().unwrap();
    let http = reqwest::Client::new();
    let r = json_of(http.post(token_ep).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "post-client"),
        ("client_secret", "post-secret-0123456789"),
    ]))
    .await;
    assert_eq!(r["expires_in"], 2, "{r}");
    // Basic auth is refused for a client_secret_post client.
    let r = http
        .post(token_ep)
        .basic_auth("post-client", Some("post-secret-0123456789"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_client", "{e}");
}
