//! Revocation: at the provider, of a connection, and its confirmation.

use super::integration_of;
use crate::audit::record;
use crate::connect::revocable;
use crate::connection_rows::not_found;
use crate::status::status_changed;
use crate::webhooks::emit;
use crate::{Connection, Ctx, Rekey, Revocation};
use rekey_api::ConfirmRevocation;
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::Status;
use rekey_core::events::EventType;
use rekey_core::time::now_ms;
use rekey_core::ErrorCode;
use rekey_core::{ids, Error, SecretString};
use rekey_store::connections::{self as conns};
use serde_json::{json, Value};

impl Rekey {
    /// Revoke tokens at the provider (best effort) and audit each outcome.
    pub(crate) async fn revoke_at_provider(
        &self,
        ctx: &Ctx,
        cid: &str,
        integration_id: &str,
        tokens: Vec<(&'static str, SecretString)>,
    ) -> bool {
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
        let audit = async {
            let mut tx = self.store().begin_write().await?;
            record(&mut tx, ctx, AuditAction::ConnectionProviderRevocation, Some(cid), if ok { AuditOutcome::Ok } else { AuditOutcome::Error },
                json!({"tokens": tokens.iter().map(|(h, _)| *h).collect::<Vec<_>>(), "error": res.as_ref().err().map(|e| e.code())})).await?;
            tx.commit().await
        };
        if let Err(e) = audit.await {
            tracing::error!(error = %e, "could not audit provider revocation");
        }
        ok
    }

    /// `POST /connections/{id}/revoke`.
    pub async fn revoke_connection(&self, ctx: &Ctx, id: &str) -> Result<Revocation, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let (row, s) = self.load_with_secrets(&ctx.tenant, &id).await?;
        if row.status == Status::Revoked {
            return Err(Error::conflict(
                ErrorCode::AlreadyRevoked,
                format!("connection {id} is already revoked"),
            ));
        }
        let provider = self.catalog().get(&row.provider).cloned();
        let manual_steps = provider
            .as_ref()
            .map(|p| p.revoke_for(row.kind.as_str()).steps.clone())
            .unwrap_or_default();
        let mut at_provider = false;
        if !row.kind.is_static() {
            let integ = integration_of(&row)?;
            let mut tokens = revocable(&s, "");
            tokens.extend(revocable(&s, "pending:"));
            at_provider = self.revoke_at_provider(ctx, &id, &integ, tokens).await;
        }
        if !at_provider && row.status == Status::RevokePending {
            return Ok(Revocation {
                connection: row.into(),
                revoked_at_provider: false,
                manual_steps,
            });
        }
        let to = if at_provider {
            Status::Revoked
        } else {
            Status::RevokePending
        };
        let connection = self
            .move_status(ctx, &id, to, json!({"revoked_at_provider": at_provider}))
            .await?;
        Ok(Revocation {
            connection,
            revoked_at_provider: at_provider,
            manual_steps: if at_provider {
                Vec::new()
            } else {
                manual_steps
            },
        })
    }

    /// `POST /connections/{id}/revoke/confirm`: an operator did the manual step.
    pub async fn confirm_revocation(
        &self,
        ctx: &Ctx,
        id: &str,
        req: &ConfirmRevocation,
    ) -> Result<Connection, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let note = rekey_core::connection::validate_note(req.note.as_deref())?;
        let row = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &ctx.tenant, &id)
                .await?
                .ok_or_else(|| not_found(&id))?
        };
        if row.status != Status::RevokePending {
            return Err(Error::conflict(
                ErrorCode::NotRevokePending,
                format!("connection {id} is `{}`, not revoke_pending", row.status),
            ));
        }
        self.move_status(
            ctx,
            &id,
            Status::Revoked,
            json!({"confirmed_manually": true, "note": note}),
        )
        .await
    }

    async fn move_status(
        &self,
        ctx: &Ctx,
        id: &str,
        to: Status,
        details: Value,
    ) -> Result<Connection, Error> {
        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(&mut tx, rekey_store::Locked::Connection, &ctx.tenant, id).await?;
        let mut row = conns::get(tx.conn(), &ctx.tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let from = row.status;
        row.status = from.transition(to)?;
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
        }
        record(&mut tx, ctx, action, Some(id), AuditOutcome::Ok, d).await?;
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
        Ok(row.into())
    }
}
