//! Group commit for single creates: creates that arrive while another
//! batch is being written wait, then go in together, in one transaction
//! of the multi-row statements an import uses ([`Rekey::insert_connections`]).
//! No background task: whoever takes the writer lock writes what is
//! queued (leader and followers), in a spawned task so a caller that goes
//! away (a client disconnecting) cannot roll back the others' rows.

use super::create::NewConnection;
use crate::{Ctx, Rekey};
use rekey_core::Error;
use rekey_store::connections::ConnectionRow;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// At most this many creates a transaction (a few thousand bound
/// parameters with the multi-row statements).
const MAX_BATCH: usize = 256;

type Done = oneshot::Sender<Result<ConnectionRow, Error>>;

#[derive(Default)]
pub(crate) struct CreateGroup {
    queue: Mutex<Vec<(Ctx, NewConnection, Done)>>,
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl CreateGroup {
    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<(Ctx, NewConnection, Done)>> {
        // Pushes and drains leave the queue whole even if a holder panicked.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Vec<(Ctx, NewConnection, Done)> {
        let mut q = self.queue();
        let n = q.len().min(MAX_BATCH);
        q.drain(..n).collect()
    }
}

impl Rekey {
    /// Write one checked connection with whatever other creates are
    /// waiting, and return it once its transaction has committed.
    pub(crate) async fn insert_grouped(
        &self,
        ctx: &Ctx,
        new: NewConnection,
    ) -> Result<ConnectionRow, Error> {
        let group = &self.inner.create_group;
        let (done, mut answer) = oneshot::channel();
        group.queue().push((ctx.clone(), new, done));
        loop {
            let guard = group.writer.clone().lock_owned().await;
            // A writer answers before it lets the lock go: nothing here yet
            // means this create is still queued.
            match answer.try_recv() {
                Ok(r) => return r,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(Error::internal("a grouped create was dropped"))
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch = group.take();
            let this = self.clone();
            let written = tokio::spawn(async move {
                let _writing = guard;
                this.write_group(batch).await;
            });
            if written.await.is_err() {
                tracing::error!("a grouped create's writer panicked");
            }
        }
    }

    /// One transaction for the batch; if it fails, each create alone, so
    /// one that cannot be written does not fail the others.
    async fn write_group(&self, batch: Vec<(Ctx, NewConnection, Done)>) {
        if batch.len() > 1 {
            let rows: Vec<(Ctx, NewConnection)> = batch
                .iter()
                .map(|(c, n, _)| (c.clone(), n.clone()))
                .collect();
            match self.insert_in_tx(rows).await {
                Ok(written) => {
                    for ((_, _, done), row) in batch.into_iter().zip(written) {
                        let _ = done.send(Ok(row));
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, creates = batch.len(), "a grouped create failed; writing each alone");
                }
            }
        }
        for (ctx, new, done) in batch {
            let r = self.insert_in_tx(vec![(ctx, new)]).await.and_then(|mut v| {
                v.pop()
                    .ok_or_else(|| Error::internal("create wrote no connection"))
            });
            let _ = done.send(r);
        }
    }

    async fn insert_in_tx(
        &self,
        rows: Vec<(Ctx, NewConnection)>,
    ) -> Result<Vec<ConnectionRow>, Error> {
        let mut tx = self.store().begin_write().await?;
        let written = self.insert_connections(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(written)
    }
}
