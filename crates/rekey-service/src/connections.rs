use crate::audit::record;
use crate::webhooks::{connection_data, emit};
use crate::{views, Ctx, Principal, Rekey};
use base64::Engine;
use rekey_api::{
    ConnectionList, ConnectionQuery, ConnectionView, CreateConnection, CredentialsView,
    DisableConnection, OwnerView, UpdateConnection, UpdateCredentials,
};
use rekey_core::connection::{self, ConnectionKind, Owner, Status};
use rekey_core::credentials::{self, ParsedCredentials};
use rekey_core::scope::Scope;
use rekey_core::time::{now_ms, parse_rfc3339};
use rekey_core::{ids, Error, SecretString};
use rekey_crypto::Aad;
use rekey_store::connections::{self as store, ConnectionFilter, ConnectionRow};
use rekey_store::secrets::{self, SecretRow};
use rekey_store::{Locked, WriteTx};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(crate) const OWNER_KIND: &str = "connection";

/// Values for a provider's URL placeholders: declared names only, each
/// value host-name safe and matching the catalog's `param_info`.
pub(crate) fn check_params(
    provider: &rekey_providers::Provider,
    params: &BTreeMap<String, String>,
) -> Result<String, Error> {
    for (k, v) in params {
        if !provider.params.contains(k) {
            return Err(Error::invalid(
                "invalid_field",
                format!(
                    "`params.{}` is not a placeholder of provider `{}`{}",
                    ids::truncate_for_message(k),
                    provider.id,
                    if provider.params.is_empty() {
                        String::new()
                    } else {
                        format!(" (it has: {})", provider.params.join(", "))
                    }
                ),
            ));
        }
        rekey_providers::check_param_value(k, v, provider.param_info.get(k))
            .map_err(|e| Error::invalid("invalid_field", format!("`params`: {e}")))?;
    }
    Ok(serde_json::to_string(params).unwrap_or_else(|_| "{}".into()))
}

/// `probe_url` and `params` decide where a probe sends the connection's
/// credential (an API URL, a database host), so only a caller who may read
/// the credential anyway (`credentials:read`) may set them.
pub fn authorize_probe_target(
    p: &Principal,
    probe_url: Option<&str>,
    params_set: bool,
) -> Result<(), Error> {
    if params_set || probe_url.is_some_and(|u| !u.is_empty()) {
        p.require(Scope::CredentialsRead)?;
    }
    Ok(())
}

pub(crate) fn not_found(id: &str) -> Error {
    Error::not_found("connection_not_found", format!("connection {id}"))
}

fn owner_from(o: Option<&OwnerView>) -> Result<Owner, Error> {
    let o = o.cloned().unwrap_or_default();
    let owner = Owner {
        subject: o.subject,
        email: o.email,
        name: o.name,
    };
    connection::validate_owner(&owner)?;
    Ok(owner)
}

fn aad(tenant: &str, id: &str, field: &str, version: i64) -> Aad {
    Aad {
        tenant: tenant.to_string(),
        record_kind: OWNER_KIND.to_string(),
        record_id: id.to_string(),
        field: field.to_string(),
        version,
    }
}

fn check_version(expected: Option<i64>, row: &ConnectionRow) -> Result<(), Error> {
    match expected {
        Some(v) if v != row.version => Err(Error::conflict(
            "version_conflict",
            format!(
                "connection {} is at version {}, not {v}; reload and retry",
                row.id, row.version
            ),
        )),
        _ => Ok(()),
    }
}

fn lost_race(id: &str) -> Error {
    Error::conflict(
        "version_conflict",
        format!("connection {id} was changed concurrently; reload and retry"),
    )
}

impl Rekey {
    /// A database probe's host (from `params`) that is an IP literal must
    /// pass the outbound policy. Host names are checked after DNS, when
    /// the probe connects.
    fn check_probe_host(
        &self,
        provider: &rekey_providers::Provider,
        kind: ConnectionKind,
        params: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        use rekey_providers::probe::ProbeProtocol;
        let Some(probe) = provider.probe_for(kind.as_str()) else {
            return Ok(());
        };
        let Some(t) = probe.host.as_deref() else {
            return Ok(());
        };
        let names = rekey_providers::placeholders(t);
        if probe.protocol == ProbeProtocol::Http || names.iter().any(|p| !params.contains_key(p)) {
            return Ok(());
        }
        // Shape errors were reported by `check_params`.
        let Ok(host) = provider.render_url(t, params) else {
            return Ok(());
        };
        match crate::refused_host(&self.outbound_policy(), url::Host::parse(&host).ok()) {
            None => Ok(()),
            Some(reason) => Err(Error::invalid(
                "invalid_field",
                format!(
                    "`params.{}` (the database host) {}",
                    names.join("`, `params."),
                    crate::refused_message(reason)
                ),
            )),
        }
    }

