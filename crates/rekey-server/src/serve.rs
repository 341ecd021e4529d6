//! The accept loop: HTTP/1.1 connections with header-read (and keep-alive
//! idle) timeouts, a deadline on reading request bodies, a cap on open
//! connections that keeps `/healthz` and `/readyz` answering, and a
//! deadline on graceful shutdown.
//!
//! Why not `axum::serve`: it has no header-read timeout, no connection cap
//! and waits for slow clients forever at shutdown, so a thousand idle or
//! half-sent connections could exhaust file descriptors and take the service
//! down.
//!
//! The cap: when `max_connections` are open and a new one arrives, the
//! oldest *idle* connection (waiting for a request head, which is what a
//! slow or idle attacker holds) is closed to make room. When every open
//! connection is in the middle of a request, the newcomer is served in
//! overflow mode: `/healthz` and `/readyz` answer, everything else gets 503
//! `overloaded`, and the connection closes after one request. Overflow
//! connections are capped too; past that, new connections are closed at
//! once so the kernel's backlog keeps draining.

use crate::error::error_response;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

/// Limits on client connections; see the README's configuration table.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// A client must send a whole request head within this time, also
    /// between requests on a kept-alive connection (the idle timeout).
    pub header_read_timeout: Duration,
    /// A request body must be received whole within this time.
    pub body_timeout: Duration,
    /// Open connections at most (further lowered to fit the process's
    /// open-file limit).
    pub max_connections: usize,
    /// After a shutdown signal, in-flight requests get this long to finish.
    pub shutdown_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Overflow connections (health only) allowed beyond the cap.
const OVERFLOW: usize = 32;
/// File descriptors kept free for the database pool, outbound calls,
/// files and overflow connections.
const FD_RESERVE: u64 = 96;

impl ServeLimits {
    /// The connection cap actually used: `max_connections`, lowered so that
    /// connections alone can never use up the open-file limit.
    pub fn effective_max_connections(&self) -> usize {
        let by_fds = open_file_limit()
            .map(|n| n.saturating_sub(FD_RESERVE + OVERFLOW as u64).max(8) as usize)
            .unwrap_or(usize::MAX);
        self.max_connections.clamp(1, by_fds.max(1))
    }
}

#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and has no other effects.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    (rc == 0 && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// One open connection, as the cap sees it.
struct Slot {
    /// Requests in flight on it (0 = idle, waiting for a request head).
    busy: Arc<AtomicUsize>,
    evict: Arc<Notify>,
}

#[derive(Default)]
struct Registry {
    /// By accept order, so the oldest idle connection is found first.
    open: Mutex<BTreeMap<u64, Slot>>,
    overflow: AtomicUsize,
}

