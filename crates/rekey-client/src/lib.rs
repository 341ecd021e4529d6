//! Typed client for the rekey REST API (`/api/v1`).
//!
//! [`Client`] holds a base URL and an API key and has one method per API
//! operation, taking and returning the wire types of [`rekey_api`]; every
//! failure is a [`ClientError`] carrying the API's error `code`, `message`
//! and HTTP status, or the transport error. The CLI and the integration
//! tests use it, so request shapes (paths, query strings, `If-Match`,
//! bodies) are written once, here.
//!
//! Secrets: the API key is a [`SecretString`] and `Client`'s `Debug` shows
//! `[redacted]`; the types that carry secrets ([`rekey_api::CredentialsView`],
//! [`rekey_api::CreatedApiKey`], [`rekey_api::CreatedWebhook`],
//! [`rekey_api::ConnectSessionView`], [`rekey_api::CreateConnection`],
//! [`rekey_api::UpdateCredentials`], the integration bodies) redact their
//! `Debug`, and no error carries a request or response body.
//!
//! Operations, by area: [`connections`](Client::list_connections),
//! integrations and connect sessions, webhooks and deliveries, API keys,
//! audit, the provider catalog and the system endpoints.

mod campaigns;
mod connections;
mod error;
mod integrations;
mod rotations;
mod system;
mod webhooks;

pub use error::{ClientError, DecodeError};
pub use rekey_api as api;
pub use rekey_core::SecretString;
pub use system::ProviderFilter;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// The result of a call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A client of one rekey server, authenticated with one API key. Cheap to
/// clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// No query string.
const NO_QUERY: &[(&str, &str)] = &[];

/// The body of a POST that takes none: `{}`.
#[derive(Serialize)]
struct Empty {}

/// Percent-encode one path segment (ids come from users and other servers).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Client {
    /// Timeout of each request made by [`Client::new`]'s HTTP client.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:8080`;
    /// a trailing `/` is ignored) using the API key `token` (`rk_…`).
    pub fn new(base_url: &str, token: impl Into<SecretString>) -> Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(Self::DEFAULT_TIMEOUT)
            .build()
            .map_err(ClientError::Transport)?;
        Ok(Self::with_http_client(http, base_url, token))
    }

    /// Like [`Client::new`], with an HTTP client of the caller's (timeouts,
    /// proxies, TLS roots).
    pub fn with_http_client(
        http: reqwest::Client,
        base_url: &str,
        token: impl Into<SecretString>,
    ) -> Client {
        Client {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            token: token.into(),
        }
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The same server with another API key.
    pub fn with_token(&self, token: impl Into<SecretString>) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.into(),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        // bearer_auth marks the header sensitive, so reqwest never logs it.
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose())
    }

    /// Send and read the answer: `None` for 204, the decoded body for other
    /// successes, the API's error otherwise.
    async fn execute<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<Option<T>> {
        let resp = req.send().await.map_err(|source| ClientError::Connect {
            base: self.base.clone(),
            source,
        })?;
        let status = resp.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = resp.bytes().await.map_err(ClientError::Transport)?;
        if !status.is_success() {
            return Err(ClientError::from_response(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Decode(DecodeError::from(&e)))
    }

    /// Send and expect a body back.
    async fn expect<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        self.execute(req).await?.ok_or(ClientError::EmptyResponse)
    }

    async fn get<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T> {
        self.expect(self.request(Method::GET, path).query(query))
            .await
    }

    /// POST `body` (`{}` when `None`) and expect a body back.
    async fn post<T: DeserializeOwned, Q: Serialize + ?Sized, B: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &Q,
        body: Option<&B>,
        if_match: Option<i64>,
    ) -> Result<T> {
        let req = self.request(Method::POST, path).query(query);
        let req = match body {
            Some(b) => req.json(b),
            None => req.json(&Empty {}),
        };
        self.expect(with_if_match(req, if_match)).await
    }

    /// POST `body` (no query, no `If-Match`) and expect a body back.
    async fn post_json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.write(Method::POST, path, body, None).await
    }

    /// PATCH or PUT `body` with an optional `If-Match`.
    async fn write<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        if_match: Option<i64>,
    ) -> Result<T> {
        let req = self.request(method, path).json(body);
        self.expect(with_if_match(req, if_match)).await
    }

    /// DELETE; any success counts (the API answers 204).
    async fn delete<Q: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &Q,
        if_match: Option<i64>,
    ) -> Result<()> {
        let req = self.request(Method::DELETE, path).query(query);
        self.execute::<serde::de::IgnoredAny>(with_if_match(req, if_match))
            .await?;
        Ok(())
    }
}

/// `If-Match: "N"`, the version from an ETag (or a view's `version`).
fn with_if_match(req: RequestBuilder, version: Option<i64>) -> RequestBuilder {
    match version {
        Some(v) => req.header(reqwest::header::IF_MATCH, format!("\"{v}\"")),
        None => req,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("con_01ab-X.~"), "con_01ab-X.~");
        assert_eq!(seg("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(seg("é"), "%C3%A9");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = Client::new("http://127.0.0.1:1/", "rk_debug-canary").unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("canary"), "{text}");
        assert!(text.contains("[redacted]") && text.contains("http://127.0.0.1:1\""));
        assert_eq!(c.base_url(), "http://127.0.0.1:1");
    }
}
