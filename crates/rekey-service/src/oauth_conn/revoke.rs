//! Revocation: at the provider, of a connection, and its confirmation.

use super::integration_of;
use crate::audit::{record, record_ok};
use crate::connect::revocable;
use crate::connection_rows::not_found;
use crate::revocation::RevocationRecord;
use crate::status::status_changed;
use crate::webhooks::emit;
use crate::{Connection, Ctx, Rekey, Revocation};
use rekey_api::ConfirmRevocation;
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::Status;
use rekey_core::events::EventType;
use rekey_core::revocation::{RevocationMethod, RevocationState};
use rekey_core::time::now_ms;
use rekey_core::ErrorCode;
use rekey_core::{ids, Error, SecretString};
use rekey_store::connections::{self as conns};
use rekey_store::revocations::RevocationRow;
use serde_json::{json, Value};
use std::collections::BTreeMap;

impl Rekey {
    /// Revoke tokens at the provider (best effort) and audit each outcome.
    /// Whether [`Rekey::revoke_at_provider`] has an endpoint to call for
    /// `integration_id`'s tokens; true when that cannot be told now (the
    /// app unreadable, discovery unreachable), so that a revocation is
    /// recorded rather than silently skipped.
    pub(crate) async fn revokes_at_provider(&self, tenant: &str, integration_id: &str) -> bool {
        let url = async {
            let integ = self.integration_row(tenant, integration_id).await?;
            Ok::<_, Error>(self.resolve(&integ).await?.revocation_url)
        };
        !matches!(url.await, Ok(None))
    }

