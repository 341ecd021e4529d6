//! The `rekey` binary: `serve`, offline administration against the data
//! directory / database, and a client for the REST API.

mod config;
mod offline;
mod output;
mod remote;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "rekey",
    version,
    about = "Keep third-party credentials working; revoke, rotate and reauthorize them."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the HTTP service.
    Serve(config::ServeArgs),
    /// Offline administration (works against the data dir or REKEY_DATABASE_URL).
    #[command(subcommand)]
    Admin(offline::AdminCmd),
    /// Key-encryption keys (offline).
    #[command(subcommand)]
    Keys(offline::KeysCmd),
    /// Connections (API client: REKEY_URL, REKEY_TOKEN).
    #[command(subcommand)]
    Connections(remote::connections::ConnectionsCmd),
    /// Webhook subscriptions and deliveries (API client).
    #[command(subcommand)]
    Webhooks(remote::webhooks::WebhooksCmd),
    /// OAuth app registrations (API client).
    #[command(subcommand)]
    Integrations(remote::integrations::IntegrationsCmd),
    /// Print a connect link for a new connection or a reauthorization.
    ConnectLink {
        #[command(flatten)]
        api: remote::ApiArgs,
        #[arg(long)]
        integration: Option<String>,
        /// Reauthorize this connection ("Connect new account").
        #[arg(long)]
        reauthorize: Option<String>,
        /// Who should authorize (shown on the Connect page).
        #[arg(long)]
        owner_hint: Option<String>,
    },
    /// Provider catalog (API client).
    #[command(subcommand)]
    Providers(remote::providers::ProvidersCmd),
    /// Audit log: list (API) and verify (API, or --offline).
    #[command(subcommand)]
    Audit(remote::audit::AuditCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async move {
        match cli.cmd {
            Cmd::Serve(a) => config::serve(a).await,
            Cmd::Admin(c) => offline::admin(c).await,
            Cmd::Keys(c) => offline::keys(c).await,
            Cmd::Connections(c) => remote::connections::run(c).await,
            Cmd::Providers(c) => remote::providers::run(c).await,
            Cmd::Integrations(c) => remote::integrations::run(c).await,
            Cmd::Webhooks(c) => remote::webhooks::run(c).await,
            Cmd::ConnectLink {
                api,
                integration,
                reauthorize,
                owner_hint,
            } => {
                remote::integrations::connect_link(api, integration, reauthorize, owner_hint).await
            }
            Cmd::Audit(c) => remote::audit::run(c).await,
        }
    });
    match res {
        Ok(code) => code,
        Err(e) => {
            // One line, no backtrace: errors here are for operators.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (duplicate names, bad defaults) for
    /// every subcommand, so a clash fails here and not at a user's prompt.
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