impl Registry {
    fn len(&self) -> usize {
        self.open.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Close the oldest idle connection; false if every one is busy.
    fn evict_idle(&self) -> bool {
        let Ok(mut m) = self.open.lock() else {
            return false;
        };
        let idle = m
            .iter()
            .find(|(_, s)| s.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        match idle.and_then(|id| m.remove(&id)) {
            Some(slot) => {
                slot.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn insert(&self, id: u64, slot: Slot) {
        if let Ok(mut m) = self.open.lock() {
            m.insert(id, slot);
        }
    }

    fn remove(&self, id: u64) {
        if let Ok(mut m) = self.open.lock() {
            m.remove(&id);
        }
    }
}

/// Counts a request as in flight on its connection while alive.
struct BusyGuard(Arc<AtomicUsize>);

impl BusyGuard {
    fn new(busy: &Arc<AtomicUsize>) -> BusyGuard {
        busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(busy.clone())
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The client stream, with hyper's own answers to requests it cannot parse
/// (400, 414, 431: written by hyper with an empty body) replaced by the
/// same response in rekey's JSON error shape. A head written while no
/// request is with the service can only be such an answer.
struct JsonParseErrors {
    inner: tokio::net::TcpStream,
    /// Requests handed to the service whose response head is not written yet.
    dispatched: Arc<AtomicUsize>,
    out: Vec<u8>,
    pos: usize,
}

impl JsonParseErrors {
    fn new(inner: tokio::net::TcpStream, dispatched: Arc<AtomicUsize>) -> Self {
        JsonParseErrors {
            inner,
            dispatched,
            out: Vec::new(),
            pos: 0,
        }
    }

    /// Write out the replacement answer, if one is waiting.
    fn drain(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        use tokio::io::AsyncWrite;
        while self.pos < self.out.len() {
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.out[self.pos..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => self.pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.pos = 0;
        Poll::Ready(Ok(()))
    }
}

/// The JSON twin of hyper's automatic answer with this status line.
fn json_parse_error(status: &[u8]) -> Vec<u8> {
    let (line, code, message) = match status {
        b"414" => (
            "414 URI Too Long",
            "uri_too_long",
            "the request URI is too long",
        ),
        b"431" => (
            "431 Request Header Fields Too Large",
            "headers_too_large",
            "the request has too many or too large header fields",
        ),
        _ => (
            "400 Bad Request",
            "malformed_request",
            "the request is not valid HTTP/1.1",
        ),
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    format!(
        "HTTP/1.1 {line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\ncache-control: no-store\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl tokio::io::AsyncRead for JsonParseErrors {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for JsonParseErrors {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        if let Poll::Ready(Err(e)) = self.drain(cx) {
            return Poll::Ready(Err(e));
        }
        if !self.out.is_empty() {
            return Poll::Pending;
        }
        // A response head: "HTTP/1.1 NNN ". Informational (1xx) heads
        // precede the real one and do not answer the request.
        let head = buf.len() >= 12 && buf.starts_with(b"HTTP/1.1 ") && buf[9] != b'1';
        if head && self.dispatched.load(Ordering::Acquire) == 0 {
            self.out = json_parse_error(&buf[9..12]);
            self.pos = 0;
            if let Poll::Ready(Err(e)) = self.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if head && matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.dispatched.fetch_sub(1, Ordering::AcqRel);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn is_health(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

fn overloaded() -> Response {
    let mut r = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the server is at its connection limit; retry shortly".into(),
    );
    r.headers_mut()
        .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    r
}

/// Serve `app` on `listener` until `shutdown` resolves; then stop
/// accepting, let in-flight requests finish for at most
/// `limits.shutdown_timeout`, and close what is left.
pub async fn serve_with_limits(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = limits.effective_max_connections();
    tracing::info!(
        max_connections = cap,
        header_read_timeout_s = limits.header_read_timeout.as_secs_f64(),
        body_timeout_s = limits.body_timeout.as_secs_f64(),
        "connection limits"
    );
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.body_timeout,
        crate::body_deadline,
    ));
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE/ENFILE and aborted handshakes: back off briefly
                    // instead of spinning; the cap normally prevents EMFILE.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let full = registry.len() >= cap && !registry.evict_idle();
        if full {
            if registry.overflow.load(Ordering::Acquire) >= OVERFLOW {
                drop(stream);
                continue;
            }
            registry.overflow.fetch_add(1, Ordering::AcqRel);
            tasks.spawn(serve_overflow(
                stream,
                addr,
                app.clone(),
                registry.clone(),
                limits.header_read_timeout.min(Duration::from_secs(2)),
            ));
            continue;
        }
        let slot = Slot {
            busy: Arc::new(AtomicUsize::new(0)),
            evict: Arc::new(Notify::new()),
        };
        let (busy, evict) = (slot.busy.clone(), slot.evict.clone());
        registry.insert(next_id, slot);
        tasks.spawn(serve_one(
            next_id,
            stream,
            addr,
            app.clone(),
            registry.clone(),
            busy,
            evict,
            stop_rx.clone(),
            limits.header_read_timeout,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len(),
            "shutdown deadline reached; closing the remaining connections"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

fn http1(header_read_timeout: Duration, keep_alive: bool) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(keep_alive);
    b
}

#[allow(clippy::too_many_arguments)]
async fn serve_one(
    id: u64,
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    app: Router,
    registry: Arc<Registry>,
    busy: Arc<AtomicUsize>,
    evict: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    header_read_timeout: Duration,
) {
    let dispatched = Arc::new(AtomicUsize::new(0));
    let io = JsonParseErrors::new(stream, dispatched.clone());
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = BusyGuard::new(&busy);
        dispatched.fetch_add(1, Ordering::AcqRel);
        let app = app.clone();
        async move {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(addr));
            let resp = app.oneshot(req).await;
            drop(guard);
            resp
        }
    });
    let conn = http1(header_read_timeout, true).serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = evict.notified() => break,
            _ = stop.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    registry.remove(id);
}

async fn serve_overflow(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    app: Router,
    registry: Arc<Registry>,
    header_read_timeout: Duration,
) {
    let dispatched = Arc::new(AtomicUsize::new(0));
    let io = JsonParseErrors::new(stream, dispatched.clone());
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        dispatched.fetch_add(1, Ordering::AcqRel);
        let app = app.clone();
        async move {
            if !is_health(req.uri().path()) {
                return Ok::<_, Infallible>(overloaded());
            }
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(addr));
            app.oneshot(req).await
        }
    });
    let conn = http1(header_read_timeout, false).serve_connection(TokioIo::new(io), svc);
    // Bounded even if the client reads its answer slowly.
    let _ = tokio::time::timeout(header_read_timeout * 3, conn).await;
    registry.overflow.fetch_sub(1, Ordering::AcqRel);
}
