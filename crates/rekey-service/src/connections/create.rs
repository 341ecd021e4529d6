//! Creating a connection: parse and seal its material, check where its
//! probe may go.

use super::{check_params, owner_from};
use crate::connection_rows::{aad, OWNER_KIND};
use crate::versions::Source;
use crate::webhooks::{connection_data, emit_all};
use crate::{Connection, Ctx, Rekey};
use rekey_api::CreateConnection;
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::{self, ConnectionKind, Status};
use rekey_core::credentials::{self, ParsedCredentials};
use rekey_core::events::EventType;
use rekey_core::time::{now_ms, parse_rfc3339};
use rekey_core::versions::VersionLabel;
use rekey_core::ErrorCode;
use rekey_core::{ids, Error, SecretString};
use rekey_store::connections::{self as store, ConnectionRow};
use rekey_store::secrets::{self, SecretRow};
use rekey_store::WriteTx;
use serde_json::{json, Value};
use std::collections::BTreeMap;

impl Rekey {
    /// A database probe's host (from `params`) that is an IP literal must
    /// pass the outbound policy. Host names are checked after DNS, when
    /// the probe connects.
    pub(crate) fn check_probe_host(
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
                ErrorCode::InvalidField,
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
        secrets::delete_owner(tx.conn(), OWNER_KIND, &row.id).await?;
        for r in &self.seal_secrets(row, secrets_map)? {
            secrets::insert(tx.conn(), r).await?;
        }
        Ok(())
    }

    /// `secrets_map` sealed for `row`'s current credential version.
    fn seal_secrets(
        &self,
        row: &ConnectionRow,
        secrets_map: &BTreeMap<String, SecretString>,
    ) -> Result<Vec<SecretRow>, Error> {
        let kr = self.keyring()?;
        Ok(secrets_map
            .iter()
            .map(|(field, value)| {
                crate::sealing::seal_row(
                    &kr,
                    &aad(&row.tenant, &row.id, field, row.credential_version),
                    value,
                )
            })
            .collect())
    }

    pub async fn create_connection(
        &self,
        ctx: &Ctx,
        req: CreateConnection,
    ) -> Result<Connection, Error> {
        let kind: ConnectionKind = req.kind.parse()?;
        if kind == ConnectionKind::OAuth2ClientCredentials {
            if let Some(p) = self.catalog().get(&req.provider) {
                if !p.supports(kind) {
                    return Err(Error::unprocessable(
                        ErrorCode::KindNotSupportedByProvider,
                        format!("provider `{}` does not support kind `{kind}`", p.id),
                    ));
                }
            }
            return self.create_m2m(ctx, &req).await;
        }
        let new = self.prepare_connection(ctx, req)?;
        // With the creates arriving meanwhile, in one transaction.
        Ok(self.insert_grouped(ctx, new).await?.into())
    }

    /// Check a create request for a static kind and seal nothing yet: the
    /// row and its parsed material, ready for [`Rekey::insert_connection`].
    /// No database access, so an import checks every row before it writes.
    pub(crate) fn prepare_connection(
        &self,
        ctx: &Ctx,
        req: CreateConnection,
    ) -> Result<NewConnection, Error> {
        let kind: ConnectionKind = req.kind.parse()?;
        if kind == ConnectionKind::OAuth2ClientCredentials {
            return Err(Error::unprocessable(
                ErrorCode::KindNotImportable,
                format!(
                    "`{kind}` connections are minted from an integration with a token \
                     request; create them one at a time with POST /api/v1/connections"
                ),
            ));
        }
        let provider = self.catalog().get(&req.provider).ok_or_else(|| {
            Error::unprocessable(
                ErrorCode::UnknownProvider,
                format!(
                    "no provider `{}` in the catalog; see GET /api/v1/providers",
                    ids::truncate_for_message(&req.provider)
                ),
            )
        })?;
        if !provider.supports(kind) {
            return Err(Error::unprocessable(
                ErrorCode::KindNotSupportedByProvider,
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
        // The catalog's form rules and defaults, as on a Connect page, then
        // the parameters the probe needs: refused now, not at the first check.
        let credentials = super::rules::apply_key_form(provider, kind, req.credentials)
            .map_err(|p| p.to_error())?;
        let parsed = self.parse_material(kind, credentials)?;
        super::rules::check_required_params(provider, kind, &req.params, probe_url.is_some())
            .map_err(|p| p.to_error())?;
        let now = now_ms();
        let row = ConnectionRow {
            owner,
            scopes,
            tags,
            custody,
            credential_meta: Value::Object(parsed.meta.clone()).to_string(),
            expires_at,
            params,
            probe_url,
            ..ConnectionRow::new(
                &ctx.tenant,
                &provider.id,
                kind,
                req.display_name.trim(),
                Status::Pending,
                now,
            )
        };
        Ok(NewConnection {
            row,
            secrets: parsed.secrets,
        })
    }

    /// Insert prepared connections with their sealed material, first
    /// versions, audit entries and `connection.created` events, in `tx`:
    /// each as a single create writes it, but a few multi-row statements
    /// for the whole batch instead of a dozen statements a connection.
    /// Rows are returned in the order given.
    pub(crate) async fn insert_connections(
        &self,
        tx: &mut WriteTx,
        batch: Vec<(Ctx, NewConnection)>,
    ) -> Result<Vec<ConnectionRow>, Error> {
        let mut rows = Vec::with_capacity(batch.len());
        let mut sealed = Vec::new();
        let mut versions = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for (ctx, NewConnection { row, secrets }) in batch {
            let version = self
                .new_version(
                    tx,
                    &row,
                    &secrets,
                    VersionLabel::Current,
                    Source::Created,
                    now_ms(),
                    &ctx.actor,
                )
                .await?;
            sealed.extend(self.seal_secrets(&row, &secrets)?);
            entries.push(crate::audit::entry(
                &ctx,
                AuditAction::ConnectionCreate,
                Some(&row.id),
                AuditOutcome::Ok,
                json!({
                    "provider": row.provider, "kind": row.kind.as_str(),
                    "secret_fields": secrets.keys().collect::<Vec<_>>(),
                    "fingerprint": version.fingerprint,
                }),
            ));
            versions.push(version);
            rows.push(row);
        }
        store::insert_many(tx.conn(), &rows).await?;
        secrets::insert_many(tx.conn(), &sealed).await?;
        rekey_store::credential_versions::insert_many(tx.conn(), &versions).await?;
        let backend = tx.backend();
        rekey_store::audit::append_all(tx.conn(), backend, entries).await?;
        let events: Vec<(&str, Value)> = rows
            .iter()
            .map(|r| (r.tenant.as_str(), connection_data(r)))
            .collect();
        emit_all(tx, EventType::ConnectionCreated, events).await?;
        Ok(rows)
    }
}

/// A checked create request: the row and its parsed secret fields.
#[derive(Clone)]
pub(crate) struct NewConnection {
    row: ConnectionRow,
    secrets: BTreeMap<String, SecretString>,
}
