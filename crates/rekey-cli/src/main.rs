//! The `rekey` binary: `serve`, offline administration against the data
//! directory / database, and a client for the REST API.

mod config;
mod offline;
mod output;
mod remote;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use rekey_client::ClientError;
use std::io::Write;
use std::process::ExitCode;

/// Exit statuses: one per class of failure, so scripts can tell "not
/// there" from "refused" from "server down". Documented in `rekey --help`
/// ([`EXIT_HELP`]); usage errors are clap's 2.
pub mod exit {
    /// Any other failure: invalid input, an API 400/422, a secret that
    /// could not be written out.
    pub const OTHER: u8 = 1;
    /// `connections check`: the probe ran and failed.
    pub const CHECK_FAILED: u8 = 3;
    /// API 404.
    pub const NOT_FOUND: u8 = 4;
    /// API 409: the resource is in another state or at another version.
    pub const CONFLICT: u8 = 5;
    /// API 401/403.
    pub const AUTH: u8 = 6;
    /// API 5xx, or no answer (connection refused, timeout, TLS).
    pub const SERVER: u8 = 7;
}

const EXIT_HELP: &str = "\
Exit status:
  0  success
  1  any other error (invalid input, API 400/422, a secret that could not be
     written to stdout)
  2  usage error (unknown command or option, missing argument)
  3  a check failed (`connections check`)
  4  not found (API 404)
  5  conflict (API 409: the resource is in another state or version)
  6  not authorized (REKEY_TOKEN not set, or API 401/403: unknown, revoked or lacking a scope)
  7  server error or unreachable (API 5xx, connection refused, timeout)

With --json, an error is printed on stderr as
  {\"error\":{\"code\":\"…\",\"message\":\"…\",\"status\":404}}
(`code` is the API's stable error code, or one of cli_error, unreachable,
http_error, bad_response; `status` is the HTTP status or null).

When the reader of stdout goes away (`rekey connections list | head -1`),
output stops quietly with status 0, except where a secret is shown once
(`connections credentials`, `webhooks create|rotate-secret`, `api-keys
create`): it is written in one piece before anything else, and if it cannot
be written the status is 1 and stderr says the secret may not have been
received.

No colour codes are written to a stdout or stderr that is not a terminal.";

#[derive(Parser)]
#[command(
    name = "rekey",
    version,
    about = "Keep third-party credentials working; revoke, rotate and reauthorize them.",
    after_help = EXIT_HELP
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
    /// Connections: the credentials rekey keeps for platforms (API client: REKEY_URL, REKEY_TOKEN).
    #[command(subcommand)]
    Connections(remote::connections::ConnectionsCmd),
    /// Webhook subscriptions and deliveries (API client).
    #[command(subcommand)]
    Webhooks(remote::webhooks::WebhooksCmd),
    /// Integrations: OAuth app registrations (client id and secret) that connect links use (API client).
    #[command(subcommand)]
    Integrations(remote::integrations::IntegrationsCmd),
    /// Print a connect link for a new connection (OAuth or key-based) or a reauthorization.
    ConnectLink(remote::integrations::ConnectLinkArgs),
    /// API keys of your tenant (API client; needs the admin scope).
    #[command(subcommand)]
    ApiKeys(remote::api_keys::ApiKeysCmd),
    /// Provider catalog (API client).
    #[command(subcommand)]
    Providers(remote::providers::ProvidersCmd),
    /// Audit log: list (API) and verify (API, or --offline).
    #[command(subcommand)]
    Audit(remote::audit::AuditCmd),
    /// Evidence for auditors: export (CSV or JSON, sealed) and verify a file (API client).
    #[command(subcommand)]
    Evidence(remote::evidence::EvidenceCmd),
    /// Incident campaigns: revoke, rotate or reauthorize every affected
    /// credential, verified, as one tracked run (API client).
    #[command(subcommand)]
    Campaign(remote::campaigns::CampaignCmd),
    /// Rotate a connection's credential with the catalog's rotator (API client).
    Rotate(remote::rotations::RotateArgs),
    /// Credential rotations: list and show (API client).
    #[command(subcommand)]
    Rotations(remote::rotations::RotationsCmd),
}

/// The API error behind `e`, if any (commands may add context around it).
fn client_error(e: &anyhow::Error) -> Option<&ClientError> {
    e.chain().find_map(|c| c.downcast_ref::<ClientError>())
}

/// The exit status of a failed command: the one place API errors are mapped
/// to [`exit`] classes.
fn exit_status(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<remote::MissingToken>().is_some() {
        return exit::AUTH;
    }
    let Some(ce) = client_error(e) else {
        return exit::OTHER;
    };
    match ce.status() {
        Some(404) => exit::NOT_FOUND,
        Some(409) => exit::CONFLICT,
        Some(401 | 403) => exit::AUTH,
        Some(s) if s >= 500 => exit::SERVER,
        Some(_) => exit::OTHER,
        None => match ce {
            ClientError::Connect { .. } | ClientError::Transport(_) => exit::SERVER,
            _ => exit::OTHER,
        },
    }
}

