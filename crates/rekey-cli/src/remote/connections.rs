//! `rekey connections …`

use super::{client, read_input, ApiArgs, IdArgs};
use crate::output::{outln, print_json, print_table, write_secret};
use anyhow::{anyhow, Result};
use clap::{ArgGroup, Subcommand};
use rekey_api::*;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ConnectionsCmd {
    /// List connections (filters combine with AND).
    List {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        filter: super::FilterArgs,
        /// Fetch every page.
        #[arg(long)]
        all: bool,
    },
    /// Show one connection (no secrets).
    Show(IdArgs),
    /// Create a connection. Credential material is read from a JSON file or
    /// stdin (`-`), never from the command line.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        kind: String,
        #[arg(long = "name")]
        display_name: String,
        /// JSON file with the credential material, or `-` for stdin.
        #[arg(long = "credentials-file")]
        credentials_file: String,
        #[arg(long = "tag", value_delimiter = ',')]
        tags: Vec<String>,
        #[arg(long = "custody", value_delimiter = ',')]
        custody: Vec<String>,
        #[arg(long = "scope", value_delimiter = ',')]
        scopes: Vec<String>,
        #[arg(long)]
        owner_email: Option<String>,
        #[arg(long)]
        owner_subject: Option<String>,
        /// A value for one of the provider's URL placeholders (`site=acme`); repeatable.
        #[arg(long = "param", value_parser = parse_kv)]
        params: Vec<(String, String)>,
        /// Probe this URL instead of the catalog's health endpoint.
        #[arg(long)]
        probe_url: Option<String>,
    },
    /// Create many connections from an inventory file (JSON array or CSV),
    /// sent in batches; prints each refused row with its file row number.
    /// Exit status 1 when any row was refused (the others are created).
    Import(super::import::ImportArgs),
    /// Delete a connection and destroy its stored secrets (OAuth grants are revoked first).
    Delete {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Do not revoke at the provider first.
        #[arg(long)]
        no_revoke: bool,
    },
    /// Revoke at the provider (RFC 7009) or print the manual runbook steps.
    Revoke(IdArgs),
    /// Start a reauthorization: prints the connect link for the original authorizer.
    Reauthorize {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Accept a parked grant whose identity or scopes differ (audited).
        #[arg(long)]
        accept_mismatch: bool,
    },
    /// Refresh an OAuth connection's access token now.
    Refresh(IdArgs),
    /// Run the health probe now. Exit status 0 when healthy (or no probe
    /// applies), 3 when the check failed.
    Check(IdArgs),
    /// Record that the data of a connection no probe can check flows
    /// (`pending` becomes `active`; audited). Refused for a connection a
    /// probe checks, or one whose last check or refresh failed.
    ConfirmWorking {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// What was seen, e.g. "today's sync arrived" (≤ 500 characters).
        #[arg(long)]
        note: Option<String>,
    },
    /// Stop handing out the credential (reads answer 409) until `enable`.
    Disable {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Why (kept in the audit log and on the connection).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Re-enable a disabled connection (it is `pending` until checked).
    Enable(IdArgs),
    /// Change a connection's metadata; only the options given are changed.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["display_name", "owner_email", "tags", "custody", "expires_at", "probe_url"])))]
    Update {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long = "name")]
        display_name: Option<String>,
        /// The owner's email (the owner's other fields are kept).
        #[arg(long)]
        owner_email: Option<String>,
        /// Replaces all tags (repeatable or comma-separated; `--tag ''` clears).
        #[arg(long = "tag", value_delimiter = ',')]
        tags: Option<Vec<String>>,
        /// Replaces the custody list (repeatable or comma-separated; `--custody ''` clears).
        #[arg(long = "custody", value_delimiter = ',')]
        custody: Option<Vec<String>>,
        /// RFC 3339; `''` clears.
        #[arg(long)]
        expires_at: Option<String>,
        /// Probe this URL instead of the catalog's; `''` clears.
        #[arg(long)]
        probe_url: Option<String>,
    },
    /// Print the decrypted credential as JSON on stdout (needs
    /// `credentials:read`; audited). Nothing else is printed before it; if
    /// stdout is closed before it is written, the exit status is 1 and stderr
    /// says so.
    Credentials {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// `current` (default) or `previous`: the credential replaced last,
        /// while its grace lasts.
        #[arg(long, value_parser = ["current", "previous"])]
        version: Option<String>,
    },
    /// The credential history: each version's label (current, pending,
    /// previous, retired), fingerprint, and who made, promoted and retired
    /// it. Never values.
    Versions(IdArgs),
    /// Replace the credential material with JSON from a file or stdin (`-`),
    /// never from the command line.
    ReplaceCredentials {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// JSON file with the credential material, or `-` for stdin.
        #[arg(long = "credentials-file")]
        credentials_file: String,
        /// How long the replaced credential stays readable as `previous`
        /// (`0`, `90s`, `15m`, `1h`, `7d`; default 1h, at most 30d).
        #[arg(long)]
        grace: Option<String>,
    },
    /// Confirm manual revocation steps done at the provider: `--step N`
    /// one at a time, or every step left. When none is left the connection
    /// becomes `revoked` and rekey tries the old credential.
    ConfirmRevocation {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Evidence for the audit log, e.g. a ticket number (≤ 500 characters).
        #[arg(long)]
        note: Option<String>,
        /// The runbook step done (1-based, as `revoke` lists them).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        step: Option<u32>,
    },
    /// Try the revoked credential at the provider now. Exit status 0 when
    /// the provider refused it, 3 when it still accepts it or rekey cannot
    /// tell yet.
    VerifyRevocation(IdArgs),
    /// The revocations of a connection's credentials: fingerprint, steps,
    /// verdict.
    Revocations(IdArgs),
    /// Who read the connection's credential (from the audit log): per API
    /// key and client address, how often, first and last. Needs `audit:read`.
    Readers {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Only reads at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
}

