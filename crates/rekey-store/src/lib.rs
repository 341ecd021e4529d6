//! Persistence for rekey on SQLite (embedded default) and PostgreSQL.
//!
//! One code path through sqlx's `Any` driver; SQL is written in the common
//! dialect (`$N` parameters work on both) and the few places that must differ
//! branch on [`Backend`]. Each dialect has its own migrations folder.
//!
//! Invariants: no HTTP; no plaintext secrets (the `secrets` table receives
//! sealed bytes from the service); no business rules beyond integrity.

pub mod api_keys;
pub mod audit;
mod audit_group;
pub mod campaigns;
pub mod connect_sessions;
pub mod connections;
pub mod credential_versions;
pub mod health_notes;
pub mod integrations;
pub mod revocations;
pub mod rotation_schedules;
pub mod rotations;
mod rows;
pub use rows::{Due, Leased};
pub mod secrets;
pub mod users;
mod wal;
pub use wal::DEFAULT_WAL_LIMIT;
pub mod webhooks;

pub use audit_group::{AuditCommit, ReadCheck};
pub use rows::TenantScoped;

use rekey_core::Error;
use rekey_core::ErrorCode;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer; serialising write transactions in-process
    /// avoids SQLITE_BUSY upgrades under concurrency.
    write_lock: Arc<Mutex<()>>,
    /// Audit entries written on their own: started on first use, so that
    /// a store opened outside a server (an offline command) starts no task.
    audit_group: Arc<tokio::sync::OnceCell<audit_group::GroupWriter>>,
    audit_commit: AuditCommit,
    /// The SQLite database's file (None on PostgreSQL or in memory): the
    /// audit group writer opens its own connection to it.
    sqlite_file: Option<Arc<std::path::PathBuf>>,
    /// SQLite file: the thread that checkpoints its write-ahead log.
    checkpointer: Option<Arc<wal::Checkpointer>>,
    /// The log's size past which that thread finishes a checkpoint under
    /// the write lock ([`Store::set_wal_limit`]).
    wal_limit: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// A write transaction; on SQLite it also holds the in-process write lock.
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    _guard: Option<OwnedMutexGuard<()>>,
    backend: Backend,
}

impl WriteTx {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
    pub fn backend(&self) -> Backend {
        self.backend
    }
    /// Commit. Run to the end in a task of its own: a caller that goes
    /// away meanwhile (a client hanging up) must not leave the connection
    /// half way through, holding the database's write lock.
    pub async fn commit(self) -> Result<(), Error> {
        let WriteTx { tx, _guard, .. } = self;
        tokio::spawn(async move {
            let r = tx.commit().await;
            drop(_guard);
            r
        })
        .await
        .map_err(|e| Error::internal(format!("commit task: {e}")))??;
        Ok(())
    }
}

/// Every SQLite connection's settings: the pool's, and the audit writer's
/// own (`audit_group`), so that both write alike. `synchronous = FULL`:
/// every commit syncs the write-ahead log before it returns, so what has
/// committed — a credential read's audit entry before the secret leaves, a
/// rotation's new password before the target is told it — survives a
/// crash of the machine or a power loss, not only of rekey. (Until
/// 2026-12-07 commits ran with `NORMAL`, which syncs the log only at
/// checkpoints; this store's checkpoint thread synced it every 50 ms.)
pub(crate) const SQLITE_PRAGMAS: &str = "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
     PRAGMA busy_timeout = 10000; PRAGMA wal_autocheckpoint = 0;";

/// Every PostgreSQL connection's first statement: commits wait for their
/// WAL flush (`synchronous_commit`) even where the server or database says
/// `off`, so a credential read's audit entry is durable before the secret
/// leaves. Any other setting is kept: `local` is durable here already, and
/// `on`, `remote_write` and `remote_apply` also wait for standbys.
pub(crate) const PG_DURABLE_COMMITS: &str = "SELECT set_config('synchronous_commit', 'on', false) \
     WHERE current_setting('synchronous_commit') = 'off'";

