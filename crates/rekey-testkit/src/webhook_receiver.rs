//! A real HTTP endpoint that receives Standard Webhooks deliveries
//! (<https://www.standardwebhooks.com/>), records every attempt and can be
//! told to fail, so tests can check delivery, retries and signatures
//! end to end. [`verify_signature`] is written from the spec, independently
//! of rekey's signer, so a shared bug cannot make both sides agree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::provider_fixture::{bind_loopback, serve_until, stop_serving};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One request as it arrived. Missing headers are empty strings.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
    /// The status the receiver answered (204, 500 or 400).
    pub answered: u16,
    /// When the request (headers and body) had been read.
    pub at: Instant,
}

#[derive(Default)]
struct Log {
    received: Vec<Received>,
    fail_remaining: usize,
}

/// Locks ignoring poison: a panicking test must not cascade into every
/// later request.
fn lock(m: &Mutex<Log>) -> MutexGuard<'_, Log> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running receiver. Dropping it shuts the server down too (in the
/// background); [`WebhookReceiver::stop`] also waits for that.
pub struct WebhookReceiver {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WebhookReceiver {
    /// Answers 500 to the first `fail_first` requests, then 204.
    pub async fn start(fail_first: usize) -> WebhookReceiver {
        let log = Arc::new(Mutex::new(Log {
            received: Vec::new(),
            fail_remaining: fail_first,
        }));
        let app = Router::new()
            .route("/hooks", post(hook))
            // Record whatever the sender sends, however big.
            .layer(DefaultBodyLimit::disable())
            .with_state(log.clone());
        let listener = bind_loopback();
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, rx) = watch::channel(false);
        let task = serve_until(listener, app, rx);
        WebhookReceiver {
            addr,
            log,
            shutdown,
            task,
        }
    }

    /// `http://127.0.0.1:PORT/hooks`
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Every request, failed ones included, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.log).received.clone()
    }

    /// The requests answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<Received> {
        lock(&self.log)
            .received
            .iter()
            .filter(|r| (200..300).contains(&r.answered))
            .cloned()
            .collect()
    }

    /// Wait (polling every 50 ms) until `pred(&delivered)` holds or `timeout`
    /// passes; returns the delivered list either way.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.delivered();
            if pred(&d) || Instant::now() >= deadline {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Make the next `n` requests fail with 500 (replaces any failures still
    /// pending rather than adding to them).
    pub fn set_fail_next(&self, n: usize) {
        lock(&self.log).fail_remaining = n;
    }

    /// Stops listening (later connections are refused) and waits up to 5 s
    /// for requests in flight.
    pub async fn stop(self) {
        stop_serving(&self.shutdown, self.task).await
    }
}

async fn hook(State(log): State<Arc<Mutex<Log>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    // One lock for deciding and recording keeps `received` in the order the
    // answers were decided, and fail-first exact under concurrency.
    let mut log = lock(&log);
    // A malformed delivery is the sender's bug: 400, and it does not use up
    // one of the planned failures.
    let status = if id.is_empty() || timestamp.is_empty() || signature.is_empty() {
        StatusCode::BAD_REQUEST
    } else if log.fail_remaining > 0 {
        log.fail_remaining -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    log.received.push(Received {
        id,
        timestamp,
        signature,
        body: body.to_vec(),
        answered: status.as_u16(),
        at,
    });
    status
}

/// Verify a delivery with the Standard Webhooks algorithm, written
/// independently of the server: secret is "whsec_" + base64(key); signed
/// content is "{webhook-id}.{webhook-timestamp}.{body}"; expected =
/// base64(HMAC-SHA256(key, content)); the `webhook-signature` header is a
/// space-separated list of "v1,<base64>" entries; true if any v1 entry
/// matches (constant-time compare via hmac's `verify_slice`).
///
/// The timestamp is not checked for freshness (the spec's test vector is
/// from 2021); tests that care compare `timestamp` themselves.
pub fn verify_signature(secret: &str, r: &Received) -> bool {
    let Some(key_b64) = secret.strip_prefix("whsec_") else {
        return false;
    };
    let Ok(key) = STANDARD.decode(key_b64) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(r.id.as_bytes());
    mac.update(b".");
    mac.update(r.timestamp.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    r.signature.split_whitespace().any(|entry| {
        let Some(sig_b64) = entry.strip_prefix("v1,") else {
            return false;
        };
        let Ok(sig) = STANDARD.decode(sig_b64) else {
            return false;
        };
        mac.clone().verify_slice(&sig).is_ok()
    })
}
