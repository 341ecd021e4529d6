//! Configuration: flags with `REKEY_*` environment variables; secrets also
//! from `REKEY_*_FILE`. Validated before anything starts.

use anyhow::{bail, Context, Result};
use clap::Args;
use rekey_core::SecretString;
use rekey_service::OpenOptions;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// Data directory: keyring, SQLite database, lock file.
    #[arg(long, env = "REKEY_DATA_DIR", default_value = "./rekey-data")]
    pub data_dir: PathBuf,
    /// Load the provider catalog from this directory instead of the built-in one.
    #[arg(long, env = "REKEY_PROVIDERS_DIR")]
    pub providers_dir: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "REKEY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[command(flatten)]
    pub data: DataArgs,
    /// Base URL users and providers reach this server at (Connect links,
    /// OAuth redirect URI). Default: http://<listen address>.
    #[arg(long, env = "REKEY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds between background token-refresh passes (0 disables).
    #[arg(long, env = "REKEY_REFRESH_INTERVAL", default_value_t = 60)]
    pub refresh_interval: u64,
    /// Log format: `text` or `json`.
    #[arg(long, env = "REKEY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// A secret setting from `NAME` or the file named by `NAME_FILE` (not both).
pub fn secret_env(name: &str) -> Result<Option<SecretString>> {
    let direct = std::env::var(name).ok().filter(|v| !v.is_empty());
    let file = std::env::var(format!("{name}_FILE"))
        .ok()
        .filter(|v| !v.is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => bail!("set either {name} or {name}_FILE, not both"),
        (Some(v), None) => Ok(Some(SecretString::new(v))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{name}_FILE: cannot read {path}"))?;
            Ok(Some(SecretString::new(
                text.trim_end_matches(['\n', '\r']).to_string(),
            )))
        }
        (None, None) => Ok(None),
    }
}

impl DataArgs {
    pub fn open_options(&self) -> Result<OpenOptions> {
        let database_url = secret_env("REKEY_DATABASE_URL")?;
        if let Some(u) = &database_url {
            let u = u.expose();
            if !(u.starts_with("postgres://")
                || u.starts_with("postgresql://")
                || u.starts_with("sqlite:"))
            {
                bail!("REKEY_DATABASE_URL must start with postgres:// (or sqlite:)");
            }
        }
        let previous = secret_env("REKEY_PREVIOUS_MASTER_KEYS")?
            .map(|s| {
                s.expose()
                    .split(',')
                    .map(|p| SecretString::from(p.trim()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(OpenOptions {
            data_dir: self.data_dir.clone(),
            database_url,
            master_key: secret_env("REKEY_MASTER_KEY")?,
            previous_master_keys: previous,
            providers_dir: self.providers_dir.clone(),
        })
    }
}

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REKEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received; draining requests");
}

pub async fn serve(a: ServeArgs) -> Result<ExitCode> {
    init_logging(&a.log_format);
    let opts = a.data.open_options()?;
    let opened = opts
        .open(rekey_service::LockMode::Shared)
        .await
        .context("cannot open rekey data")?;
    if opened.created_keyring {
        tracing::warn!(path = %a.data.data_dir.join("keyring.json").display(),
            "created a new keyring; back it up: without it, stored secrets cannot be decrypted");
    }
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    let public_url = match &a.public_url {
        Some(u) => {
            let ok = (u.starts_with("https://") || u.starts_with("http://"))
                && !u.contains(char::is_whitespace);
            if !ok {
                bail!("REKEY_PUBLIC_URL must be an http(s) URL such as https://rekey.example.com");
            }
            u.trim_end_matches('/').to_string()
        }
        None => format!("http://{addr}"),
    };
    opened.rekey.set_public_url(&public_url);
    tracing::info!(%addr, backend = ?opened.rekey.store().backend(), providers = opened.rekey.catalog().len(), "rekey listening");
    // A stable line on stdout for scripts and test harnesses.
    println!("rekey listening on http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = (a.refresh_interval > 0).then(|| {
        rekey_server::workers::spawn_refresh_worker(
            opened.rekey.clone(),
            std::time::Duration::from_secs(a.refresh_interval),
            stop_rx,
        )
    });
    rekey_server::serve(listener, opened.rekey.clone(), shutdown_signal()).await?;
    let _ = stop_tx.send(true);
    if let Some(w) = worker {
        let _ = w.await;
    }
    opened.rekey.store().close().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
