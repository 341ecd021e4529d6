//! `rekey campaign …`: incident campaigns from the command line.

use super::{client, ApiArgs, FilterArgs};
use crate::output::{outln, print_json, print_table};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use rekey_api::{
    CampaignFilter, CampaignItemQuery, CampaignQuery, CampaignView, ConfirmCampaignItem,
    CreateCampaign, RefreshCampaignPlan, SkipCampaignItem,
};
use rekey_client::Client;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum CampaignCmd {
    /// Create a draft campaign over the connections the filter selects
    /// (at least one filter). Nothing happens until `start`.
    Create(CreateArgs),
    /// The plan: each connection, its steps and who does each; after the
    /// start, where each connection is.
    Plan {
        id: String,
        /// Only connections in this state (started campaigns).
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Freeze the plan (one item per connection) and run it.
    Start(super::IdArgs),
    /// No new step starts until `resume`.
    Pause(super::IdArgs),
    /// Run a paused campaign again.
    Resume(super::IdArgs),
    /// Skip every unfinished connection and cancel the unused links.
    Cancel(super::IdArgs),
    /// Progress: counts per state, per provider and per owner.
    Status {
        id: String,
        /// Redraw progress bars until the campaign finishes.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The campaign's evidence: the evidence export of its connections,
    /// with the campaign and its timeline, sealed and recorded in the audit
    /// chain (`rekey evidence verify FILE` checks it). Needs `audit:read`.
    Export {
        id: String,
        /// `csv` (the default) or `json` (also `--json`).
        #[arg(long)]
        format: Option<String>,
        /// Write here (atomically) instead of stdout.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Campaigns, newest first.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The owners' reauthorization links (`--csv` for a mail merge).
    Links {
        id: String,
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Connections matching the filter now that the plan lacks (`--add` adds them).
    RefreshPlan {
        id: String,
        #[arg(long)]
        add: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Record that a connection was checked by hand: done, with a comment.
    Confirm {
        id: String,
        connection: String,
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Leave a connection out, with the reason.
    Skip {
        id: String,
        connection: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    #[arg(long)]
    name: String,
    /// Why: the breach or advisory.
    #[arg(long)]
    reason: String,
    /// RFC 3339, or a time from now (`72h`, `7d`).
    #[arg(long)]
    deadline: String,
    /// Several providers, comma-separated.
    #[arg(long, value_delimiter = ',')]
    providers: Vec<String>,
    /// Actions overriding the defaults: `KIND_OR_CONNECTION=action,action`
    /// (`api_key=revoke,reauthorize`), repeatable.
    #[arg(long = "action")]
    actions: Vec<String>,
    /// No `campaign.*` webhook events.
    #[arg(long)]
    no_webhooks: bool,
    /// No e-mail to owners (sent only when the server has REKEY_SMTP_URL).
    #[arg(long)]
    no_email: bool,
    #[command(flatten)]
    filter: Box<FilterArgs>,
    #[command(flatten)]
    api: ApiArgs,
}

fn deadline(s: &str) -> Result<String> {
    if let Some(d) = rekey_core::versions::parse_duration_text(s) {
        let ms = rekey_core::time::now_ms() + d.as_millis() as i64;
        return Ok(rekey_core::time::ms_to_rfc3339(ms));
    }
    Ok(s.to_string())
}

pub async fn run(cmd: CampaignCmd) -> Result<ExitCode> {
    match cmd {
        CampaignCmd::Create(a) => create(a).await?,
        CampaignCmd::Plan { id, state, api } => plan(&client(&api)?, &id, state, &api).await?,
        CampaignCmd::Start(a) => control(a, "start").await?,
        CampaignCmd::Pause(a) => control(a, "pause").await?,
        CampaignCmd::Resume(a) => control(a, "resume").await?,
        CampaignCmd::Cancel(a) => control(a, "cancel").await?,
        CampaignCmd::Status { id, watch, api } => {
            let c = client(&api)?;
            if watch {
                self::watch(&c, &id).await?;
            }
            show(&c.get_campaign(&id).await?, api.json)?;
        }
        CampaignCmd::Export {
            id,
            format,
            output,
            api,
        } => {
            return super::evidence::run(super::evidence::EvidenceCmd::Export {
                api,
                filter: Box::default(),
                format,
                output,
                campaign: Some(id),
            })
            .await;
        }
        CampaignCmd::List { api } => {
            let l = client(&api)?
                .list_campaigns(&CampaignQuery::default())
                .await?;
            if api.json {
                print_json(&l)?;
            } else {
                let rows = l
                    .items
                    .iter()
                    .map(|c| {
                        vec![
                            c.id.clone(),
                            c.name.clone(),
                            c.state.clone(),
                            format!("{}%", c.percent_done),
                            c.total.to_string(),
                            c.deadline.clone(),
                        ]
                    })
                    .collect();
                print_table(
                    &["id", "name", "state", "done", "connections", "deadline"],
                    rows,
                )?;
            }
        }
        CampaignCmd::Links { id, csv, api } => links(&client(&api)?, &id, csv, api.json).await?,
        CampaignCmd::RefreshPlan { id, add, api } => {
            let r = client(&api)?
                .refresh_campaign_plan(&id, &RefreshCampaignPlan { add })
                .await?;
            if api.json {
                print_json(&r)?;
            } else {
                for i in &r.items {
                    outln!("{}  {}  {}", i.connection_id, i.provider, i.display_name)?;
                }
                outln!("{} not in the plan; {} added", r.items.len(), r.added)?;
            }
        }
        CampaignCmd::Confirm {
            id,
            connection,
            comment,
            api,
        } => {
            let i = client(&api)?
                .confirm_campaign_item(&id, &connection, &ConfirmCampaignItem { comment })
                .await?;
            item_line(&i, api.json)?;
        }
        CampaignCmd::Skip {
            id,
            connection,
            reason,
            api,
        } => {
            let i = client(&api)?
                .skip_campaign_item(&id, &connection, &SkipCampaignItem { reason })
                .await?;
            item_line(&i, api.json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn create(a: CreateArgs) -> Result<()> {
    let q = (*a.filter).query();
    let filter = CampaignFilter {
        provider: q.provider,
        providers: a.providers,
        kind: q.kind,
        status: q.status,
        tag: q.tag,
        custody: q.custody,
        owner: q.owner,
        q: q.q,
        created_before: q.created_before,
        rotated_before: q.rotated_before,
        integration: q.integration,
        last_read_after: q.last_read_after,
    };
    let mut actions = BTreeMap::new();
    for spec in &a.actions {
        let Some((key, acts)) = spec.split_once('=') else {
            bail!("--action takes KIND_OR_CONNECTION=action[,action]; got `{spec}`");
        };
        actions.insert(
            key.to_string(),
            acts.split(',').map(|s| s.trim().to_string()).collect(),
        );
    }
    let c = client(&a.api)?;
    let v = c
        .create_campaign(&CreateCampaign {
            name: a.name,
            reason: a.reason,
            filter,
            actions,
            rotation: BTreeMap::new(),
            deadline: deadline(&a.deadline)?,
            notify: Some(rekey_api::CampaignNotify {
                webhooks: !a.no_webhooks,
                email: !a.no_email,
            }),
        })
        .await?;
    if a.api.json {
        return print_json(&v);
    }
    outln!("created campaign {} (draft): {}", v.id, v.name)?;
    outln!(
        "look at the plan with `rekey campaign plan {}`, then `rekey campaign start {}`",
        v.id,
        v.id
    )
}

async fn plan(c: &Client, id: &str, state: Option<String>, api: &ApiArgs) -> Result<()> {
    let mut cursor = None;
    let mut all = Vec::new();
    let mut frozen;
    loop {
        let p = c
            .campaign_plan(
                id,
                &CampaignItemQuery {
                    state: state.clone(),
                    cursor: cursor.clone(),
                    limit: Some(200),
                },
            )
            .await?;
        frozen = p.frozen;
        all.extend(p.items);
        match p.next_cursor {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    if api.json {
        return print_json(&serde_json::json!({"campaign_id": id, "frozen": frozen, "items": all}));
    }
    let rows = all
        .iter()
        .map(|i| {
            let steps: Vec<String> = i
                .steps
                .iter()
                .map(|s| format!("{} ({})", s.action, s.by))
                .collect();
            vec![
                i.connection_id.clone(),
                i.provider.clone(),
                i.display_name.clone(),
                i.owner.clone().unwrap_or_default(),
                steps.join(" → "),
                i.state.clone(),
            ]
        })
        .collect();
    print_table(
        &["connection", "provider", "name", "owner", "steps", "state"],
        rows,
    )?;
    let manual = all
        .iter()
        .filter(|i| i.steps.iter().any(|s| s.by != "automatic"))
        .count();
    outln!(
        "{} connections; {} need a person (operator or owner)",
        all.len(),
        manual
    )
}

async fn control(a: super::IdArgs, action: &str) -> Result<()> {
    let v = client(&a.api)?.campaign_control(&a.id, action).await?;
    show(&v, a.api.json)
}

fn show(v: &CampaignView, json: bool) -> Result<()> {
    if json {
        return print_json(v);
    }
    outln!(
        "{} {} — {}: {} of {} done ({}%), {}% finished; deadline {}",
        v.id,
        v.name,
        v.state,
        v.counts.get("done").copied().unwrap_or(0),
        v.total,
        v.percent_done,
        v.percent_finished,
        v.deadline
    )?;
    let counts: Vec<String> = v
        .counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if !counts.is_empty() {
        outln!("  {}", counts.join(", "))?;
    }
    for b in &v.by_provider {
        outln!("  provider {}: {} of {} done", b.key, b.done, b.total)?;
    }
    Ok(())
}

/// Progress bars (finished, and done) until the campaign finishes.
async fn watch(c: &Client, id: &str) -> Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let finished = multi.add(ProgressBar::new(0).with_style(style.clone()));
    finished.set_prefix("finished");
    let done = multi.add(ProgressBar::new(0).with_style(style));
    done.set_prefix("done");
    loop {
        let v = c.get_campaign(id).await?;
        let n = |k: &str| v.counts.get(k).copied().unwrap_or(0) as u64;
        for b in [&finished, &done] {
            b.set_length(v.total as u64);
        }
        finished.set_position(n("done") + n("failed") + n("skipped"));
        finished.set_message(format!(
            "waiting: owner {}, operator {}; overdue {}",
            n("waiting_for_owner"),
            n("waiting_for_operator"),
            n("overdue")
        ));
        done.set_position(n("done"));
        if matches!(v.state.as_str(), "completed" | "cancelled" | "draft") {
            finished.finish();
            done.finish();
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn links(c: &Client, id: &str, csv: bool, json: bool) -> Result<()> {
    let mut cursor = None;
    let mut all = Vec::new();
    loop {
        let p = c
            .campaign_links(
                id,
                &CampaignQuery {
                    cursor: cursor.clone(),
                    limit: Some(100),
                },
            )
            .await?;
        all.extend(p.items);
        match p.next_cursor {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    if json {
        return print_json(&all);
    }
    if csv {
        return crate::output::write_stdout(&rekey_api::links_csv(&all)?);
    }
    let rows = all
        .iter()
        .map(|l| {
            vec![
                l.connection_id.clone(),
                l.owner.clone().unwrap_or_default(),
                l.status.clone(),
                l.expires_at.clone(),
                l.url.clone(),
            ]
        })
        .collect();
    print_table(&["connection", "owner", "status", "expires", "url"], rows)
}

fn item_line(i: &rekey_api::CampaignItemView, json: bool) -> Result<()> {
    if json {
        return print_json(i);
    }
    outln!(
        "{} {}: {}{}",
        i.connection_id,
        i.display_name,
        i.state,
        i.detail
            .as_deref()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default()
    )
}
