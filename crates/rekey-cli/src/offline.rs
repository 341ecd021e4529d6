//! Commands that work directly on the data directory / database, without a
//! running server.

use crate::config::DataArgs;
use crate::output::{outln, write_secret};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use rekey_service::{Ctx, LockMode};
use std::io::Write;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Create an API key and print it (only the key) on stdout.
    CreateKey {
        #[arg(long)]
        name: String,
        /// Scope to grant; repeat or comma-separate (connections:read, connections:write,
        /// credentials:read, audit:read, admin).
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<String>,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Create a dashboard user. The password is read from REKEY_NEW_PASSWORD
    /// (or its _FILE), else from the first line of stdin; never from argv.
    CreateUser {
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Copy the SQLite database into a new file (created 0600), consistently
    /// even while a server runs (VACUUM INTO). The keyring is not in the
    /// copy: back up keyring.json (or REKEY_MASTER_KEY) too, kept apart.
    /// PostgreSQL: use pg_dump.
    Backup {
        /// The new file; an existing one is never overwritten.
        #[arg(long)]
        to: std::path::PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Add a new key-encryption key and re-wrap every data key under it.
    /// Resumable: rerun after an interruption to finish. Stop the server first.
    Rotate {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Show the keyring and how many secrets each key wraps.
    Status {
        #[command(flatten)]
        data: DataArgs,
    },
}

pub async fn admin(cmd: AdminCmd) -> Result<ExitCode> {
    match cmd {
        AdminCmd::CreateKey {
            name,
            scopes,
            tenant,
            data,
        } => {
            let opened = data.open_options()?.open(LockMode::Shared).await?;
            note_if_created(&opened, &data);
            let created = opened
                .rekey
                .create_api_key(
                    &Ctx::cli(&tenant),
                    &rekey_api::CreateApiKey { name, scopes },
                )
                .await?;
            // Shown once: a closed pipe must not pass for success.
            write_secret(&format!("{}\n", *created.key), "the new API key")?;
            Ok(ExitCode::SUCCESS)
        }
        AdminCmd::CreateUser {
            username,
            role,
            tenant,
            data,
        } => {
            let password = match crate::config::secret_env("REKEY_NEW_PASSWORD")? {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("cannot read the password from stdin")?;
                    // Trim in place and move: no second copy of the password.
                    let len = line.trim_end_matches(['\n', '\r']).len();
                    line.truncate(len);
                    rekey_core::SecretString::new(line)
                }
            };
            let role = rekey_service::Role::parse(&role)?;
            let opened = data.open_options()?.open(LockMode::Shared).await?;
            note_if_created(&opened, &data);
            let id = opened
                .rekey
                .create_user(&Ctx::cli(&tenant), &username, &password, role)
                .await?;
            outln!("{id}")?;
            Ok(ExitCode::SUCCESS)
        }
        AdminCmd::Backup { to, data } => {
            let opened = data.open_options()?.open_existing(LockMode::Shared).await?;
            let size = opened.rekey.backup_sqlite(&to).await?;
            outln!(
                "backed up the database to {} ({size} bytes); the keyring is not in it: back up keyring.json (or REKEY_MASTER_KEY) separately, stored apart",
                to.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn keys(cmd: KeysCmd) -> Result<ExitCode> {
    match cmd {
        KeysCmd::Rotate { data } => {
            let opened = data
                .open_options()?
                .open_existing(LockMode::Exclusive)
                .await?;
            // Test hook: abort the process after N re-wraps to prove resumability.
            let abort_after = std::env::var("REKEY_FAULT_ABORT_AFTER_REWRAPS")
                .ok()
                .and_then(|v| v.parse().ok());
            let mut stderr = std::io::stderr();
            let report = opened
                .rekey
                .rotate_keks(
                    |done, total| {
                        let _ = write!(stderr, "\rre-wrapping data keys: {done}/{total}");
                        let _ = stderr.flush();
                    },
                    abort_after,
                )
                .await?;
            eprintln!();
            if report.resumed {
                outln!("resumed an interrupted rotation")?;
            }
            outln!("primary key-encryption key: {}", report.primary)?;
            outln!("re-wrapped data keys: {}", report.rewrapped)?;
            for d in &report.dropped {
                outln!("dropped unused key: {d}")?;
            }
            for u in &report.unused_previous {
                outln!("no longer used; remove from REKEY_PREVIOUS_MASTER_KEYS: {u}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCmd::Status { data } => {
            let opened = data.open_options()?.open_existing(LockMode::Shared).await?;
            let st = opened.rekey.key_status().await?;
            for (id, n) in st.keys {
                let mark = if id == st.primary { " (primary)" } else { "" };
                outln!("{id}{mark}\t{n} secrets")?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn audit_verify_offline(data: &DataArgs, json: bool) -> Result<ExitCode> {
    let opened = data.open_options()?.open_existing(LockMode::Shared).await?;
    let report = rekey_server::views::audit_verify(&opened.rekey.audit_verify().await?);
    crate::output::print_verify(&report, json)?;
    if !report.ok {
        bail!("audit chain verification failed");
    }
    Ok(ExitCode::SUCCESS)
}

/// `create-key` and `create-user` may set up a new rekey (before the first
/// `serve`), but never silently: a mistyped data dir would otherwise get a
/// key that no running server knows.
fn note_if_created(opened: &rekey_service::OpenedDataDir, data: &DataArgs) {
    if opened.created_keyring {
        eprintln!(
            "note: {} held no keyring, so a new rekey was set up there (keyring.json; back it up). If you meant an existing rekey, check --data-dir / REKEY_DATA_DIR.",
            data.data_dir.display()
        );
    }
}
