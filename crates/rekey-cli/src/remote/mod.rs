//! API client subcommands: talk to `REKEY_URL` with `REKEY_TOKEN` through
//! `rekey-client`. Each command parses its arguments, makes the calls and
//! formats the answer; request shapes live in the client crate.

pub mod api_keys;
pub mod audit;
pub mod campaigns;
pub mod connections;
pub mod evidence;
pub mod import;
pub mod integrations;
pub mod providers;
pub mod rotations;
pub mod webhooks;

use crate::config::secret_env;
use anyhow::Result;
use clap::Args;
use rekey_client::Client;

#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// Base URL of the rekey server.
    #[arg(
        long,
        env = "REKEY_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The connection filter (filters combine with AND), as
/// `connections list` and `evidence export` take it.
#[derive(Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Search in name, owner email or id (the API's `q`).
    #[arg(long)]
    search: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    tag: Option<String>,
    #[arg(long)]
    custody: Option<String>,
    #[arg(long)]
    owner: Option<String>,
    #[arg(long)]
    created_before: Option<String>,
    #[arg(long)]
    rotated_before: Option<String>,
    /// OAuth grants made through this integration (`int_…`).
    #[arg(long)]
    integration: Option<String>,
    /// Read successfully at or after this time (RFC 3339).
    #[arg(long)]
    last_read_after: Option<String>,
}

impl FilterArgs {
    pub fn query(self) -> rekey_api::ConnectionQuery {
        rekey_api::ConnectionQuery {
            q: self.search,
            provider: self.provider,
            kind: self.kind,
            status: self.status,
            tag: self.tag,
            custody: self.custody,
            owner: self.owner,
            created_before: self.created_before,
            rotated_before: self.rotated_before,
            integration: self.integration,
            last_read_after: self.last_read_after,
            ..Default::default()
        }
    }
}

/// The arguments of a command on one resource, named by its id.
#[derive(Args, Clone, Debug)]
pub struct IdArgs {
    pub id: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// No API key to call with: an authentication failure, exit status 6 like
/// an unknown key.
#[derive(Debug)]
pub struct MissingToken;

impl std::fmt::Display for MissingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("REKEY_TOKEN (or REKEY_TOKEN_FILE) is not set; create a key with `rekey admin create-key`")
    }
}

impl std::error::Error for MissingToken {}

/// The API client for these arguments and `REKEY_TOKEN` (or its `_FILE`).
pub fn client(api: &ApiArgs) -> Result<Client> {
    let token = secret_env("REKEY_TOKEN")?.ok_or(MissingToken)?;
    Ok(Client::new(&api.url, token)?)
}

/// JSON from a file, or from stdin for `-`.
pub fn read_input(file: &str, what: &str) -> Result<String> {
    use anyhow::Context;
    if file == "-" {
        std::io::read_to_string(std::io::stdin()).with_context(|| format!("cannot read {what}"))
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))
    }
}
