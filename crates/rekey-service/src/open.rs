//! Opening a data directory / database: the one place that decides where the
//! keyring and the database live. Used by `rekey serve` and the offline CLI.

use crate::Rekey;
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Servers and ordinary offline commands: many may share.
    Shared,
    /// `keys rotate`: nobody else may hold the keyring in memory.
    Exclusive,
}

fn io(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::Unavailable(format!("{what} {}: {e}", p.display()))
}

impl OpenOptions {
    pub async fn open(&self, mode: LockMode) -> Result<OpenedDataDir, Error> {
        let dir = &self.data_dir;
        if !dir.exists() {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir)
                .map_err(|e| io("cannot create data directory", dir, e))?;
        }
        let lock_path = dir.join("rekey.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("cannot open", &lock_path, e))?;
        let locked = match mode {
            LockMode::Shared => lock.try_lock_shared(),
            LockMode::Exclusive => lock.try_lock(),
        };
        if locked.is_err() {
            return Err(Error::conflict(
                "data_dir_in_use",
                match mode {
                    LockMode::Exclusive => format!(
                        "{} is in use by a running rekey; stop it first (this operation changes the keyring)",
                        dir.display()
                    ),
                    LockMode::Shared => format!(
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
                        .map_err(|e| Error::invalid("invalid_config", e.to_string()))?,
                    false,
                )
            }
            None => Keyring::load_or_create(&dir.join("keyring.json"))
                .map_err(|e| Error::Unavailable(e.to_string()))?,
        };

        let url = match &self.database_url {
            Some(u) => u.expose().to_string(),
            None => format!("sqlite://{}?mode=rwc", dir.join("rekey.db").display()),
        };
        let store = Store::connect(&url).await?;

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
        .map_err(|e| Error::invalid("invalid_catalog", e.to_string()))?;

        Ok(OpenedDataDir {
            rekey: Rekey::new(store, keyring, catalog)?,
            created_keyring,
            _lock: lock,
        })
    }
}
