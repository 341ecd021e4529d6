//! `rekey rotate` and `rekey rotations list|show`.

use super::{client, ApiArgs};
use crate::output::{print_json, print_table};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use rekey_api::*;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct RotateArgs {
    /// The connection to rotate.
    id: String,
    #[command(flatten)]
    api: ApiArgs,
    /// How long the old credential stays readable as `previous` where it
    /// still works (`0`, `90s`, `15m`, `1h`, `7d`; default 1h).
    #[arg(long)]
    grace: Option<String>,
    /// Databases: `single_user` (default) or `alternate_users`.
    #[arg(long, value_parser = ["single_user", "alternate_users"])]
    strategy: Option<String>,
    /// A connection (same provider and kind) allowed to change this one's password.
    #[arg(long = "admin-connection")]
    admin_connection: Option<String>,
    /// `alternate_users`: the second role, with the same grants.
    #[arg(long = "alternate-username")]
    alternate_username: Option<String>,
    /// MySQL/MariaDB with an admin: the account's host part (default `%`).
    #[arg(long = "user-host")]
    user_host: Option<String>,
    /// AWS: the IAM endpoint (default https://iam.amazonaws.com/).
    #[arg(long)]
    endpoint: Option<String>,
    /// AWS: the IAM user whose key rotates (default: the current key's user).
    #[arg(long = "iam-user")]
    iam_user: Option<String>,
    /// AWS: when the user already has two keys, delete its inactive one
    /// (never the current) to make room; otherwise the rotation is refused.
    #[arg(long = "delete-inactive-key")]
    delete_inactive_key: bool,
    /// `api`: rekey's rotator (refused when it has none); `manual`: a
    /// guided rotation, confirmed step by step with `rekey rotations
    /// confirm`. Default: the catalog's rotator, else guided.
    #[arg(long, value_parser = ["api", "manual"])]
    method: Option<String>,
    /// RSA key pairs: the slot (1 or 2) that holds the current public key.
    #[arg(long = "current-slot", value_parser = clap::value_parser!(u8).range(1..=2))]
    current_slot: Option<u8>,
    /// Follow the rotation step by step until it finishes, waits out its
    /// grace or waits for you; exit status 1 when it failed or was rolled back.
    #[arg(long)]
    wait: bool,
}

