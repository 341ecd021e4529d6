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
    /// Seconds between scheduled health checks of each connection (±10 %
    /// jitter; degraded connections sooner, with backoff). 0 disables.
    #[arg(long, env = "REKEY_CHECK_INTERVAL", default_value_t = 900)]
    pub check_interval: u64,
    /// Health checks in flight at once, per provider.
    #[arg(long, env = "REKEY_CHECK_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub check_concurrency: u32,
    /// Health checks started per second, per provider (0 = unlimited).
    #[arg(long, env = "REKEY_CHECK_RATE", default_value_t = 5.0)]
    pub check_rate: f64,
    /// Upper bound in seconds on any probe's timeout (catalog probes ask for
    /// their own, usually 10 s). A crashed replica's claimed checks are
    /// retried after at most four times this plus 15 s.
    #[arg(long, env = "REKEY_CHECK_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub check_timeout: u64,
    /// Webhook delivery attempts before a delivery is marked failed.
    #[arg(long, env = "REKEY_WEBHOOK_MAX_ATTEMPTS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub webhook_max_attempts: u32,
    /// First webhook retry wait in milliseconds; it doubles per attempt (±20 % jitter) up to an hour.
    #[arg(long, env = "REKEY_WEBHOOK_RETRY_BASE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub webhook_retry_base_ms: u64,
    /// Webhook subscriptions a tenant may have (enabled or paused); one more is refused with 409 `webhook_limit`.
    #[arg(long, env = "REKEY_MAX_WEBHOOKS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_webhooks: u32,
    /// How often the health, webhook and rotation workers look for due work, in milliseconds.
    #[arg(long, env = "REKEY_WORKER_TICK_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000), hide = true)]
    pub worker_tick_ms: u64,
    /// Seconds a client has to send a whole request head; also how long a
    /// kept-alive connection may sit idle between requests.
    #[arg(long, env = "REKEY_HEADER_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_read_timeout: u64,
    /// Seconds a client has to send a whole request body.
    #[arg(long, env = "REKEY_BODY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub body_timeout: u64,
    /// Open client connections at most (lowered to fit the open-file limit).
    /// At the cap the oldest idle connection is closed; when all are busy,
    /// only /healthz and /readyz answer new connections.
    #[arg(long, env = "REKEY_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Seconds in-flight requests get to finish after SIGTERM / Ctrl-C.
    #[arg(long, env = "REKEY_SHUTDOWN_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_timeout: u64,
    /// Seconds between SIGTERM / Ctrl-C and closing the listener, while
    /// `/readyz` answers 503 and every other request is still served: time
    /// for a load balancer's health check to take the replica out first.
    #[arg(long, env = "REKEY_SHUTDOWN_DELAY", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub shutdown_delay: u64,
    /// Outbound destinations allowed beyond the defaults, comma-separated:
    /// CIDR ranges (`10.20.0.0/16`), addresses and exact host names
    /// (`vault.internal`). By default rekey refuses to connect to
    /// link-local, private, CGNAT, unspecified, multicast and broadcast
    /// addresses (loopback is allowed).
    #[arg(long, env = "REKEY_ALLOW_OUTBOUND", value_name = "LIST")]
    pub allow_outbound: Option<String>,
    /// Campaign steps of one provider in flight at once, per replica.
    #[arg(long, env = "REKEY_CAMPAIGN_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub campaign_concurrency: u32,
    /// Campaign steps that call a provider, started per second per
    /// provider, shared by every replica on the database (0 = no limit;
    /// otherwise at least 0.5).
    #[arg(long, env = "REKEY_CAMPAIGN_RATE", default_value_t = 10.0)]
    pub campaign_rate: f64,
    /// The From address of e-mail to owners (campaign links), as
    /// `rekey <rekey@example.com>`; needed with REKEY_SMTP_URL (which, a
    /// secret, is read from the environment or REKEY_SMTP_URL_FILE only:
    /// `smtps://user:password@host:465`, `smtp://host:587?tls=required`).
    #[arg(long, env = "REKEY_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// First wait before a failed e-mail is sent again, in milliseconds; it
    /// doubles per attempt (8 attempts), up to an hour.
    #[arg(long, env = "REKEY_SMTP_RETRY_BASE_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000), hide = true)]
    pub smtp_retry_base_ms: u64,
    /// Database connections this server opens at most: on PostgreSQL
    /// (default 16), size it to the server's `max_connections` divided by
    /// the replicas; on SQLite (default 8), readers, as there is one
    /// writer. Health checks use at most half of it.
    #[arg(long, env = "REKEY_DATABASE_POOL_SIZE", value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub database_pool_size: Option<u32>,
    /// SQLite: the write-ahead log's size, in MiB, past which writers are
    /// held off for one short checkpoint so that the log starts over (the
    /// file then stays at about this size). Under constant writes it
    /// otherwise grows for as long as they last. Smaller: less disk, more
    /// frequent waits.
    #[arg(long, env = "REKEY_SQLITE_WAL_LIMIT_MB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(4..=65_536))]
    pub sqlite_wal_limit_mb: u64,
    /// How a credential read's audit entry is committed: `group` (reads
    /// waiting at the same moment share one transaction; each answer still
    /// waits for its entry's commit) or `each` (a transaction per read,
    /// slower; for comparison).
    #[arg(long, env = "REKEY_AUDIT_COMMIT", default_value = "group", value_parser = ["group", "each"])]
    pub audit_commit: String,
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