    pub(crate) async fn revoke_at_provider(
        &self,
        ctx: &Ctx,
        cid: &str,
        integration_id: &str,
        tokens: Vec<(&'static str, SecretString)>,
    ) -> bool {
        if tokens.is_empty() {
            return false;
        }
        let res: Result<bool, Error> = async {
            let integ = self.integration_row(&ctx.tenant, integration_id).await?;
            let r = self.resolve(&integ).await?;
            let Some(url) = r.revocation_url else { return Ok(false) };
            let auth = self.client_auth(&integ).await?;
            let style = match r.spec.revocation_method {
                rekey_providers::RevocationMethod::Rfc7009 => rekey_oauth::RevokeStyle::Rfc7009,
                rekey_providers::RevocationMethod::TokenQuery => rekey_oauth::RevokeStyle::TokenQuery,
                rekey_providers::RevocationMethod::Bearer => rekey_oauth::RevokeStyle::Bearer,
            };
            let mut all_ok = true;
            for (hint, t) in &tokens {
                if let Err(e) = rekey_oauth::revoke_with(&self.inner.http, &url, &auth, t, hint, style).await {
                    tracing::warn!(connection = cid, hint, error = %e, "revocation at provider failed");
                    all_ok = false;
                }
            }
            Ok(all_ok)
        }
        .await;
        let ok = matches!(res, Ok(true));
        let hints: Vec<&str> = tokens.iter().map(|(h, _)| *h).collect();
        self.audit_provider_revocation(
            ctx,
            cid,
            ok,
            &hints,
            res.as_ref().err().map(|e| e.code().as_str()),
        )
        .await;
        ok
    }

    async fn audit_provider_revocation(
        &self,
        ctx: &Ctx,
        cid: &str,
        ok: bool,
        tokens: &[&str],
        error: Option<&str>,
    ) {
        let audit = async {
            let mut tx = self.store().begin_write().await?;
            let outcome = if ok {
                AuditOutcome::Ok
            } else {
                AuditOutcome::Error
            };
            record(
                &mut tx,
                ctx,
                AuditAction::ConnectionProviderRevocation,
                Some(cid),
                outcome,
                json!({"tokens": tokens, "error": error}),
            )
            .await?;
            tx.commit().await
        };
        if let Err(e) = audit.await {
            tracing::error!(error = %e, "could not audit provider revocation");
        }
    }

    /// Where a static API token can revoke itself at the provider (Slack's
    /// `auth.revoke` for bot tokens): the catalog's bearer-style revocation
    /// endpoint, for a kind whose revoke runbook says rekey does it. A
    /// connection whose `probe_url` points at another origin (a regional
    /// host, a proxy) revokes there too.
    fn static_revocation_url(
        &self,
        row: &rekey_store::connections::ConnectionRow,
    ) -> Option<String> {
        if row.kind != rekey_core::connection::ConnectionKind::ApiKey {
            return None;
        }
        let p = self.catalog().get(&row.provider)?;
        if p.revoke_for(row.kind.as_str()).method != rekey_providers::RunbookMethod::Api {
            return None;
        }
        let o = p.oauth.as_ref()?;
        if o.revocation_method != rekey_providers::RevocationMethod::Bearer {
            return None;
        }
        let mut url = url::Url::parse(o.revocation_url.as_deref()?).ok()?;
        if let Some(probe) = row
            .probe_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
        {
            url.set_scheme(probe.scheme()).ok()?;
            url.set_host(probe.host_str()).ok()?;
            url.set_port(probe.port()).ok()?;
        }
        Some(url.to_string())
    }

    /// Revoke a static token at `url` with itself as the bearer; audited.
    async fn revoke_static_at_provider(
        &self,
        ctx: &Ctx,
        cid: &str,
        url: &str,
        token: Option<&SecretString>,
    ) -> bool {
        let res = match token {
            Some(t) => rekey_oauth::revoke_bearer(&self.inner.http, url, t)
                .await
                .map_err(|e| {
                    tracing::warn!(connection = cid, error = %e, "revocation at provider failed");
                    e.code().to_string()
                }),
            None => Err("no_token".to_string()),
        };
        self.audit_provider_revocation(
            ctx,
            cid,
            res.is_ok(),
            &["api_key"],
            res.as_ref().err().map(String::as_str),
        )
        .await;
        res.is_ok()
    }

    /// `POST /connections/{id}/revoke`: revoke the current credential at
    /// the provider where rekey can, else open the kind's runbook for an
    /// operator. Either way a revocation record keeps the old credential's
    /// fingerprint and a sealed copy, and once it is revoked rekey tries it
    /// at the provider (at once here, and again from the worker).
    pub async fn revoke_connection(&self, ctx: &Ctx, id: &str) -> Result<Revocation, Error> {
        self.revoke_connection_with(ctx, id, false).await
    }

    /// [`Rekey::revoke_connection`]; `already_dead`: a revocation call made
    /// before a crash took effect (the provider refuses the credential
    /// now), so it is recorded as revoked at the provider without calling
    /// again, and verified as usual.
    pub(crate) async fn revoke_connection_with(
        &self,
        ctx: &Ctx,
        id: &str,
        already_dead: bool,
    ) -> Result<Revocation, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let (row, s) = self.load_with_secrets(&ctx.tenant, &id).await?;
        let read_version = row.credential_version;
        if matches!(row.status, Status::Revoked | Status::RevocationFailed) {
            return Err(Error::conflict(
                ErrorCode::AlreadyRevoked,
                format!("connection {id} is already revoked"),
            ));
        }
        let provider = self.catalog().get(&row.provider).cloned();
        let manual_steps = provider
            .as_ref()
            .map(|p| p.revoke_for(row.kind.as_str()).operator_steps())
            .unwrap_or_default();
        let mut at_provider = false;
        if already_dead {
            at_provider = true;
            let mut tx = self.store().begin_write().await?;
            record_ok(
                &mut tx,
                ctx,
                AuditAction::ConnectionProviderRevocation,
                &id,
                json!({"tokens": [], "after_restart": true,
                       "found": "the provider refuses the credential: the call made before a restart took effect"}),
            )
            .await?;
            tx.commit().await?;
        } else if !row.kind.is_static() {
            let integ = integration_of(&row)?;
            let mut tokens = revocable(&s, "");
            tokens.extend(revocable(&s, "pending:"));
            at_provider = self.revoke_at_provider(ctx, &id, &integ, tokens).await;
        } else if let Some(url) = self.static_revocation_url(&row) {
            at_provider = self
                .revoke_static_at_provider(ctx, &id, &url, s.get("key"))
                .await;
        }
        if !at_provider && row.status == Status::RevokePending {
            let open = {
                let mut tx = self.store().begin_write().await?;
                let open = self.open_revocation(&mut tx, &ctx.tenant, &id).await?;
                tx.commit().await?;
                open
            };
            return Ok(Revocation {
                connection: row.into(),
                revoked_at_provider: false,
                manual_steps,
                revocation: open.map(RevocationRecord::from),
            });
        }
        let (to, method) = if at_provider {
            (Status::Revoked, RevocationMethod::Provider)
        } else {
            (Status::RevokePending, RevocationMethod::Manual)
        };
        let steps = if at_provider {
            Vec::new()
        } else {
            manual_steps.clone()
        };
        let material = if row.kind.is_static() {
            s
        } else {
            // What a reader could have taken: the grant's own tokens.
            s.into_iter()
                .filter(|(k, _)| k == "access_token" || k == "refresh_token")
                .collect()
        };
        let (connection, rev) = self
            .move_status(
                ctx,
                &id,
                to,
                json!({"revoked_at_provider": at_provider}),
                Some((&material, method, &steps, read_version)),
            )
            .await?;
        let (connection, revocation) = match rev {
            Some(r) if at_provider => {
                let r = self.verify_now(ctx, r).await;
                // The verdict may have changed the status (revocation_failed).
                let row = self.connection_row(&ctx.tenant, &id).await?;
                (row.into(), Some(r))
            }
            other => (connection, other),
        };
        Ok(Revocation {
            connection,
            revoked_at_provider: at_provider,
            manual_steps: if at_provider {
                Vec::new()
            } else {
                manual_steps
            },
            revocation: revocation.map(RevocationRecord::from),
        })
    }

