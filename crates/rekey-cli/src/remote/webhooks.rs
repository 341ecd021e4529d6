//! `rekey webhooks …`

use super::{client, ApiArgs, IdArgs};
use crate::output::{outln, print_json, print_table, write_secret};
use anyhow::Result;
use clap::Subcommand;
use rekey_api::*;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum WebhooksCmd {
    /// List subscriptions.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Subscribe a URL; prints the signing secret once.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// The receiver's URL (https; http only for loopback).
        #[arg(long)]
        endpoint: String,
        /// Event types, `connection.*` or `*` (comma-separated or repeated).
        #[arg(long = "event", value_delimiter = ',', required = true)]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// One subscription (never its signing secret).
    Show(IdArgs),
    /// Change URL or events, or pause/resume delivery.
    Update {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// New receiver URL.
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long = "event", value_delimiter = ',')]
        events: Vec<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Delete a subscription and its signing secret; nothing more is sent to it.
    Delete(IdArgs),
    /// Replace the signing secret; prints the new one once.
    RotateSecret(IdArgs),
    /// Send a `webhook.test` event.
    Test(IdArgs),
    /// Deliveries of a subscription, newest first.
    Deliveries {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// pending, delivered or failed.
        #[arg(long)]
        status: Option<String>,
    },
    /// One delivery with its attempts.
    Delivery {
        webhook: String,
        delivery: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Send a delivery again (same webhook-id).
    Replay {
        webhook: String,
        delivery: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// The signing secret is shown once: one write, and an error if it could
/// not be written.
fn print_secret_once(w: &CreatedWebhook, json: bool) -> Result<()> {
    let text = if json {
        let mut t = serde_json::to_string_pretty(
            &serde_json::json!({"webhook": w.webhook, "secret": w.secret}),
        )?;
        t.push('\n');
        t
    } else {
        format!(
            "{}\nsigning secret (shown once; store it with the receiver): {}\n",
            w.webhook.id, w.secret
        )
    };
    write_secret(&text, "the signing secret")
}

fn webhook_row(w: &WebhookView) -> Vec<String> {
    vec![
        w.id.clone(),
        if w.enabled { "enabled" } else { "paused" }.into(),
        w.events.join(","),
        w.url.clone(),
    ]
}

const WEBHOOK_HEADERS: [&str; 4] = ["id", "state", "events", "url"];

fn delivery_row(d: &DeliveryView) -> Vec<String> {
    vec![
        d.id.clone(),
        d.event_type.clone(),
        d.status.clone(),
        d.attempts.to_string(),
        d.last_http_status
            .map(|s| s.to_string())
            .or_else(|| d.last_error.clone())
            .unwrap_or_else(|| "-".into()),
        d.event_id.clone(),
    ]
}

const DELIVERY_HEADERS: [&str; 6] = ["id", "event", "status", "attempts", "last", "webhook-id"];

pub async fn run(cmd: WebhooksCmd) -> Result<ExitCode> {
    match cmd {
        WebhooksCmd::List { api } => {
            // Every page: a tenant's subscriptions are capped (--max-webhooks).
            let items = client(&api)?.list_all_webhooks().await?;
            if api.json {
                print_json(&items)?;
            } else {
                print_table(&WEBHOOK_HEADERS, items.iter().map(webhook_row).collect())?;
            }
        }
        WebhooksCmd::Create {
            api,
            endpoint,
            events,
            description,
        } => {
            let w = client(&api)?
                .create_webhook(&CreateWebhook {
                    url: endpoint,
                    events,
                    description,
                })
                .await?;
            print_secret_once(&w, api.json)?;
        }
        WebhooksCmd::Show(IdArgs { id, api }) => {
            let w = client(&api)?.get_webhook(&id).await?;
            if api.json {
                print_json(&w)?;
            } else {
                print_table(&WEBHOOK_HEADERS, vec![webhook_row(&w)])?;
            }
        }
        WebhooksCmd::Update {
            id,
            api,
            endpoint,
            events,
            enable,
            disable,
        } => {
            let req = UpdateWebhook {
                url: endpoint,
                events: (!events.is_empty()).then_some(events),
                enabled: if enable {
                    Some(true)
                } else if disable {
                    Some(false)
                } else {
                    None
                },
                ..Default::default()
            };
            let w = client(&api)?.update_webhook(&id, &req, None).await?;
            if api.json {
                print_json(&w)?;
            } else {
                print_table(&WEBHOOK_HEADERS, vec![webhook_row(&w)])?;
            }
        }
        WebhooksCmd::Delete(IdArgs { id, api }) => {
            client(&api)?.delete_webhook(&id).await?;
            outln!("deleted {id}")?;
        }
        WebhooksCmd::RotateSecret(IdArgs { id, api }) => {
            let w = client(&api)?.rotate_webhook_secret(&id).await?;
            print_secret_once(&w, api.json)?;
        }
        WebhooksCmd::Test(IdArgs { id, api }) => {
            let d = client(&api)?.test_webhook(&id).await?;
            if api.json {
                print_json(&d)?;
            } else {
                outln!("queued {} (webhook-id {})", d.id, d.event_id)?;
            }
        }
        WebhooksCmd::Deliveries { id, api, status } => {
            let q = DeliveryQuery {
                status,
                ..Default::default()
            };
            let l = client(&api)?.list_deliveries(&id, &q).await?;
            if api.json {
                print_json(&l.items)?;
            } else {
                print_table(
                    &DELIVERY_HEADERS,
                    l.items.iter().map(delivery_row).collect(),
                )?;
            }
        }
        WebhooksCmd::Delivery {
            webhook,
            delivery,
            api,
        } => {
            let d = client(&api)?.get_delivery(&webhook, &delivery).await?;
            if api.json {
                print_json(&d)?;
            } else {
                print_table(&DELIVERY_HEADERS, vec![delivery_row(&d)])?;
                for a in d.attempt_log.iter().flatten() {
                    outln!(
                        "  {}  {}  {} ms  {}",
                        a.at,
                        a.http_status
                            .map(|s| format!("HTTP {s}"))
                            .unwrap_or_else(|| "-".into()),
                        a.duration_ms,
                        a.error.clone().unwrap_or_default()
                    )?;
                }
            }
        }
        WebhooksCmd::Replay {
            webhook,
            delivery,
            api,
        } => {
            let d = client(&api)?.replay_delivery(&webhook, &delivery).await?;
            if api.json {
                print_json(&d)?;
            } else {
                outln!("queued {} again (webhook-id {})", d.id, d.event_id)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