/// SMTP for owners' e-mail: both REKEY_SMTP_URL (or _FILE) and
/// REKEY_SMTP_FROM, or neither.
fn mail_settings(
    from: Option<&str>,
    retry_base_ms: u64,
) -> Result<Option<rekey_service::MailSettings>> {
    let url = secret_env("REKEY_SMTP_URL")?;
    let from = from.map(str::trim).filter(|f| !f.is_empty());
    match (url, from) {
        (None, None) => Ok(None),
        (Some(url), Some(from)) => {
            let u = url.expose();
            if !(u.starts_with("smtp://") || u.starts_with("smtps://")) {
                bail!("REKEY_SMTP_URL must start with smtps:// or smtp:// (add ?tls=required for STARTTLS)");
            }
            if u.starts_with("smtp://") && !u.contains("tls=required") {
                tracing::warn!("REKEY_SMTP_URL does not require TLS: owners' links may reach the SMTP server in clear text (use smtps:// or ?tls=required unless it is a local relay)");
            }
            let s = rekey_service::MailSettings {
                url,
                from: from.to_string(),
                retry_base_ms: retry_base_ms as i64,
            };
            s.check().map_err(|e| anyhow::anyhow!(e))?;
            Ok(Some(s))
        }
        (Some(_), None) => bail!("REKEY_SMTP_URL is set but REKEY_SMTP_FROM is not: give the From address of e-mail to owners"),
        (None, Some(_)) => bail!("REKEY_SMTP_FROM is set but REKEY_SMTP_URL is not: give the SMTP server (smtps://user:password@host:465)"),
    }
}

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REKEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

/// Register the SIGTERM / Ctrl-C handlers now (so a signal that arrives
/// right after start-up is not fatal) and return a future that resolves on
/// the first one.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot install the SIGINT handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received; draining requests");
    })
}

