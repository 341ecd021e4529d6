//! `rekey evidence export|verify`: the auditor's file, and the check that
//! a file is the one rekey produced (its SHA-256 is in the audit chain).

use super::{client, ApiArgs, FilterArgs};
use crate::output::{outln, print_json};
use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use rekey_api::EvidenceQuery;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum EvidenceCmd {
    /// Export evidence for the connections the filter selects (all when
    /// none): one row each — the credential revoked, how and by whom, the
    /// provider's answer when rekey tried it, the credential that replaced
    /// it. Needs `audit:read`.
    Export {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        filter: Box<FilterArgs>,
        /// `csv` (opens in a spreadsheet; the default) or `json` (also `--json`).
        #[arg(long)]
        format: Option<String>,
        /// Write here (atomically: a cut transfer leaves no file) instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Only the connections of this campaign (`cmp_…`); the file then
        /// also holds the campaign and its timeline.
        #[arg(long)]
        campaign: Option<String>,
    },
    /// Check an export file: its content matches its seal, the seal's
    /// SHA-256 is the one the audit chain recorded for that export, and the
    /// chain is intact. Exit 0 when all hold, 3 when not.
    Verify {
        #[command(flatten)]
        api: ApiArgs,
        file: PathBuf,
    },
}

pub async fn run(cmd: EvidenceCmd) -> Result<ExitCode> {
    match cmd {
        EvidenceCmd::Export {
            api,
            filter,
            format,
            output,
            campaign,
        } => {
            let c = client(&api)?;
            let format = format.unwrap_or_else(|| if api.json { "json" } else { "csv" }.into());
            let mut q = EvidenceQuery::new((*filter).query(), Some(format));
            q.campaign = campaign;
            match output {
                None => {
                    let mut out = std::io::stdout().lock();
                    match c.export_evidence(&q, &mut out).await {
                        Err(rekey_client::ClientError::Write(e))
                            if e.kind() == std::io::ErrorKind::BrokenPipe =>
                        {
                            return Err(crate::output::StdoutClosed.into())
                        }
                        r => r?,
                    };
                }
                Some(path) => {
                    let partial = path.with_extension("partial");
                    let mut f = std::fs::File::create(&partial)
                        .with_context(|| format!("cannot create {}", partial.display()))?;
                    let written = c.export_evidence(&q, &mut f).await;
                    let n = match written.and_then(|n| {
                        f.sync_all()
                            .map(|_| n)
                            .map_err(rekey_client::ClientError::Write)
                    }) {
                        Ok(n) => n,
                        Err(e) => {
                            let _ = std::fs::remove_file(&partial);
                            return Err(e.into());
                        }
                    };
                    std::fs::rename(&partial, &path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    let mut err = std::io::stderr().lock();
                    writeln!(err, "wrote {n} bytes to {}", path.display())?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EvidenceCmd::Verify { api, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let seal = match rekey_api::read_seal(&bytes) {
                Ok(s) => s,
                Err(why) => return failed(&api, &file, &why, None),
            };
            let actual = format!("{:x}", Sha256::digest(&bytes[..seal.sealed_len]));
            if actual != seal.sha256 {
                return failed(
                    &api,
                    &file,
                    "the file was altered: its content does not match its seal",
                    None,
                );
            }
            let rec = client(&api)?
                .get_evidence(&seal.id)
                .await
                .with_context(|| format!("export {} named by the seal", seal.id))?;
            if rec.sha256 != seal.sha256 {
                return failed(
                    &api,
                    &file,
                    "the file was altered: its seal is not the one the audit chain recorded for this export",
                    Some(&rec),
                );
            }
            if !rec.chain_intact {
                let why = format!("the audit chain itself is broken: {}", rec.chain_message);
                return failed(&api, &file, &why, Some(&rec));
            }
            if api.json {
                print_json(&serde_json::json!({"ok": true, "file": file, "record": rec}))?;
            } else {
                outln!(
                    "evidence intact: {} ({} rows, generated {} by {}), sha256 {}, recorded in audit entry {}; {}",
                    rec.id,
                    rec.rows,
                    rec.generated_at,
                    rec.generated_by,
                    rec.sha256,
                    rec.audit_seq,
                    rec.chain_message
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Report a file that does not verify: exit 3.
fn failed(
    api: &ApiArgs,
    file: &std::path::Path,
    why: &str,
    rec: Option<&rekey_api::EvidenceRecordView>,
) -> Result<ExitCode> {
    if api.json {
        print_json(&serde_json::json!({"ok": false, "file": file, "message": why, "record": rec}))?;
    } else {
        let mut err = std::io::stderr().lock();
        writeln!(err, "evidence NOT verified: {}: {why}", file.display())
            .map_err(|e| anyhow!(e))?;
    }
    Ok(ExitCode::from(crate::exit::CHECK_FAILED))
}
