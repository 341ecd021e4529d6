//! The outbound HTTP client: timeouts, no redirects, capped response
//! bodies, and the outbound policy on every address it connects to.

use crate::outbound::{Outbound, PolicyResolver, Refused};
use crate::OAuthError;
use futures_util::StreamExt;
use rekey_core::outbound::OutboundPolicy;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest::Client,
    max_body: usize,
    outbound: Arc<Outbound>,
}

pub struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl Http {
    /// A client under the default outbound policy.
    pub fn new(timeout: Duration) -> Result<Http, OAuthError> {
        Http::with_outbound(timeout, Outbound::new(OutboundPolicy::default()))
    }

    /// A client whose connections pass `outbound` (shared, so the policy
    /// can be set once for every client of a service).
    pub fn with_outbound(timeout: Duration, outbound: Arc<Outbound>) -> Result<Http, OAuthError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // Token and revocation endpoints must not redirect; following one
            // could send credentials elsewhere, and to an unchecked address.
            .redirect(reqwest::redirect::Policy::none())
            // Every name is resolved and checked by the outbound policy.
            .dns_resolver(Arc::new(PolicyResolver(outbound.clone())))
            // Connect directly: through a proxy, the proxy would resolve
            // the target and the policy could not see where it goes.
            .no_proxy()
            .user_agent(concat!("rekey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::Config(format!("HTTP client: {e}")))?;
        Ok(Http {
            client,
            max_body: 64 * 1024,
            outbound,
        })
    }

    /// The policy this client enforces.
    pub fn outbound(&self) -> &Arc<Outbound> {
        &self.outbound
    }

    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send a request through the policy. reqwest does not resolve
    /// IP-literal hosts, so those are checked here; names are checked by
    /// the resolver after DNS. Every outbound request goes through here.
    pub async fn execute(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OAuthError> {
        let req = req.build().map_err(|e| OAuthError::Network(describe(&e)))?;
        let literal = match req.url().host() {
            Some(url::Host::Ipv4(a)) => Some(std::net::IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(std::net::IpAddr::V6(a)),
            _ => None,
        };
        if let Some(ip) = literal {
            self.outbound
                .check(&ip.to_string(), ip)
                .map_err(|r| OAuthError::Refused(r.to_string()))?;
        }
        self.client.execute(req).await.map_err(|e| map_error(&e))
    }

    /// Send and read at most `max_body` bytes.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<Response, OAuthError> {
        let resp = self.execute(req).await?;
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

/// A refusal by the resolver is its own error; anything else is a network error.
fn map_error(e: &reqwest::Error) -> OAuthError {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return OAuthError::Refused(r.to_string());
        }
        source = s.source();
    }
    OAuthError::Network(describe(e))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server answering every request with `answer`; counts connections.
    async fn serve(answer: String) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (addr, hits)
    }

    fn ok_answer() -> String {
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".into()
    }

    #[tokio::test]
    async fn redirects_are_never_followed() {
        let (target, target_hits) = serve(ok_answer()).await;
        let (from, _) = serve(format!(
            "HTTP/1.1 302 Found\r\nlocation: http://{target}/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ))
        .await;
        let http = Http::new(Duration::from_secs(5)).unwrap();
        let r = http
            .send(http.inner().get(format!("http://{from}/")))
            .await
            .unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(target_hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn refused_addresses_are_never_contacted() {
        let http = Http::new(Duration::from_secs(5)).unwrap();
        // IP literals (reqwest skips the resolver for them), in every spelling.
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "https://10.0.0.5/",
            "http://0.0.0.0:9/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fd00:ec2::254]/",
            "http://0xa9fea9fe/",
        ] {
            let e = http.send(http.inner().get(url)).await.err().unwrap();
            assert!(matches!(e, OAuthError::Refused(_)), "{url}: {e:?}");
            assert_eq!(e.code(), "outbound_refused");
            assert!(!e.to_string().contains("meta-data"), "{e}");
        }
        // A name that resolves to a refused address: refused after DNS.
        let (addr, hits) = serve(ok_answer()).await;
        http.outbound()
            .set_static_host("metadata.test", &["169.254.169.254".parse().unwrap()]);
        let e = http
            .send(
                http.inner()
                    .get(format!("http://metadata.test:{}/", addr.port())),
            )
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&e, OAuthError::Refused(m) if m.contains("metadata.test resolves to 169.254.169.254")),
            "{e:?}"
        );
        // A name that resolves to loopback works, and an allowed name too.
        http.outbound()
            .set_static_host("loop.test", &["127.0.0.1".parse().unwrap()]);
        let r = http
            .send(
                http.inner()
                    .get(format!("http://loop.test:{}/", addr.port())),
            )
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        // 0.0.0.0 reaches this host on Linux: refused, unless allowed by name or range.
        http.outbound()
            .set_static_host("zero.test", &["0.0.0.0".parse().unwrap()]);
        let zero = format!("http://zero.test:{}/", addr.port());
        let e = http.send(http.inner().get(&zero)).await.err().unwrap();
        assert!(matches!(e, OAuthError::Refused(_)), "{e:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        for allow in ["zero.test", "0.0.0.0/8"] {
            http.outbound()
                .set_policy(OutboundPolicy::parse(allow).unwrap());
            let r = http.send(http.inner().get(&zero)).await.unwrap();
            assert_eq!(r.status, 200, "{allow}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }
}