/// `{"error": {"code", "message", "status"}}` for `--json`: the API's own
/// code and message when it sent them.
fn error_json(e: &anyhow::Error) -> serde_json::Value {
    let (code, message, status) = match client_error(e) {
        Some(ClientError::Api {
            status,
            code,
            message,
        }) => (code.clone(), message.clone(), Some(*status)),
        Some(ce) => {
            let code = match ce {
                ClientError::Connect { .. } | ClientError::Transport(_) => "unreachable",
                ClientError::Status { .. } => "http_error",
                _ => "bad_response",
            };
            (code.to_string(), format!("{e:#}"), ce.status())
        }
        None if e.downcast_ref::<remote::MissingToken>().is_some() => {
            ("missing_token".to_string(), format!("{e:#}"), None)
        }
        None => ("cli_error".to_string(), format!("{e:#}"), None),
    };
    serde_json::json!({"error": {"code": code, "message": message, "status": status}})
}

/// Whether the subcommand that ran was given `--json` (the flag is defined
/// on each API subcommand, so look at the deepest one that has it).
fn wants_json(m: &ArgMatches) -> bool {
    if matches!(m.try_get_one::<bool>("json"), Ok(Some(true))) {
        return true;
    }
    m.subcommand().is_some_and(|(_, sub)| wants_json(sub))
}

// mimalloc instead of glibc's malloc: the request path allocates many
// small objects on several threads, where glibc's arenas cost a sixth of
// the credential fetch's CPU time (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let json = wants_json(&matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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
            Cmd::ConnectLink(a) => remote::integrations::connect_link(a).await,
            Cmd::ApiKeys(c) => remote::api_keys::run(c).await,
            Cmd::Audit(c) => remote::audit::run(c).await,
            Cmd::Evidence(c) => remote::evidence::run(c).await,
            Cmd::Campaign(c) => remote::campaigns::run(c).await,
            Cmd::Rotate(a) => remote::rotations::rotate(a).await,
            Cmd::Rotations(c) => remote::rotations::run(c).await,
        }
    });
    match res {
        Ok(code) => code,
        // `rekey … | head`: the reader has what it wanted.
        Err(e) if e.chain().any(|c| c.is::<output::StdoutClosed>()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, no backtrace: errors here are for operators. A closed
            // stderr is ignored: the exit status still tells.
            let mut err = std::io::stderr().lock();
            let _ = if json {
                writeln!(err, "{}", error_json(&e))
            } else {
                writeln!(err, "error: {e:#}")
            };
            ExitCode::from(exit_status(&e))
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

    /// Every command says what it does in `--help`.
    #[test]
    fn every_command_has_help() {
        use clap::CommandFactory;
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in c.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(p.clone());
                }
                walk(sub, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "rekey", &mut missing);
        assert!(missing.is_empty(), "commands without help: {missing:?}");
    }

    fn api(status: u16, code: &str) -> anyhow::Error {
        rekey_client::ClientError::Api {
            status,
            code: code.into(),
            message: format!("{code} happened"),
        }
        .into()
    }

    #[test]
    fn api_errors_map_to_one_exit_status_per_class() {
        use super::{exit, exit_status};
        for (status, want) in [
            (404, exit::NOT_FOUND),
            (409, exit::CONFLICT),
            (401, exit::AUTH),
            (403, exit::AUTH),
            (500, exit::SERVER),
            (503, exit::SERVER),
            (400, exit::OTHER),
            (422, exit::OTHER),
        ] {
            assert_eq!(exit_status(&api(status, "x")), want, "{status}");
        }
        // Context around the API error does not hide it.
        let e = api(404, "connection_not_found").context("reading con_1");
        assert_eq!(exit_status(&e), exit::NOT_FOUND);
        assert_eq!(exit_status(&anyhow::anyhow!("bad file")), exit::OTHER);
        // No HTTP answer at all: the server is down or unreachable.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let refused = rt
            .block_on(
                rekey_client::Client::new("http://127.0.0.1:1", "rk_x")
                    .unwrap()
                    .healthz(),
            )
            .unwrap_err();
        assert_eq!(exit_status(&refused.into()), exit::SERVER);
    }

    #[test]
    fn json_errors_carry_the_api_code_and_status() {
        let v = super::error_json(&api(409, "not_revoke_pending"));
        assert_eq!(
            v,
            serde_json::json!({"error": {"code": "not_revoke_pending", "message": "not_revoke_pending happened", "status": 409}})
        );
        let v = super::error_json(&anyhow::anyhow!("cannot read x.json"));
        assert_eq!(v["error"]["code"], "cli_error");
        assert_eq!(v["error"]["message"], "cannot read x.json");
        assert!(v["error"]["status"].is_null());
    }
}
