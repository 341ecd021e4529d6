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

pub(crate) struct GroupWriter {
    queue: mpsc::Sender<Pending>,
}

impl GroupWriter {
    /// Start the writer task. It ends when the last sender (the store's
    /// last clone) is dropped, after writing what was queued.
    pub(crate) fn start(pool: AnyPool, backend: Backend, lock: Arc<Mutex<()>>) -> GroupWriter {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, backend, lock, rx));
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

async fn run(
    pool: AnyPool,
    backend: Backend,
    lock: Arc<Mutex<()>>,
    mut rx: mpsc::Receiver<Pending>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // The writer keeps one pooled connection for itself (pools of four or
    // more): no pool round trip per batch, and on SQLite a page cache that stays warm (a
    // connection whose cache another connection's commit made stale
    // re-reads the pages it touches). Dropped after an error, so a broken
    // connection is replaced by a fresh one.
    let mut conn: Option<PoolConnection<Any>> = None;
    // A small pool cannot spare one: requests that hold a connection while
    // they take another (an OAuth refresh on PostgreSQL) would starve.
    let keep = pool.options().get_max_connections() >= 4;
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
        let result = write(&pool, &mut conn, backend, &lock, &batch).await;
        if result.is_err() || !keep {
            conn = None;
        }
        // Every caller of a failed batch gets the error (its secret is not
        // handed out); the message is the store's, never an entry's content.
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
}

async fn write(
    pool: &AnyPool,
    conn: &mut Option<PoolConnection<Any>>,
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
    if let Some(c) = conn.as_mut() {
        match write_on(c, backend, batch).await {
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
    let c = conn.insert(pool.acquire().await?);
    write_on(c, backend, batch).await.map_err(|(e, _)| e)
}

/// One batch in one transaction on `c`. The error says whether `COMMIT`
/// was reached (after which the outcome is unknown and nothing is retried).
async fn write_on(
    c: &mut AnyConnection,
    backend: Backend,
    batch: &[Pending],
) -> Result<Vec<bool>, (Error, bool)> {
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
    let holds = append_checked(&mut tx, backend, items)
        .await
        .map_err(before)?;
    tx.commit().await.map_err(|e| (Error::from(e), true))?;
    tracing::debug!(entries = batch.len(), "audit batch committed");
    Ok(holds)
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
    let wanted: Vec<&ReadCheck> = checks.iter().flatten().copied().collect();
    let key_ids: BTreeSet<&str> = wanted.iter().map(|r| r.api_key_id.as_str()).collect();
    let conn_ids: BTreeSet<&str> = wanted.iter().map(|r| r.connection_id.as_str()).collect();
    // Rows of (what, id, tenant, number): 'k' a live key, 'c' a connection
    // and its version, 'h' the chain's head (hash, seq).
    let mut parts = Vec::new();
    if !wanted.is_empty() {
        parts.push(format!(
            "SELECT 'k', id, '', CAST(0 AS BIGINT) FROM api_keys WHERE revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $1) AND id IN ({})",
            rows::marks(2, key_ids.len())
        ));
        parts.push(format!(
            "SELECT 'c', id, tenant, version FROM connections WHERE id IN ({})",
            rows::marks(2 + key_ids.len(), conn_ids.len())
        ));
    }
    parts.push(format!(
        "SELECT 'h', hash, '', seq FROM ({}) head",
        audit::HEAD_SQL
    ));
    let sql = parts.join(" UNION ALL ");
    let mut q = sqlx::query_as::<_, (String, String, String, i64)>(&sql);
    if !wanted.is_empty() {
        q = q.bind(rekey_core::time::now_ms());
        for id in key_ids.iter().chain(&conn_ids) {
            q = q.bind(id.to_string());
        }
    }
    let mut live_keys = HashSet::new();
    let mut versions = HashMap::new();
    let mut head = None;
    for (what, id, tenant, n) in q.fetch_all(&mut *c).await? {
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
    Ok((holds, head))
}
