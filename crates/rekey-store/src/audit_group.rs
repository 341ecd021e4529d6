//! Group commit for audit entries written on their own (a credential
//! read's entry): concurrent appends wait on one writer task, which writes
//! every entry waiting into one transaction, in arrival order, and answers
//! each caller only once that transaction has committed. A fetch still
//! returns its secret only after its entry is durable in the chain; what
//! changes is that thirty concurrent reads cost one `BEGIN … COMMIT`
//! instead of thirty, serialised behind the database's write lock.
//!
//! The writer owns no request: a caller that goes away (a client hanging
//! up) leaves its entry to be written with the rest, never a transaction
//! open.

use crate::{audit, rows, Backend};
use rekey_core::audit::{AuditEntry, ChainedEntry};
use rekey_core::Error;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Entries per transaction at most; more waiting go in the next one.
const MAX_BATCH: usize = 512;
/// Callers waiting for the writer at most before `append` waits to queue.
const QUEUE: usize = 4096;

/// How an entry written on its own reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditCommit {
    /// Concurrent entries share a transaction (the default).
    #[default]
    Group,
    /// One transaction per entry: for comparison in benchmarks.
    Each,
}

/// What must still hold, in the database, when a credential read's entry
/// commits: the API key that asked is active (not revoked, not expired)
/// and the connection is still at the version the caller read (so not
/// disabled, revoked, deleted or given new material since). Checked inside
/// the transaction that writes the entry; when it fails the entry is not
/// written and the caller is told so (the read was served from a cache
/// that another request or replica has since made stale).
#[derive(Debug, Clone)]
pub struct ReadCheck {
    pub api_key_id: String,
    pub tenant: String,
    pub connection_id: String,
    pub connection_version: i64,
}

struct Pending {
    entry: AuditEntry,
    check: Option<ReadCheck>,
    done: oneshot::Sender<Result<bool, String>>,
}

/// The entries of `batch` whose check holds, in order.
fn held(batch: &[Pending], holds: &[bool]) -> Vec<AuditEntry> {
    batch
        .iter()
        .zip(holds)
        .filter(|(_, h)| **h)
        .map(|(p, _)| p.entry.clone())
        .collect()
}

pub(crate) struct GroupWriter {
    queue: mpsc::Sender<Pending>,
}

impl GroupWriter {
    /// Start the writer on a thread of its own. It ends when the last
    /// sender (the store's last clone) is dropped, after writing what was
    /// queued. Callers are answered by a task on the runtime this is
    /// called on ([`Responder`]), so a store must be used on one runtime
    /// that keeps running while it is (as `rekey serve` and the CLI do): a
    /// runtime dropped first is noticed and the writer answers itself, but
    /// one that lives on undriven would leave callers waiting.
    ///
    /// Why a thread: each batch is a chain of round trips to the database,
    /// and a writer task woken on a runtime busy with request tasks waits
    /// its turn behind them at every step, stretching the cycle every
    /// queued fetch waits for. On SQLite (`sqlite_file`, the database's
    /// file) the thread runs [`native`]; otherwise (PostgreSQL, an
    /// in-memory SQLite) [`run`] on a runtime of its own, with a connection
    /// of its own on PostgreSQL so that its socket is driven by that
    /// runtime too. Where no thread can be had, [`run`] on the caller's
    /// runtime, through the pool.
    pub(crate) fn start(
        pool: AnyPool,
        backend: Backend,
        lock: Arc<Mutex<()>>,
        sqlite_file: Option<PathBuf>,
    ) -> GroupWriter {
        let (queue, rx) = mpsc::channel(QUEUE);
        // The receiver goes to the thread only once it runs: if no thread
        // can be had, a task on this runtime takes it instead.
        let (hand, take) = std::sync::mpsc::channel::<mpsc::Receiver<Pending>>();
        let (thread_pool, thread_lock) = (pool.clone(), lock.clone());
        let own = backend == Backend::Postgres;
        let responder = Responder::start();
        let thread_responder = responder.clone();
        let spawned = std::thread::Builder::new()
            .name("rekey-audit".into())
            .spawn(move || {
                let Ok(rx) = take.recv() else { return };
                if let Some(path) = sqlite_file {
                    return native::run(thread_pool, path, thread_lock, rx, thread_responder);
                }
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(run(
                        thread_pool,
                        backend,
                        thread_lock,
                        rx,
                        own,
                        thread_responder,
                    )),
                    Err(e) => {
                        tracing::error!(error = %e, "audit writer: no runtime; audited reads fail")
                    }
                }
            });
        match spawned {
            Ok(_) => {
                let _ = hand.send(rx);
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit writer: no thread of its own; writing from a task");
                // On the runtime already: answering in line is as cheap.
                let inline = Responder { to: None };
                tokio::spawn(run(pool, backend, lock, rx, false, inline));
            }
        }
        GroupWriter { queue }
    }

    /// Append `entry` (if `check` holds) and return once the transaction
    /// holding it has committed: true when it was written, false when the
    /// check failed and nothing was.
    pub(crate) async fn append(
        &self,
        entry: AuditEntry,
        check: Option<ReadCheck>,
    ) -> Result<bool, Error> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending { entry, check, done })
            .await
            .map_err(|_| Error::Unavailable("the audit writer has stopped".into()))?;
        match answer.await {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(msg)) => Err(Error::Unavailable(msg)),
            Err(_) => Err(Error::Unavailable("the audit writer has stopped".into())),
        }
    }
}

