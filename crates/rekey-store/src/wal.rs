//! SQLite: copying the write-ahead log into the database file
//! (checkpointing) ten times a second, on a thread of its own.
//!
//! Why a thread: SQLite's automatic checkpoint is off (`SQLITE_PRAGMAS`):
//! it would run inside whichever commit crossed its threshold, the audit
//! writer's most often, stalling every fetch waiting for that batch.
//! `PASSIVE` waits for no reader or writer. Every commit syncs the log
//! itself (`synchronous = FULL`), so a checkpoint finds nothing in the log
//! left to sync. (Until 2026-12-07 commits ran with `NORMAL`, which syncs
//! the log only at checkpoints, and this thread synced it every 50 ms to
//! keep those syncs short; docs/PERFORMANCE.md, 2026-12-06 evening.)
//!
//! Why the write lock, sometimes: SQLite starts the log over from its
//! beginning only when a writer begins while every frame has been copied
//! (and no reader is still on a snapshot that needs the log), and under
//! constant writes a `PASSIVE` checkpoint never catches up: new commits
//! land while it copies. The log then grew for as long as the load
//! lasted: 745 MB after ten seconds of audited reads at 8,600 a second.
//! So when the log is past its limit, the thread waits in line for the
//! store's write lock — which every writer of this store takes first, the
//! audit writer included — and copies the rest while no commit can land;
//! the next writer then starts the log over, writing the file again from
//! its start (so the file stays at about the limit; it is not cut and
//! regrown). Writers wait for that one pass, every few seconds at full
//! load and never below the limit: 1–2 ms on the benchmark machine, since
//! the thread syncs the database file after every pass (and every commit
//! has synced the log). (SQLite syncs the database file only when a
//! pass reaches the log's end, which under constant writes only the
//! locked one does: it then synced seconds of copies, 17–29 ms, while
//! every writer waited; docs/PERFORMANCE.md, 2026-12-07 (evening).) A
//! reader still on an older snapshot (a long backup, say) stops both the
//! copy and the restart; the thread then leaves the lock alone for five
//! seconds before it tries again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Mutex;

/// How often the thread checkpoints: ten times a second. Each pass then
/// copies, and syncs into the database file, a tenth of a second's pages:
/// at 21,500 audited reads a second, the open-loop p99 was 7.6–8.4 ms
/// with passes every 500 ms (the sync stalled the audit writer's next
/// commits) and 4.2–5.4 ms every 100 ms (docs/PERFORMANCE.md).
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// Passes in `secs` seconds: for waits counted in passes.
const fn passes(secs: u32) -> u32 {
    secs * 1000 / CHECKPOINT_EVERY.as_millis() as u32
}
/// The log's size past which a checkpoint is finished under the write
/// lock, until [`crate::Store::set_wal_limit`] says otherwise.
pub const DEFAULT_WAL_LIMIT: u64 = 256 * 1024 * 1024;

