//! What a completed grant becomes: a new OAuth connection, or the
//! reauthorized connection switched to (or parked beside) the new grant.

use super::reauth_rule::{judge, Verdict};
use super::{access_expiry, revocable, session_ctx, token_material, CallbackOutcome, Identity};
use crate::audit::{record, record_ok};
use crate::connection_rows::{not_found as connection_not_found, OWNER_KIND as CONN_KIND};
use crate::webhooks::{connection_data, emit};
use crate::Rekey;
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::{ConnectionKind, Owner, Status};
use rekey_core::credential_meta::{OAuthMeta, PendingGrant};
use rekey_core::events::EventType;
use rekey_core::last_error::LastError;
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::Error;
use rekey_core::ErrorCode;
use rekey_oauth::TokenSet;
use rekey_store::connect_sessions::ConnectSessionRow;
use rekey_store::connections::{self as conns, ConnectionRow};
use rekey_store::integrations::IntegrationRow;
use rekey_store::secrets;
use serde_json::json;
use std::collections::BTreeMap;

impl Rekey {
    pub(super) async fn create_oauth_connection(
        &self,
        s: &ConnectSessionRow,
        integ: &IntegrationRow,
        identity: Identity,
        granted: Vec<String>,
        tokens: TokenSet,
    ) -> Result<CallbackOutcome, Error> {
        let (provider, integration_id, integration_name) = (
            integ.provider.as_str(),
            integ.id.as_str(),
            integ.display_name.as_str(),
        );
        let now = now_ms();
        let display_name = s
            .display_name
            .clone()
            .unwrap_or_else(|| format!("{integration_name} ({})", identity.describe()));
        let display_name: String = display_name.chars().take(200).collect();
        let mut row = ConnectionRow {
            owner: Owner {
                subject: identity.subject.clone(),
                email: identity.email.clone(),
                name: identity.name.clone(),
            },
            scopes: granted,
            tags: s.tags.clone(),
            custody: s.custody.clone(),
            ..ConnectionRow::new(
                &s.tenant,
                provider,
                ConnectionKind::OAuth2AuthorizationCode,
                &display_name,
                Status::Active,
                now,
            )
        };
        let (meta, secrets_map) = token_material(integration_id, &tokens, now, Default::default());
        row.credential_meta = meta.to_column();
        row.expires_at = access_expiry(&tokens, now);
        let mut tx = self.store().begin_write().await?;
        conns::insert(tx.conn(), &row).await?;
        self.write_secrets(&mut tx, &row, &secrets_map).await?;
        self.record_first_version(&mut tx, &session_ctx(s), &row, &secrets_map)
            .await?;
        record_ok(
            &mut tx,
            &session_ctx(s),
            AuditAction::ConnectionCreate,
            &row.id,
            json!({
                "provider": provider, "kind": row.kind.as_str(), "integration": integration_id,
                "authorized_by": identity.describe(), "scopes": row.scopes, "connect_session": s.id,
            }),
        )
        .await?;
        emit(
            &mut tx,
            &s.tenant,
            EventType::ConnectionCreated,
            connection_data(&row),
        )
        .await?;
        tx.commit().await?;
        Ok(CallbackOutcome::Connected {
            connection_id: row.id,
            display_name,
            reauthorized: false,
        })
    }