/// The writer's connection: one of the pool's, or (`own`) one opened with
/// the pool's options outside it.
enum WriterConn {
    Pooled(PoolConnection<Any>),
    Own(AnyConnection),
}

impl std::ops::Deref for WriterConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            WriterConn::Pooled(c) => c,
            WriterConn::Own(c) => c,
        }
    }
}

impl std::ops::DerefMut for WriterConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            WriterConn::Pooled(c) => c,
            WriterConn::Own(c) => c,
        }
    }
}

/// The writer through sqlx. `own`: on a connection of its own rather than
/// one of the pool's (one more connection to the server than the pool's
/// size).
async fn run(
    pool: AnyPool,
    backend: Backend,
    lock: Arc<Mutex<()>>,
    mut rx: mpsc::Receiver<Pending>,
    own: bool,
    responder: Responder,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // The writer keeps its connection between batches: no pool round trip
    // per batch, and on SQLite a page cache that stays warm (a connection
    // whose cache another connection's commit made stale re-reads the
    // pages it touches). Dropped after an error, so a broken connection is
    // replaced by a fresh one.
    let mut conn: Option<WriterConn> = None;
    // The chain's head after this writer's last batch, as a guess for the
    // next one's ([`write_pg_function`] checks it).
    let mut known: Option<(i64, String)> = None;
    // A small pool cannot spare one of its own: requests that hold a
    // connection while they take another (an OAuth refresh on PostgreSQL)
    // would starve.
    let keep = own || pool.options().get_max_connections() >= 4;
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => n,
            // Closing the pool waits for every connection to come back:
            // give ours back as soon as it starts, and write whatever
            // comes next with a new one (which a closed pool refuses).
            _ = pool.close_event(), if conn.is_some() => {
                conn = None;
                continue;
            }
        };
        if n == 0 {
            break;
        }
        // A closed store writes nothing more, as its pool would refuse to.
        let result = if pool.is_closed() {
            conn = None;
            Err(Error::Unavailable("the database is closed".into()))
        } else {
            write(&pool, &mut conn, own, backend, &lock, &batch, &mut known).await
        };
        if result.is_err() || !keep {
            conn = None;
        }
        responder.answer(&mut batch, result);
    }
}

/// Tell each caller of `batch` how it went, emptying it. Every caller of a
/// failed batch gets the error (its secret is not handed out); the message
/// is the store's, never an entry's content.
fn answer(batch: &mut Vec<Pending>, result: Result<Vec<bool>, Error>) {
    match result {
        Ok(written) => {
            for (p, w) in batch.drain(..).zip(written) {
                let _ = p.done.send(Ok(w));
            }
        }
        Err(e) => {
            let msg = format!("audit log unavailable: {e}");
            for p in batch.drain(..) {
                let _ = p.done.send(Err(msg.clone()));
            }
        }
    }
}

/// Who answers a committed batch's callers. Each answer wakes a request
/// task on the server's runtime; woken from the writer's thread, every one
/// of those wakes may be a system call to unpark a worker (measured on
/// PostgreSQL: about half a millisecond per batch of sixteen, a third of
/// the batch's cycle, during which the writer could not start the next
/// one). So the writer hands the whole batch to a task on that runtime,
/// one wake, and the task answers each caller from inside the runtime,
/// where a wake is a push onto a worker's queue. Without a runtime to hand
/// it to (or once it has stopped), the writer answers itself.
#[derive(Clone)]
struct Responder {
    to: Option<mpsc::UnboundedSender<Answered>>,
}

/// A committed (or failed) batch on its way to its callers.
type Answered = (Vec<Pending>, Result<Vec<bool>, Error>);

