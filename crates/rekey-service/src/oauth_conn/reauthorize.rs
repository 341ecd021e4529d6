//! Reauthorization: a new connect session for the original authorizer,
//! or switching to a parked grant.

use super::{integration_of, meta_of};
use crate::audit::record_ok;
use crate::connect::revocable;
use crate::{Ctx, Reauthorization, Rekey};
use rekey_api::CreateConnectSession;
use rekey_core::audit::AuditAction;
use rekey_core::connection::{ConnectionKind, Status};
use rekey_core::time::now_ms;
use rekey_core::ErrorCode;
use rekey_core::{ids, Error};
use rekey_store::connections::{self as conns};
use serde_json::json;
use std::collections::BTreeMap;

impl Rekey {
    /// `POST /connections/{id}/reauthorize`: a connect session for the
    /// original authorizer, or (with `accept_mismatch`) switch to a parked grant.
    pub async fn reauthorize(
        &self,
        ctx: &Ctx,
        id: &str,
        accept_mismatch: bool,
    ) -> Result<Reauthorization, Error> {
        self.reauthorize_until(ctx, id, accept_mismatch, None).await
    }

    /// [`Rekey::reauthorize`]; a link made lives until `until` (epoch ms)
    /// when given (a campaign's deadline).
    pub(crate) async fn reauthorize_until(
        &self,
        ctx: &Ctx,
        id: &str,
        accept_mismatch: bool,
        until: Option<i64>,
    ) -> Result<Reauthorization, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let (row, s) = self.load_with_secrets(&ctx.tenant, &id).await?;
        if row.kind.is_static() && !accept_mismatch {
            // Key-based: a Connect-page form for whoever holds the new key.
            let session = self
                .create_connect_session_until(
                    ctx,
                    CreateConnectSession {
                        owner_hint: row.owner.email.clone(),
                        reauthorize: Some(id.clone()),
                        ..Default::default()
                    },
                    until,
                )
                .await?;
            return Ok(Reauthorization {
                connection: row.into(),
                session: Some(session),
                accepted_pending_grant: false,
            });
        }
        if row.kind != ConnectionKind::OAuth2AuthorizationCode {
            return Err(Error::unprocessable(
                ErrorCode::NotOauth,
                format!("connection {id} has no OAuth grant to reauthorize or accept"),
            ));
        }
        let integ = integration_of(&row)?;
        if accept_mismatch {
            let pending = meta_of(&row).pending_grant.ok_or_else(|| {
                Error::conflict(
                    ErrorCode::NoPendingGrant,
                    format!("connection {id} has no parked grant to accept"),
                )
            })?;
            // A grant already revoked is not sent to the provider again.
            let old_tokens = if row.status.is_revoked() {
                Vec::new()
            } else {
                revocable(&s, "")
            };
            let mut fresh = BTreeMap::new();
            for (k, v) in &s {
                if let Some(k) = k.strip_prefix("pending:") {
                    fresh.insert(k.to_string(), v.clone());
                }
            }
            let mut r = row.clone();
            r.credential_meta = pending.meta.to_column();
            r.expires_at = pending.meta.access_expires_at;
            r.owner.subject = pending.subject;
            r.owner.email = pending.email;
            r.owner.name = pending.name;
            r.scopes = pending.scopes;
            let status_before = r.status;
            // As a reauthorization through the callback: a revoked grant
            // replaced by a new one is in service again (unchecked: pending).
            r.status = match r.status {
                Status::Disabled => Status::Disabled,
                st if st.can_transition(Status::Active) => Status::Active,
                _ => Status::Pending,
            };
            r.last_error = None;
            r.consecutive_failures = 0;
            r.first_failed_at = None;
            r.credential_version += 1;
            r.version += 1;
            let now = now_ms();
            r.updated_at = now;
            r.rotated_at = Some(now);
            let at_provider = self.revokes_at_provider(&ctx.tenant, &integ).await;
            let mut tx = self.store().begin_write().await?;
            if !conns::update(tx.conn(), &r, row.version).await? {
                return Err(Error::conflict(
                    ErrorCode::VersionConflict,
                    format!("connection {id} changed concurrently"),
                ));
            }
            self.write_secrets(&mut tx, &r, &fresh).await?;
            // Before the shift: the record names the version current until now.
            self.record_grant_switch(&mut tx, ctx, &row, &old_tokens, at_provider)
                .await?;
            let shift = self.shift_grant(&mut tx, ctx, &row, &s, &r, &fresh).await?;
            record_ok(&mut tx, ctx, AuditAction::ConnectionReauthorizeAccepted, &id, json!({
                "accepted_mismatch": true, "subject": r.owner.subject, "email": r.owner.email, "scopes": r.scopes,
                "versions": shift.audit_details(),
            })).await?;
            crate::status::reauthorized(
                &mut tx,
                ctx,
                &r,
                status_before,
                "reauthorization",
                "accepted_pending_grant",
            )
            .await?;
            tx.commit().await?;
            self.revoke_at_provider(ctx, &id, &integ, old_tokens).await;
            return Ok(Reauthorization {
                connection: r.into(),
                session: None,
                accepted_pending_grant: true,
            });
        }
        let session = self
            .create_connect_session_until(
                ctx,
                CreateConnectSession {
                    integration: Some(integ),
                    owner_hint: row.owner.email.clone().or(row.owner.subject.clone()),
                    reauthorize: Some(id.clone()),
                    ..Default::default()
                },
                until,
            )
            .await?;
        Ok(Reauthorization {
            connection: row.into(),
            session: Some(session),
            accepted_pending_grant: false,
        })
    }
}