    /// Parse material for `kind`, adding derived public facts (RSA fingerprint).
    pub(crate) fn parse_material(
        &self,
        kind: ConnectionKind,
        v: Value,
    ) -> Result<ParsedCredentials, Error> {
        let mut parsed = credentials::parse(kind, v)?;
        if kind == ConnectionKind::RsaKeyPair {
            let pem = parsed
                .secrets
                .get("private_key_pem")
                .ok_or_else(|| Error::internal("rsa key missing after parse"))?;
            let info = crate::rsa_key::derive(pem, parsed.secrets.get("passphrase"))?;
            parsed
                .meta
                .insert("public_key_fingerprint".into(), info.fingerprint.into());
            parsed
                .meta
                .insert("public_key_pem".into(), info.public_key_pem.into());
            parsed.meta.insert("key_bits".into(), info.bits.into());
        }
        if kind == ConnectionKind::ServiceAccountJson {
            // Probes mint a token at the key file's `token_uri` (a
            // missing one means Google's).
            let uri = parsed
                .secrets
                .get("json")
                .and_then(|j| serde_json::from_str::<Value>(j.expose()).ok())
                .and_then(|d| {
                    d.get("token_uri")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
            if let Some(u) = uri {
                self.check_url("credentials.json.token_uri", &u)?;
            }
        }
        Ok(parsed)
    }

    /// Seal and insert every secret field of `parsed` at `version`.
    pub(crate) async fn write_secrets(
        &self,
        tx: &mut WriteTx,
        row: &ConnectionRow,
        secrets_map: &BTreeMap<String, SecretString>,
    ) -> Result<(), Error> {
        let rows: Vec<SecretRow> = {
            let kr = self.keyring()?;
            secrets_map
                .iter()
                .map(|(field, value)| {
                    crate::sealing::seal_row(
                        &kr,
                        &aad(&row.tenant, &row.id, field, row.credential_version),
                        value,
                    )
                })
                .collect()
        };
        secrets::delete_owner(tx.conn(), OWNER_KIND, &row.id).await?;
        for r in &rows {
            secrets::insert(tx.conn(), r).await?;
        }
        Ok(())
    }

    pub async fn create_connection(
        &self,
        ctx: &Ctx,
        req: CreateConnection,
    ) -> Result<ConnectionView, Error> {
        let kind: ConnectionKind = req.kind.parse()?;
        if kind == ConnectionKind::OAuth2ClientCredentials {
            if let Some(p) = self.catalog().get(&req.provider) {
                if !p.supports(kind) {
                    return Err(Error::unprocessable(
                        "kind_not_supported_by_provider",
                        format!("provider `{}` does not support kind `{kind}`", p.id),
                    ));
                }
            }
            return self.create_m2m(ctx, &req).await;
        }
        let provider = self.catalog().get(&req.provider).ok_or_else(|| {
            Error::unprocessable(
                "unknown_provider",
                format!(
                    "no provider `{}` in the catalog; see GET /api/v1/providers",
                    ids::truncate_for_message(&req.provider)
                ),
            )
        })?;
        if !provider.supports(kind) {
            return Err(Error::unprocessable(
                "kind_not_supported_by_provider",
                format!(
                    "provider `{}` does not support kind `{kind}`; it supports: {}",
                    provider.id,
                    provider.auth_kinds.join(", ")
                ),
            ));
        }
        connection::validate_display_name(&req.display_name)?;
        let owner = owner_from(req.owner.as_ref())?;
        let scopes = connection::normalize_scopes(&req.scopes)?;
        let tags = connection::normalize_slugs("tags", &req.tags)?;
        let custody = connection::normalize_slugs("custody", &req.custody)?;
        let expires_at = req
            .expires_at
            .as_deref()
            .map(|s| parse_rfc3339("expires_at", s))
            .transpose()?;
        let params = check_params(provider, &req.params)?;
        self.check_probe_host(provider, kind, &req.params)?;
        let probe_url = req
            .probe_url
            .as_deref()
            .map(|u| self.check_url("probe_url", u))
            .transpose()?;
        let parsed = self.parse_material(kind, req.credentials)?;
        let now = now_ms();
        let row = ConnectionRow {
            id: ids::new_id(ids::CONNECTION),
            tenant: ctx.tenant.clone(),
            provider: provider.id.clone(),
            kind,
            display_name: req.display_name.trim().to_string(),
            owner,
            scopes,
            tags,
            custody,
            credential_meta: Value::Object(parsed.meta.clone()).to_string(),
            status: Status::Pending,
            last_error: None,
            created_at: now,
            updated_at: now,
            rotated_at: None,
            expires_at,
            version: 1,
            credential_version: 1,
            params,
            probe_url,
            last_ok_at: None,
            last_checked_at: None,
            first_failed_at: None,
            consecutive_failures: 0,
        };
        let mut tx = self.store().begin_write().await?;
        store::insert(tx.conn(), &row).await?;
        self.write_secrets(&mut tx, &row, &parsed.secrets).await?;
        record(
            &mut tx,
            ctx,
            "connection.create",
            Some(&row.id),
            "ok",
            json!({
                "provider": row.provider, "kind": kind.as_str(),
                "secret_fields": parsed.secrets.keys().collect::<Vec<_>>(),
            }),
        )
        .await?;
        emit(
            &mut tx,
            &ctx.tenant,
            "connection.created",
            connection_data(&row),
        )
        .await?;
        tx.commit().await?;
        Ok(views::connection(&row))
    }

    pub async fn get_connection(&self, tenant: &str, id: &str) -> Result<ConnectionView, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let mut c = self.store().read().await?;
        let row = store::get(&mut c, tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        Ok(views::connection(&row))
    }

    pub async fn list_connections(
        &self,
        tenant: &str,
        q: &ConnectionQuery,
    ) -> Result<ConnectionList, Error> {
        let slug = |field: &str, v: &Option<String>| -> Result<Option<String>, Error> {
            if let Some(s) = v {
                ids::validate_slug(field, s, 64)?;
            }
            Ok(v.clone())
        };
        let limit = match q.limit {
            None => 50,
            Some(n) if (1..=200).contains(&n) => n,
            Some(_) => {
                return Err(Error::invalid(
                    "invalid_limit",
                    "`limit` must be between 1 and 200",
                ))
            }
        };
        let after_id = match &q.cursor {
            None => None,
            Some(c) => {
                let bad = || {
                    Error::invalid(
                        "invalid_cursor",
                        "`cursor` is not a cursor returned by this endpoint",
                    )
                };
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .map_err(|_| bad())?;
                let s = String::from_utf8(raw).map_err(|_| bad())?;
                Some(ids::parse_id(ids::CONNECTION, &s).map_err(|_| bad())?)
            }
        };
        let f = ConnectionFilter {
            provider: slug("provider", &q.provider)?,
            kind: q.kind.as_deref().map(str::parse).transpose()?,
            status: q.status.as_deref().map(str::parse).transpose()?,
            tag: slug("tag", &q.tag)?,
            custody: slug("custody", &q.custody)?,
            owner: q.owner.clone(),
            search: match q.q.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(t) if t.chars().count() > 100 || t.chars().any(char::is_control) => {
                    return Err(Error::invalid(
                        "invalid_search",
                        "`q` must be at most 100 printable characters",
                    ))
                }
                Some(t) => Some(t.to_string()),
            },
            created_before: q
                .created_before
                .as_deref()
                .map(|s| parse_rfc3339("created_before", s))
                .transpose()?,
            rotated_before: q
                .rotated_before
                .as_deref()
                .map(|s| parse_rfc3339("rotated_before", s))
                .transpose()?,
            after_id,
            // One more than asked: a cursor only when another page exists.
            limit: limit + 1,
        };
        let mut c = self.store().read().await?;
        let mut rows = store::list(&mut c, tenant, &f).await?;
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|r| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&r.id))
        } else {
            None
        };
        Ok(ConnectionList {
            items: rows.iter().map(views::connection).collect(),
            next_cursor,
        })
    }

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
    ) -> Result<ConnectionView, Error> {
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
                    "unknown_provider",
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
        if changed.is_empty() {
            return Err(Error::invalid(
                "nothing_to_update",
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
            "connection.update",
            Some(&id),
            "ok",
            json!({"fields": changed, "version": row.version}),
        )
        .await?;
        tx.commit().await?;
        Ok(views::connection(&row))
    }

    /// Replace the credential material. The connection goes back to
    /// `pending` (unverified) unless it is disabled.
    pub async fn update_credentials(
        &self,
        ctx: &Ctx,
        id: &str,
        req: UpdateCredentials,
        if_match: Option<i64>,
    ) -> Result<ConnectionView, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let expected = if_match.or(req.version);
        let mut tx = self.store().begin_write().await?;
        let mut row = self
            .load_for_write(&mut tx, &ctx.tenant, &id, expected)
            .await?;
        let parsed = self.parse_material(row.kind, req.credentials)?;
        let old_version = row.version;
        let from = row.status;
        if row.status != Status::Disabled && row.status != Status::Pending {
            row.status = row.status.transition(Status::Pending)?;
        }
        row.credential_meta = Value::Object(parsed.meta.clone()).to_string();
        row.credential_version += 1;
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
        store::schedule_check(tx.conn(), &ctx.tenant, &id, now, None).await?;
        if row.status != from {
            crate::health::status_changed(&mut tx, ctx, &row, from, "credentials_update", None)
                .await?;
        }
        let mut data = connection_data(&row);
        data["method"] = json!("credentials_update");
        emit(&mut tx, &ctx.tenant, "connection.reauthorized", data).await?;
        record(
            &mut tx,
            ctx,
            "connection.credentials_update",
            Some(&id),
            "ok",
            json!({
                "credential_version": row.credential_version,
                "secret_fields": parsed.secrets.keys().collect::<Vec<_>>(),
                "status_from": from.as_str(), "status_to": row.status.as_str(),
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(views::connection(&row))
    }

    /// Move a connection to `to` through the status machine.
    pub async fn set_status(
        &self,
        ctx: &Ctx,
        id: &str,
        to: Status,
        req: DisableConnection,
        if_match: Option<i64>,
    ) -> Result<ConnectionView, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        if let Some(r) = &req.reason {
            if r.chars().count() > 500 {
                return Err(Error::invalid(
                    "invalid_field",
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
                "not_disabled",
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
            Status::Disabled => "connection.disable",
            Status::Pending => "connection.enable",
            _ => "connection.status_change",
        };
        record(
            &mut tx,
            ctx,
            action,
            Some(&id),
            "ok",
            json!({
                "from": from.as_str(), "to": to.as_str(), "reason": req.reason,
            }),
        )
        .await?;
        crate::health::status_changed(&mut tx, ctx, &row, from, "operator", None).await?;
        if to == Status::Pending {
            store::schedule_check(tx.conn(), &ctx.tenant, &id, now_ms(), None).await?;
        }
        tx.commit().await?;
        Ok(views::connection(&row))
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
                        "revocation_incomplete",
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
        let n = secrets::delete_owner(tx.conn(), OWNER_KIND, &id).await?;
        store::delete(tx.conn(), &ctx.tenant, &id).await?;
        record(
            &mut tx,
            ctx,
            "connection.delete",
            Some(&id),
            "ok",
            json!({
                "provider": row.provider, "kind": row.kind.as_str(), "secrets_destroyed": n,
            }),
        )
        .await?;
        emit(
            &mut tx,
            &ctx.tenant,
            "connection.deleted",
            connection_data(&row),
        )
        .await?;
        tx.commit().await
    }

    /// Decrypt a connection's material. Every call is audited — granted,
    /// denied or failed — and the audit entry commits before the secret is
    /// returned.
    pub async fn read_credentials(
        &self,
        p: &Principal,
        ctx: &Ctx,
        id: &str,
    ) -> Result<CredentialsView, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        if let Err(e) = p.require(Scope::CredentialsRead) {
            self.audit_read(ctx, &id, "denied", json!({"reason": "missing_scope"}))
                .await?;
            return Err(e);
        }
        let (row, rows) = self.load_secret_rows(&ctx.tenant, &id).await?;
        match row.status {
            // Once revocation is asked for, the credential is no longer
            // handed out, even while the provider side is still pending.
            Status::Disabled | Status::Revoked | Status::RevokePending => {
                self.audit_read(ctx, &id, "denied", json!({"reason": row.status.as_str()}))
                    .await?;
                return Err(Error::conflict(
                    "connection_unusable",
                    format!(
                        "connection {id} is {}; its credentials are not handed out",
                        row.status
                    ),
                ));
            }
            _ => {}
        }
        let material = if row.kind.is_static() {
            self.open_secrets(&row, &rows).and_then(|sec| {
                let meta =
                    serde_json::from_str::<serde_json::Map<String, Value>>(&row.credential_meta)
                        .map_err(Error::internal)?;
                credentials::assemble(row.kind, &meta, &sec).map(|m| (row.credential_version, m))
            })
        } else {
            self.oauth_material(ctx, &row).await
        };
        let (version, material) = match material {
            Ok(m) => m,
            Err(e) => {
                self.audit_read(ctx, &id, "error", json!({"error": e.code()}))
                    .await?;
                return Err(e);
            }
        };
        self.audit_read(ctx, &id, "ok", json!({"credential_version": version}))
            .await?;
        Ok(CredentialsView {
            connection_id: id,
            kind: row.kind.as_str().to_string(),
            version,
            credentials: material,
        })
    }

    async fn audit_read(
        &self,
        ctx: &Ctx,
        id: &str,
        outcome: &str,
        details: Value,
    ) -> Result<(), Error> {
        let mut tx = self.store().begin_write().await?;
        record(&mut tx, ctx, "credentials.read", Some(id), outcome, details).await?;
        tx.commit().await
    }

    /// A connection and its sealed secret rows, as one consistent pair.
    /// They are read by two statements; a credential change (refresh, new
    /// material) committing in between would pair a row with secrets sealed
    /// for another `credential_version`, which the AAD check rightly
    /// refuses. Secret rows carry the version they were sealed for, so a
    /// torn pair is seen and read again, and after a few tries both are read
    /// in one snapshot.
    pub(crate) async fn load_secret_rows(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(ConnectionRow, Vec<SecretRow>), Error> {
        const OPTIMISTIC_TRIES: usize = 3;
        {
            let mut c = self.store().read().await?;
            for _ in 0..OPTIMISTIC_TRIES {
                let row = store::get(&mut c, tenant, id)
                    .await?
                    .ok_or_else(|| not_found(id))?;
                let rows = secrets::for_owner(&mut c, OWNER_KIND, id).await?;
                if rows.iter().all(|s| s.version == row.credential_version) {
                    return Ok((row, rows));
                }
            }
        }
        let mut tx = self.store().begin_snapshot().await?;
        let row = store::get(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let rows = secrets::for_owner(&mut tx, OWNER_KIND, id).await?;
        tx.commit().await.map_err(rekey_store::db_err)?;
        Ok((row, rows))
    }

    /// [`Self::load_secret_rows`], opened.
    pub(crate) async fn load_with_secrets(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(ConnectionRow, BTreeMap<String, SecretString>), Error> {
        let (row, rows) = self.load_secret_rows(tenant, id).await?;
        let s = self.open_secrets(&row, &rows)?;
        Ok((row, s))
    }

    pub(crate) fn open_secrets(
        &self,
        row: &ConnectionRow,
        rows: &[SecretRow],
    ) -> Result<BTreeMap<String, SecretString>, Error> {
        let kr = self.keyring()?;
        let mut out = BTreeMap::new();
        for s in rows {
            // The AAD comes from the connection row, not from the secret row:
            // a secret row copied under another connection fails here.
            let a = aad(&row.tenant, &row.id, &s.field, row.credential_version);
            let value = crate::sealing::open_row(&kr, &a, s).map_err(|e| {
                tracing::error!(connection = %row.id, field = %s.field, error = %e, "secret failed to decrypt");
                Error::DecryptionFailed(format!(
                    "secret `{}` of connection {} failed to decrypt: {e}",
                    s.field, row.id
                ))
            })??;
            out.insert(s.field.clone(), value);
        }
        Ok(out)
    }
}