#[derive(Subcommand)]
pub enum RotationsCmd {
    /// Rotations, newest first.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Only this connection's.
        #[arg(long)]
        connection: Option<String>,
        /// At most this many (1–200).
        #[arg(long)]
        limit: Option<i64>,
    },
    /// One rotation: its state, last error and what happens next.
    Show {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Confirm the step a rotation waits for (see `rekey rotations show`)
    /// done at the target.
    Confirm {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// The step: `set` or `retired` (the rotation's AWAITING).
        #[arg(long, value_parser = ["set", "retired"])]
        step: String,
        /// A guided rotation's `set`: the new credential as JSON, from a
        /// file or stdin (`-`), as for `connections replace-credentials`.
        #[arg(long = "credentials-file")]
        credentials_file: Option<String>,
        /// Evidence for the audit log (a ticket, what you checked).
        #[arg(long)]
        note: Option<String>,
        /// Follow the rotation until it finishes, waits out its grace or
        /// waits for you again (as `rekey rotate --wait`).
        #[arg(long)]
        wait: bool,
    },
    /// Cancel a rotation before its new credential is current.
    Cancel {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        note: Option<String>,
    },
    /// Rotate a connection every PERIOD, inside a daily window (UTC).
    Schedule {
        /// The connection.
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// How often: `30d`, `12h` (1h to 366d).
        #[arg(long)]
        period: String,
        /// When a rotation may start, `HH:MM-HH:MM` in UTC (default: any time).
        #[arg(long)]
        window: Option<String>,
        /// As for `rekey rotate`.
        #[arg(long)]
        grace: Option<String>,
        /// As for `rekey rotate`.
        #[arg(long, value_parser = ["single_user", "alternate_users"])]
        strategy: Option<String>,
        /// As for `rekey rotate`.
        #[arg(long = "admin-connection")]
        admin_connection: Option<String>,
        /// As for `rekey rotate`.
        #[arg(long = "alternate-username")]
        alternate_username: Option<String>,
    },
    /// A connection's rotation schedule: period, window, next due.
    ShowSchedule {
        /// The connection.
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop rotating a connection on a schedule.
    Unschedule {
        /// The connection.
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn print_schedule(api: &ApiArgs, s: &RotationScheduleView) -> Result<()> {
    if api.json {
        return print_json(s);
    }
    print_table(
        &[
            "CONNECTION",
            "PERIOD",
            "WINDOW (UTC)",
            "NEXT DUE",
            "LAST ROTATION",
            "LAST ERROR",
        ],
        vec![vec![
            s.connection_id.clone(),
            format!("{}s", s.period_secs),
            s.window.clone(),
            s.next_due_at.clone(),
            s.last_rotation_id.clone().unwrap_or_default(),
            s.last_error
                .as_ref()
                .and_then(|e| e["message"].as_str().map(str::to_string))
                .unwrap_or_default(),
        ]],
    )
}

const HEADERS: [&str; 7] = [
    "ID",
    "CONNECTION",
    "ROTATOR",
    "STATE",
    "ATTEMPTS",
    "UPDATED",
    "NEXT",
];

fn row(r: &RotationView) -> Vec<String> {
    vec![
        r.id.clone(),
        r.connection_id.clone(),
        r.rotator.clone(),
        r.state.clone(),
        r.attempts.to_string(),
        r.updated_at.clone(),
        r.next_action.clone().unwrap_or_default(),
    ]
}

fn print(api: &ApiArgs, r: &RotationView) -> Result<()> {
    if api.json {
        print_json(r)
    } else {
        print_table(&HEADERS, vec![row(r)])?;
        print_instructions(r);
        Ok(())
    }
}

/// What the operator must do now, and how to say it is done.
fn print_instructions(r: &RotationView) {
    let Some(i) = &r.instructions else { return };
    println!();
    println!("waiting for you ({}): {}", i.step, i.summary);
    for (n, s) in i.steps.iter().enumerate() {
        println!("  {}. {s}", n + 1);
    }
    if !i.statements.is_empty() {
        println!("run exactly:");
        for s in &i.statements {
            println!("  {s}");
        }
    }
    let creds = if i.needs_credentials {
        " --credentials-file new.json"
    } else {
        ""
    };
    println!(
        "then: rekey rotations confirm {} --step {}{creds}",
        r.id, i.step
    );
}

/// The rotation stopped without the new credential in place.
fn stopped(r: &RotationView) -> bool {
    matches!(r.state.as_str(), "failed" | "rolled_back")
}

pub async fn rotate(a: RotateArgs) -> Result<ExitCode> {
    let c = client(&a.api)?;
    let req = StartRotation {
        grace: a.grace.map(Grace::Text),
        strategy: a.strategy,
        admin_connection_id: a.admin_connection,
        alternate_username: a.alternate_username,
        user_host: a.user_host,
        endpoint: a.endpoint,
        iam_user: a.iam_user,
        delete_inactive_key: a.delete_inactive_key,
        method: a.method,
        current_slot: a.current_slot,
    };
    let r = c.start_rotation(&a.id, &req).await?;
    if !a.wait {
        print(&a.api, &r)?;
        return Ok(ExitCode::SUCCESS);
    }
    follow(&c, &a.api, r).await
}

/// Follow a rotation with a live line per step (on stderr; nothing when
/// piped) until it finishes, waits for the operator, or waits out its
/// grace before retirement (which the server finishes on its own); print
/// it to stdout; fail when it stopped without the new credential.
async fn follow(c: &rekey_client::Client, api: &ApiArgs, mut r: RotationView) -> Result<ExitCode> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut last = String::new();
    loop {
        let line = format!("{} {}: {}", r.id, r.rotator, r.state);
        if line != last {
            bar.println(&line);
            last = line;
        }
        bar.set_message(match &r.next_action {
            Some(n) => format!("{} — {n}", r.state),
            None => r.state.clone(),
        });
        // With a grace, retirement is due later and the server does it.
        if r.finished || r.awaiting.is_some() || (r.state == "promoted" && r.grace_secs > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        r = c.get_rotation(&r.id).await?;
    }
    bar.finish_and_clear();
    print(api, &r)?;
    if stopped(&r) {
        bail!(
            "rotation {} {}: {}",
            r.id,
            r.state,
            r.next_action
                .as_deref()
                .unwrap_or("see `rekey rotations show`")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(cmd: RotationsCmd) -> Result<ExitCode> {
    match cmd {
        RotationsCmd::List {
            api,
            connection,
            limit,
        } => {
            let page = client(&api)?
                .list_rotations(&RotationQuery {
                    connection,
                    cursor: None,
                    limit,
                })
                .await?;
            if api.json {
                print_json(&page)?;
            } else {
                print_table(&HEADERS, page.items.iter().map(row).collect())?;
            }
        }
        RotationsCmd::Schedule {
            id,
            api,
            period,
            window,
            grace,
            strategy,
            admin_connection,
            alternate_username,
        } => {
            let s = client(&api)?
                .set_rotation_schedule(
                    &id,
                    &SetRotationSchedule {
                        window,
                        grace: grace.map(Grace::Text),
                        strategy,
                        admin_connection_id: admin_connection,
                        alternate_username,
                        ..SetRotationSchedule::every(Grace::Text(period))
                    },
                )
                .await?;
            print_schedule(&api, &s)?;
        }
        RotationsCmd::Confirm {
            id,
            api,
            step,
            credentials_file,
            note,
            wait,
        } => {
            let credentials = credentials_file
                .as_deref()
                .map(super::connections::read_credentials_file)
                .transpose()?;
            let c = client(&api)?;
            let r = c
                .confirm_rotation(
                    &id,
                    &ConfirmRotation {
                        step,
                        note,
                        credentials,
                    },
                )
                .await?;
            if wait {
                return follow(&c, &api, r).await;
            }
            print(&api, &r)?;
        }
        RotationsCmd::Cancel { id, api, note } => {
            let r = client(&api)?
                .cancel_rotation(&id, &CancelRotation { note })
                .await?;
            print(&api, &r)?;
        }
        RotationsCmd::ShowSchedule { id, api } => {
            let s = client(&api)?.get_rotation_schedule(&id).await?;
            print_schedule(&api, &s)?;
        }
        RotationsCmd::Unschedule { id, api } => {
            client(&api)?.delete_rotation_schedule(&id).await?;
        }
        RotationsCmd::Show { id, api } => {
            let r = client(&api)?.get_rotation(&id).await?;
            if api.json {
                print_json(&r)?;
            } else {
                print_table(&HEADERS, vec![row(&r)])?;
                if let Some(e) = &r.last_error {
                    println!("last error: {e}");
                }
                for c in &r.confirmations {
                    println!(
                        "confirmed {} by {} at {}{}",
                        c.step,
                        c.by,
                        c.at,
                        c.note
                            .as_deref()
                            .map(|n| format!(": {n}"))
                            .unwrap_or_default()
                    );
                }
                print_instructions(&r);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