    pub(super) async fn reauthorized(
        &self,
        s: &ConnectSessionRow,
        cid: &str,
        integration_id: &str,
        identity: Identity,
        granted: Vec<String>,
        tokens: TokenSet,
    ) -> Result<CallbackOutcome, Error> {
        let now = now_ms();
        let at_provider = self.revokes_at_provider(&s.tenant, integration_id).await;
        let mut tx = self.store().begin_write().await?;
        let mut row = conns::get(tx.conn(), &s.tenant, cid)
            .await?
            .ok_or_else(|| connection_not_found(cid))?;
        let before = row.clone();
        let old_version = row.version;
        let old_secrets = {
            let rows = secrets::for_owner(tx.conn(), CONN_KIND, cid).await?;
            self.open_secrets(&row, &rows)?
        };
        // A grant already revoked (a revocation record holds it, and
        // verification tries it where it was issued) is not sent to the
        // provider again.
        let old_tokens = if row.status.is_revoked() {
            Vec::new()
        } else {
            revocable(&old_secrets, "")
        };
        let original = Identity {
            subject: row.owner.subject.clone(),
            email: row.owner.email.clone(),
            name: None,
        };
        let verdict = judge(&original, &identity, &row.scopes, &granted);
        let ctx = session_ctx(s);
        let (meta, new_secrets) = token_material(integration_id, &tokens, now, Default::default());
        let outcome = match verdict {
            Verdict::Switch => {
                // Switch to the new grant; the old tokens are revoked after commit.
                row.credential_meta = meta.to_column();
                row.expires_at = access_expiry(&tokens, now);
                row.scopes = granted.clone();
                row.owner.email = identity.email.clone().or(row.owner.email.clone());
                row.owner.name = identity.name.clone().or(row.owner.name.clone());
                let status_before = row.status;
                row.status = match row.status {
                    Status::Disabled => Status::Disabled,
                    Status::Active => Status::Active,
                    st if st.can_transition(Status::Active) => Status::Active,
                    _ => Status::Pending,
                };
                row.last_error = None;
                row.consecutive_failures = 0;
                row.first_failed_at = None;
                row.last_ok_at = Some(now);
                row.credential_version += 1;
                row.version += 1;
                row.updated_at = now;
                row.rotated_at = Some(now);
                if !conns::update(tx.conn(), &row, old_version).await? {
                    return Err(Error::conflict(
                        ErrorCode::VersionConflict,
                        format!("connection {cid} changed during reauthorization; try again"),
                    ));
                }
                self.write_secrets(&mut tx, &row, &new_secrets).await?;
                // Before the shift: the record names the version current until now.
                self.record_grant_switch(&mut tx, &ctx, &before, &old_tokens, at_provider)
                    .await?;
                let shift = self
                    .shift_grant(&mut tx, &ctx, &before, &old_secrets, &row, &new_secrets)
                    .await?;
                record_ok(&mut tx, &ctx, AuditAction::ConnectionReauthorized, cid, json!({"authorized_by": identity.describe(), "scopes": granted, "connect_session": s.id, "versions": shift.audit_details()})).await?;
                crate::status::reauthorized(
                    &mut tx,
                    &ctx,
                    &row,
                    status_before,
                    "reauthorization",
                    "oauth",
                )
                .await?;
                CallbackOutcome::Connected {
                    connection_id: cid.to_string(),
                    display_name: row.display_name.clone(),
                    reauthorized: true,
                }
            }
            Verdict::Park {
                code,
                reasons,
                missing_scopes: missing,
            } => {
                // Park the new grant beside the current one; the connection keeps working on the old grant.
                let mut meta_now = OAuthMeta::from_column(&row.credential_meta);
                meta_now.pending_grant = Some(Box::new(PendingGrant {
                    meta,
                    subject: identity.subject.clone(),
                    email: identity.email.clone(),
                    name: identity.name.clone(),
                    scopes: granted,
                    at: Some(ms_to_rfc3339(now)),
                    connect_session: Some(s.id.clone()),
                    extra: Default::default(),
                }));
                let mut all = old_secrets
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with("pending:"))
                    .collect::<BTreeMap<_, _>>();
                for (k, v) in new_secrets {
                    all.insert(format!("pending:{k}"), v);
                }
                let mut parked = LastError::new(code.as_str(), reasons.join("; "));
                parked.at = Some(ms_to_rfc3339(now));
                parked
                    .detail
                    .insert("expected_identity".into(), json!(original.describe()));
                parked
                    .detail
                    .insert("got_identity".into(), json!(identity.describe()));
                parked
                    .detail
                    .insert("missing_scopes".into(), json!(missing));
                row.last_error = Some(parked.to_column());
                row.credential_meta = meta_now.to_column();
                row.credential_version += 1;
                row.version += 1;
                row.updated_at = now;
                if !conns::update(tx.conn(), &row, old_version).await? {
                    return Err(Error::conflict(
                        ErrorCode::VersionConflict,
                        format!("connection {cid} changed during reauthorization; try again"),
                    ));
                }
                self.write_secrets(&mut tx, &row, &all).await?;
                record(
                    &mut tx,
                    &ctx,
                    AuditAction::ConnectionReauthorizeMismatch,
                    Some(cid),
                    AuditOutcome::Parked,
                    json!({"reasons": reasons, "connect_session": s.id}),
                )
                .await?;
                // A campaign waiting for this owner looks at the parked grant now.
                rekey_store::campaigns::nudge(tx.conn(), &s.tenant, cid, now_ms()).await?;
                CallbackOutcome::Parked {
                    connection_id: cid.to_string(),
                    reasons,
                }
            }
        };
        tx.commit().await?;
        if matches!(outcome, CallbackOutcome::Connected { .. }) {
            // The switch is committed; now kill the old grant at the provider.
            self.revoke_at_provider(&ctx, cid, integration_id, old_tokens)
                .await;
        }
        Ok(outcome)
    }
}
