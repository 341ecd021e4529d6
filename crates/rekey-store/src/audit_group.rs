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
    // The writer keeps one pooled connection for itself: no pool round
    // trip per batch, and on SQLite a page cache that stays warm (a
    // connection whose cache another connection's commit made stale
    // re-reads the pages it touches). Dropped after an error, so a broken
    // connection is replaced by a fresh one.
    let mut conn: Option<PoolConnection<Any>> = None;
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
        if result.is_err() {
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
    use sqlx::Connection;
    // SQLite: the in-process write lock, then the database's, as
    // `begin_write_on` takes them.
    let _guard = match backend {
        Backend::Sqlite => Some(lock.lock().await),
        Backend::Postgres => None,
    };
    let c = match conn {
        Some(c) => c,
        None => conn.insert(pool.acquire().await?),
    };
    let mut tx = match backend {
        Backend::Sqlite => c.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => c.begin().await?,
    };
    let checks: Vec<Option<&ReadCheck>> = batch.iter().map(|p| p.check.as_ref()).collect();
    audit::lock_for_append(&mut tx, backend).await?;
    let (holds, head) = batch_state(&mut tx, &checks, true).await?;
    let entries = batch
        .iter()
        .zip(&holds)
        .filter(|(_, h)| **h)
        .map(|(p, _)| p.entry.clone())
        .collect();
    audit::append_after(&mut tx, head, entries).await?;
    tx.commit().await?;
    tracing::debug!(entries = batch.len(), "audit batch committed");
    Ok(holds)
}

/// Which of `checks` hold (None always does).
pub(crate) async fn checks_hold(
    c: &mut AnyConnection,
    checks: &[Option<&ReadCheck>],
) -> Result<Vec<bool>, Error> {
    Ok(batch_state(c, checks, false).await?.0)
}

/// Which of `checks` hold, and (`with_head`) the chain's head, read in one
/// statement for the whole batch: each round trip to the database is paid
/// once per batch, and the writer's batch is the hot path's bottleneck.
async fn batch_state(
    c: &mut AnyConnection,
    checks: &[Option<&ReadCheck>],
    with_head: bool,
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
    if with_head {
        parts.push(format!(
            "SELECT 'h', hash, '', seq FROM ({}) head",
            audit::HEAD_SQL
        ));
    }
    if parts.is_empty() {
        return Ok((vec![true; checks.len()], None));
    }
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
