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
    /// Follow the rotation step by step until it finishes or waits out its
    /// grace; exit status 1 when it failed or was rolled back.
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
        print_table(&HEADERS, vec![row(r)])
    }
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
    };
    let mut r = c.start_rotation(&a.id, &req).await?;
    if !a.wait {
        print(&a.api, &r)?;
        return Ok(ExitCode::SUCCESS);
    }
    // A live line on a terminal (stderr), nothing when piped; the result
    // goes to stdout either way.
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
        // Done, stopped, or waiting out the grace before retirement (which
        // the server finishes on its own).
        if r.finished || r.state == "promoted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        r = c.get_rotation(&r.id).await?;
    }
    bar.finish_and_clear();
    print(&a.api, &r)?;
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
                        period: Grace::Text(period),
                        window,
                        grace: grace.map(Grace::Text),
                        strategy,
                        admin_connection_id: admin_connection,
                        alternate_username,
                        user_host: None,
                        endpoint: None,
                        iam_user: None,
                        delete_inactive_key: false,
                    },
                )
                .await?;
            print_schedule(&api, &s)?;
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
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
