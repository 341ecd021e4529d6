//! `rekey providers …`

use super::{client, ApiArgs, IdArgs};
use crate::output::{outln, print_json, print_table};
use anyhow::{anyhow, Result};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ProvidersCmd {
    /// The provider catalog: each provider's kinds and how rekey checks,
    /// revokes and rotates them.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One catalog entry with its revoke and rotate runbooks (JSON).
    Show(IdArgs),
    /// Check catalog entries (offline): DIR, or the catalog built into this binary.
    /// Exit 1 on errors (and on warnings with --strict).
    Lint {
        dir: Option<std::path::PathBuf>,
        #[arg(long)]
        strict: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: ProvidersCmd) -> Result<ExitCode> {
    let api = match cmd {
        ProvidersCmd::List { api } => api,
        ProvidersCmd::Show(IdArgs { id, api }) => {
            print_json(&client(&api)?.get_provider(&id).await?)?;
            return Ok(ExitCode::SUCCESS);
        }
        ProvidersCmd::Lint { dir, strict, json } => return lint(dir, strict, json),
    };
    let list = client(&api)?.list_providers(&Default::default()).await?;
    if api.json {
        print_json(&list.items)?;
    } else {
        print_table(
            &["id", "name", "category", "auth kinds", "revoke", "rotate"],
            list.items
                .iter()
                .map(|p| {
                    vec![
                        p.id.clone(),
                        p.display_name.clone(),
                        p.category.clone(),
                        p.auth_kinds.join(","),
                        p.revoke.method.clone(),
                        p.rotate.method.clone(),
                    ]
                })
                .collect(),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn lint(dir: Option<std::path::PathBuf>, strict: bool, json: bool) -> Result<ExitCode> {
    let findings = match &dir {
        Some(d) => rekey_providers::lint_dir(d),
        None => rekey_providers::lint_embedded(),
    }
    .map_err(|e| anyhow!("{e}"))?;
    if json {
        print_json(&findings)?;
    } else {
        for f in &findings {
            outln!("{f}")?;
        }
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == rekey_providers::Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    eprintln!("{errors} errors, {warnings} warnings");
    Ok(if errors > 0 || (strict && warnings > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
