//! `rekey api-keys …`: the caller's tenant's API keys, through the API
//! (`rekey admin create-key` makes the first one offline).

use super::{client, ApiArgs, IdArgs};
use crate::output::{outln, print_json, print_table, write_secret};
use anyhow::Result;
use clap::Subcommand;
use rekey_api::{ApiKeyView, CreateApiKey, Grace, RotateApiKey};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ApiKeysCmd {
    /// API keys of your tenant (never the keys themselves).
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Create a key; it is printed once, on stdout, before anything else.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        name: String,
        /// `connections:read`, `connections:write`, `credentials:read`,
        /// `admin`… (comma-separated or repeated).
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// Revoke a key: it stops working at once.
    Revoke(IdArgs),
    /// Replace a key with a new one (same name and scopes), printed once on
    /// stdout; the old one keeps working for the grace.
    Rotate {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// How long the old key keeps working: `15m`, `1h` (default), `7d`
        /// (at most 30d); `0` revokes it at once.
        #[arg(long)]
        grace: Option<String>,
    },
}

fn row(k: &ApiKeyView) -> Vec<String> {
    vec![
        k.id.clone(),
        k.name.clone(),
        k.scopes.join(","),
        k.created_at.clone(),
        k.last_used_at.clone().unwrap_or_else(|| "-".into()),
        k.revoked_at.clone().unwrap_or_else(|| "-".into()),
        k.expires_at.clone().unwrap_or_else(|| "-".into()),
    ]
}

const HEADERS: [&str; 7] = [
    "id",
    "name",
    "scopes",
    "created",
    "last used",
    "revoked",
    "expires",
];

pub async fn run(cmd: ApiKeysCmd) -> Result<ExitCode> {
    match cmd {
        ApiKeysCmd::List { api } => {
            let list = client(&api)?.list_api_keys().await?;
            if api.json {
                print_json(&list.items)?;
            } else {
                print_table(&HEADERS, list.items.iter().map(row).collect())?;
            }
        }
        ApiKeysCmd::Create { api, name, scopes } => {
            let created = client(&api)?
                .create_api_key(&CreateApiKey { name, scopes })
                .await?;
            // Only the key on stdout (as `admin create-key`), or the whole answer with --json.
            let text = if api.json {
                let mut t = serde_json::to_string_pretty(&created)?;
                t.push('\n');
                t
            } else {
                format!("{}\n", created.key)
            };
            write_secret(&text, "the API key")?;
        }
        ApiKeysCmd::Rotate { id, api, grace } => {
            let rotated = client(&api)?
                .rotate_api_key(
                    &id,
                    &RotateApiKey {
                        grace: grace.map(Grace::Text),
                    },
                )
                .await?;
            let text = if api.json {
                let mut t = serde_json::to_string_pretty(&rotated)?;
                t.push('\n');
                t
            } else {
                format!("{}\n", rotated.key)
            };
            write_secret(&text, "the new API key")?;
            // Where the old one stands, on stderr (stdout holds only the key).
            match &rotated.previous.expires_at {
                Some(at) => eprintln!(
                    "{} works until {at}; then only {} does",
                    rotated.previous.id, rotated.api_key.id
                ),
                None => eprintln!(
                    "{} is revoked; {} replaces it",
                    rotated.previous.id, rotated.api_key.id
                ),
            }
        }
        ApiKeysCmd::Revoke(IdArgs { id, api }) => {
            let k = client(&api)?.revoke_api_key(&id).await?;
            if api.json {
                print_json(&k)?;
            } else {
                outln!("revoked {}", k.id)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