impl Responder {
    /// A responder task on the current runtime, if there is one.
    fn start() -> Responder {
        let to = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (to, mut from) = mpsc::unbounded_channel::<Answered>();
            rt.spawn(async move {
                while let Some((mut batch, result)) = from.recv().await {
                    answer(&mut batch, result);
                }
            });
            to
        });
        Responder { to }
    }

    /// Tell each caller of `batch` how it went, emptying it (as [`answer`]).
    fn answer(&self, batch: &mut Vec<Pending>, result: Result<Vec<bool>, Error>) {
        let Some(to) = &self.to else {
            return answer(batch, result);
        };
        let taken = std::mem::take(batch);
        // Room for a batch like this one: the writer's usual size.
        batch.reserve(taken.len());
        if let Err(mpsc::error::SendError((mut back, result))) = to.send((taken, result)) {
            // The runtime has stopped: its callers are gone or going, but
            // whoever is still waiting is told.
            answer(&mut back, result);
        }
    }
}

async fn write(
    pool: &AnyPool,
    conn: &mut Option<WriterConn>,
    own: bool,
    backend: Backend,
    lock: &Arc<Mutex<()>>,
    batch: &[Pending],
    known: &mut Option<(i64, String)>,
) -> Result<Vec<bool>, Error> {
    // SQLite: the in-process write lock, then the database's, as
    // `begin_write_on` takes them.
    let _guard = match backend {
        Backend::Sqlite => Some(lock.lock().await),
        Backend::Postgres => None,
    };
    // The batch function on PostgreSQL's connection of the writer's own,
    // kept between batches; a pooled connection runs `write_tx`.
    let by_function = own && backend == Backend::Postgres;
    // Kept across the retry below, which must send the same batch again.
    let mut attempt = Attempt::new(known.clone(), batch.len());
    if let Some(c) = conn.as_mut() {
        match write_on(c, backend, by_function, batch, &mut attempt).await {
            Ok(holds) => {
                *known = attempt.written;
                return Ok(holds);
            }
            // The kept connection may be one the server has since closed
            // (a restart, an idle timeout): one more try on a fresh
            // connection, when the error says nothing was committed or the
            // try cannot write twice (`write_pg_function` resends the same
            // call, see [`Attempt`]).
            Err((e, false)) => {
                tracing::debug!(error = %e, "audit writer: retrying on a fresh connection");
                *conn = None;
            }
            Err((e, true)) => {
                *conn = None;
                return Err(e);
            }
        }
    }
    let fresh = if own {
        use sqlx::ConnectOptions;
        // As long as the pool would wait for one (Store::connect_sized).
        let opts = pool.connect_options();
        let mut c = tokio::time::timeout(std::time::Duration::from_secs(10), opts.connect())
            .await
            .map_err(|_| Error::Unavailable("no database connection within 10 s".into()))??;
        // Not through the pool, so not set up by it: as its connections.
        // And read committed whatever the database's default: the batch
        // function must read the head and the checks after its lock, with
        // a snapshot newer than the call's (it refuses to run otherwise).
        if backend == Backend::Postgres {
            sqlx::Executor::execute(&mut c, crate::PG_DURABLE_COMMITS).await?;
            sqlx::Executor::execute(
                &mut c,
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
            )
            .await?;
        }
        WriterConn::Own(c)
    } else {
        WriterConn::Pooled(pool.acquire().await?)
    };
    let c = conn.insert(fresh);
    let written = write_on(c, backend, by_function, batch, &mut attempt).await;
    match written {
        Ok(holds) => {
            *known = attempt.written;
            Ok(holds)
        }
        Err((e, _)) => {
            // Not kept: a failed batch may leave it inside its transaction,
            // and dropping it is what ends that.
            *conn = None;
            Err(e)
        }
    }
}

/// One batch in one transaction on `c`. The error says whether a retry
/// could write the batch twice (`COMMIT` was reached, the outcome is
/// unknown, and nothing is retried).
/// `by_function`: on PostgreSQL, through [`write_pg_function`]. `attempt` is
/// the batch's progress, kept by the caller across a retry.
async fn write_on(
    c: &mut AnyConnection,
    backend: Backend,
    by_function: bool,
    batch: &[Pending],
    attempt: &mut Attempt,
) -> Result<Vec<bool>, (Error, bool)> {
    if by_function {
        return write_pg_function(c, backend, batch, attempt).await;
    }
    let (holds, head) = write_tx(c, backend, batch).await?;
    attempt.written = head;
    Ok(holds)
}

/// One batch in one transaction on `c`, the lock held while the state is
/// read: which entries were written, and the chain's head after them.
async fn write_tx(
    c: &mut AnyConnection,
    backend: Backend,
    batch: &[Pending],
) -> Result<(Vec<bool>, Option<(i64, String)>), (Error, bool)> {
    use sqlx::Connection;
    let before = |e: Error| (e, false);
    let mut tx = match backend {
        Backend::Sqlite => c.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => c.begin().await,
    }
    .map_err(|e| before(e.into()))?;
    let items = batch
        .iter()
        .map(|p| (p.entry.clone(), p.check.clone()))
        .collect();
    let written = append_checked(&mut tx, backend, items)
        .await
        .map_err(before)?;
    tx.commit().await.map_err(|e| (Error::from(e), true))?;
    tracing::debug!(entries = batch.len(), "audit batch committed");
    Ok(written)
}