/// A connection of rusqlite's to the SQLite file at `path`, set up as the
/// pool's (the WAL mode is the file's already): for the threads that work
/// without a round trip to a driver thread per statement.
pub(crate) fn open_rusqlite(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let c = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.execute_batch(SQLITE_PRAGMAS)?;
    Ok(c)
}

/// The file a `sqlite:` URL names, or None for an in-memory database
/// (which a second connection would not see).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let file = opts.get_filename();
    let memory = file.as_os_str().is_empty()
        || file.to_string_lossy().starts_with(":memory:")
        || url.contains("mode=memory");
    (!memory).then(|| file.to_path_buf())
}

impl Store {
    /// Connect to `url` (`sqlite://path` or `postgres://…`) and run migrations.
    pub async fn connect(url: &str) -> Result<Store, Error> {
        Store::connect_sized(url, None).await
    }

    /// [`Store::connect`] with a pool of at most `pool_size` connections
    /// (None: 8 on SQLite, 16 on PostgreSQL).
    pub async fn connect_sized(url: &str, pool_size: Option<u32>) -> Result<Store, Error> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::invalid(
                ErrorCode::InvalidConfig,
                "database URL must start with sqlite: or postgres://",
            ));
        };
        let opts = AnyConnectOptions::from_str(url).map_err(|e| {
            Error::invalid(
                ErrorCode::InvalidConfig,
                format!("invalid database URL: {e}"),
            )
        })?;
        let mut pool = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        pool = match backend {
            Backend::Sqlite => {
                pool.max_connections(pool_size.unwrap_or(8))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            // No automatic checkpoint: it would run inside whichever
                            // commit crosses the threshold (the audit writer's, most
                            // often), stalling it; see `checkpoint_wal`.
                            conn.execute(&*format!("PRAGMA journal_mode = WAL; {SQLITE_PRAGMAS}"))
                                .await?;
                            Ok(())
                        })
                    })
            }
            Backend::Postgres => {
                pool.max_connections(pool_size.unwrap_or(16))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute(PG_DURABLE_COMMITS).await?;
                            Ok(())
                        })
                    })
            }
        };
        let pool = pool
            .connect_with(opts)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open database: {e}")))?;
        let store = Store {
            pool,
            backend,
            write_lock: Arc::new(Mutex::new(())),
            audit_group: Arc::new(tokio::sync::OnceCell::new()),
            audit_commit: AuditCommit::default(),
            sqlite_file: match backend {
                Backend::Sqlite => sqlite_file(url).map(Arc::new),
                Backend::Postgres => None,
            },
            checkpointer: None,
            wal_limit: Arc::new(std::sync::atomic::AtomicU64::new(wal::DEFAULT_WAL_LIMIT)),
        };
        store.migrate().await?;
        // An in-memory database has no write-ahead log.
        let Some(file) = store.sqlite_file.clone() else {
            return Ok(store);
        };
        match wal::Checkpointer::start(
            file.to_path_buf(),
            store.write_lock.clone(),
            store.wal_limit.clone(),
        ) {
            Ok(c) => Ok(Store {
                checkpointer: Some(Arc::new(c)),
                ..store
            }),
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint: no thread of its own; checkpointing from a task");
                tokio::spawn(checkpoint_wal(store.pool.clone()));
                Ok(store)
            }
        }
    }

    /// Whether the PostgreSQL database at `url` already holds rekey's
    /// schema (a migrated database), without changing anything. Offline
    /// commands that only read or rewrap refuse an empty database rather
    /// than creating a schema in the wrong place.
    pub async fn postgres_is_initialized(url: &str) -> Result<bool, Error> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(url)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open database: {e}")))?;
        let n: i32 = sqlx::query_scalar(
            "SELECT CASE WHEN to_regclass('_sqlx_migrations') IS NULL THEN 0 ELSE 1 END",
        )
        .fetch_one(&mut c)
        .await?;
        let _ = c.close().await;
        Ok(n == 1)
    }

    async fn migrate(&self) -> Result<(), Error> {
        let res = match self.backend {
            Backend::Sqlite => {
                let before = self.sqlite_migrations_applied().await;
                let res = sqlx::migrate!("./migrations/sqlite").run(&self.pool).await;
                if res.is_ok() && self.sqlite_migrations_applied().await != before {
                    // A migration may rewrite a whole table (0023 rebuilds
                    // the audit log): copy the log into the database and
                    // empty it now, or the file would keep that size while
                    // the server runs (`wal.rs`). Only after an upgrade,
                    // when nothing else uses the file; best effort.
                    let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                        .fetch_all(&self.pool)
                        .await;
                }
                res
            }
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await
            }
        };
        res.map_err(|e| Error::internal(format!("migration failed: {e}")))
    }

    /// SQLite: how many migrations the file records as applied (0 for a
    /// new file).
    async fn sqlite_migrations_applied(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&self.pool)
            .await
            .unwrap_or(0)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool's maximum size.
    pub fn pool_size(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A write transaction. The `BEGIN` runs in a task of its own: a caller
    /// dropped while it is in flight (a client that hangs up) would
    /// otherwise hand the connection back to the pool inside an open
    /// transaction, and on SQLite keep the write lock for good. Dropped
    /// unused, the finished task's transaction rolls back.
    pub async fn begin_write(&self) -> Result<WriteTx, Error> {
        let (pool, backend, lock) = (self.pool.clone(), self.backend, self.write_lock.clone());
        tokio::spawn(begin_write_on(pool, backend, lock))
            .await
            .map_err(|e| Error::internal(format!("begin task: {e}")))?
    }

    /// How [`Store::append_audit`] commits (group commit unless changed).
    pub fn with_audit_commit(mut self, mode: AuditCommit) -> Store {
        self.audit_commit = mode;
        self
    }

    /// Append one audit entry that belongs to no other change (a
    /// credential read's) and return once it is committed. Concurrent
    /// calls share one transaction ([`AuditCommit::Group`]).
    pub async fn append_audit(&self, entry: rekey_core::audit::AuditEntry) -> Result<(), Error> {
        self.append_audit_if(entry, None).await.map(|_| ())
    }

    /// [`Store::append_audit`], written only if `check` still holds in the
    /// transaction that would write it ([`ReadCheck`]): true when the
    /// entry was written, false when the check failed and nothing was.
    pub async fn append_audit_if(
        &self,
        entry: rekey_core::audit::AuditEntry,
        check: Option<ReadCheck>,
    ) -> Result<bool, Error> {
        match self.audit_commit {
            AuditCommit::Group => {
                let writer = self
                    .audit_group
                    .get_or_init(|| async {
                        audit_group::GroupWriter::start(
                            self.pool.clone(),
                            self.backend,
                            self.write_lock.clone(),
                            self.sqlite_file.as_deref().cloned(),
                        )
                    })
                    .await;
                writer.append(entry, check).await
            }
            // Boxed: the benchmark's comparison mode keeps its transaction's
            // state out of the group path's future (moved on every read).
            AuditCommit::Each => {
                Box::pin(async {
                    let mut tx = self.begin_write().await?;
                    let backend = self.backend;
                    let holds =
                        audit_group::append_checked(tx.conn(), backend, vec![(entry, check)])
                            .await?
                            .0
                            .first()
                            == Some(&true);
                    tx.commit().await?;
                    Ok(holds)
                })
                .await
            }
        }
    }

    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<Any>, Error> {
        Ok(self.pool.acquire().await?)
    }

    /// A read-only transaction whose statements all see one snapshot
    /// (PostgreSQL `REPEATABLE READ`; a deferred SQLite transaction in WAL
    /// mode keeps the snapshot of its first read). For reading a record and
    /// its secrets as one pair when a writer keeps changing them.
    /// Begun in a task of its own, as [`Store::begin_write`] is.
    pub async fn begin_snapshot(&self) -> Result<Transaction<'static, Any>, Error> {
        let (pool, backend) = (self.pool.clone(), self.backend);
        tokio::spawn(async move {
            match backend {
                Backend::Sqlite => pool.begin().await,
                Backend::Postgres => {
                    pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                        .await
                }
            }
            .map_err(Error::from)
        })
        .await
        .map_err(|e| Error::internal(format!("begin task: {e}")))?
    }

    /// SQLite only: write a consistent copy of the whole database into the
    /// file `path` (which must not exist or be empty) with `VACUUM INTO`. It
    /// reads one snapshot, so it is safe while the server reads and writes,
    /// and the copy includes what is still in the `-wal` file.
    pub async fn vacuum_into(&self, path: &str) -> Result<(), Error> {
        if self.backend != Backend::Sqlite {
            return Err(Error::invalid(
                ErrorCode::BackupNotSupported,
                "only SQLite databases can be copied with VACUUM INTO",
            ));
        }
        sqlx::query("VACUUM INTO $1")
            .bind(path.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Readiness: one round trip to the database.
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// SQLite: the size of the write-ahead log ([`DEFAULT_WAL_LIMIT`])
    /// past which the checkpoint thread holds writers off for one pass so
    /// that the log starts over; under constant writes it otherwise grows
    /// for as long as they last. The file keeps the size it reached (it is
    /// written over from its start, not regrown) until the store closes.
    /// Smaller means less disk and more frequent waits.
    pub fn set_wal_limit(&self, bytes: u64) {
        self.wal_limit
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    pub async fn close(&self) {
        if let Some(c) = &self.checkpointer {
            c.stop().await;
        }
        self.pool.close().await;
    }
}

/// SQLite, when no thread can be had for [`wal::Checkpointer`]: copy the
/// write-ahead log into the database as often as the thread would on a pool connection
/// (`PASSIVE`: it waits for no reader or writer), until the pool closes;
/// closing checkpoints what is left.
async fn checkpoint_wal(pool: AnyPool) {
    let mut tick = tokio::time::interval(wal::CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = pool.close_event() => return,
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(error = %e, "WAL checkpoint failed; tried again");
        }
    }
}

/// Begin a write transaction on `pool`: on SQLite, after taking the
/// in-process write lock. Not cancellation-safe by itself: callers that
/// may be dropped run it in a task of their own ([`Store::begin_write`]).
pub(crate) async fn begin_write_on(
    pool: AnyPool,
    backend: Backend,
    lock: Arc<Mutex<()>>,
) -> Result<WriteTx, Error> {
    let guard = match backend {
        Backend::Sqlite => Some(lock.lock_owned().await),
        Backend::Postgres => None,
    };
    // SQLite: take the database write lock up front. A deferred
    // transaction that reads first and upgrades later fails at once with
    // SQLITE_BUSY(_SNAPSHOT) when another process (an offline `rekey admin`
    // command) wrote in between; IMMEDIATE waits (busy_timeout).
    let tx = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => pool.begin().await,
    }?;
    Ok(WriteTx {
        tx,
        _guard: guard,
        backend,
    })
}