/// The checkpoint thread. It stops when told to ([`Checkpointer::stop`])
/// or when this handle is dropped (the last clone of its store).
pub(crate) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Checkpointer {
    /// Start checkpointing the SQLite file at `path`, finishing a
    /// checkpoint under `lock` (the store's write lock) when the log is
    /// past `limit` bytes; an error when no thread can be had.
    pub(crate) fn start(
        path: PathBuf,
        lock: Arc<Mutex<()>>,
        limit: Arc<AtomicU64>,
    ) -> std::io::Result<Checkpointer> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rekey-checkpoint".into())
            .spawn(move || run(&path, &stopped, &lock, &limit))?;
        Ok(Checkpointer {
            stop,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Stop the thread and wait for it (for the work of one pass), so
    /// that its connection is closed when [`crate::Store::close`] returns.
    /// (The log file itself stays while the audit writer's own connection
    /// is open; SQLite reads it back at the next open.)
    pub(crate) async fn stop(&self) {
        let _ = self.stop.send(());
        let thread = match self.thread.lock() {
            Ok(mut t) => t.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

fn run(path: &std::path::Path, stopped: &mpsc::Receiver<()>, lock: &Mutex<()>, limit: &AtomicU64) {
    let mut conn: Option<Connection> = None;
    let mut failures: u32 = 0;
    // Checkpoints to let pass before the next one under the lock.
    let mut hold_off: u32 = 0;
    // Waits for the write lock in its queue, watching for the stop.
    let waiter = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint: no runtime to wait for the write lock; the log is not bounded");
            None
        }
    };
    loop {
        match stopped.recv_timeout(CHECKPOINT_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            // Told to stop, or every handle is gone.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        match checkpoint(path, &mut conn, limit.load(Ordering::Relaxed)) {
            Ok(over) => {
                failures = 0;
                // What the pass copied, synced while no one waits: a
                // pass that does not reach the log's end (none does
                // under constant writes) leaves the database file
                // unsynced, and the pass under the lock then synced
                // seconds of copies while every writer waited.
                if let Some(c) = &conn {
                    sync_database(c);
                }
                if hold_off > 0 {
                    hold_off -= 1;
                } else if let (true, Some(rt)) = (over, &waiter) {
                    let Some(guard) = lock_or_stop(rt, lock, stopped) else {
                        return;
                    };
                    let finished = conn.as_ref().map(passive);
                    drop(guard);
                    match finished {
                        Some(Ok((log, copied))) if copied < log => {
                            // A reader still on an older snapshot keeps
                            // the log from being copied to its end, and
                            // from starting over: not again for 5 s.
                            hold_off = passes(5);
                            tracing::debug!(log, copied, "WAL past its limit but a reader holds an older snapshot; tried again later");
                        }
                        Some(Err(e)) => {
                            conn = None;
                            tracing::debug!(error = %e, "WAL checkpoint under the write lock failed; tried again");
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // Nothing else checkpoints while the store is open,
                // so the log grows until this works again: said
                // after 5 s of failures, then every 10 minutes.
                if failures == passes(5) || failures.is_multiple_of(passes(600)) {
                    tracing::warn!(error = %e, failures, "WAL checkpoint failing; the log file grows until it works again");
                } else {
                    tracing::debug!(error = %e, "WAL checkpoint failed; tried again");
                }
            }
        }
    }
}

/// Sync the database file through `c`'s own handle on it (SQLite's
/// `xSync`); a failure is only logged (SQLite's own sync, in a checkpoint
/// that reaches the log's end, is the one durability rests on).
///
/// Never through a file descriptor of our own: closing *any* descriptor
/// of the database file drops every POSIX lock this process holds on it,
/// the SQLite connections' included ("How To Corrupt An SQLite Database
/// File", 2.2). Another process (an offline `rekey admin` command) could
/// then take the exclusive lock, believe itself the last connection, and
/// checkpoint and remove the log under the running server: the test
/// `offline_admin_beside_a_busy_server` saw "database disk image is
/// malformed" that way while this synced through `std::fs::File`.
fn sync_database(c: &Connection) {
    use rusqlite::ffi;
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: `c.handle()` is a live connection used only by this thread;
    // SQLITE_FCNTL_FILE_POINTER writes the main database's `sqlite3_file`
    // (owned by the connection, valid while it is open) into `file`, and
    // `xSync` is that file's own method, called as SQLite calls it.
    let rc = unsafe {
        let got = ffi::sqlite3_file_control(
            c.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&mut file as *mut *mut ffi::sqlite3_file).cast(),
        );
        if got != ffi::SQLITE_OK || file.is_null() || (*file).pMethods.is_null() {
            got.max(ffi::SQLITE_ERROR)
        } else {
            match (*(*file).pMethods).xSync {
                Some(sync) => sync(file, ffi::SQLITE_SYNC_NORMAL),
                None => ffi::SQLITE_ERROR,
            }
        }
    };
    if rc != ffi::SQLITE_OK {
        tracing::debug!(
            rc,
            "database sync beside the checkpoint failed; SQLite's own syncs still run"
        );
    }
}

/// One `PASSIVE` checkpoint on `conn`, opened first when None: whether
/// the log holds more than `limit` bytes (then `run` finishes the pass
/// under the write lock; see the module's doc). An error leaves `conn`
/// None, to be opened afresh next time.
fn checkpoint(
    path: &std::path::Path,
    conn: &mut Option<Connection>,
    limit: u64,
) -> rusqlite::Result<bool> {
    let c = match conn.take() {
        Some(c) => c,
        None => crate::open_rusqlite(path)?,
    };
    let (log, _) = passive(&c)?;
    let page: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    *conn = Some(c);
    // Each frame is a page and its 24-byte header.
    let bytes = u64::try_from(log.saturating_mul(page.saturating_add(24))).unwrap_or(0);
    Ok(bytes > limit)
}

/// The store's write lock, waited for in its queue (as fairly as every
/// other writer), or None when told to stop meanwhile (so that closing a
/// store never waits on a writer that holds the lock).
fn lock_or_stop<'a>(
    rt: &tokio::runtime::Runtime,
    lock: &'a Mutex<()>,
    stopped: &mpsc::Receiver<()>,
) -> Option<tokio::sync::MutexGuard<'a, ()>> {
    rt.block_on(async {
        tokio::select! {
            guard = lock.lock() => Some(guard),
            () = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if !matches!(stopped.try_recv(), Err(mpsc::TryRecvError::Empty)) {
                        return;
                    }
                }
            } => None,
        }
    })
}

/// A `PASSIVE` checkpoint: the frames in the log, and those copied.
fn passive(c: &Connection) -> rusqlite::Result<(i64, i64)> {
    c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits counted in passes last what their comments say, whatever the
    /// interval: the hold-off after a blocked pass is 5 s, the failure
    /// warning comes after 5 s and then every 10 minutes.
    #[test]
    fn waits_in_passes_match_their_durations() {
        assert_eq!(CHECKPOINT_EVERY * passes(5), Duration::from_secs(5));
        assert_eq!(CHECKPOINT_EVERY * passes(600), Duration::from_secs(600));
        assert!(passes(5) > 1);
    }
}
