//! API client subcommands: talk to `REKEY_URL` with `REKEY_TOKEN`.

use crate::config::{secret_env, DataArgs};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use rekey_api::*;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// Base URL of the rekey server.
    #[arg(
        long,
        env = "REKEY_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum ConnectionsCmd {
    /// List connections (filters combine with AND).
    List {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        custody: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        created_before: Option<String>,
        #[arg(long)]
        rotated_before: Option<String>,
        /// Fetch every page.
        #[arg(long)]
        all: bool,
    },
    /// Show one connection (no secrets).
    Show {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
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
    Revoke {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
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
    Refresh {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Run the health probe now. Exit status 0 when healthy (or no probe
    /// applies), 3 when the check failed.
    Check {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

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
    Show {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
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
    Delete {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Replace the signing secret; prints the new one once.
    RotateSecret {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Send a `webhook.test` event.
    Test {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
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

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| "expected NAME=VALUE".to_string())
}

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

#[derive(Subcommand)]
pub enum ProvidersCmd {
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
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

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(api: &ApiArgs) -> Result<Client> {
        let token = secret_env("REKEY_TOKEN")?
            .ok_or_else(|| anyhow!("REKEY_TOKEN (or REKEY_TOKEN_FILE) is not set; create a key with `rekey admin create-key`"))?;
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            base: api.url.trim_end_matches('/').to_string(),
            token: token.expose().to_string(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Option<T>> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            if let Ok(e) = serde_json::from_slice::<ErrorBody>(&bytes) {
                bail!(
                    "{} ({}): {}",
                    e.error.code,
                    status.as_u16(),
                    e.error.message
                );
            }
            bail!("HTTP {status}");
        }
        Ok(Some(
            serde_json::from_slice(&bytes).context("unexpected response from server")?,
        ))
    }

    /// POST `body` (an empty JSON object when None) and expect a body back.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T> {
        let empty = Value::Object(Default::default());
        self.call(Method::POST, path, query, Some(body.unwrap_or(&empty)))
            .await?
            .ok_or_else(|| anyhow!("empty response"))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        self.call(Method::GET, path, query, None)
            .await?
            .ok_or_else(|| anyhow!("empty response"))
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A plain aligned table.
fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
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

const CONN_HEADERS: [&str; 8] = [
    "id", "provider", "kind", "status", "name", "tags", "custody", "rotated",
];

pub async fn connections(cmd: ConnectionsCmd) -> Result<ExitCode> {
    match cmd {
        ConnectionsCmd::List {
            api,
            provider,
            kind,
            status,
            tag,
            custody,
            owner,
            created_before,
            rotated_before,
            all,
        } => {
            let c = Client::new(&api)?;
            let mut q: Vec<(&str, String)> = [
                ("provider", provider),
                ("kind", kind),
                ("status", status),
                ("tag", tag),
                ("custody", custody),
                ("owner", owner),
                ("created_before", created_before),
                ("rotated_before", rotated_before),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let mut items = Vec::new();
            loop {
                let page: ConnectionList = c.get("/api/v1/connections", &q).await?;
                items.extend(page.items);
                match page.next_cursor {
                    Some(cur) if all => {
                        q.retain(|(k, _)| *k != "cursor");
                        q.push(("cursor", cur));
                    }
                    _ => break,
                }
            }
            if api.json {
                print_json(&items)?;
            } else {
                print_table(&CONN_HEADERS, items.iter().map(connection_row).collect());
            }
        }
        ConnectionsCmd::Show { id, api } => {
            let c = Client::new(&api)?;
            let v: ConnectionView = c
                .get(&format!("/api/v1/connections/{}", urlencode(&id)), &[])
                .await?;
            if api.json {
                print_json(&v)?;
            } else {
                print_table(&CONN_HEADERS, vec![connection_row(&v)]);
                if let Some(e) = &v.last_error {
                    println!("last error: {e}");
                }
                println!("credential: {}", v.credential);
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
            let c = Client::new(&api)?;
            let text = if credentials_file == "-" {
                std::io::read_to_string(std::io::stdin())
                    .context("cannot read credentials from stdin")?
            } else {
                std::fs::read_to_string(&credentials_file)
                    .with_context(|| format!("cannot read {credentials_file}"))?
            };
            let credentials: Value = serde_json::from_str(&text)
                .map_err(|_| anyhow!("credentials file is not valid JSON"))?;
            let owner = (owner_email.is_some() || owner_subject.is_some()).then_some(OwnerView {
                subject: owner_subject,
                email: owner_email,
                name: None,
            });
            let body = serde_json::to_value(CreateConnection {
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
            })?;
            let v: ConnectionView = c.post("/api/v1/connections", &[], Some(&body)).await?;
            if api.json {
                print_json(&v)?;
            } else {
                println!("{}", v.id);
            }
        }
        ConnectionsCmd::Delete { id, api, no_revoke } => {
            let c = Client::new(&api)?;
            let q = if no_revoke {
                vec![("revoke", "false".to_string())]
            } else {
                vec![]
            };
            c.call::<Value>(
                Method::DELETE,
                &format!("/api/v1/connections/{}", urlencode(&id)),
                &q,
                None,
            )
            .await?;
            if !api.json {
                println!("deleted {id}");
            }
        }
        ConnectionsCmd::Revoke { id, api } => {
            let c = Client::new(&api)?;
            let r: RevokeResult = c
                .post(
                    &format!("/api/v1/connections/{}/revoke", urlencode(&id)),
                    &[],
                    None,
                )
                .await?;
            if api.json {
                print_json(&r)?;
            } else if r.revoked_at_provider {
                println!(
                    "revoked at the provider; {id} is now {}",
                    r.connection.status
                );
            } else {
                println!("{id} is {}: the provider has no revocation API. Do this, then confirm with POST /api/v1/connections/{id}/revoke/confirm:", r.connection.status);
                for (n, step) in r.manual_steps.iter().enumerate() {
                    println!("  {}. {step}", n + 1);
                }
            }
        }
        ConnectionsCmd::Reauthorize {
            id,
            api,
            accept_mismatch,
        } => {
            let c = Client::new(&api)?;
            let q = if accept_mismatch {
                vec![("accept_mismatch", "true".to_string())]
            } else {
                vec![]
            };
            let r: ReauthorizeResult = c
                .post(
                    &format!("/api/v1/connections/{}/reauthorize", urlencode(&id)),
                    &q,
                    None,
                )
                .await?;
            if api.json {
                print_json(&r)?;
            } else if let Some(sess) = &r.session {
                println!("{}", sess.url);
            } else {
                println!("accepted the parked grant; {id} is {}", r.connection.status);
            }
        }
        ConnectionsCmd::Check { id, api } => {
            let c = Client::new(&api)?;
            let r: CheckResult = c
                .post(
                    &format!("/api/v1/connections/{}/check", urlencode(&id)),
                    &[],
                    None,
                )
                .await?;
            if api.json {
                print_json(&r)?;
            } else {
                let transition = if r.status_before == r.status {
                    r.status.clone()
                } else {
                    format!("{} -> {}", r.status_before, r.status)
                };
                println!(
                    "{}: {} ({transition}{}, {} ms)",
                    r.connection_id,
                    r.outcome,
                    r.http_status
                        .map(|s| format!(", HTTP {s}"))
                        .unwrap_or_default(),
                    r.duration_ms
                );
                if let Some(m) = &r.message {
                    println!("  {m}");
                }
            }
            if !matches!(r.outcome.as_str(), "ok" | "skipped") {
                return Ok(ExitCode::from(3));
            }
        }
        ConnectionsCmd::Refresh { id, api } => {
            let c = Client::new(&api)?;
            let v: ConnectionView = c
                .post(
                    &format!("/api/v1/connections/{}/refresh", urlencode(&id)),
                    &[],
                    None,
                )
                .await?;
            if api.json {
                print_json(&v)?;
            } else {
                println!(
                    "refreshed {id}; access token expires {}",
                    v.expires_at.clone().unwrap_or_else(|| "never".into())
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn providers(cmd: ProvidersCmd) -> Result<ExitCode> {
    let api = match cmd {
        ProvidersCmd::List { api } => api,
        ProvidersCmd::Lint { dir, strict, json } => {
            let findings = match &dir {
                Some(d) => rekey_providers::lint_dir(d),
                None => rekey_providers::lint_embedded(),
            }
            .map_err(|e| anyhow!("{e}"))?;
            if json {
                print_json(&findings)?;
            } else {
                for f in &findings {
                    println!("{f}");
                }
            }
            let errors = findings
                .iter()
                .filter(|f| f.severity == rekey_providers::Severity::Error)
                .count();
            let warnings = findings.len() - errors;
            eprintln!("{errors} errors, {warnings} warnings");
            return Ok(if errors > 0 || (strict && warnings > 0) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
    };
    let c = Client::new(&api)?;
    let list: ProviderList = c.get("/api/v1/providers", &[]).await?;
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
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_verify(r: &AuditVerifyReport, json: bool) -> Result<()> {
    if json {
        print_json(r)
    } else {
        println!("{}", r.message);
        Ok(())
    }
}

pub async fn audit(cmd: AuditCmd) -> Result<ExitCode> {
    match cmd {
        AuditCmd::List {
            api,
            action,
            target,
            limit,
        } => {
            let c = Client::new(&api)?;
            let mut q = vec![("limit", limit.to_string())];
            if let Some(a) = action {
                q.push(("action", a));
            }
            if let Some(t) = target {
                q.push(("target", t));
            }
            let list: AuditList = c.get("/api/v1/audit", &q).await?;
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
            let c = Client::new(&api)?;
            let r: AuditVerifyReport = c.get("/api/v1/audit/verify", &[]).await?;
            print_verify(&r, api.json)?;
            if !r.ok {
                bail!("audit chain verification failed");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn integrations(cmd: IntegrationsCmd) -> Result<ExitCode> {
    match cmd {
        IntegrationsCmd::List { api } => {
            let c = Client::new(&api)?;
            let list: IntegrationList = c.get("/api/v1/integrations", &[]).await?;
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
            let c = Client::new(&api)?;
            let v: IntegrationView = c
                .get(&format!("/api/v1/integrations/{}", urlencode(&id)), &[])
                .await?;
            print_json(&v)?;
        }
        IntegrationsCmd::Create { api, file } => {
            let c = Client::new(&api)?;
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?
            };
            let body: Value =
                serde_json::from_str(&text).map_err(|_| anyhow!("{file} is not valid JSON"))?;
            let v: IntegrationView = c.post("/api/v1/integrations", &[], Some(&body)).await?;
            if api.json {
                print_json(&v)?;
            } else {
                println!("{}", v.id);
            }
        }
        IntegrationsCmd::Delete { id, api } => {
            let c = Client::new(&api)?;
            c.call::<Value>(
                Method::DELETE,
                &format!("/api/v1/integrations/{}", urlencode(&id)),
                &[],
                None,
            )
            .await?;
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
    let c = Client::new(&api)?;
    let sess: ConnectSessionView = match (integration, reauthorize) {
        (_, Some(conn)) => {
            let r: ReauthorizeResult = c
                .post(
                    &format!("/api/v1/connections/{}/reauthorize", urlencode(&conn)),
                    &[],
                    None,
                )
                .await?;
            r.session
                .ok_or_else(|| anyhow!("the server returned no connect session"))?
        }
        (Some(integ), None) => {
            let body = serde_json::to_value(CreateConnectSession {
                integration: Some(integ),
                owner_hint,
                ..Default::default()
            })?;
            c.post("/api/v1/connect-sessions", &[], Some(&body)).await?
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

fn print_secret_once(w: &CreatedWebhook, json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::json!({"webhook": w.webhook, "secret": w.secret}));
    }
    println!("{}", w.webhook.id);
    println!(
        "signing secret (shown once; store it with the receiver): {}",
        w.secret
    );
    Ok(())
}

fn webhook_row(w: &WebhookView) -> Vec<String> {
    vec![
        w.id.clone(),
        if w.enabled { "enabled" } else { "paused" }.into(),
        w.events.join(","),
        w.url.clone(),
    ]
}

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

pub async fn webhooks(cmd: WebhooksCmd) -> Result<ExitCode> {
    let hook = |id: &str| format!("/api/v1/webhooks/{}", urlencode(id));
    match cmd {
        WebhooksCmd::List { api } => {
            let c = Client::new(&api)?;
            // Every page: a tenant's subscriptions are capped (--max-webhooks).
            let mut q: Vec<(&str, String)> = vec![("limit", "200".into())];
            let mut items = Vec::new();
            loop {
                let page: WebhookList = c.get("/api/v1/webhooks", &q).await?;
                items.extend(page.items);
                match page.next_cursor {
                    Some(cur) => {
                        q.retain(|(k, _)| *k != "cursor");
                        q.push(("cursor", cur));
                    }
                    None => break,
                }
            }
            if api.json {
                print_json(&items)?;
            } else {
                print_table(
                    &["id", "state", "events", "url"],
                    items.iter().map(webhook_row).collect(),
                );
            }
        }
        WebhooksCmd::Create {
            api,
            endpoint,
            events,
            description,
        } => {
            let c = Client::new(&api)?;
            let body = serde_json::to_value(CreateWebhook {
                url: endpoint,
                events,
                description,
            })?;
            let w: CreatedWebhook = c.post("/api/v1/webhooks", &[], Some(&body)).await?;
            print_secret_once(&w, api.json)?;
        }
        WebhooksCmd::Show { id, api } => {
            let c = Client::new(&api)?;
            let w: WebhookView = c.get(&hook(&id), &[]).await?;
            if api.json {
                print_json(&w)?;
            } else {
                print_table(&["id", "state", "events", "url"], vec![webhook_row(&w)]);
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
            let c = Client::new(&api)?;
            let body = serde_json::to_value(UpdateWebhook {
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
            })?;
            let w: WebhookView = c
                .call(Method::PATCH, &hook(&id), &[], Some(&body))
                .await?
                .ok_or_else(|| anyhow!("empty response"))?;
            if api.json {
                print_json(&w)?;
            } else {
                print_table(&["id", "state", "events", "url"], vec![webhook_row(&w)]);
            }
        }
        WebhooksCmd::Delete { id, api } => {
            let c = Client::new(&api)?;
            c.call::<Value>(Method::DELETE, &hook(&id), &[], None)
                .await?;
            println!("deleted {id}");
        }
        WebhooksCmd::RotateSecret { id, api } => {
            let c = Client::new(&api)?;
            let w: CreatedWebhook = c
                .post(&format!("{}/rotate-secret", hook(&id)), &[], None)
                .await?;
            print_secret_once(&w, api.json)?;
        }
        WebhooksCmd::Test { id, api } => {
            let c = Client::new(&api)?;
            let d: DeliveryView = c.post(&format!("{}/test", hook(&id)), &[], None).await?;
            if api.json {
                print_json(&d)?;
            } else {
                println!("queued {} (webhook-id {})", d.id, d.event_id);
            }
        }
        WebhooksCmd::Deliveries { id, api, status } => {
            let c = Client::new(&api)?;
            let q: Vec<(&str, String)> = status.map(|s| vec![("status", s)]).unwrap_or_default();
            let l: DeliveryList = c.get(&format!("{}/deliveries", hook(&id)), &q).await?;
            if api.json {
                print_json(&l.items)?;
            } else {
                print_table(
                    &DELIVERY_HEADERS,
                    l.items.iter().map(delivery_row).collect(),
                );
            }
        }
        WebhooksCmd::Delivery {
            webhook,
            delivery,
            api,
        } => {
            let c = Client::new(&api)?;
            let d: DeliveryView = c
                .get(
                    &format!("{}/deliveries/{}", hook(&webhook), urlencode(&delivery)),
                    &[],
                )
                .await?;
            if api.json {
                print_json(&d)?;
            } else {
                print_table(&DELIVERY_HEADERS, vec![delivery_row(&d)]);
                for a in d.attempt_log.iter().flatten() {
                    println!(
                        "  {}  {}  {} ms  {}",
                        a.at,
                        a.http_status
                            .map(|s| format!("HTTP {s}"))
                            .unwrap_or_else(|| "-".into()),
                        a.duration_ms,
                        a.error.clone().unwrap_or_default()
                    );
                }
            }
        }
        WebhooksCmd::Replay {
            webhook,
            delivery,
            api,
        } => {
            let c = Client::new(&api)?;
            let d: DeliveryView = c
                .post(
                    &format!(
                        "{}/deliveries/{}/replay",
                        hook(&webhook),
                        urlencode(&delivery)
                    ),
                    &[],
                    None,
                )
                .await?;
            if api.json {
                print_json(&d)?;
            } else {
                println!("queued {} again (webhook-id {})", d.id, d.event_id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