/// Tables whose rows a write transaction may lock.
#[derive(Debug, Clone, Copy)]
pub enum Locked {
    Connection,
    Integration,
    Webhook,
}

/// On PostgreSQL, lock one tenant-scoped row for the rest of the write
/// transaction (`SELECT … FOR UPDATE`), so a read-modify-write without a
/// caller's version applies to the latest version instead of losing a race.
/// A no-op on SQLite, whose write transactions are already serialised.
pub async fn lock_row(
    tx: &mut WriteTx,
    table: Locked,
    tenant: &str,
    id: &str,
) -> Result<(), Error> {
    if tx.backend != Backend::Postgres {
        return Ok(());
    }
    let c = tx.conn();
    match table {
        Locked::Connection => {
            rows::lock_for_update::<connections::ConnectionRow>(c, tenant, id).await
        }
        Locked::Integration => {
            rows::lock_for_update::<integrations::IntegrationRow>(c, tenant, id).await
        }
        Locked::Webhook => rows::lock_for_update::<webhooks::WebhookRow>(c, tenant, id).await,
    }
}

pub(crate) fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn parse_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    /// The audit writer's and the checkpoint thread's own connections
    /// sync every commit too (`synchronous = FULL`, 2), as the pool's do.
    #[test]
    fn rusqlite_connections_sync_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (a)")
            .unwrap();
        drop(c);
        let c = super::open_rusqlite(&path).unwrap();
        let level: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(level, 2);
    }
}
