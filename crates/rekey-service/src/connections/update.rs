//! Changing a connection: its fields, its credential material, its
//! status (disable, enable), and deleting it.

use super::{check_params, check_version, lost_race, owner_from};
use crate::audit::record;
use crate::connection_rows::{not_found, OWNER_KIND};
use crate::webhooks::{connection_data, emit};
use crate::{Connection, Ctx, Rekey};
use rekey_api::{DisableConnection, Grace, UpdateConnection, UpdateCredentials};
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::{self, Status};
use rekey_core::events::EventType;
use rekey_core::time::{now_ms, parse_rfc3339};
use rekey_core::versions::{grace_from_secs, parse_grace, DEFAULT_GRACE};
use rekey_core::ErrorCode;
use rekey_core::{ids, Error};
use rekey_store::connections::{self as store, ConnectionRow};
use rekey_store::secrets;
use rekey_store::{Locked, WriteTx};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

impl Rekey {
    /// Load a row inside a write transaction, with tenant isolation and the
    /// caller's expected version.
    async fn load_for_write(
        &self,
        tx: &mut WriteTx,
        tenant: &str,
        id: &str,
        expected: Option<i64>,
    ) -> Result<ConnectionRow, Error> {
        // Without a lock, concurrent writers on PostgreSQL would all read the
        // same version and all but one fail their compare-and-swap.
        rekey_store::lock_row(tx, Locked::Connection, tenant, id).await?;
        let row = store::get(tx.conn(), tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        check_version(expected, &row)?;
        Ok(row)
    }

    pub async fn update_connection(
        &self,
        ctx: &Ctx,
        id: &str,
        req: UpdateConnection,
        if_match: Option<i64>,
    ) -> Result<Connection, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let expected = if_match.or(req.version);
        let mut changed = Vec::new();
        let mut tx = self.store().begin_write().await?;
        let mut row = self
            .load_for_write(&mut tx, &ctx.tenant, &id, expected)
            .await?;
        let old_version = row.version;
        if let Some(n) = &req.display_name {
            connection::validate_display_name(n)?;
            row.display_name = n.trim().to_string();
            changed.push("display_name");
        }
        if let Some(o) = &req.owner {
            row.owner = owner_from(Some(o))?;
            changed.push("owner");
        }
        if let Some(s) = &req.scopes {
            row.scopes = connection::normalize_scopes(s)?;
            changed.push("scopes");
        }
        if let Some(t) = &req.tags {
            row.tags = connection::normalize_slugs("tags", t)?;
            changed.push("tags");
        }
        if let Some(c) = &req.custody {
            row.custody = connection::normalize_slugs("custody", c)?;
            changed.push("custody");
        }
        if let Some(e) = &req.expires_at {
            row.expires_at = if e.is_empty() {
                None
            } else {
                Some(parse_rfc3339("expires_at", e)?)
            };
            changed.push("expires_at");
        }
        if let Some(p) = &req.params {
            let provider = self.catalog().get(&row.provider).ok_or_else(|| {
                Error::unprocessable(
                    ErrorCode::UnknownProvider,
                    format!("provider `{}` is no longer in the catalog", row.provider),
                )
            })?;
            row.params = check_params(provider, p)?;
            self.check_probe_host(provider, row.kind, p)?;
            changed.push("params");
        }
        if let Some(u) = &req.probe_url {
            row.probe_url = if u.is_empty() {
                None
            } else {
                Some(self.check_url("probe_url", u)?)
            };
            changed.push("probe_url");
        }
        // New parameters are held to creation's rule: those the probe needs
        // (with the probe URL this update leaves). OAuth kinds also take
        // them from their integration, so only static kinds are checked.
        if let (Some(p), true) = (&req.params, row.kind.is_static()) {
            if let Some(provider) = self.catalog().get(&row.provider) {
                super::rules::check_required_params(provider, row.kind, p, row.probe_url.is_some())
                    .map_err(|e| e.to_error())?;
            }
        }
        if changed.is_empty() {
            return Err(Error::invalid(
                ErrorCode::NothingToUpdate,
                "the request changes no field",
            ));
        }
        row.version += 1;
        row.updated_at = now_ms();
        if !store::update(tx.conn(), &row, old_version).await? {
            return Err(lost_race(&id));
        }
        record(
            &mut tx,
            ctx,
            AuditAction::ConnectionUpdate,
            Some(&id),
            AuditOutcome::Ok,
            json!({"fields": changed, "version": row.version}),
        )
        .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    /// Replace the credential material. The connection goes back to
    /// `pending` (unverified) unless it is disabled.
    pub async fn update_credentials(
        &self,
        ctx: &Ctx,
        id: &str,
        req: UpdateCredentials,
        if_match: Option<i64>,
    ) -> Result<Connection, Error> {
        let expected = if_match.or(req.version);
        let grace = match &req.grace {
            None => DEFAULT_GRACE,
            Some(Grace::Seconds(n)) => grace_from_secs(*n)?,
            Some(Grace::Text(t)) => parse_grace(t)?,
        };
        self.replace_credentials(ctx, id, req.credentials, None, expected, grace)
            .await
    }

    /// Replace the material (and, from a reauthorization page, the URL
    /// parameters) under the same catalog rules as creation. The replaced
    /// credential stays readable as `previous` for `grace`.
    pub(crate) async fn replace_credentials(
        &self,
        ctx: &Ctx,
        id: &str,
        credentials: Value,
        params: Option<BTreeMap<String, String>>,
        expected: Option<i64>,
        grace: Duration,
    ) -> Result<Connection, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let mut tx = self.store().begin_write().await?;
        let mut row = self
            .load_for_write(&mut tx, &ctx.tenant, &id, expected)
            .await?;
        let provider = self.catalog().get(&row.provider);
        let credentials = match provider {
            Some(p) if row.kind.is_static() => {
                super::rules::apply_key_form(p, row.kind, credentials).map_err(|p| p.to_error())?
            }
            _ => credentials,
        };
        let parsed = self.parse_material(row.kind, credentials)?;
        // Parameters are checked only when they change: a connection made
        // before a parameter was required can still have its key replaced.
        if let (Some(p), Some(params)) = (provider, &params) {
            let text = check_params(p, params)?;
            self.check_probe_host(p, row.kind, params)?;
            super::rules::check_required_params(p, row.kind, params, row.probe_url.is_some())
                .map_err(|p| p.to_error())?;
            row.params = text;
        }
        if let Some(r) = rekey_store::rotations::running_for(tx.conn(), &ctx.tenant, &id).await? {
            if r.state < rekey_core::rotation::RotationState::Promoted {
                return Err(Error::conflict(
                    ErrorCode::RotationInProgress,
                    format!(
                        "connection {id} is being rotated (rotation {}, at `{}`); wait for it to finish",
                        r.id, r.state
                    ),
                ));
            }
        }
        let before = row.clone();
        let outgoing = {
            let rows = secrets::for_owner(tx.conn(), OWNER_KIND, &id).await?;
            self.open_secrets(&before, &rows)?
        };
        let old_version = row.version;
        let from = row.status;
        if row.status != Status::Disabled && row.status != Status::Pending {
            row.status = row.status.transition(Status::Pending)?;
        }
        row.credential_meta = Value::Object(parsed.meta.clone()).to_string();
        row.credential_version = self.next_credential_version(&mut tx, &before).await?;
        row.version += 1;
        let now = now_ms();
        row.updated_at = now;
        row.rotated_at = Some(now);
        // New material: the old failure run is over; verify the new one soon.
        row.last_error = None;
        row.consecutive_failures = 0;
        row.first_failed_at = None;
        if !store::update(tx.conn(), &row, old_version).await? {
            return Err(lost_race(&id));
        }
        self.write_secrets(&mut tx, &row, &parsed.secrets).await?;
        let shift = self
            .shift_versions(
                &mut tx,
                ctx,
                &before,
                &outgoing,
                &row,
                &parsed.secrets,
                grace,
                crate::versions::Source::Replaced,
            )
            .await?;
        store::schedule_check(tx.conn(), &ctx.tenant, &id, now, None).await?;
        crate::status::reauthorized(
            &mut tx,
            ctx,
            &row,
            from,
            "credentials_update",
            "credentials_update",
        )
        .await?;
        record(
            &mut tx,
            ctx,
            AuditAction::ConnectionCredentialsUpdate,
            Some(&id),
            AuditOutcome::Ok,
            json!({
                "credential_version": row.credential_version,
                "secret_fields": parsed.secrets.keys().collect::<Vec<_>>(),
                "status_from": from.as_str(), "status_to": row.status.as_str(),
                "params_updated": params.is_some(),
                "versions": shift.audit_details(),
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    /// Move a connection to `to` through the status machine.
    pub async fn set_status(
        &self,
        ctx: &Ctx,
        id: &str,
        to: Status,
        req: DisableConnection,
        if_match: Option<i64>,
    ) -> Result<Connection, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        if let Some(r) = &req.reason {
            if r.chars().count() > 500 {
                return Err(Error::invalid(
                    ErrorCode::InvalidField,
                    "`reason` must be at most 500 characters",
                ));
            }
        }
        let mut tx = self.store().begin_write().await?;
        let mut row = self
            .load_for_write(&mut tx, &ctx.tenant, &id, if_match.or(req.version))
            .await?;
        let from = row.status;
        if to == Status::Pending && from != Status::Disabled {
            return Err(Error::conflict(
                ErrorCode::NotDisabled,
                format!("connection {id} is `{from}`, not disabled"),
            ));
        }
        row.status = from.transition(to)?;
        let old_version = row.version;
        row.version += 1;
        row.updated_at = now_ms();
        if !store::update(tx.conn(), &row, old_version).await? {
            return Err(lost_race(&id));
        }
        let action = match to {
            Status::Disabled => AuditAction::ConnectionDisable,
            Status::Pending => AuditAction::ConnectionEnable,
            _ => AuditAction::ConnectionStatusChange,
        };
        record(
            &mut tx,
            ctx,
            action,
            Some(&id),
            AuditOutcome::Ok,
            json!({
                "from": from.as_str(), "to": to.as_str(), "reason": req.reason,
            }),
        )
        .await?;
        crate::status::status_changed(&mut tx, ctx, &row, from, "operator", None).await?;
        if to == Status::Pending {
            store::schedule_check(tx.conn(), &ctx.tenant, &id, now_ms(), None).await?;
        }
        tx.commit().await?;
        Ok(row.into())
    }

    /// Delete a connection. OAuth grants are revoked at the provider first
    /// unless `revoke` is false; a failed revocation keeps the connection.
    pub async fn delete_connection(
        &self,
        ctx: &Ctx,
        id: &str,
        if_match: Option<i64>,
        revoke: bool,
    ) -> Result<(), Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        if revoke {
            let row = {
                let mut c = self.store().read().await?;
                store::get(&mut c, &ctx.tenant, &id)
                    .await?
                    .ok_or_else(|| not_found(&id))?
            };
            if !row.kind.is_static() && row.status != Status::Revoked {
                let r = self.revoke_connection(ctx, &id).await?;
                if !r.revoked_at_provider {
                    return Err(Error::conflict(
                        ErrorCode::RevocationIncomplete,
                        format!(
                            "connection {id} could not be revoked at the provider; revoke it there ({}) then delete with ?revoke=false",
                            r.manual_steps.join(" ")
                        ),
                    ));
                }
            }
        }
        let mut tx = self.store().begin_write().await?;
        let row = self
            .load_for_write(&mut tx, &ctx.tenant, &id, if_match)
            .await?;
        let mut n = secrets::delete_owner(tx.conn(), OWNER_KIND, &id).await?;
        // Kept previous versions' material goes too; the version rows go
        // with the connection (foreign key).
        for v in rekey_store::credential_versions::ids_of_connection(tx.conn(), &id).await? {
            n += secrets::delete_owner(tx.conn(), rekey_store::credential_versions::OWNER_KIND, &v)
                .await?;
        }
        // So does the material revocations kept to try the old credential.
        for r in rekey_store::revocations::for_connection(tx.conn(), &ctx.tenant, &id).await? {
            n += secrets::delete_owner(tx.conn(), crate::revocation::OWNER_KIND, &r.id).await?;
        }
        store::delete(tx.conn(), &ctx.tenant, &id).await?;
        record(
            &mut tx,
            ctx,
            AuditAction::ConnectionDelete,
            Some(&id),
            AuditOutcome::Ok,
            json!({
                "provider": row.provider, "kind": row.kind.as_str(), "secrets_destroyed": n,
            }),
        )
        .await?;
        emit(
            &mut tx,
            &ctx.tenant,
            EventType::ConnectionDeleted,
            connection_data(&row),
        )
        .await?;
        tx.commit().await
    }
}
