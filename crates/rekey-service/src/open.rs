//! Opening a data directory / database: the one place that decides where the
//! keyring and the database live. Used by `rekey serve` and the offline CLI.

use crate::{Rekey, RekeyConfig};
use rekey_core::ErrorCode;
use rekey_core::{Error, SecretString};
use rekey_crypto::Keyring;
use rekey_providers::Catalog;
use rekey_store::Store;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub data_dir: PathBuf,
    /// `postgres://…`; SQLite in the data dir when absent.
    pub database_url: Option<SecretString>,
    pub master_key: Option<SecretString>,
    pub previous_master_keys: Vec<SecretString>,
    /// Load the catalog from this directory instead of the embedded one.
    pub providers_dir: Option<PathBuf>,
}

/// An opened instance plus the data-dir lock that says who is using it.
pub struct OpenedDataDir {
    pub rekey: Rekey,
    /// True when this call created the keyring file.
    pub created_keyring: bool,
    _lock: File,
    /// `serve` on SQLite: the one-server-per-database lock.
    _serve_lock: Option<File>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Servers and ordinary offline commands: many may share.
    Shared,
    /// `keys rotate`: nobody else may hold the keyring in memory.
    Exclusive,
    /// `rekey serve`: shares the data dir with offline commands, but on
    /// SQLite no second server may serve the same database (SQLite has one
    /// writer and the refresh single-flight is in-process only; replicas
    /// need PostgreSQL).
    Serve,
}

fn io(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::Unavailable(format!("{what} {}: {e}", p.display()))
}

impl OpenOptions {
    /// [`Self::open`] for commands that must find an existing rekey (audit
    /// verification, key status and rotation, backups): a data directory,
    /// database or keyring that is not there is an error, never created —
    /// so a mistyped `--data-dir` cannot report "intact: 0 entries". (On
    /// PostgreSQL with the master key given, the data dir only holds the
    /// lock file and is made when missing.)
    pub async fn open_existing(&self, mode: LockMode) -> Result<OpenedDataDir, Error> {
        let dir = &self.data_dir;
        let missing = |what: String| {
            Error::invalid(
                ErrorCode::NoRekeyData,
                format!("{what}; check --data-dir / REKEY_DATA_DIR (and REKEY_DATABASE_URL), or start `rekey serve` once to create it"),
            )
        };
        let postgres = self
            .database_url
            .as_ref()
            .map(|u| u.expose())
            .filter(|u| u.starts_with("postgres"));
        // PostgreSQL with the master key given needs nothing on local disk
        // but the lock file, so such commands may run on another host.
        let needs_dir = postgres.is_none() || self.master_key.is_none();
        if needs_dir && !dir.is_dir() {
            return Err(missing(format!("no data directory at {}", dir.display())));
        }
        if let Some(url) = postgres {
            if !Store::postgres_is_initialized(url).await? {
                return Err(missing(
                    "the PostgreSQL database in REKEY_DATABASE_URL holds no rekey data".into(),
                ));
            }
        } else {
            // SQLite: the data dir's rekey.db, or the file a sqlite: URL names.
            let db = match &self.database_url {
                None => Some(dir.join("rekey.db")),
                Some(u) => sqlite_path(u.expose()),
            };
            if let Some(db) = db.filter(|db| !db.is_file()) {
                return Err(missing(match &self.database_url {
                    None => format!("no database (rekey.db) in {}", dir.display()),
                    Some(_) => format!("no SQLite database at {}", db.display()),
                }));
            }
        }
        // Never create a keyring here, not even for a moment: a server
        // starting meanwhile could take it up. Without one, open with a
        // throwaway in-memory key, so that a database holding secrets is
        // refused naming the keys it needs; with none, say what is missing.
        let keyring_missing = self.master_key.is_none() && !dir.join("keyring.json").is_file();
        let opened = self.open_inner(mode, false, RekeyConfig::default()).await?;
        if keyring_missing {
            drop(opened);
            return Err(missing(format!("no keyring.json in {}", dir.display())));
        }
        Ok(opened)
    }

    /// [`OpenOptions::open_with`] the default configuration (offline
    /// commands and tools).
    pub async fn open(&self, mode: LockMode) -> Result<OpenedDataDir, Error> {
        self.open_with(mode, RekeyConfig::default()).await
    }

    /// Open the data dir and build the service with `config`.
    pub async fn open_with(
        &self,
        mode: LockMode,
        config: RekeyConfig,
    ) -> Result<OpenedDataDir, Error> {
        self.open_inner(mode, true, config).await
    }

