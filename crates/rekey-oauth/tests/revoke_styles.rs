//! The three revocation styles send exactly the request each provider
//! documents, checked byte by byte at a loopback server that records it:
//!
//! - RFC 7009 (Salesforce, Google, Okta…): `POST` form `token` +
//!   `token_type_hint`, the client authenticated (here Basic).
//! - Token in the query (Zoho: `POST {accounts}/oauth/v2/token/revoke?token=…`;
//!   ServiceNow: `POST /oauth_revoke_token.do?token=…`): nothing else — no
//!   body, no client credentials.
//! - Bearer (Slack `auth.revoke`): the token to revoke as
//!   `Authorization: Bearer`, no body; Slack answers HTTP 200 with
//!   `{"ok": false, "error": …}` when it refuses, which must count as failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_core::SecretString;
use rekey_oauth::{revoke_with, ClientAuth, ClientAuthMethod, Http, OAuthError, RevokeStyle};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as it arrived.
#[derive(Debug, Default, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Answer every request with `status` and JSON `body`; record what came.
async fn provider(status: u16, body: &'static str) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then as much body as content-length says.
                let req = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break (head.to_string(), body.to_string());
                        }
                    }
                };
                let mut lines = req.0.lines();
                let mut first = lines.next().unwrap().split(' ');
                let seen = Seen {
                    method: first.next().unwrap().to_string(),
                    target: first.next().unwrap().to_string(),
                    headers: lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                        .collect(),
                    body: req.1,
                };
                log.lock().unwrap().push(seen);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn http() -> Http {
    Http::new(Duration::from_secs(5)).unwrap()
}

fn client() -> ClientAuth {
    ClientAuth {
        client_id: "app-1".into(),
        method: ClientAuthMethod::ClientSecretBasic,
        secret: SecretString::from("app-secret".to_string()),
        key_id: None,
    }
}

/// Revoke `token` at `url` in `style` with [`client`]'s credentials.
async fn revoke(
    url: String,
    token: &str,
    hint: &str,
    style: RevokeStyle,
) -> Result<(), OAuthError> {
    let token = SecretString::from(token.to_string());
    revoke_with(&http(), &url, &client(), &token, hint, style).await
}

fn only(seen: &Arc<Mutex<Vec<Seen>>>) -> Seen {
    let s = seen.lock().unwrap();
    assert_eq!(s.len(), 1, "one request: {s:?}");
    s[0].clone()
}

#[tokio::test]
async fn token_query_is_what_zoho_and_servicenow_document() {
    for path in ["/oauth/v2/token/revoke", "/oauth_revoke_token.do"] {
        let (base, seen) = provider(200, r#"{"status":"success"}"#).await;
        revoke(
            format!("{base}{path}"),
            "1000.abc+/=def",
            "refresh_token",
            RevokeStyle::TokenQuery,
        )
        .await
        .unwrap();
        let r = only(&seen);
        assert_eq!(r.method, "POST");
        // The token percent-encoded in the query, nothing else.
        assert_eq!(r.target, format!("{path}?token=1000.abc%2B%2F%3Ddef"));
        assert_eq!(r.body, "", "no body");
        assert!(
            r.header("authorization").is_none(),
            "no client credentials: {r:?}"
        );
        assert!(!format!("{r:?}").contains("app-secret"));
    }
    // A refusal is an error.
    let (base, _) = provider(400, r#"{"error":"invalid_request"}"#).await;
    let e = revoke(
        format!("{base}/oauth_revoke_token.do"),
        "t",
        "refresh_token",
        RevokeStyle::TokenQuery,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, OAuthError::Provider { status: 400, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn bearer_is_what_slack_auth_revoke_documents() {
    let (base, seen) = provider(200, r#"{"ok":true,"revoked":true}"#).await;
    revoke(
        format!("{base}/api/auth.revoke"),
        "xoxb-1-2-abc",
        "access_token",
        RevokeStyle::Bearer,
    )
    .await
    .unwrap();
    let r = only(&seen);
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/api/auth.revoke")
    );
    assert_eq!(r.header("authorization"), Some("Bearer xoxb-1-2-abc"));
    assert_eq!(r.body, "");
    assert!(
        !format!("{r:?}").contains("app-secret"),
        "the app's secret is not sent"
    );

    // Slack refuses with HTTP 200 and ok=false: a failure, not a success.
    let (base, _) = provider(200, r#"{"ok":false,"error":"invalid_auth"}"#).await;
    let e = revoke(
        format!("{base}/api/auth.revoke"),
        "xoxb-1-2-abc",
        "access_token",
        RevokeStyle::Bearer,
    )
    .await
    .unwrap_err();
    assert!(format!("{e}").contains("invalid_auth"), "{e}");
}

#[tokio::test]
async fn rfc7009_sends_the_form_with_client_authentication() {
    let (base, seen) = provider(200, "{}").await;
    revoke(
        format!("{base}/revoke"),
        "rt-1",
        "refresh_token",
        RevokeStyle::Rfc7009,
    )
    .await
    .unwrap();
    let r = only(&seen);
    assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/revoke"));
    assert_eq!(r.body, "token=rt-1&token_type_hint=refresh_token");
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // Basic app-1:app-secret
    assert_eq!(
        r.header("authorization"),
        Some("Basic YXBwLTE6YXBwLXNlY3JldA==")
    );
}