pub async fn serve(a: ServeArgs) -> Result<ExitCode> {
    init_logging(&a.log_format);
    let outbound =
        rekey_core::outbound::OutboundPolicy::parse(a.allow_outbound.as_deref().unwrap_or(""))
            .map_err(|e| anyhow::anyhow!("REKEY_ALLOW_OUTBOUND (--allow-outbound): {e}"))?;
    if !(a.check_rate.is_finite() && a.check_rate >= 0.0) {
        bail!("REKEY_CHECK_RATE must be a number ≥ 0");
    }
    if !(a.campaign_rate == 0.0 || (0.5..=1000.0).contains(&a.campaign_rate)) {
        bail!("REKEY_CAMPAIGN_RATE must be 0 (no limit) or between 0.5 and 1000 steps per second");
    }
    let opts = a.data.open_options()?;
    let shutdown = shutdown_signal()?;
    // Listen first: the public URL defaults to the bound address, and the
    // service is built with its whole configuration at once.
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
    if !outbound.is_default() {
        tracing::info!(allowed = %outbound.entries().join(","), "outbound allow-list");
    }
    let config = rekey_service::RekeyConfig {
        public_url: public_url.clone(),
        outbound,
        health: rekey_service::HealthSettings {
            interval: std::time::Duration::from_secs(a.check_interval.max(1)),
            per_provider_concurrency: a.check_concurrency as usize,
            per_provider_rate: a.check_rate,
            max_probe_timeout: std::time::Duration::from_secs(a.check_timeout),
            ..Default::default()
        },
        webhooks: rekey_service::WebhookSettings {
            max_attempts: i64::from(a.webhook_max_attempts),
            base_delay_ms: a.webhook_retry_base_ms as i64,
            max_webhooks: i64::from(a.max_webhooks),
            ..Default::default()
        },
        mail: mail_settings(a.smtp_from.as_deref(), a.smtp_retry_base_ms)?,
        campaigns: rekey_service::CampaignSettings {
            per_provider_concurrency: a.campaign_concurrency as usize,
            per_provider_rate: a.campaign_rate,
        },
        database_pool_size: a.database_pool_size,
        sqlite_wal_limit: a.sqlite_wal_limit_mb * 1024 * 1024,
        audit_commit: match a.audit_commit.as_str() {
            "each" => rekey_service::AuditCommit::Each,
            _ => rekey_service::AuditCommit::Group,
        },
    };
    let opened = opts
        .open_with(rekey_service::LockMode::Serve, config)
        .await
        .context("cannot open rekey data")?;
    if opened.created_keyring {
        tracing::warn!(path = %a.data.data_dir.join("keyring.json").display(),
            "created a new keyring; back it up: without it, stored secrets cannot be decrypted");
    }
    tracing::info!(%addr, replica = %opened.rekey.replica_id(), backend = ?opened.rekey.store().backend(), providers = opened.rekey.catalog().len(), "rekey listening");
    // A stable first line on stdout for scripts and test harnesses, then
    // where to start: the dashboard, and how to get into it the first time.
    // One write, errors ignored: a reader that closes stdout after the first
    // line must not take the server down (println! panics on a closed pipe).
    let mut banner = format!("rekey listening on http://{addr}\ndashboard: {public_url}/ui\n");
    if !opened.rekey.has_users().await.unwrap_or(true) {
        banner.push_str(&format!(
            "no dashboard user yet; create one with: rekey admin create-user --data-dir {} --username NAME --role admin   (password on stdin, or in REKEY_NEW_PASSWORD)\n",
            shell_word(&a.data.data_dir.display().to_string())
        ));
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes());
        let _ = out.flush();
    }
    let rekey = opened.rekey.clone();
    // This replica's name on the leases it takes.
    let owner = rekey.replica_id().to_string();
    rekey
        .release_stale_leases()
        .await
        .context("cannot release stale leases")?;
    let tick = std::time::Duration::from_millis(a.worker_tick_ms);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    if a.refresh_interval > 0 {
        workers.push(rekey_server::workers::spawn_refresh_worker(
            rekey.clone(),
            std::time::Duration::from_secs(a.refresh_interval),
            stop_rx.clone(),
        ));
    }
    if a.check_interval > 0 {
        workers.push(rekey_server::workers::spawn_health_worker(
            rekey.clone(),
            owner.clone(),
            tick,
            stop_rx.clone(),
        ));
    }
    workers.push(rekey_server::workers::spawn_rotation_worker(
        rekey.clone(),
        tick,
        stop_rx.clone(),
    ));
    workers.push(rekey_server::workers::spawn_version_worker(
        rekey.clone(),
        tick.max(std::time::Duration::from_secs(1)),
        stop_rx.clone(),
    ));
    workers.push(rekey_server::workers::spawn_revocation_worker(
        rekey.clone(),
        owner.clone(),
        tick,
        stop_rx.clone(),
    ));
    workers.push(rekey_server::workers::spawn_campaign_worker(
        rekey.clone(),
        tick,
        stop_rx.clone(),
    ));
    if rekey.sends_mail() {
        workers.push(rekey_server::workers::spawn_mail_worker(
            rekey.clone(),
            tick,
            stop_rx.clone(),
        ));
    }
    workers.push(rekey_server::workers::spawn_delivery_worker(
        rekey.clone(),
        owner.clone(),
        tick,
        stop_rx,
    ));
    let limits = rekey_server::serve::ServeLimits {
        header_read_timeout: std::time::Duration::from_secs(a.header_read_timeout),
        body_timeout: std::time::Duration::from_secs(a.body_timeout),
        max_connections: usize::try_from(a.max_connections).unwrap_or(usize::MAX),
        shutdown_timeout: std::time::Duration::from_secs(a.shutdown_timeout),
    };
    // On the signal: not ready (and background passes start nothing new)
    // at once; the listener closes after the delay.
    let draining = opened.rekey.clone();
    let delay = std::time::Duration::from_secs(a.shutdown_delay);
    let shutdown = async move {
        shutdown.await;
        draining.begin_shutdown();
        if !delay.is_zero() {
            tracing::info!(
                seconds = delay.as_secs(),
                "/readyz answers 503; still serving until the shutdown delay ends"
            );
            tokio::time::sleep(delay).await;
        }
    };
    rekey_server::serve_limited(listener, opened.rekey.clone(), limits, shutdown).await?;
    // Passes under way hand back what they have not started.
    opened.rekey.begin_shutdown();
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    if let Err(e) = rekey.release_leases(Some(&owner)).await {
        tracing::warn!(error = %e, "could not release leases at shutdown");
    }
    opened.rekey.store().close().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `s` as one shell word: as it is when it holds only safe characters,
/// else single-quoted.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
