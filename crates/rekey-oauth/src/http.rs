//! The outbound HTTP client: timeouts, no redirects, capped response bodies.

use crate::OAuthError;
use futures_util::StreamExt;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest::Client,
    max_body: usize,
}

pub struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl Http {
    pub fn new(timeout: Duration) -> Result<Http, OAuthError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // Token and revocation endpoints must not redirect; following one
            // could send credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rekey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::Config(format!("HTTP client: {e}")))?;
        Ok(Http {
            client,
            max_body: 64 * 1024,
        })
    }

    /// A client with reqwest's defaults (used only if `new` cannot build one).
    pub fn fallback() -> Http {
        Http {
            client: reqwest::Client::new(),
            max_body: 64 * 1024,
        }
    }

    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send and read at most `max_body` bytes.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<Response, OAuthError> {
        let resp = req
            .send()
            .await
            .map_err(|e| OAuthError::Network(describe(&e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if resp
            .content_length()
            .is_some_and(|n| n as usize > self.max_body)
        {
            return Err(OAuthError::Malformed(format!(
                "response larger than {} bytes",
                self.max_body
            )));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| OAuthError::Network(describe(&e)))?;
            if body.len() + chunk.len() > self.max_body {
                return Err(OAuthError::Malformed(format!(
                    "response larger than {} bytes",
                    self.max_body
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            retry_after,
            body,
        })
    }
}

/// reqwest errors can include the URL; ours never carry secrets in URLs,
/// but keep the message short and without query strings anyway.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match e.url() {
        Some(u) => format!(
            "{kind}: {}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        None => kind.to_string(),
    }
}