/// A batch's progress on PostgreSQL's one-round-trip path
/// ([`write_pg_function`]), kept by [`write`] across its retry on a fresh
/// connection: the retry sends again the very call whose answer was lost,
/// so a first call that committed unseen is recognised by its last entry
/// ('x') instead of being written twice.
struct Attempt {
    /// The head the entries are chained after: the writer's guess, then
    /// what the database said.
    head: Option<(i64, String)>,
    /// Whether each entry's check is expected to hold (all, at first).
    expect: Vec<bool>,
    /// Calls that found the head or a check otherwise than expected.
    missed: u32,
    /// The chain's head once the batch is written, when known.
    written: Option<(i64, String)>,
}

impl Attempt {
    fn new(head: Option<(i64, String)>, entries: usize) -> Attempt {
        Attempt {
            head,
            expect: vec![true; entries],
            missed: 0,
            written: None,
        }
    }
}

/// Guesses [`write_pg_function`] makes before it writes under the lock in
/// a transaction of its own: each miss means another writer appended (an
/// API change) or a check failed (a revocation) since the last batch.
const MAX_MISSES: u32 = 3;

/// The batch call: one statement in a transaction of its own (migration
/// 0025), so `BEGIN`, lock, state query, insert and `COMMIT` are one round
/// trip, with plans the server keeps for the connection.
const PG_BATCH_CALL: &str = "SELECT r_what, r_id, r_tenant, r_n FROM \
    rekey_audit_batch($1, $2, $3, CAST($4 AS JSON), CAST($5 AS JSON))";

/// A PostgreSQL batch in one round trip: the entries are chained after the
/// head this writer last left (`a.head`), every check expected to hold,
/// and the database writes them only if that is still so; otherwise it
/// answers with the state and the batch is chained again from it. After
/// [`MAX_MISSES`] misses, the batch is written the long way (a transaction
/// holding the lock while the state is read). Every error of the
/// function's call is retryable (`false`): the same call resent cannot
/// write twice (see [`Attempt`]); the long way's are as [`write_tx`]'s.
async fn write_pg_function(
    c: &mut AnyConnection,
    backend: Backend,
    batch: &[Pending],
    a: &mut Attempt,
) -> Result<Vec<bool>, (Error, bool)> {
    let checks: Vec<Option<&ReadCheck>> = batch.iter().map(|p| p.check.as_ref()).collect();
    while a.missed < MAX_MISSES {
        let chained = audit::chain(a.head.clone(), held(batch, &a.expect));
        let last = chained.last().map(|ce| (ce.entry.seq, ce.hash.clone()));
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(PG_BATCH_CALL)
            .bind(a.head.as_ref().map(|h| h.0))
            .bind(a.head.as_ref().map(|h| h.1.clone()))
            .bind(last.as_ref().map(|l| l.0))
            .bind(checks_json(&checks, &a.expect))
            .bind(entries_json(&chained))
            .fetch_all(&mut *c)
            .await
            .map_err(|e| (Error::from(e), false))?;
        if is_written(&rows, last.as_ref()) {
            a.written = last.or_else(|| a.head.clone());
            tracing::debug!(entries = chained.len(), "audit batch committed");
            return Ok(a.expect.clone());
        }
        a.missed += 1;
        (a.expect, a.head) = StateQuery::interpret(&checks, rows);
    }
    tracing::debug!("audit writer: the batch's guesses missed; writing it under the lock");
    let (holds, head) = write_tx(c, backend, batch).await?;
    a.written = head;
    Ok(holds)
}

/// Whether the batch function's answer (`rows`) says the batch whose last
/// entry is `last` is in the chain: written by this call ('w'), or by an
/// earlier call of the same batch whose answer was lost ('x', the row at
/// that entry's seq, carries its hash — which covers the entry's unique id,
/// so no other batch's entry can match it).
fn is_written(rows: &[(String, String, String, i64)], last: Option<&(i64, String)>) -> bool {
    rows.iter().any(|r| r.0 == "w")
        || last.is_some_and(|(seq, hash)| {
            rows.iter()
                .any(|r| r.0 == "x" && r.3 == *seq && r.1 == *hash)
        })
}