    /// `create_keyring`: make `keyring.json` when there is none (serve and
    /// the commands that set up a rekey); otherwise a missing keyring is an
    /// in-memory one that opens nothing.
    async fn open_inner(
        &self,
        mode: LockMode,
        create_keyring: bool,
        config: RekeyConfig,
    ) -> Result<OpenedDataDir, Error> {
        let dir = &self.data_dir;
        if !dir.exists() {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir)
                .map_err(|e| io("cannot create data directory", dir, e))?;
        }
        tighten_data_dir(dir)?;
        let lock_path = dir.join("rekey.lock");
        let lock = private_file(&lock_path)?;
        let locked = match mode {
            LockMode::Shared | LockMode::Serve => lock.try_lock_shared(),
            LockMode::Exclusive => lock.try_lock(),
        };
        if locked.is_err() {
            return Err(Error::conflict(
                ErrorCode::DataDirInUse,
                match mode {
                    LockMode::Exclusive => format!(
                        "{} is in use by a running rekey; stop it first (this operation changes the keyring)",
                        dir.display()
                    ),
                    LockMode::Shared | LockMode::Serve => format!(
                        "{} is locked by a key rotation in progress; wait for it to finish",
                        dir.display()
                    ),
                },
            ));
        }

        let (keyring, created_keyring) = match &self.master_key {
            Some(mk) => {
                let prev: Vec<String> = self
                    .previous_master_keys
                    .iter()
                    .map(|s| s.expose().to_string())
                    .collect();
                (
                    Keyring::from_master_keys(mk.expose(), &prev)
                        .map_err(|e| Error::invalid(ErrorCode::InvalidConfig, e.to_string()))?,
                    false,
                )
            }
            None if !create_keyring && !dir.join("keyring.json").is_file() => {
                (Keyring::generate(), false)
            }
            None => Keyring::load_or_create(&dir.join("keyring.json"))
                .map_err(|e| Error::Unavailable(e.to_string()))?,
        };

        let url = match &self.database_url {
            Some(u) => u.expose().to_string(),
            None => format!("sqlite://{}?mode=rwc", dir.join("rekey.db").display()),
        };
        let sqlite_file = match sqlite_path(&url) {
            // SQLite creates its file world-readable (0644), and the -wal
            // and -shm files take the database file's mode: create it 0600
            // first. Then lock by the file's real path, so another spelling
            // of the same file (relative, `..`, a symlink) meets the lock.
            Some(db) => {
                private_file(&db)?;
                Some(std::fs::canonicalize(&db).map_err(|e| io("cannot resolve", &db, e))?)
            }
            None => None,
        };
        let serve_lock = match (&sqlite_file, mode) {
            (Some(db), LockMode::Serve) => {
                let p = suffixed(db, ".serve-lock");
                let f = private_file(&p)?;
                if f.try_lock().is_err() {
                    return Err(Error::conflict(
                        ErrorCode::DataDirInUse,
                        format!(
                            "another rekey server is already serving the SQLite database {}; run one server per SQLite database (replicas need PostgreSQL: set REKEY_DATABASE_URL)",
                            db.display()
                        ),
                    ));
                }
                Some(f)
            }
            _ => None,
        };
        let store = Store::connect_sized(&url, config.database_pool_size)
            .await?
            .with_audit_commit(config.audit_commit);
        store.set_wal_limit(config.sqlite_wal_limit);

        // Refuse to run with a keyring that cannot read what the database
        // holds (wrong data dir, lost keyring file, wrong master key): writing
        // new secrets under a foreign keyring would strand the old ones.
        {
            let mut c = store.read().await?;
            let usage = rekey_store::secrets::kek_usage(&mut c).await?;
            let missing: Vec<String> = usage
                .iter()
                .filter(|(id, _)| keyring.get(id).is_none())
                .map(|(id, n)| format!("{id} ({n} secrets)"))
                .collect();
            if !missing.is_empty() {
                if created_keyring {
                    // Made by this very call and wrapping nothing: leave no
                    // stray keyring behind to be mistaken for the real one.
                    let _ = std::fs::remove_file(dir.join("keyring.json"));
                }
                return Err(Error::Unavailable(format!(
                    "the database holds secrets wrapped by key-encryption keys this keyring lacks: {}; start with the keyring (or REKEY_MASTER_KEY / REKEY_PREVIOUS_MASTER_KEYS) that wrote them",
                    missing.join(", ")
                )));
            }
        }

