//! Running one check: probe (or refresh) a connection now, record what was
//! found through the writer, and schedule its next check.

use super::probe::Presented;
use super::scheduler::next_check;
use crate::audit::record;
use crate::connection_rows::not_found;
use crate::status::apply_observation;
use crate::status::Observation;
use crate::{CheckReport, Connection, Ctx, Rekey};
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::{ConnectionKind, Status};
use rekey_core::time::now_ms;
use rekey_core::ErrorCode;
use rekey_core::{ids, Error};
use rekey_providers::probe::Probe;
use rekey_store::connections::{self as conns, ConnectionRow};
use rekey_store::health_notes;
use serde_json::json;
use std::time::Instant;

/// How a connection is checked.
enum Plan {
    Probe(Box<Probe>),
    /// Client credentials without a probe: a token request.
    TokenRequest,
    /// Finding out how failed, and that is the finding.
    Found(Observation),
}

impl Rekey {
    /// Check one connection now. `manual` (API, CLI) audits the check itself;
    /// the scheduler audits only transitions.
    pub(super) async fn check_inner(
        &self,
        ctx: &Ctx,
        id: &str,
        manual: bool,
        owner: Option<&str>,
    ) -> Result<CheckReport, Error> {
        let started = Instant::now();
        let row = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &ctx.tenant, id)
                .await?
                .ok_or_else(|| not_found(id))?
        };
        if row.status.is_out_of_service() {
            return Err(Error::conflict(
                ErrorCode::ConnectionUnusable,
                format!("connection {id} is {}; it is not checked", row.status),
            ));
        }
        let before = row.status;
        let plan = match self.probe_of(&row) {
            Ok(p) => Plan::Probe(Box::new(p)),
            // OAuth client credentials without a probe: requesting a token is the check.
            Err(_) if row.kind == ConnectionKind::OAuth2ClientCredentials => Plan::TokenRequest,
            // An OAuth grant without a catalog probe: its identity endpoint.
            Err(why) => match self.identity_probe(&row).await {
                Some(Ok(p)) => Plan::Probe(Box::new(p)),
                Some(Err(obs)) => Plan::Found(obs),
                None => {
                    return self
                        .skipped(ctx, row, why, true, started, manual, owner)
                        .await
                }
            },
        };
        // A failed token request or refresh is judged in one place: it set
        // the status (nothing observed) or the check is skipped.
        let observed = match &plan {
            Plan::Found(obs) => Ok(Some(obs.clone())),
            Plan::TokenRequest => self
                .fresh_oauth(ctx, id, true)
                .await
                .map(|_| Some(Observation::ok())),
            Plan::Probe(p) => match self.presented(ctx, &row, p).await {
                Ok(Presented::Unsupported(why)) => {
                    return self
                        .skipped(ctx, row, why, true, started, manual, owner)
                        .await
                }
                Ok(Presented::Http {
                    headers,
                    query,
                    secrets,
                    aws,
                }) => {
                    let exposed: Vec<&str> = secrets.iter().map(|s| s.expose()).collect();
                    Ok(Some(
                        self.run_probe(&row, p, headers, query, aws.as_ref(), &exposed)
                            .await,
                    ))
                }
                Ok(Presented::Failed(obs)) => Ok(Some(obs)),
                Ok(Presented::Database { username, password }) => {
                    Ok(Some(self.run_db_probe(&row, p, &username, &password).await))
                }
                Err(e) => Err(e),
            },
        };
        let observed = match observed {
            Ok(obs) => obs,
            Err(e) => match self.refresh_failure(ctx, &row, e).await? {
                Ok(()) => None,
                Err(why) => {
                    return self
                        .skipped(ctx, row, why, false, started, manual, owner)
                        .await
                }
            },
        };
        let mut tx = self.store().begin_write().await?;
        let stored = match &observed {
            Some(obs) => apply_observation(&mut tx, ctx, id, obs, "check", true).await?,
            None => {
                // Mark the check itself; the refresh failure set the status.
                let cur = conns::get(tx.conn(), &ctx.tenant, id).await?;
                if let Some(mut c) = cur.clone() {
                    c.last_checked_at = Some(now_ms());
                    conns::update_health(tx.conn(), &c, c.version).await?;
                    Some(c)
                } else {
                    None
                }
            }
        };
        let Some(stored) = stored else {
            tx.commit().await?;
            return Err(Error::conflict(
                ErrorCode::ConnectionUnusable,
                format!("connection {id} was taken out of service during the check"),
            ));
        };
        let s = self.health_settings();
        conns::schedule_check(
            tx.conn(),
            &ctx.tenant,
            id,
            next_check(&s, &stored, now_ms()),
            owner,
        )
        .await?;
        // A check ran: the connection is no longer "cannot be checked".
        let mut notes = health_notes::get(tx.conn(), &ctx.tenant, id).await?;
        if let Some(n) = notes.as_mut().filter(|n| n.unchecked_reason.is_some()) {
            health_notes::set_unchecked(tx.conn(), &ctx.tenant, id, None).await?;
            n.unchecked_reason = None;
        }
        let err = stored.error_context();
        let outcome = match &observed {
            Some(o) => o.outcome.as_str(),
            None if stored.status == Status::NeedsReauth => "auth_failure",
            None => "transient",
        };
        if manual {
            record(&mut tx, ctx, AuditAction::ConnectionChecked, Some(id), if outcome == "ok" { AuditOutcome::Ok } else { AuditOutcome::Error }, json!({
                "outcome": outcome, "http_status": observed.as_ref().and_then(|o| o.http_status),
                "status_before": before.as_str(), "status": stored.status.as_str(),
            })).await?;
        }
        tx.commit().await?;
        Ok(CheckReport {
            connection_id: id.to_string(),
            outcome: outcome.to_string(),
            status_before: before,
            status: stored.status,
            http_status: observed.as_ref().and_then(|o| o.http_status),
            duration_ms: started.elapsed().as_millis() as u64,
            checked_at: now_ms(),
            message: err.as_ref().map(|e| e.message.clone()),
            last_error: err,
            connection: Connection { row: stored, notes },
        })
    }

    /// No check was made: `unprobed` when no probe can exist for the
    /// connection (recorded, so its health says it needs a confirmation),
    /// otherwise a backoff is running.
    #[allow(clippy::too_many_arguments)]
    async fn skipped(
        &self,
        ctx: &Ctx,
        row: ConnectionRow,
        why: String,
        unprobed: bool,
        started: Instant,
        manual: bool,
        owner: Option<&str>,
    ) -> Result<CheckReport, Error> {
        let mut tx = self.store().begin_write().await?;
        let s = self.health_settings();
        conns::schedule_check(
            tx.conn(),
            &ctx.tenant,
            &row.id,
            next_check(&s, &row, now_ms()),
            owner,
        )
        .await?;
        if unprobed {
            health_notes::set_unchecked(tx.conn(), &ctx.tenant, &row.id, Some(&why)).await?;
        }
        if manual {
            record(
                &mut tx,
                ctx,
                AuditAction::ConnectionChecked,
                Some(&row.id),
                AuditOutcome::Skipped,
                json!({"reason": why}),
            )
            .await?;
        }
        let notes = health_notes::get(tx.conn(), &ctx.tenant, &row.id).await?;
        tx.commit().await?;
        Ok(CheckReport {
            connection_id: row.id.clone(),
            outcome: "skipped".into(),
            status_before: row.status,
            status: row.status,
            http_status: None,
            duration_ms: started.elapsed().as_millis() as u64,
            checked_at: now_ms(),
            message: Some(why),
            last_error: row.error_context(),
            connection: Connection { row, notes },
        })
    }

    /// A refresh before the probe failed. `Ok(Ok(()))`: `fresh_oauth`
    /// recorded it on the connection (the check reports that).
    /// `Ok(Err(why))`: nothing was tried (a backoff is running): the check is
    /// skipped. `Err`: anything else (the integration is gone, the database
    /// failed), passed on.
    async fn refresh_failure(
        &self,
        ctx: &Ctx,
        before: &ConnectionRow,
        e: Error,
    ) -> Result<Result<(), String>, Error> {
        if !matches!(e.code(), ErrorCode::NeedsReauth | ErrorCode::Unavailable) {
            return Err(e);
        }
        let now = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &ctx.tenant, &before.id)
                .await?
                .ok_or_else(|| not_found(&before.id))?
        };
        let recorded = now.consecutive_failures > before.consecutive_failures
            || (now.status == Status::NeedsReauth && now.status != before.status);
        if recorded {
            Ok(Ok(()))
        } else if e.code() == ErrorCode::Unavailable {
            Ok(Err(e.to_string()))
        } else {
            Err(e)
        }
    }

    /// `POST /connections/{id}/check`: probe now and return what was found.
    pub async fn check_connection(&self, ctx: &Ctx, id: &str) -> Result<CheckReport, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        self.check_inner(ctx, &id, true, None).await
    }
}
