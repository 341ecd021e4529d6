//! `rekey integrations …` and `rekey connect-link`.

use super::{client, read_input, ApiArgs};
use crate::output::{print_json, print_table};
use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use rekey_api::*;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum IntegrationsCmd {
    /// OAuth app registrations.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    Show {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Register an OAuth app. The JSON body (the API's CreateIntegration,
    /// including `client_secret`) is read from a file or stdin (`-`).
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long = "file")]
        file: String,
    },
    Delete {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
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

pub async fn run(cmd: IntegrationsCmd) -> Result<ExitCode> {
    match cmd {
        IntegrationsCmd::List { api } => {
            let list = client(&api)?.list_integrations().await?;
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
                            ]
                        })
                        .collect(),
                );
            }
        }
        IntegrationsCmd::Show { id, api } => {
            let v = client(&api)?.get_integration(&id).await?;
            print_json(&v)?;
        }
        IntegrationsCmd::Create { api, file } => {
            let c = client(&api)?;
            let text = read_input(&file, "stdin")?;
            let body: Value =
                serde_json::from_str(&text).map_err(|_| anyhow!("{file} is not valid JSON"))?;
            let req: CreateIntegration = serde_json::from_value(body).map_err(|e| {
                anyhow!(
                    "{file} does not match the API's CreateIntegration: {}",
                    without_quoted_values(&e.to_string())
                )
            })?;
            let v = c.create_integration(&req).await?;
            if api.json {
                print_json(&v)?;
            } else {
                println!("{}", v.id);
            }
        }
        IntegrationsCmd::Delete { id, api } => {
            client(&api)?.delete_integration(&id).await?;
            println!("deleted {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rekey connect-link --integration ID [--reauthorize CONN]`: print a connect URL.
pub async fn connect_link(
    api: ApiArgs,
    integration: Option<String>,
    reauthorize: Option<String>,
    owner_hint: Option<String>,
) -> Result<ExitCode> {
    let c = client(&api)?;
    let sess: ConnectSessionView = match (integration, reauthorize) {
        (_, Some(conn)) => c
            .reauthorize_connection(&conn, false)
            .await?
            .session
            .ok_or_else(|| anyhow!("the server returned no connect session"))?,
        (Some(integ), None) => {
            c.create_connect_session(&CreateConnectSession {
                integration: Some(integ),
                owner_hint,
                ..Default::default()
            })
            .await?
        }
        (None, None) => bail!("give --integration ID (new connection) or --reauthorize CONNECTION"),
    };
    if api.json {
        print_json(&sess)?;
    } else {
        println!("{}", sess.url);
    }
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