/// One check as the batch function takes it, with whether it is expected
/// to hold.
#[derive(serde::Serialize)]
struct CheckArg<'a> {
    k: &'a str,
    c: &'a str,
    t: &'a str,
    v: i64,
    e: bool,
}

/// One chained entry as an `audit_log` row, for the batch function.
#[derive(serde::Serialize)]
struct RowArg<'a> {
    #[serde(flatten)]
    entry: &'a AuditEntry,
    prev_hash: &'a str,
    hash: &'a str,
}

/// The checks as the batch function takes them, each distinct one once: a
/// batch is mostly reads of the same few connections by the same few keys,
/// and each check costs the database two index lookups.
fn checks_json(checks: &[Option<&ReadCheck>], expect: &[bool]) -> String {
    let distinct: BTreeSet<(&str, &str, &str, i64, bool)> = checks
        .iter()
        .zip(expect)
        .filter_map(|(chk, e)| {
            chk.map(|r| {
                let (k, c, t) = (&r.api_key_id, &r.connection_id, &r.tenant);
                (k.as_str(), c.as_str(), t.as_str(), r.connection_version, *e)
            })
        })
        .collect();
    let all: Vec<CheckArg> = distinct
        .into_iter()
        .map(|(k, c, t, v, e)| CheckArg { k, c, t, v, e })
        .collect();
    // Plain strings and numbers: serialising them cannot fail.
    serde_json::to_string(&all).unwrap_or_default()
}

/// Chained entries as `audit_log` rows in JSON, for the batch function.
fn entries_json(chained: &[ChainedEntry]) -> String {
    let all: Vec<RowArg> = chained
        .iter()
        .map(|ce| RowArg {
            entry: &ce.entry,
            prev_hash: &ce.prev_hash,
            hash: &ce.hash,
        })
        .collect();
    serde_json::to_string(&all).unwrap_or_default()
}

/// Append, in order, each entry whose check holds (None always does),
/// inside the caller's write transaction; which ones did, and the chain's
/// head after them. The audit lock
/// is taken *before* the checks are read: a revocation or a disable holds
/// it until it commits (its own audit entry), so a check can never see the
/// state from before a change that has already answered its caller.
pub(crate) async fn append_checked(
    c: &mut AnyConnection,
    backend: Backend,
    items: Vec<(AuditEntry, Option<ReadCheck>)>,
) -> Result<(Vec<bool>, Option<(i64, String)>), Error> {
    audit::lock_for_append(c, backend).await?;
    let checks: Vec<Option<&ReadCheck>> = items.iter().map(|(_, chk)| chk.as_ref()).collect();
    let (holds, head) = batch_state(c, backend, &checks).await?;
    let entries = items
        .into_iter()
        .zip(&holds)
        .filter(|(_, h)| **h)
        .map(|((e, _), _)| e)
        .collect();
    let chained = audit::append_after(c, head.clone(), entries).await?;
    let after = chained.last().map(|ce| (ce.entry.seq, ce.hash.clone()));
    Ok((holds, after.or(head)))
}

/// Which of `checks` hold, and the chain's head, read in one
/// statement for the whole batch: each round trip to the database is paid
/// once per batch, and the writer's batch is the hot path's bottleneck.
async fn batch_state(
    c: &mut AnyConnection,
    backend: Backend,
    checks: &[Option<&ReadCheck>],
) -> Result<(Vec<bool>, Option<(i64, String)>), Error> {
    let q = StateQuery::new(checks);
    let sql = q.sql(backend);
    let mut query = sqlx::query_as::<_, (String, String, String, i64)>(&sql);
    if q.binds_time(backend) {
        query = query.bind(q.now);
    }
    for id in q.ids() {
        query = query.bind(id.to_string());
    }
    Ok(StateQuery::interpret(
        checks,
        query.fetch_all(&mut *c).await?,
    ))
}

/// PostgreSQL's clock as the statement runs, in Unix milliseconds.
const PG_NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// The batch's state query: the live keys and the connections' versions
/// the checks ask about, and the chain's head. Bound, its parameters are
/// the time (when any check is asked for) then [`StateQuery::ids`], in
/// that order.
struct StateQuery<'a> {
    now: i64,
    key_ids: Vec<&'a str>,
    conn_ids: Vec<&'a str>,
}