/// Slugs from a repeatable, comma-separated option, without empty ones (so
/// `--tag ''` is the empty list).
pub(super) fn non_empty(v: Option<Vec<String>>) -> Option<Vec<String>> {
    v.map(|v| v.into_iter().filter(|s| !s.trim().is_empty()).collect())
}

/// Credential material from `--credentials-file`, which may be stdin.
pub(super) fn read_credentials_file(file: &str) -> Result<Value> {
    let text = read_input(file, "credentials from stdin")?;
    serde_json::from_str(&text).map_err(|_| anyhow!("credentials file is not valid JSON"))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| "expected NAME=VALUE".to_string())
}

fn connection_row(c: &ConnectionView) -> Vec<String> {
    vec![
        c.id.clone(),
        c.provider.clone(),
        c.kind.clone(),
        c.status.clone(),
        c.display_name.clone(),
        c.tags.join(","),
        c.custody.join(","),
        c.rotated_at.clone().unwrap_or_else(|| "-".into()),
    ]
}

/// After a status change: the connection as JSON, or `ID is STATUS`.
fn print_status(api: &ApiArgs, v: &ConnectionView) -> Result<()> {
    if api.json {
        print_json(v)
    } else {
        outln!("{} is {}", v.id, v.status)
    }
}

const CONN_HEADERS: [&str; 8] = [
    "id", "provider", "kind", "status", "name", "tags", "custody", "rotated",
];

