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

use crate::{audit, begin_write_on, Backend};
use rekey_core::audit::AuditEntry;
use rekey_core::Error;
use sqlx::AnyPool;
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

struct Pending {
    entry: AuditEntry,
    done: oneshot::Sender<Result<(), String>>,
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

    /// Append `entry` and return once the transaction holding it has
    /// committed.
    pub(crate) async fn append(&self, entry: AuditEntry) -> Result<(), Error> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending { entry, done })
            .await
            .map_err(|_| Error::Unavailable("the audit writer has stopped".into()))?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
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
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let entries = batch.iter().map(|p| p.entry.clone()).collect();
        let result = write(&pool, backend, &lock, entries).await;
        // Every caller of a failed batch gets the error (its secret is not
        // handed out); the message is the store's, never an entry's content.
        let answer = result.map_err(|e| format!("audit log unavailable: {e}"));
        for p in batch.drain(..) {
            let _ = p.done.send(answer.clone());
        }
    }
}

async fn write(
    pool: &AnyPool,
    backend: Backend,
    lock: &Arc<Mutex<()>>,
    entries: Vec<AuditEntry>,
) -> Result<(), Error> {
    let mut tx = begin_write_on(pool.clone(), backend, lock.clone()).await?;
    audit::append_all(tx.conn(), backend, entries).await?;
    tx.commit().await
}
