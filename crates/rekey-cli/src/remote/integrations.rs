//! `rekey integrations …` and `rekey connect-link`.

use super::connections::non_empty;
use super::{client, read_input, ApiArgs, IdArgs};
use crate::output::{outln, print_json, print_table, write_secret};
use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use rekey_api::*;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum IntegrationsCmd {
    /// OAuth app registrations, filtered like `connections list`.
    List {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        provider: Option<String>,
        /// Only integrations with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only integrations whose client secret lives here too (e.g. salesforce).
        #[arg(long)]
        custody: Option<String>,
    },
    /// One OAuth app registration (never its client secret).
    Show(IdArgs),
    /// Register an OAuth app. The JSON body (the API's CreateIntegration,
    /// including `client_secret`) is read from a file or stdin (`-`).
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long = "file")]
        file: String,
        /// Tags (repeatable or comma-separated; replace the file's `tags`).
        #[arg(long = "tag", value_delimiter = ',')]
        tags: Option<Vec<String>>,
        /// Where copies of the client secret live (repeatable or
        /// comma-separated; replace the file's `custody`).
        #[arg(long = "custody", value_delimiter = ',')]
        custody: Option<Vec<String>>,
    },
    /// Change an OAuth app registration, e.g. rotate its client secret. The
    /// JSON body (the API's UpdateIntegration: only the fields to change) is
    /// read from a file or stdin (`-`); `--tag`/`--custody` alone need none.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)
        .args(["file", "tags", "custody"])))]
    Update {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long = "file")]
        file: Option<String>,
        /// Replaces all tags (repeatable or comma-separated; `--tag ''` clears).
        #[arg(long = "tag", value_delimiter = ',')]
        tags: Option<Vec<String>>,
        /// Replaces the custody list (repeatable or comma-separated; `--custody ''` clears).
        #[arg(long = "custody", value_delimiter = ',')]
        custody: Option<Vec<String>>,
    },
    /// Rotate the client secret made in the provider's console: rekey tests
    /// it at the token endpoint and switches to it only if it works. The
    /// secret comes from a JSON file or stdin (`-`):
    /// `{"client_secret": "…"}`, or `{"private_key_pem": "…", "key_id": "…"}`
    /// for private_key_jwt. Delete the old secret at the provider after.
    /// `--generate-key` (private_key_jwt): rekey makes the key pair and
    /// prints the public JWK to register; then `confirm-secret`.
    #[command(group(clap::ArgGroup::new("new").required(true).args(["file", "generate_key"])))]
    RotateSecret {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long = "file")]
        file: Option<String>,
        #[arg(long = "generate-key")]
        generate_key: bool,
        /// The generated key's `kid` (default: its RFC 7638 thumbprint).
        #[arg(long = "key-id", requires = "generate_key")]
        key_id: Option<String>,
    },
    /// Test the generated key registered at the provider, then switch to it.
    ConfirmSecret(IdArgs),
    /// The generated key waiting for registration: its public JWK again.
    PendingSecret(IdArgs),
    /// Forget the generated key waiting for registration.
    DiscardSecret(IdArgs),
    /// Delete an OAuth app registration; refused (exit 5) while connections
    /// use it.
    Delete(IdArgs),
}

/// A client-secret rotation: the public JWK to register (stdout) while a
/// generated key waits, else the outcome.
fn print_secret_rotation(api: &ApiArgs, r: &ClientSecretRotationView) -> Result<()> {
    if api.json {
        return print_json(r);
    }
    match &r.public_jwk {
        Some(jwk) if r.state == "awaiting_registration" => {
            outln!("{}", serde_json::to_string_pretty(jwk)?)?;
            eprintln!(
                "register this public key for client {} at the provider, then: rekey integrations confirm-secret {}",
                r.integration.client_id, r.integration.id
            );
        }
        _ => outln!(
            "rotated the client secret of {} (tested with {}; {} → {}); {} connections use it now. Delete the old secret in the provider's console.",
            r.integration.id,
            r.tested_with.as_deref().unwrap_or("-"),
            r.old_fingerprint,
            r.new_fingerprint,
            r.connections
        )?,
    }
    Ok(())
}