pub async fn run(cmd: ConnectionsCmd) -> Result<ExitCode> {
    match cmd {
        ConnectionsCmd::List { api, filter, all } => {
            let c = client(&api)?;
            let q = filter.query();
            let items = if all {
                c.list_all_connections(q).await?
            } else {
                c.list_connections(&q).await?.items
            };
            if api.json {
                print_json(&items)?;
            } else {
                print_table(&CONN_HEADERS, items.iter().map(connection_row).collect())?;
            }
        }
        ConnectionsCmd::Show(IdArgs { id, api }) => {
            let v = client(&api)?.get_connection(&id).await?;
            if api.json {
                print_json(&v)?;
            } else {
                print_table(&CONN_HEADERS, vec![connection_row(&v)])?;
                if let Some(e) = &v.last_error {
                    outln!("last error: {e}")?;
                }
                outln!("credential: {}", v.credential)?;
            }
        }
        ConnectionsCmd::Create {
            api,
            provider,
            kind,
            display_name,
            credentials_file,
            tags,
            custody,
            scopes,
            owner_email,
            owner_subject,
            params,
            probe_url,
        } => {
            let c = client(&api)?;
            let credentials = read_credentials_file(&credentials_file)?;
            let owner = (owner_email.is_some() || owner_subject.is_some()).then_some(OwnerView {
                subject: owner_subject,
                email: owner_email,
                name: None,
            });
            let v = c
                .create_connection(&CreateConnection {
                    provider,
                    kind,
                    display_name,
                    owner,
                    scopes,
                    tags,
                    custody,
                    expires_at: None,
                    params: params.into_iter().collect(),
                    probe_url,
                    credentials,
                })
                .await?;
            if api.json {
                print_json(&v)?;
            } else {
                outln!("{}", v.id)?;
            }
        }
        ConnectionsCmd::Import(args) => return super::import::run(args).await,
        ConnectionsCmd::Delete { id, api, no_revoke } => {
            let q = DeleteQuery {
                revoke: no_revoke.then_some(false),
            };
            client(&api)?.delete_connection(&id, &q, None).await?;
            if !api.json {
                outln!("deleted {id}")?;
            }
        }
        ConnectionsCmd::Revoke(IdArgs { id, api }) => {
            let r = client(&api)?.revoke_connection(&id).await?;
            if api.json {
                print_json(&r)?;
            } else if r.revoked_at_provider {
                outln!(
                    "revoked at the provider; {id} is now {}",
                    r.connection.status
                )?;
            } else {
                outln!("{id} is {}: the provider has no revocation API. Do each step, then confirm it with `rekey connections confirm-revocation {id} --step N --note TICKET`:", r.connection.status)?;
                for (n, step) in r.manual_steps.iter().enumerate() {
                    outln!("  {}. {step}", n + 1)?;
                }
            }
            if let (false, Some(v)) = (api.json, &r.revocation) {
                if v.state == "revoked" {
                    print_revocation(v)?;
                }
            }
        }
        ConnectionsCmd::Reauthorize {
            id,
            api,
            accept_mismatch,
        } => {
            let r = client(&api)?
                .reauthorize_connection(&id, accept_mismatch)
                .await?;
            if api.json {
                print_json(&r)?;
            } else if let Some(sess) = &r.session {
                // A single-use link shown once, like a secret.
                write_secret(&format!("{}\n", sess.url), "the connect link")?;
            } else {
                outln!("accepted the parked grant; {id} is {}", r.connection.status)?;
            }
        }
        ConnectionsCmd::Check(IdArgs { id, api }) => {
            let r = client(&api)?.check_connection(&id).await?;
            if api.json {
                print_json(&r)?;
            } else {
                let transition = if r.status_before == r.status {
                    r.status.clone()
                } else {
                    format!("{} -> {}", r.status_before, r.status)
                };
                outln!(
                    "{}: {} ({transition}{}, {} ms)",
                    r.connection_id,
                    r.outcome,
                    r.http_status
                        .map(|s| format!(", HTTP {s}"))
                        .unwrap_or_default(),
                    r.duration_ms
                )?;
                if let Some(m) = &r.message {
                    outln!("  {m}")?;
                }
                if let Some(u) = &r.connection.health.unchecked {
                    outln!(
                        "  {}: rekey connections confirm-working {}",
                        u.message,
                        r.connection_id
                    )?;
                }
            }
            if !matches!(r.outcome.as_str(), "ok" | "skipped") {
                return Ok(ExitCode::from(crate::exit::CHECK_FAILED));
            }
        }
        ConnectionsCmd::Disable { id, api, reason } => {
            let v = client(&api)?
                .disable_connection(
                    &id,
                    &DisableConnection {
                        reason,
                        version: None,
                    },
                    None,
                )
                .await?;
            print_status(&api, &v)?;
        }
        ConnectionsCmd::ConfirmWorking { id, api, note } => {
            let v = client(&api)?
                .confirm_working(
                    &id,
                    &ConfirmWorking {
                        note,
                        version: None,
                    },
                    None,
                )
                .await?;
            print_status(&api, &v)?;
        }
        ConnectionsCmd::Enable(IdArgs { id, api }) => {
            let v = client(&api)?.enable_connection(&id, None).await?;
            print_status(&api, &v)?;
        }
        ConnectionsCmd::Update {
            id,
            api,
            display_name,
            owner_email,
            tags,
            custody,
            expires_at,
            probe_url,
        } => {
            let c = client(&api)?;
            // The API replaces the owner as a whole: keep its other fields,
            // and refuse to overwrite a change made since we read them.
            let (owner, version) = match owner_email {
                Some(email) => {
                    let cur = c.get_connection(&id).await?;
                    let owner = OwnerView {
                        email: Some(email),
                        ..cur.owner
                    };
                    (Some(owner), Some(cur.version))
                }
                None => (None, None),
            };
            let req = UpdateConnection {
                display_name,
                owner,
                tags: non_empty(tags),
                custody: non_empty(custody),
                expires_at,
                probe_url,
                ..Default::default()
            };
            let v = c.update_connection(&id, &req, version).await?;
            if api.json {
                print_json(&v)?;
            } else {
                print_table(&CONN_HEADERS, vec![connection_row(&v)])?;
            }
        }
        ConnectionsCmd::Credentials { id, api, version } => {
            let c = client(&api)?;
            let v = match version {
                Some(label) => c.read_credentials_version(&id, &label).await?,
                None => c.read_credentials(&id).await?,
            };
            let mut text = serde_json::to_string_pretty(&v)?;
            text.push('\n');
            write_secret(&text, "the credentials")?;
        }
        ConnectionsCmd::ReplaceCredentials {
            id,
            api,
            credentials_file,
            grace,
        } => {
            let c = client(&api)?;
            let credentials = read_credentials_file(&credentials_file)?;
            let v = c
                .replace_credentials(
                    &id,
                    &UpdateCredentials {
                        credentials,
                        version: None,
                        grace: grace.map(Grace::Text),
                    },
                    None,
                )
                .await?;
            print_status(&api, &v)?;
        }
        ConnectionsCmd::Versions(IdArgs { id, api }) => {
            let v = client(&api)?.list_versions(&id).await?;
            if api.json {
                print_json(&v)?;
            } else {
                print_table(
                    &[
                        "LABEL",
                        "FINGERPRINT",
                        "SOURCE",
                        "CREATED",
                        "BY",
                        "GRACE UNTIL",
                        "RETIRED",
                        "REVOKED",
                        "VERDICT",
                    ],
                    v.items
                        .iter()
                        .map(|x| {
                            vec![
                                x.label.clone(),
                                x.fingerprint.clone(),
                                x.source.clone(),
                                x.created_at.clone(),
                                x.created_by.clone(),
                                x.grace_until.clone().unwrap_or_default(),
                                x.retired_at.clone().unwrap_or_default(),
                                x.revoked_at.clone().unwrap_or_default(),
                                x.verdict.clone().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                )?;
            }
        }
        ConnectionsCmd::ConfirmRevocation {
            id,
            api,
            note,
            step,
        } => {
            let c = client(&api)?;
            let v = c
                .confirm_revocation(&id, &ConfirmRevocation { note, step })
                .await?;
            print_status(&api, &v)?;
            if !api.json {
                if let Some(r) = c.list_revocations(&id).await?.items.first() {
                    print_revocation(r)?;
                }
            }
        }
        ConnectionsCmd::VerifyRevocation(IdArgs { id, api }) => {
            let r = client(&api)?.verify_revocation(&id).await?;
            if api.json {
                print_json(&r)?;
            } else {
                print_revocation(&r)?;
            }
            if r.verdict.as_deref() != Some("verified_rejected") {
                return Ok(ExitCode::from(crate::exit::CHECK_FAILED));
            }
        }
        ConnectionsCmd::Readers { id, api, since } => {
            let list = client(&api)?
                .list_readers(&id, &ReadersQuery { since })
                .await?;
            if api.json {
                print_json(&list)?;
            } else if list.items.is_empty() {
                outln!("nobody read {id}'s credential in that time")?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .items
                    .iter()
                    .map(|r| {
                        vec![
                            match &r.api_key_name {
                                Some(n) => format!("{} ({n})", r.actor),
                                None => r.actor.clone(),
                            },
                            r.source.clone().unwrap_or_else(|| "-".into()),
                            r.outcome.clone(),
                            r.reads.to_string(),
                            r.first_read_at.clone(),
                            r.last_read_at.clone(),
                        ]
                    })
                    .collect();
                print_table(
                    &["READER", "FROM", "OUTCOME", "READS", "FIRST", "LAST"],
                    rows,
                )?;
            }
        }
        ConnectionsCmd::Revocations(IdArgs { id, api }) => {
            let list = client(&api)?.list_revocations(&id).await?;
            if api.json {
                print_json(&list)?;
            } else if list.items.is_empty() {
                outln!("{id} has no revocations")?;
            } else {
                for r in &list.items {
                    print_revocation(r)?;
                }
            }
        }
        ConnectionsCmd::Refresh(IdArgs { id, api }) => {
            let v = client(&api)?.refresh_connection(&id).await?;
            if api.json {
                print_json(&v)?;
            } else {
                outln!(
                    "refreshed {id}; access token expires {}",
                    v.expires_at.clone().unwrap_or_else(|| "never".into())
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A revocation in a few lines: what was revoked, the steps, the verdict.
fn print_revocation(r: &RevocationView) -> Result<()> {
    outln!(
        "revocation {} of credential {} ({}): {} by {}, {}",
        r.id,
        r.fingerprint.as_deref().unwrap_or("no fingerprint"),
        r.kind,
        r.method,
        r.requested_by,
        r.state
    )?;
    for s in &r.steps {
        match &s.done_at {
            Some(at) => outln!(
                "  [x] {}. {} (by {} at {at}{})",
                s.step,
                s.text,
                s.done_by.as_deref().unwrap_or("?"),
                s.note
                    .as_deref()
                    .map(|n| format!("; {n}"))
                    .unwrap_or_default()
            )?,
            None => outln!("  [ ] {}. {}", s.step, s.text)?,
        }
    }
    match &r.verdict {
        Some(v) => outln!(
            "  verdict: {v} at {}",
            r.verified_at.as_deref().unwrap_or("?")
        )?,
        None if r.state == "revoked" => {
            outln!("  verdict: not yet (the provider has not answered)")?
        }
        None => {}
    }
    for c in &r.checks {
        outln!(
            "  tried {}: {} ({}{}) {}",
            c.tried,
            c.result,
            c.code,
            c.http_status
                .map(|s| format!(", HTTP {s}"))
                .unwrap_or_default(),
            c.message
        )?;
    }
    if let Some(n) = &r.next_verification_at {
        outln!("  next try: {n}")?;
    }
    Ok(())
}
