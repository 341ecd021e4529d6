//! `rekey audit list|verify` (verify also `--offline`).

use super::{client, ApiArgs};
use crate::config::DataArgs;
use crate::output::{print_json, print_table, print_verify};
use anyhow::{bail, Result};
use clap::Subcommand;
use rekey_api::AuditQuery;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Audit entries, newest first.
    List {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Verify the hash chain. Exit 0 when intact; non-zero naming the first broken entry.
    Verify {
        #[command(flatten)]
        api: ApiArgs,
        /// Read the database directly instead of asking the server.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        data: DataArgs,
    },
}

pub async fn run(cmd: AuditCmd) -> Result<ExitCode> {
    match cmd {
        AuditCmd::List {
            api,
            action,
            target,
            limit,
        } => {
            let c = client(&api)?;
            let q = AuditQuery {
                action,
                target,
                limit: Some(limit),
                ..Default::default()
            };
            let list = c.list_audit(&q).await?;
            if api.json {
                print_json(&list.items)?;
            } else {
                print_table(
                    &["seq", "at", "actor", "action", "target", "outcome"],
                    list.items
                        .iter()
                        .map(|e| {
                            vec![
                                e.seq.to_string(),
                                e.at.clone(),
                                e.actor.clone(),
                                e.action.clone(),
                                e.target.clone().unwrap_or_default(),
                                e.outcome.clone(),
                            ]
                        })
                        .collect(),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Verify { api, offline, data } => {
            if offline {
                return crate::offline::audit_verify_offline(&data, api.json).await;
            }
            let r = client(&api)?.verify_audit().await?;
            print_verify(&r, api.json)?;
            if !r.ok {
                bail!("audit chain verification failed");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
