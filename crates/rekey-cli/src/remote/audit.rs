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
        /// Only this action (`connection.update`, `credentials.read`…).
        #[arg(long)]
        action: Option<String>,
        /// Only entries about this id.
        #[arg(long)]
        target: Option<String>,
        /// Only this actor (`api_key:<id>`, `cli`…).
        #[arg(long)]
        actor: Option<String>,
        /// Only entries at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Entries per request (1–500; default 50, or 500 with --all).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=500))]
        limit: Option<i64>,
        /// Fetch every page, not only the newest entries.
        #[arg(long)]
        all: bool,
    },
    /// Verify the hash chain. Exit 0 when intact; non-zero naming the first broken entry.
    Verify {
        #[command(flatten)]
        api: ApiArgs,
        /// Read the database directly instead of asking the server (always
        /// every entry from the first).
        #[arg(long)]
        offline: bool,
        /// Ask the server to read only the entries appended since the last
        /// verification (quick; an edit to an earlier entry is only found
        /// by a full walk, the default).
        #[arg(long, conflicts_with = "offline")]
        incremental: bool,
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
            actor,
            since,
            limit,
            all,
        } => {
            let c = client(&api)?;
            let q = AuditQuery {
                action,
                target,
                actor,
                since,
                limit: Some(limit.unwrap_or(if all { 500 } else { 50 })),
                cursor: None,
            };
            let items = if all {
                c.list_all_audit(q).await?
            } else {
                c.list_audit(&q).await?.items
            };
            if api.json {
                print_json(&items)?;
            } else {
                print_table(
                    &["seq", "at", "actor", "action", "target", "outcome"],
                    items
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
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Verify {
            api,
            offline,
            incremental,
            data,
        } => {
            if offline {
                return crate::offline::audit_verify_offline(&data, api.json).await;
            }
            let r = client(&api)?.verify_audit(incremental).await?;
            print_verify(&r, api.json)?;
            if !r.ok {
                bail!("audit chain verification failed");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