impl<'a> StateQuery<'a> {
    fn new(checks: &[Option<&'a ReadCheck>]) -> StateQuery<'a> {
        let wanted = checks.iter().flatten();
        let key_ids: BTreeSet<&str> = wanted.clone().map(|r| r.api_key_id.as_str()).collect();
        let conn_ids: BTreeSet<&str> = wanted.map(|r| r.connection_id.as_str()).collect();
        StateQuery {
            now: rekey_core::time::now_ms(),
            key_ids: key_ids.into_iter().collect(),
            conn_ids: conn_ids.into_iter().collect(),
        }
    }

    /// Whether the query asks about checks (and so needs a time): every
    /// check brings ids.
    fn has_checks(&self) -> bool {
        !self.key_ids.is_empty()
    }

    /// Whether `now` is bound (`$1`). On PostgreSQL the time is the
    /// server's clock as the statement runs, after the lock it follows, as
    /// the batch function (migration 0025) judges it: a key that expired
    /// while the batch waited for the lock no longer counts as live, and
    /// one clock decides on every path.
    fn binds_time(&self, backend: Backend) -> bool {
        self.has_checks() && backend == Backend::Sqlite
    }

    /// The ids bound after the time: the keys', then the connections'.
    fn ids(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.key_ids.iter().chain(&self.conn_ids).copied()
    }

    /// The query with numbered parameters: the time when
    /// [`StateQuery::binds_time`], then [`StateQuery::ids`].
    fn sql(&self, backend: Backend) -> String {
        let (first, now) = match self.binds_time(backend) {
            true => (2, "$1"),
            false => (1, PG_NOW_MS),
        };
        let keys = rows::marks(first, self.key_ids.len());
        let conns = rows::marks(first + self.key_ids.len(), self.conn_ids.len());
        self.build(now, &keys, &conns)
    }

    /// Rows of (what, id, tenant, number): 'k' a live key, 'c' a
    /// connection and its version, 'h' the chain's head (hash, seq).
    fn build(&self, now: &str, keys: &str, conns: &str) -> String {
        let mut parts = Vec::new();
        if self.has_checks() {
            parts.push(format!(
                "SELECT 'k', id, '', CAST(0 AS BIGINT) FROM api_keys WHERE revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > {now}) AND id IN ({keys})"
            ));
            parts.push(format!(
                "SELECT 'c', id, tenant, version FROM connections WHERE id IN ({conns})"
            ));
        }
        parts.push(format!(
            "SELECT 'h', hash, '', seq FROM ({}) head",
            audit::HEAD_SQL
        ));
        parts.join(" UNION ALL ")
    }

    /// Which checks hold, and the head, from the query's rows.
    fn interpret(
        checks: &[Option<&ReadCheck>],
        rows: Vec<(String, String, String, i64)>,
    ) -> (Vec<bool>, Option<(i64, String)>) {
        let mut live_keys = HashSet::new();
        let mut versions = HashMap::new();
        let mut head = None;
        for (what, id, tenant, n) in rows {
            match what.as_str() {
                "k" => {
                    live_keys.insert(id);
                }
                "c" => {
                    versions.insert(id, (tenant, n));
                }
                "h" => head = Some((n, id)),
                // The batch function's own rows ('x': see `is_written`).
                _ => {}
            }
        }
        let holds = checks
            .iter()
            .map(|chk| match chk {
                None => true,
                Some(r) => {
                    live_keys.contains(&r.api_key_id)
                        && versions
                            .get(&r.connection_id)
                            .is_some_and(|(t, v)| *t == r.tenant && *v == r.connection_version)
                }
            })
            .collect();
        (holds, head)
    }
}

/// The writer on SQLite: a thread of its own with its own connection
/// (rusqlite on the same SQLite library sqlx uses), running each batch —
/// `BEGIN IMMEDIATE`, the state query, the inserts, `COMMIT` — without
/// leaving the thread. Through sqlx every one of those statements is a
/// round trip to the driver's thread and back to a task that must be
/// scheduled again; on a machine busy serving requests each costs about a
/// hundred microseconds of waiting, and the batch cycle is what every
/// queued fetch waits for.
mod native {
    use super::{held, Pending, ReadCheck, Responder, StateQuery, MAX_BATCH};
    use crate::{audit, Backend};
    use rekey_core::Error;
    use rusqlite::{Connection, TransactionBehavior};
    use sqlx::AnyPool;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, LazyLock};
    use tokio::sync::{mpsc, Mutex};

    /// One entry's insert, built once.
    static INSERT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO audit_log ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            audit::COLS
        )
    });

    pub(super) fn run(
        pool: AnyPool,
        path: PathBuf,
        lock: Arc<Mutex<()>>,
        mut rx: mpsc::Receiver<Pending>,
        responder: Responder,
    ) {
        let mut conn: Option<Connection> = None;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            // A closed store writes nothing more, as its pool would refuse
            // to (and lets go of the file).
            let result = if pool.is_closed() {
                Err(Error::Unavailable("the database is closed".into()))
            } else {
                write(&path, &mut conn, &lock, &batch)
            };
            if result.is_err() {
                // Opened afresh for the next batch.
                conn = None;
            }
            responder.answer(&mut batch, result);
        }
    }

    fn write(
        path: &Path,
        conn: &mut Option<Connection>,
        lock: &Mutex<()>,
        batch: &[Pending],
    ) -> Result<Vec<bool>, Error> {
        // The in-process write lock, then the database's, as every other
        // writer of this process takes them.
        let _guard = lock.blocking_lock();
        let c = match conn {
            Some(c) => c,
            None => conn.insert(crate::open_rusqlite(path).map_err(db)?),
        };
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let checks: Vec<Option<&ReadCheck>> = batch.iter().map(|p| p.check.as_ref()).collect();
        let q = StateQuery::new(&checks);
        let rows = {
            let mut st = tx.prepare_cached(&q.sql(Backend::Sqlite)).map_err(db)?;
            let ids: Vec<&str> = q.ids().collect();
            let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(ids.len() + 1);
            if q.binds_time(Backend::Sqlite) {
                params.push(&q.now);
            }
            for id in &ids {
                params.push(id);
            }
            let mapped = st
                .query_map(params.as_slice(), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(db)?;
            mapped.collect::<Result<Vec<_>, _>>().map_err(db)?
        };
        let (holds, head) = StateQuery::interpret(&checks, rows);
        let entries = held(batch, &holds);
        {
            let mut st = tx.prepare_cached(&INSERT).map_err(db)?;
            for ce in audit::chain(head, entries) {
                let e = &ce.entry;
                st.execute(rusqlite::params![
                    e.seq,
                    e.id,
                    e.at,
                    e.tenant,
                    e.actor,
                    e.action,
                    e.target,
                    e.request_id,
                    e.source,
                    e.outcome,
                    e.details,
                    ce.prev_hash,
                    ce.hash
                ])
                .map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        tracing::debug!(entries = batch.len(), "audit batch committed");
        Ok(holds)
    }

    /// SQLite's message names a table or a constraint, never a value.
    fn db(e: rusqlite::Error) -> Error {
        Error::Unavailable(format!("database error: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, conn: &str) -> ReadCheck {
        ReadCheck {
            api_key_id: key.into(),
            tenant: "default".into(),
            connection_id: conn.into(),
            connection_version: 1,
        }
    }

    #[test]
    fn the_state_query_binds_the_time_then_the_ids() {
        let a = check("key_0a", "con_1b");
        let b = check("key_0a", "con_2c");
        let checks = [Some(&a), None, Some(&b)];
        let q = StateQuery::new(&checks);
        assert_eq!(q.ids().collect::<Vec<_>>(), ["key_0a", "con_1b", "con_2c"]);
        let lite = q.sql(Backend::Sqlite);
        assert!(lite.contains("expires_at > $1)"));
        assert!(lite.contains("id IN ($2) UNION ALL") && lite.contains("IN ($3, $4)"));
        // PostgreSQL: the server's clock, not a bound time.
        let pg = q.sql(Backend::Postgres);
        assert!(!q.binds_time(Backend::Postgres));
        assert!(pg.contains(&format!("expires_at > {PG_NOW_MS})")));
        assert!(pg.contains("id IN ($1) UNION ALL") && pg.contains("IN ($2, $3)"));
        // Only the head when nothing is checked.
        let none = StateQuery::new(&[None]);
        assert!(!none.binds_time(Backend::Sqlite));
        assert!(!none.sql(Backend::Sqlite).contains('$'));
    }

    fn row(what: &str, id: &str, n: i64) -> (String, String, String, i64) {
        (what.into(), id.into(), String::new(), n)
    }

    #[test]
    fn a_batch_is_written_only_by_its_own_call_or_its_own_last_entry() {
        let last = (8, "hash8".to_string());
        assert!(is_written(&[row("w", "", 0)], Some(&last)));
        // Written with no entries (every check failed): nothing to find.
        assert!(is_written(&[row("w", "", 0)], None));
        // A lost answer: the row at the batch's last seq is its entry.
        let state = [row("h", "hash9", 9), row("x", "hash8", 8)];
        assert!(is_written(&state, Some(&last)));
        // Another writer's entry at that seq, the head elsewhere, or no
        // entries to look for: not written.
        assert!(!is_written(
            &[row("h", "other", 8), row("x", "other", 8)],
            Some(&last)
        ));
        assert!(!is_written(&[row("h", "hash8", 8)], Some(&last)));
        assert!(!is_written(&[row("x", "hash8", 7)], Some(&last)));
        assert!(!is_written(
            &[row("h", "hash8", 8), row("x", "hash8", 8)],
            None
        ));
        assert!(!is_written(&[], Some(&last)));
    }

    #[test]
    fn the_batch_function_gets_rows_it_can_insert() {
        let a = check("key_0a", "con_1b");
        let b = check("key_0a", "con_2c");
        let checks = [Some(&a), None, Some(&b), Some(&a)];
        let json: serde_json::Value =
            serde_json::from_str(&checks_json(&checks, &[false, true, true, false])).unwrap();
        // Each distinct check once.
        assert_eq!(
            json,
            serde_json::json!([
                {"k": "key_0a", "c": "con_1b", "t": "default", "v": 1, "e": false},
                {"k": "key_0a", "c": "con_2c", "t": "default", "v": 1, "e": true},
            ])
        );
        let entry = AuditEntry {
            seq: 0,
            id: "aud_1".into(),
            at: 5,
            tenant: "default".into(),
            actor: "key_0a".into(),
            action: "credentials.read".into(),
            target: Some("con_1b".into()),
            request_id: None,
            source: None,
            outcome: "ok".into(),
            details: "{\"a\":1}".into(),
        };
        let chained = audit::chain(Some((4, "h4".into())), vec![entry]);
        let rows: serde_json::Value = serde_json::from_str(&entries_json(&chained)).unwrap();
        let r = &rows[0];
        // Every column of the table, under its name.
        for col in audit::COLS.split(", ") {
            assert!(r.get(col).is_some(), "{col} missing");
        }
        assert_eq!(
            (r["seq"].as_i64(), r["prev_hash"].as_str()),
            (Some(5), Some("h4"))
        );
        assert_eq!(r["hash"].as_str(), Some(chained[0].hash.as_str()));
        assert_eq!(r["details"].as_str(), Some("{\"a\":1}"));
        assert!(r["request_id"].is_null());
    }

    fn entry(n: i64) -> AuditEntry {
        AuditEntry {
            seq: 0,
            id: format!("aud_lost_{n}"),
            at: n,
            tenant: "default".into(),
            actor: "test".into(),
            action: "credentials.read".into(),
            target: None,
            request_id: None,
            source: None,
            outcome: "ok".into(),
            details: "{}".into(),
        }
    }

    /// Unchecked entries `range` as queued by callers no longer waiting.
    fn pending(range: std::ops::Range<i64>) -> Vec<Pending> {
        range
            .map(|n| Pending {
                entry: entry(n),
                check: None,
                done: oneshot::channel().0,
            })
            .collect()
    }

    /// PostgreSQL (a database of its own): a batch whose call committed
    /// but whose answer was lost, sent again as `write` resends it (the
    /// same `Attempt`, on another connection), is recognised as written
    /// and not written twice — here after a miss, so the call resent is
    /// not the writer's first guess.
    #[tokio::test]
    async fn a_batch_resent_after_its_answer_was_lost_is_written_once() {
        use sqlx::Connection;
        let admin_url = "postgres://postgres@127.0.0.1:5432/test";
        let name = format!(
            "rekey_ag_{}_{}",
            std::process::id(),
            rekey_core::time::now_ms()
        );
        let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let store = crate::Store::connect(&url).await.unwrap();
        // Another writer's entry: the guess (an empty log) misses once.
        let mut tx = store.begin_write().await.unwrap();
        audit::append_all(tx.conn(), Backend::Postgres, vec![entry(0)])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let batch = pending(1..4);
        let mut first = store.pool().acquire().await.unwrap();
        let mut a = Attempt::new(None, batch.len());
        let holds = write_pg_function(&mut first, Backend::Postgres, &batch, &mut a)
            .await
            .unwrap();
        assert_eq!((holds, a.missed), (vec![true; 3], 1));
        let head = a.written.take().expect("the head after the batch");
        assert_eq!(head.0, 4);
        // The answer "lost": the same attempt again, on another connection.
        let mut second = store.pool().acquire().await.unwrap();
        let again = write_pg_function(&mut second, Backend::Postgres, &batch, &mut a)
            .await
            .unwrap();
        assert_eq!(again, vec![true; 3]);
        assert_eq!(a.written, Some(head));
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM audit_log ORDER BY seq")
            .fetch_all(&mut *second)
            .await
            .unwrap();
        assert_eq!(
            ids,
            ["aud_lost_0", "aud_lost_1", "aud_lost_2", "aud_lost_3"]
        );
        // The long way (after too many misses) tells the head it left, so
        // the next batch's guess is right.
        let more = pending(4..6);
        let (holds, after) = write_tx(&mut second, Backend::Postgres, &more)
            .await
            .unwrap();
        assert_eq!(holds, vec![true; 2]);
        let real: (i64, String) = sqlx::query_as(audit::HEAD_SQL)
            .fetch_one(&mut *second)
            .await
            .unwrap();
        assert_eq!(after, Some(real));
        drop((first, second));
        store.close().await;
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}