    /// `POST /connections/{id}/revoke/confirm`: an operator did runbook
    /// step `step` (1-based) at the provider, or every step left without
    /// one. The revocation stays open until each step is confirmed; then
    /// the connection (if still `revoke_pending`: a new credential may have
    /// replaced the old one meanwhile) becomes `revoked` and rekey tries
    /// the old credential.
    pub async fn confirm_revocation(
        &self,
        ctx: &Ctx,
        id: &str,
        req: &ConfirmRevocation,
    ) -> Result<(Connection, Option<RevocationRecord>), Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let note = rekey_core::connection::validate_note(req.note.as_deref())?;
        let (row, s) = self.load_with_secrets(&ctx.tenant, &id).await?;
        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(&mut tx, rekey_store::Locked::Connection, &ctx.tenant, &id).await?;
        let open = match self.open_revocation(&mut tx, &ctx.tenant, &id).await? {
            Some(r) => r,
            // Revoked before rekey kept revocation records: the material
            // is still the connection's own.
            None if row.status == Status::RevokePending => {
                let steps = self
                    .catalog()
                    .get(&row.provider)
                    .map(|p| p.revoke_for(row.kind.as_str()).operator_steps())
                    .unwrap_or_default();
                self.record_revocation(&mut tx, ctx, &row, &s, RevocationMethod::Manual, &steps)
                    .await?
            }
            None => {
                return Err(Error::conflict(
                    ErrorCode::NotRevokePending,
                    format!(
                        "connection {id} has no revocation waiting for confirmation (it is `{}`)",
                        row.status
                    ),
                ))
            }
        };
        let r = self
            .confirm_steps(&mut tx, ctx, open, req.step, note.as_deref())
            .await?;
        tx.commit().await?;
        if r.state != RevocationState::Revoked {
            let row = self.connection_row(&ctx.tenant, &id).await?;
            return Ok((row.into(), Some(r.into())));
        }
        let now_status = self.connection_row(&ctx.tenant, &id).await?.status;
        // A new credential may have replaced the revoked one meanwhile: then
        // the connection keeps its own status.
        if now_status == Status::RevokePending {
            self.move_status(
                ctx,
                &id,
                Status::Revoked,
                json!({"confirmed_manually": true, "note": note, "revocation": r.id, "old_fingerprint": r.fingerprint}),
                None,
            )
            .await?;
        }
        let r = self.verify_now(ctx, r).await;
        let row = self.connection_row(&ctx.tenant, &id).await?;
        Ok((row.into(), Some(r.into())))
    }

    async fn connection_row(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<rekey_store::connections::ConnectionRow, Error> {
        let mut c = self.store().read().await?;
        conns::get(&mut c, tenant, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Move the connection to `to` (audited, emitted), recording the
    /// revocation of its current credential in the same transaction when
    /// `revocation` says how.
    async fn move_status(
        &self,
        ctx: &Ctx,
        id: &str,
        to: Status,
        details: Value,
        revocation: Option<NewRevocation<'_>>,
    ) -> Result<(Connection, Option<RevocationRow>), Error> {
        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(&mut tx, rekey_store::Locked::Connection, &ctx.tenant, id).await?;
        let mut row = conns::get(tx.conn(), &ctx.tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let from = row.status;
        row.status = from.transition(to)?;
        let rev = match revocation {
            Some((material, method, steps, version)) => {
                // The material was read before this transaction: if the
                // credential changed since (a replacement, a refresh), the
                // record would name one credential and hold another.
                if row.credential_version != version {
                    return Err(Error::conflict(
                        ErrorCode::VersionConflict,
                        format!(
                            "connection {id}'s credential changed while it was being revoked; \
                             revoke it again"
                        ),
                    ));
                }
                Some(
                    self.record_revocation(&mut tx, ctx, &row, material, method, steps)
                        .await?,
                )
            }
            None => None,
        };
        let old = row.version;
        row.version += 1;
        row.updated_at = now_ms();
        if !conns::update(tx.conn(), &row, old).await? {
            return Err(Error::conflict(
                ErrorCode::VersionConflict,
                format!("connection {id} changed concurrently"),
            ));
        }
        let action = match to {
            Status::Revoked => AuditAction::ConnectionRevoked,
            Status::RevokePending => AuditAction::ConnectionRevokePending,
            _ => AuditAction::ConnectionStatusChange,
        };
        let mut d = details;
        if let Some(m) = d.as_object_mut() {
            m.insert("from".into(), from.as_str().into());
            m.insert("to".into(), to.as_str().into());
            // Name the credential that went (fingerprint, never the value).
            if let Some(r) = &rev {
                m.insert("revocation".into(), r.id.clone().into());
                m.insert("old_fingerprint".into(), r.fingerprint.clone().into());
            }
        }
        record_ok(&mut tx, ctx, action, id, d).await?;
        status_changed(&mut tx, ctx, &row, from, "operator", None).await?;
        if to == Status::Revoked {
            emit(
                &mut tx,
                &ctx.tenant,
                EventType::ConnectionRevoked,
                crate::webhooks::connection_data(&row),
            )
            .await?;
        }
        tx.commit().await?;
        Ok((row.into(), rev))
    }
}

/// The material, method and runbook steps of a revocation to record, and
/// the connection's credential version the material was read at.
type NewRevocation<'a> = (
    &'a BTreeMap<String, SecretString>,
    RevocationMethod,
    &'a [String],
    i64,
);
