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
use rekey_core::audit::AuditEntry;
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
            write(&pool, &mut conn, own, backend, &lock, &batch).await
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
) -> Result<Vec<bool>, Error> {
    // SQLite: the in-process write lock, then the database's, as
    // `begin_write_on` takes them.
    let _guard = match backend {
        Backend::Sqlite => Some(lock.lock().await),
        Backend::Postgres => None,
    };
    // Only a connection of its own may be left inside a transaction by a
    // failed batch (it is dropped, which ends it); a pooled one goes back.
    let simple = own && backend == Backend::Postgres;
    if let Some(c) = conn.as_mut() {
        match write_on(c, backend, simple, batch).await {
            Ok(holds) => return Ok(holds),
            // The kept connection may be one the server has since closed
            // (a restart, an idle timeout): nothing was committed, so one
            // more try on a fresh connection.
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
        if backend == Backend::Postgres {
            sqlx::Executor::execute(&mut c, crate::PG_DURABLE_COMMITS).await?;
        }
        WriterConn::Own(c)
    } else {
        WriterConn::Pooled(pool.acquire().await?)
    };
    let c = conn.insert(fresh);
    let written = write_on(c, backend, simple, batch).await;
    if written.is_err() {
        // Not kept: a simple-protocol batch leaves it inside the failed
        // transaction, and dropping it is what ends that.
        *conn = None;
    }
    written.map_err(|(e, _)| e)
}

/// One batch in one transaction on `c`. The error says whether `COMMIT`
/// was reached (after which the outcome is unknown and nothing is retried).
/// `simple`: on PostgreSQL, through [`write_pg_simple`].
async fn write_on(
    c: &mut AnyConnection,
    backend: Backend,
    simple: bool,
    batch: &[Pending],
) -> Result<Vec<bool>, (Error, bool)> {
    use sqlx::Connection;
    let before = |e: Error| (e, false);
    if simple {
        let checks: Vec<Option<&ReadCheck>> = batch.iter().map(|p| p.check.as_ref()).collect();
        let q = StateQuery::new(&checks);
        if let Some(state) = q.literal_sql() {
            return write_pg_simple(c, batch, &checks, &q, &state).await;
        }
    }
    let mut tx = match backend {
        Backend::Sqlite => c.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => c.begin().await,
    }
    .map_err(|e| before(e.into()))?;
    let items = batch
        .iter()
        .map(|p| (p.entry.clone(), p.check.clone()))
        .collect();
    let holds = append_checked(&mut tx, backend, items)
        .await
        .map_err(before)?;
    tx.commit().await.map_err(|e| (Error::from(e), true))?;
    tracing::debug!(entries = batch.len(), "audit batch committed");
    Ok(holds)
}

/// A PostgreSQL batch in three round trips instead of five: `BEGIN`, the
/// lock and the state query ([`StateQuery::literal_sql`]) go together as
/// one simple-protocol message, then the insert, then `COMMIT`. Each round
/// trip is paid by every fetch waiting for the batch. On an error `c` is
/// left inside the transaction: the caller drops it, which rolls it back.
async fn write_pg_simple(
    c: &mut AnyConnection,
    batch: &[Pending],
    checks: &[Option<&ReadCheck>],
    q: &StateQuery<'_>,
    state: &str,
) -> Result<Vec<bool>, (Error, bool)> {
    use sqlx::FromRow;
    let before = |e: Error| (e, false);
    let opening = format!("BEGIN; {}; {state}", audit::PG_APPEND_LOCK);
    let rows = simple_query(c, opening)
        .await
        .map_err(|e| before(e.into()))?;
    let rows = rows
        .iter()
        .map(<(String, String, String, i64)>::from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| before(e.into()))?;
    let (holds, head) = q.interpret(checks, rows);
    audit::append_after(c, head, held(batch, &holds))
        .await
        .map_err(before)?;
    simple_query(c, "COMMIT".into())
        .await
        .map_err(|e| (Error::from(e), true))?;
    tracing::debug!(entries = batch.len(), "audit batch committed");
    Ok(holds)
}

/// `sql` (one or more statements, no parameters) through the simple
/// protocol: its rows. Boxed: the compiler cannot prove `raw_sql`'s future
/// `Send` for every lifetime inside the writer's future otherwise.
fn simple_query(
    c: &mut AnyConnection,
    sql: String,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<sqlx::any::AnyRow>, sqlx::Error>> + Send + '_>,
> {
    Box::pin(async move { sqlx::Executor::fetch_all(c, sqlx::raw_sql(&sql)).await })
}

/// Append, in order, each entry whose check holds (None always does),
/// inside the caller's write transaction; which ones did. The audit lock
/// is taken *before* the checks are read: a revocation or a disable holds
/// it until it commits (its own audit entry), so a check can never see the
/// state from before a change that has already answered its caller.
pub(crate) async fn append_checked(
    c: &mut AnyConnection,
    backend: Backend,
    items: Vec<(AuditEntry, Option<ReadCheck>)>,
) -> Result<Vec<bool>, Error> {
    audit::lock_for_append(c, backend).await?;
    let checks: Vec<Option<&ReadCheck>> = items.iter().map(|(_, chk)| chk.as_ref()).collect();
    let (holds, head) = batch_state(c, &checks).await?;
    let entries = items
        .into_iter()
        .zip(&holds)
        .filter(|(_, h)| **h)
        .map(|((e, _), _)| e)
        .collect();
    audit::append_after(c, head, entries).await?;
    Ok(holds)
}

/// Which of `checks` hold, and the chain's head, read in one
/// statement for the whole batch: each round trip to the database is paid
/// once per batch, and the writer's batch is the hot path's bottleneck.
async fn batch_state(
    c: &mut AnyConnection,
    checks: &[Option<&ReadCheck>],
) -> Result<(Vec<bool>, Option<(i64, String)>), Error> {
    let q = StateQuery::new(checks);
    let sql = q.sql();
    let mut query = sqlx::query_as::<_, (String, String, String, i64)>(&sql);
    if q.binds_time() {
        query = query.bind(q.now);
    }
    for id in q.ids() {
        query = query.bind(id.to_string());
    }
    Ok(q.interpret(checks, query.fetch_all(&mut *c).await?))
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

    /// Whether `now` is bound: only the checks' part of the query uses
    /// it, and every check brings ids.
    fn binds_time(&self) -> bool {
        !self.key_ids.is_empty()
    }

    /// The ids bound after the time: the keys', then the connections'.
    fn ids(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.key_ids.iter().chain(&self.conn_ids).copied()
    }

    /// The query with numbered parameters.
    fn sql(&self) -> String {
        let keys = rows::marks(2, self.key_ids.len());
        let conns = rows::marks(2 + self.key_ids.len(), self.conn_ids.len());
        self.build("$1", &keys, &conns)
    }

    /// The query with its values written into it, for PostgreSQL's simple
    /// protocol, which can carry it in the same round trip as `BEGIN` and
    /// the lock but takes no parameters. None when an id is not plain
    /// ASCII letters, digits and `_` — ids the store made (`con_…`,
    /// `key_…`) always are — so nothing that could end a literal is ever
    /// written into SQL; the caller then binds them instead. The time is
    /// the server's clock when the statement runs, after the lock it
    /// follows: a key that expired while the batch waited for the lock
    /// (held by a revocation, say) no longer counts as live, as with the
    /// bound query, whose time is taken after the lock.
    fn literal_sql(&self) -> Option<String> {
        fn quote(ids: &[&str]) -> Option<String> {
            let plain = |id: &&str| {
                !id.is_empty()
                    && id.len() <= 64
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            };
            ids.iter()
                .map(|id| plain(id).then(|| format!("'{id}'")))
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(", "))
        }
        let (keys, conns) = (quote(&self.key_ids)?, quote(&self.conn_ids)?);
        Some(self.build(PG_NOW_MS, &keys, &conns))
    }

    /// Rows of (what, id, tenant, number): 'k' a live key, 'c' a
    /// connection and its version, 'h' the chain's head (hash, seq).
    fn build(&self, now: &str, keys: &str, conns: &str) -> String {
        let mut parts = Vec::new();
        if self.binds_time() {
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
        &self,
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
                _ => head = Some((n, id)),
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
    use crate::audit;
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
            let mut st = tx.prepare_cached(&q.sql()).map_err(db)?;
            let ids: Vec<&str> = q.ids().collect();
            let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(ids.len() + 1);
            if q.binds_time() {
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
        let (holds, head) = q.interpret(&checks, rows);
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
    fn the_state_query_binds_or_writes_the_same_values() {
        let a = check("key_0a", "con_1b");
        let b = check("key_0a", "con_2c");
        let checks = [Some(&a), None, Some(&b)];
        let q = StateQuery::new(&checks);
        assert_eq!(q.ids().collect::<Vec<_>>(), ["key_0a", "con_1b", "con_2c"]);
        assert!(q.sql().contains("id IN ($2) UNION ALL") && q.sql().contains("IN ($3, $4)"));
        let lit = q.literal_sql().expect("plain ids are written in");
        assert!(lit.contains(&format!("expires_at > {PG_NOW_MS})")));
        assert!(lit.contains("id IN ('con_1b', 'con_2c')"));
        assert!(!lit.contains('$'));
        // Only the head when nothing is checked.
        let none = StateQuery::new(&[None]);
        assert!(!none.binds_time());
        assert_eq!(none.literal_sql(), Some(none.sql()));
    }

    #[test]
    fn an_id_that_is_not_plain_is_never_written_into_sql() {
        for bad in [
            "con_1'; DROP TABLE audit_log; --",
            "con_\\",
            "",
            "con 1",
            "ключ",
        ] {
            let c = check("key_0a", bad);
            let q = StateQuery::new(&[Some(&c)]);
            assert_eq!(q.literal_sql(), None, "{bad:?}");
            let k = check(bad, "con_1b");
            assert_eq!(StateQuery::new(&[Some(&k)]).literal_sql(), None, "{bad:?}");
        }
        let long = check("key_0a", &"a".repeat(65));
        assert_eq!(StateQuery::new(&[Some(&long)]).literal_sql(), None);
    }
}
