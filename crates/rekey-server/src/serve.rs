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
use rekey_core::ErrorCode;
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

/// Read buffer per connection, which bounds a request head.
const MAX_BUF: usize = 32 * 1024;

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

/// Open connections of one pool (the main one, or the overflow), by
/// accept order so the oldest idle connection is found first.
#[derive(Default)]
struct Registry {
    open: Mutex<BTreeMap<u64, Slot>>,
}

impl Registry {
    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        // A panic elsewhere must not switch the cap off.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.slots().len()
    }

    /// Close the oldest idle connection; false if every one is busy.
    fn evict_idle(&self) -> bool {
        let mut m = self.slots();
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

    /// Register a connection; it leaves the registry when the guard drops
    /// (however its task ends).
    fn enter(self: &Arc<Self>, id: u64) -> (Arc<AtomicUsize>, Arc<Notify>, Leave) {
        let slot = Slot {
            busy: Arc::new(AtomicUsize::new(0)),
            evict: Arc::new(Notify::new()),
        };
        let out = (slot.busy.clone(), slot.evict.clone());
        self.slots().insert(id, slot);
        (
            out.0,
            out.1,
            Leave {
                registry: self.clone(),
                id,
            },
        )
    }
}

struct Leave {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.registry.slots().remove(&self.id);
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
/// same response in rekey's JSON error shape. Such an answer is recognised
/// only when all of these hold: it starts a message (the stream was just
/// flushed), no request is with the service, and the write is exactly one
/// bodiless head with one of those statuses. Response bodies cannot fake it:
/// JSON escapes CR/LF, and names with control characters are refused.
struct JsonParseErrors {
    inner: tokio::net::TcpStream,
    /// Requests handed to the service whose response head is not written yet.
    dispatched: Arc<AtomicUsize>,
    /// Nothing written since the last flush: a write here starts a message.
    at_boundary: bool,
    out: Vec<u8>,
    pos: usize,
}

impl JsonParseErrors {
    fn new(inner: tokio::net::TcpStream, dispatched: Arc<AtomicUsize>) -> Self {
        JsonParseErrors {
            inner,
            dispatched,
            at_boundary: true,
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// hyper's automatic answer to an unparseable request: one bodiless head.
fn hyper_error_status(buf: &[u8]) -> Option<&[u8]> {
    let status = buf.get(9..12)?;
    let exact = buf.len() < 512
        && (buf.starts_with(b"HTTP/1.1 ") || buf.starts_with(b"HTTP/1.0 "))
        && matches!(status, b"400" | b"414" | b"431")
        && buf.ends_with(b"\r\n\r\n")
        && find(buf, b"\r\n\r\n") == Some(buf.len() - 4)
        && find(&buf.to_ascii_lowercase(), b"\r\ncontent-length: 0\r\n").is_some();
    exact.then_some(status)
}

/// Does a message starting with `buf` begin with a final (not 1xx)
/// response head, possibly after an informational one?
fn starts_final_head(buf: &[u8]) -> bool {
    let is_head =
        |b: &[u8]| (b.starts_with(b"HTTP/1.1 ") || b.starts_with(b"HTTP/1.0 ")) && b.len() > 9;
    if !is_head(buf) {
        return false;
    }
    if buf[9] != b'1' {
        return true;
    }
    // `100 Continue` may share the write with the final head.
    find(buf, b"\r\n\r\n")
        .map(|i| &buf[i + 4..])
        .is_some_and(|rest| is_head(rest) && rest[9] != b'1')
}

/// The JSON twin of hyper's automatic answer with this status line.
fn json_parse_error(version: &[u8], status: &[u8]) -> Vec<u8> {
    let (line, code, message) = match status {
        b"414" => (
            "414 URI Too Long",
            ErrorCode::UriTooLong,
            "the request URI is too long",
        ),
        b"431" => (
            "431 Request Header Fields Too Large",
            ErrorCode::HeadersTooLarge,
            "the request line and header fields are too large or too many",
        ),
        _ => (
            "400 Bad Request",
            ErrorCode::MalformedRequest,
            "the request is not valid HTTP/1.1",
        ),
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    format!(
        "{} {line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\ncache-control: no-store\r\n\r\n{body}",
        String::from_utf8_lossy(version),
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
        let boundary = self.at_boundary;
        if boundary && self.dispatched.load(Ordering::Acquire) == 0 {
            if let Some(status) = hyper_error_status(buf) {
                self.out = json_parse_error(&buf[..8], status);
                self.pos = 0;
                if let Poll::Ready(Err(e)) = self.drain(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(buf.len()));
            }
        }
        let answers = boundary && starts_final_head(buf);
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.at_boundary = false;
            if answers {
                let _ = self
                    .dispatched
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1));
            }
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(r, std::task::Poll::Ready(Ok(()))) {
            self.at_boundary = true;
        }
        r
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
        ErrorCode::Overloaded,
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
    let app = crate::around(
        app,
        axum::middleware::from_fn_with_state(limits.body_timeout, crate::body_deadline),
    );
    let main = Arc::new(Registry::default());
    let overflow = Arc::new(Registry::default());
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
        if main.len() < cap || main.evict_idle() {
            let (busy, evict, leave) = main.enter(next_id);
            tasks.spawn(serve_one(
                stream,
                addr,
                app.clone(),
                busy,
                evict,
                leave,
                stop_rx.clone(),
                limits.header_read_timeout,
            ));
            continue;
        }
        // Every connection is in the middle of a request: serve this one
        // for health checks only, making room among idle overflow
        // connections if need be.
        if overflow.len() >= OVERFLOW && !overflow.evict_idle() {
            drop(stream);
            continue;
        }
        let (busy, evict, leave) = overflow.enter(next_id);
        tasks.spawn(serve_overflow(
            stream,
            addr,
            app.clone(),
            busy,
            evict,
            leave,
            limits.header_read_timeout.min(Duration::from_secs(2)),
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
        .keep_alive(keep_alive)
        // hyper's default (~400 KiB a connection) lets a thousand slow
        // heads hold ~400 MB; a request head beyond this answers 431.
        .max_buf_size(MAX_BUF)
        .max_header_size(MAX_BUF);
    b
}

#[allow(clippy::too_many_arguments)]
async fn serve_one(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    app: Router,
    busy: Arc<AtomicUsize>,
    evict: Arc<Notify>,
    _leave: Leave,
    mut stop: watch::Receiver<bool>,
    header_read_timeout: Duration,
) {
    let dispatched = Arc::new(AtomicUsize::new(0));
    let io = JsonParseErrors::new(stream, dispatched.clone());
    let in_flight = busy.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = BusyGuard::new(&in_flight);
        dispatched.fetch_add(1, Ordering::AcqRel);
        let app = app.clone();
        async move {
            let resp = dispatch(app, addr, req).await;
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
            _ = evict.notified(), if !draining => {
                // Chosen while idle; if a request started since, let it
                // finish rather than cut a handler short.
                if busy.load(Ordering::Acquire) == 0 {
                    break;
                }
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = stop.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Hand a request to the app with the peer's address (axum's `ConnectInfo`).
async fn dispatch(
    app: Router,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response, Infallible> {
    let mut req = req.map(Body::new);
    req.extensions_mut().insert(ConnectInfo(addr));
    app.oneshot(req).await
}

async fn serve_overflow(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    app: Router,
    busy: Arc<AtomicUsize>,
    evict: Arc<Notify>,
    _leave: Leave,
    header_read_timeout: Duration,
) {
    let dispatched = Arc::new(AtomicUsize::new(0));
    let io = JsonParseErrors::new(stream, dispatched.clone());
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = BusyGuard::new(&busy);
        dispatched.fetch_add(1, Ordering::AcqRel);
        let app = app.clone();
        async move {
            if !is_health(req.uri().path()) {
                return Ok::<_, Infallible>(overloaded());
            }
            let resp = dispatch(app, addr, req).await;
            drop(guard);
            resp
        }
    });
    let conn = http1(header_read_timeout, false).serve_connection(TokioIo::new(io), svc);
    // Bounded even if the client reads its answer slowly.
    tokio::select! {
        _ = tokio::time::timeout(header_read_timeout * 3, conn) => {}
        _ = evict.notified() => {}
    }
}