        let catalog = match &self.providers_dir {
            Some(p) => Catalog::load_dir(p),
            None => Catalog::embedded(),
        }
        .map_err(|e| Error::invalid(ErrorCode::InvalidCatalog, e.to_string()))?;

        Ok(OpenedDataDir {
            rekey: Rekey::with_config(store, keyring, catalog, config)?,
            created_keyring,
            _lock: lock,
            _serve_lock: serve_lock,
        })
    }
}

impl Rekey {
    /// `rekey admin backup`: a consistent copy of a SQLite database (even
    /// while a server runs) in a new file created 0600; an existing file is
    /// never overwritten. Returns the copy's size. The copy holds secrets
    /// only as sealed rows: without the keyring they cannot be read, and the
    /// keyring is not in it. PostgreSQL is backed up with `pg_dump`.
    pub async fn backup_sqlite(&self, to: &Path) -> Result<u64, Error> {
        if self.store().backend() != rekey_store::Backend::Sqlite {
            return Err(Error::invalid(
                ErrorCode::BackupNotSupported,
                "`rekey admin backup` copies SQLite databases; back up PostgreSQL with pg_dump (see the README, Backup and restore)",
            ));
        }
        let Some(path) = to.to_str() else {
            return Err(Error::invalid(
                ErrorCode::InvalidPath,
                "the backup file name must be valid UTF-8",
            ));
        };
        let mut o = File::options();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(to) {
            Ok(f) => drop(f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::conflict(
                    ErrorCode::AlreadyExists,
                    format!("{} already exists; back up into a new file", to.display()),
                ))
            }
            Err(e) => return Err(io("cannot create", to, e)),
        }
        let copied = self.store().vacuum_into(path).await;
        let size = copied.and_then(|()| {
            // On disk before it is called a backup: `VACUUM INTO` does not
            // sync the file it writes, nor the directory its name is in.
            File::open(to)
                .and_then(|f| f.sync_all())
                .map_err(|e| io("cannot sync", to, e))?;
            let dir = match to.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("cannot sync", dir, e))?;
            std::fs::metadata(to)
                .map(|m| m.len())
                .map_err(|e| io("cannot read", to, e))
        });
        if size.is_err() {
            // Leave no half-written copy behind to be mistaken for a backup.
            let _ = std::fs::remove_file(to);
        }
        size
    }
}

/// The file of a `sqlite:` URL as SQLite will open it (sqlx's own parsing:
/// percent-decoding, `?` options), when it names one (not `:memory:`).
fn sqlite_path(url: &str) -> Option<PathBuf> {
    use std::str::FromStr;
    if !url.starts_with("sqlite:") {
        return None;
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = opts.get_filename();
    let s = path.to_string_lossy();
    (!s.is_empty() && !s.starts_with(":memory:") && !s.starts_with("file:"))
        .then(|| path.to_path_buf())
}

fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Open (creating it 0600 if missing) a file only the owner may read.
fn private_file(p: &Path) -> Result<File, Error> {
    let mut o = File::options();
    o.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(p).map_err(|e| io("cannot open", p, e))
}

/// An existing data directory readable by group or others is tightened to
/// 0700, and the database and lock files in it to 0600 (the keyring file
/// is checked when it is loaded, and refused if readable by others).
#[cfg(unix)]
fn tighten_data_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |p: &Path, mode: u32| -> Result<(), Error> {
        let meta = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("cannot read", p, e)),
        };
        if meta.permissions().mode() & 0o077 == 0 {
            return Ok(());
        }
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            Error::Unavailable(format!(
                "{} is readable by group or others and cannot be tightened ({e}); chmod it to {mode:o} or use another data directory",
                p.display()
            ))
        })?;
        tracing::warn!(path = %p.display(), mode = format!("{mode:o}"), "tightened permissions: the data directory holds secrets");
        Ok(())
    };
    chmod(dir, 0o700)?;
    for f in [
        "rekey.db",
        "rekey.db-wal",
        "rekey.db-shm",
        "rekey.db.serve-lock",
        "rekey.lock",
    ] {
        chmod(&dir.join(f), 0o600)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten_data_dir(_dir: &Path) -> Result<(), Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/d/rekey.db?mode=rwc"),
            Some(PathBuf::from("/tmp/d/rekey.db"))
        );
        assert_eq!(
            sqlite_path("sqlite://rel/rekey.db"),
            Some(PathBuf::from("rel/rekey.db"))
        );
        // Percent-encoding is decoded as SQLite will see it.
        assert_eq!(
            sqlite_path("sqlite:///tmp/d/rek%65y.db"),
            Some(PathBuf::from("/tmp/d/rekey.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }
}