/// A request body of type `T` from `file` (or stdin), with serde's
/// complaints but never the values it quotes (the file holds secrets).
fn read_body<T: serde::de::DeserializeOwned>(file: &str, type_name: &str) -> Result<T> {
    let text = read_input(file, "stdin")?;
    let body: Value =
        serde_json::from_str(&text).map_err(|_| anyhow!("{file} is not valid JSON"))?;
    serde_json::from_value(body).map_err(|e| {
        anyhow!(
            "{file} does not match the API's {type_name}: {}",
            without_quoted_values(&e.to_string())
        )
    })
}

/// serde's message without the values it quotes (the file holds a client
/// secret): `invalid type: string "…", expected …`.
fn without_quoted_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars();
    while let Some(ch) = chars.next() {
        out.push(ch);
        if ch == '"' {
            out.push('…');
            while let Some(q) = chars.next() {
                match q {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        out.push('"');
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// Slugs from a repeatable, comma-separated option, without empty ones (so
/// `--tag ''` is the empty list).
pub async fn run(cmd: IntegrationsCmd) -> Result<ExitCode> {
    match cmd {
        IntegrationsCmd::List {
            api,
            provider,
            tag,
            custody,
        } => {
            let q = IntegrationQuery {
                provider,
                tag,
                custody,
            };
            let list = client(&api)?.list_integrations(&q).await?;
            if api.json {
                print_json(&list.items)?;
            } else {
                print_table(
                    &[
                        "id",
                        "provider",
                        "name",
                        "client id",
                        "auth method",
                        "scopes",
                        "tags",
                        "custody",
                    ],
                    list.items
                        .iter()
                        .map(|i| {
                            vec![
                                i.id.clone(),
                                i.provider.clone(),
                                i.display_name.clone(),
                                i.client_id.clone(),
                                i.auth_method.clone(),
                                i.scopes.join(" "),
                                i.tags.join(","),
                                i.custody.join(","),
                            ]
                        })
                        .collect(),
                )?;
            }
        }
        IntegrationsCmd::Show(IdArgs { id, api }) => {
            let v = client(&api)?.get_integration(&id).await?;
            print_json(&v)?;
        }
        IntegrationsCmd::Create {
            api,
            file,
            tags,
            custody,
        } => {
            let c = client(&api)?;
            let mut req: CreateIntegration = read_body(&file, "CreateIntegration")?;
            req.tags = non_empty(tags).unwrap_or(req.tags);
            req.custody = non_empty(custody).unwrap_or(req.custody);
            let v = c.create_integration(&req).await?;
            if api.json {
                print_json(&v)?;
            } else {
                outln!("{}", v.id)?;
            }
        }
        IntegrationsCmd::Update {
            id,
            api,
            file,
            tags,
            custody,
        } => {
            let c = client(&api)?;
            let mut req: UpdateIntegration = match &file {
                Some(f) => read_body(f, "UpdateIntegration")?,
                None => UpdateIntegration::default(),
            };
            req.tags = non_empty(tags).or(req.tags);
            req.custody = non_empty(custody).or(req.custody);
            let v = c.update_integration(&id, &req, None).await?;
            if api.json {
                print_json(&v)?;
            } else {
                outln!("updated {} (version {})", v.id, v.version)?;
            }
        }
        IntegrationsCmd::RotateSecret {
            id,
            api,
            file,
            generate_key,
            key_id,
        } => {
            let req = match &file {
                Some(f) => read_body(f, "RotateClientSecret")?,
                None => RotateClientSecret {
                    generate_key,
                    key_id,
                    ..Default::default()
                },
            };
            let r = client(&api)?.rotate_client_secret(&id, &req).await?;
            print_secret_rotation(&api, &r)?;
        }
        IntegrationsCmd::ConfirmSecret(IdArgs { id, api }) => {
            let r = client(&api)?.confirm_client_secret(&id).await?;
            print_secret_rotation(&api, &r)?;
        }
        IntegrationsCmd::PendingSecret(IdArgs { id, api }) => {
            let r = client(&api)?.pending_client_key(&id).await?;
            print_secret_rotation(&api, &r)?;
        }
        IntegrationsCmd::DiscardSecret(IdArgs { id, api }) => {
            client(&api)?.discard_client_secret(&id).await?;
            outln!("discarded the generated key of {id}")?;
        }
        IntegrationsCmd::Delete(IdArgs { id, api }) => {
            client(&api)?.delete_integration(&id).await?;
            outln!("deleted {id}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rekey connect-link`: who connects what.
#[derive(clap::Args)]
pub struct ConnectLinkArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// A new OAuth connection through this integration (OAuth app).
    #[arg(long, conflicts_with_all = ["provider", "reauthorize"])]
    pub integration: Option<String>,
    /// A new key-based connection of this provider (with --kind): the
    /// Connect page shows the provider's form for that kind.
    #[arg(long, requires = "kind", conflicts_with = "reauthorize")]
    pub provider: Option<String>,
    /// The connection kind for --provider (`api_key`, `basic`, `headers`…).
    #[arg(long, requires = "provider")]
    pub kind: Option<String>,
    /// Reauthorize this connection ("Connect new account").
    #[arg(long)]
    pub reauthorize: Option<String>,
    /// Name of the new connection.
    #[arg(long = "name", conflicts_with = "reauthorize")]
    pub display_name: Option<String>,
    /// Tags of the new connection (repeatable or comma-separated).
    #[arg(long = "tag", value_delimiter = ',', conflicts_with = "reauthorize")]
    pub tags: Vec<String>,
    /// Where copies of the new secret will live (repeatable or comma-separated).
    #[arg(
        long = "custody",
        value_delimiter = ',',
        conflicts_with = "reauthorize"
    )]
    pub custody: Vec<String>,
    /// Who should authorize (shown on the Connect page).
    #[arg(long)]
    pub owner_hint: Option<String>,
    /// Lifetime of the link in seconds (60–3600; the server's default is 900).
    #[arg(long)]
    pub expires_in: Option<i64>,
}

/// `rekey connect-link`: print a single-use connect URL for a new connection
/// (OAuth through an integration, or a provider's key form) or a
/// reauthorization.
pub async fn connect_link(a: ConnectLinkArgs) -> Result<ExitCode> {
    let c = client(&a.api)?;
    let sess: ConnectSessionView = match (a.integration, a.provider, a.reauthorize) {
        (_, _, Some(conn)) => c
            .reauthorize_connection(&conn, false)
            .await?
            .session
            .ok_or_else(|| anyhow!("the server returned no connect session"))?,
        (integration, provider, None) if integration.is_some() || provider.is_some() => {
            c.create_connect_session(&CreateConnectSession {
                integration,
                provider,
                kind: a.kind,
                display_name: a.display_name,
                owner_hint: a.owner_hint,
                tags: a.tags,
                custody: a.custody,
                reauthorize: None,
                expires_in: a.expires_in,
            })
            .await?
        }
        _ => bail!(
            "give --integration ID (new OAuth connection), --provider P --kind K (new key-based connection) or --reauthorize CONNECTION"
        ),
    };
    // The link carries a single-use token shown once: a lost write is an
    // error, not a quiet exit.
    let text = if a.api.json {
        format!("{}\n", serde_json::to_string_pretty(&sess)?)
    } else {
        format!("{}\n", sess.url)
    };
    write_secret(&text, "the connect link")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_values_are_dropped() {
        assert_eq!(
            super::without_quoted_values(
                r#"invalid type: string "s3cr\"et", expected a sequence at `scopes`"#
            ),
            r#"invalid type: string "…", expected a sequence at `scopes`"#
        );
    }
}
