//! OAuth app registrations ("integrations") and resolving their effective
//! endpoints from catalog + overrides + placeholders + OIDC discovery.

use crate::audit::record_ok;
use crate::model::{Endpoints, Integration};
use crate::{Ctx, Rekey};
use rekey_api::{CreateIntegration, EndpointOverrides, UpdateIntegration};
use rekey_core::audit::AuditAction;
use rekey_core::outbound::OutboundPolicy;
use rekey_core::time::now_ms;
use rekey_core::ErrorCode;
use rekey_core::{ids, Error, SecretString};
use rekey_crypto::Aad;
use rekey_oauth::{ClientAuth, ClientAuthMethod};
use rekey_providers::Provider;
use rekey_store::integrations::{self as store, IntegrationRow};
use rekey_store::secrets;
use rekey_store::WriteTx;
use serde_json::json;
use std::collections::BTreeMap;

pub(crate) const OWNER_KIND: &str = "integration";
pub(crate) const INTEGRATION_PREFIX: &str = ids::INTEGRATION;

mod list;
mod resolve;
mod rotate_secret;
pub(crate) use resolve::Resolved;
pub use rotate_secret::{ClientSecretRotation, NewClientSecret};

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid(ErrorCode::InvalidIntegration, msg)
}

/// Overrides must be https, except loopback (development and tests). With
/// a `policy` (the endpoints rekey itself connects to), an IP-literal host
/// must pass the outbound policy; names are checked after DNS when called.
fn check_override(policy: Option<&OutboundPolicy>, field: &str, url: &str) -> Result<(), Error> {
    let u =
        url::Url::parse(url).map_err(|_| bad(format!("`endpoints.{field}` is not a valid URL")))?;
    let loopback = matches!(
        u.host_str(),
        Some("127.0.0.1") | Some("localhost") | Some("[::1]")
    );
    if !(u.scheme() == "https" || (u.scheme() == "http" && loopback)) {
        return Err(bad(format!(
            "`endpoints.{field}` must be https (http only for loopback)"
        )));
    }
    if let Some(reason) = policy.and_then(|p| crate::refused_host(p, u.host())) {
        return Err(bad(format!(
            "`endpoints.{field}` {}",
            crate::refused_message(reason)
        )));
    }
    Ok(())
}

/// Every override; the authorization URL is only ever opened by the
/// user's browser, the others are called by rekey (and OIDC discovery
/// runs at the issuer).
fn check_overrides(policy: &OutboundPolicy, e: &Endpoints) -> Result<(), Error> {
    for (f, v, called) in [
        ("authorize_url", &e.authorize_url, false),
        ("token_url", &e.token_url, true),
        ("revocation_url", &e.revocation_url, true),
        ("issuer", &e.issuer, true),
        ("identity_url", &e.identity_url, true),
    ] {
        if let Some(u) = v {
            check_override(called.then_some(policy), f, u)?;
        }
    }
    Ok(())
}

/// The request's overrides as the service keeps them.
fn endpoints_of(e: &EndpointOverrides) -> Endpoints {
    Endpoints {
        authorize_url: e.authorize_url.clone(),
        token_url: e.token_url.clone(),
        revocation_url: e.revocation_url.clone(),
        issuer: e.issuer.clone(),
        identity_url: e.identity_url.clone(),
    }
}

fn aad(tenant: &str, id: &str, version: i64) -> Aad {
    Aad::new(tenant, OWNER_KIND, id, "client_secret", version)
}

impl Rekey {
    pub(crate) fn oauth_provider(&self, id: &str) -> Result<&Provider, Error> {
        let p = self.catalog().get(id).ok_or_else(|| {
            Error::unprocessable(
                ErrorCode::UnknownProvider,
                format!(
                    "no provider `{}` in the catalog",
                    ids::truncate_for_message(id)
                ),
            )
        })?;
        if p.oauth.is_none() {
            return Err(Error::unprocessable(
                ErrorCode::ProviderHasNoOauth,
                format!("provider `{}` has no OAuth support in the catalog", p.id),
            ));
        }
        Ok(p)
    }

    pub fn default_redirect_uri(&self) -> String {
        format!("{}/oauth/callback", self.public_url())
    }

    fn validate_fields(&self, provider: &Provider, f: &Fields<'_>) -> Result<SecretString, Error> {
        let Fields {
            method,
            secret,
            pem,
            params,
            scopes,
            endpoints,
            redirect,
        } = *f;
        let m = ClientAuthMethod::parse(method).ok_or_else(|| {
            bad("`auth_method` must be client_secret_basic, client_secret_post or private_key_jwt")
        })?;
        let secret = match m {
            ClientAuthMethod::PrivateKeyJwt => {
                let pem = pem
                    .clone()
                    .filter(|p| p.contains("PRIVATE KEY"))
                    .ok_or_else(|| {
                        bad("`private_key_pem` (PEM) is required for private_key_jwt")
                    })?;
                let check = ClientAuth {
                    client_id: "x".into(),
                    method: m,
                    secret: SecretString::new(pem.clone()),
                    key_id: None,
                };
                // Signing once proves the key is usable now rather than at the first token request.
                check.validate().map_err(|e| bad(e.to_string()))?;
                SecretString::new(pem)
            }
            _ => {
                let s = secret
                    .clone()
                    .filter(|s| !s.is_empty() && s.len() <= 4096)
                    .ok_or_else(|| bad("`client_secret` is required (1–4096 bytes)"))?;
                SecretString::new(s)
            }
        };
        for p in &provider.params {
            if !params.contains_key(p) && !provider_has_all_overrides(endpoints) {
                return Err(bad(format!(
                    "`params.{p}` is required by provider `{}`",
                    provider.id
                )));
            }
        }
        for k in params.keys() {
            if !provider.params.contains(k) {
                return Err(bad(format!(
                    "`params.{k}` is not a placeholder of provider `{}`",
                    provider.id
                )));
            }
        }
        for v in params.values() {
            if v.is_empty()
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(bad(
                    "`params` values must be host-name safe (a-z, 0-9, '-', '_', '.')",
                ));
            }
        }
        rekey_core::connection::normalize_scopes(scopes)?;
        check_overrides(&self.outbound_policy(), endpoints)?;
        // Placeholder values must keep URLs on the provider's own domain.
        if let Some(o) = &provider.oauth {
            for (t, ov) in [
                (&o.authorize_url, &endpoints.authorize_url),
                (&o.token_url, &endpoints.token_url),
                (&o.revocation_url, &endpoints.revocation_url),
                (&o.issuer, &endpoints.issuer),
                (&o.identity_url, &endpoints.identity_url),
            ] {
                if let (Some(t), None) = (t, ov) {
                    provider
                        .render_url(t, params)
                        .map_err(|e| bad(e.to_string()))?;
                }
            }
        }
        // Generic catalog entries carry `.invalid` placeholder URLs: the
        // integration must say where its provider lives.
        if let Some(o) = &provider.oauth {
            for (field, cat, ov) in [
                ("token_url", &o.token_url, &endpoints.token_url),
                ("authorize_url", &o.authorize_url, &endpoints.authorize_url),
                ("issuer", &o.issuer, &endpoints.issuer),
                (
                    "revocation_url",
                    &o.revocation_url,
                    &endpoints.revocation_url,
                ),
                ("identity_url", &o.identity_url, &endpoints.identity_url),
            ] {
                let placeholder = cat.as_deref().is_some_and(|u| u.contains(".invalid"));
                if placeholder && ov.is_none() && !(field != "issuer" && endpoints.issuer.is_some())
                {
                    return Err(bad(format!(
                        "provider `{}` needs `endpoints.{field}` on the integration",
                        provider.id
                    )));
                }
            }
        }
        if let Some(r) = redirect {
            check_override(None, "redirect_uri", r)
                .map_err(|_| bad("`redirect_uri` must be https (http only for loopback)"))?;
        }
        Ok(secret)
    }

    pub async fn create_integration(
        &self,
        ctx: &Ctx,
        req: CreateIntegration,
    ) -> Result<Integration, Error> {
        let provider = self.oauth_provider(&req.provider)?.clone();
        // Same rules as a connection's: slugs, at most 50, sorted and unique.
        let tags = rekey_core::connection::normalize_slugs("tags", &req.tags)?;
        let custody = rekey_core::connection::normalize_slugs("custody", &req.custody)?;
        let name = req.display_name.trim().to_string();
        rekey_core::connection::validate_display_name(&name)?;
        if req.client_id.is_empty()
            || req.client_id.len() > 512
            || req.client_id.chars().any(char::is_control)
        {
            return Err(bad("`client_id` must be 1–512 printable characters"));
        }
        let method = req
            .auth_method
            .clone()
            .unwrap_or_else(|| "client_secret_basic".into());
        let scopes = req.scopes.clone().unwrap_or_else(|| {
            provider
                .oauth
                .as_ref()
                .map(|o| o.default_scopes.clone())
                .unwrap_or_default()
        });
        let secret = self.validate_fields(
            &provider,
            &Fields {
                method: &method,
                secret: &req.client_secret,
                pem: &req.private_key_pem,
                params: &req.params,
                scopes: &scopes,
                endpoints: &endpoints_of(&req.endpoints),
                redirect: &req.redirect_uri,
            },
        )?;
        let now = now_ms();
        let row = IntegrationRow {
            id: ids::new_id(INTEGRATION_PREFIX),
            tenant: ctx.tenant.clone(),
            provider: provider.id.clone(),
            display_name: name,
            client_id: req.client_id.clone(),
            auth_method: method,
            key_id: req.key_id.clone(),
            scopes: rekey_core::connection::normalize_scopes(&scopes)?,
            extra_params: json!(req.extra_authorize_params).to_string(),
            params: json!(req.params).to_string(),
            endpoints: serde_json::to_string(&req.endpoints).map_err(Error::internal)?,
            redirect_uri: req.redirect_uri.clone(),
            tags,
            custody,
            created_at: now,
            updated_at: now,
            version: 1,
            credential_version: 1,
        };
        let mut tx = self.store().begin_write().await?;
        store::insert(tx.conn(), &row).await?;
        self.write_integration_secret(&mut tx, &row, &secret)
            .await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::IntegrationCreate,
            &row.id,
            json!({"provider": row.provider, "auth_method": row.auth_method, "tags": row.tags, "custody": row.custody}),
        )
        .await?;
        tx.commit().await?;
        Ok(Integration::new(row, &self.default_redirect_uri()))
    }

    async fn write_integration_secret(
        &self,
        tx: &mut WriteTx,
        row: &IntegrationRow,
        secret: &SecretString,
    ) -> Result<(), Error> {
        let sealed = crate::sealing::seal_row(
            &*self.keyring()?,
            &aad(&row.tenant, &row.id, row.credential_version),
            secret,
        );
        secrets::delete_owner(tx.conn(), OWNER_KIND, &row.id).await?;
        secrets::insert(tx.conn(), &sealed).await
    }

    /// A new client secret (or private key) checked against the stored
    /// integration `row`, as a new integration's would be.
    fn validate_secret_for(
        &self,
        provider: &Provider,
        row: &IntegrationRow,
        secret: &Option<String>,
        pem: &Option<String>,
    ) -> Result<SecretString, Error> {
        let params: BTreeMap<String, String> =
            serde_json::from_str(&row.params).unwrap_or_default();
        let endpoints = Endpoints::parse(&row.endpoints);
        self.validate_fields(
            provider,
            &Fields {
                method: &row.auth_method,
                secret,
                pem,
                params: &params,
                scopes: &row.scopes,
                endpoints: &endpoints,
                redirect: &row.redirect_uri,
            },
        )
    }

    pub async fn update_integration(
        &self,
        ctx: &Ctx,
        id: &str,
        req: UpdateIntegration,
        if_match: Option<i64>,
    ) -> Result<Integration, Error> {
        let id = ids::parse_id(INTEGRATION_PREFIX, id)?;
        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(&mut tx, rekey_store::Locked::Integration, &ctx.tenant, &id).await?;
        let mut row = store::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        if let Some(v) = if_match.or(req.version) {
            if v != row.version {
                return Err(Error::conflict(
                    ErrorCode::VersionConflict,
                    format!("integration {id} is at version {}, not {v}", row.version),
                ));
            }
        }
        let provider = self.oauth_provider(&row.provider)?.clone();
        let old_version = row.version;
        if let Some(n) = &req.display_name {
            rekey_core::connection::validate_display_name(n)?;
            row.display_name = n.trim().into();
        }
        if let Some(c) = &req.client_id {
            row.client_id = c.clone();
        }
        if let Some(m) = &req.auth_method {
            row.auth_method = m.clone();
        }
        if let Some(k) = &req.key_id {
            row.key_id = Some(k.clone());
        }
        if let Some(s) = &req.scopes {
            row.scopes = rekey_core::connection::normalize_scopes(s)?;
        }
        if let Some(e) = &req.extra_authorize_params {
            row.extra_params = json!(e).to_string();
        }
        if let Some(p) = &req.params {
            row.params = json!(p).to_string();
        }
        if let Some(e) = &req.endpoints {
            row.endpoints = serde_json::to_string(e).map_err(Error::internal)?;
        }
        if let Some(r) = &req.redirect_uri {
            row.redirect_uri = Some(r.clone());
        }
        if let Some(t) = &req.tags {
            row.tags = rekey_core::connection::normalize_slugs("tags", t)?;
        }
        if let Some(c) = &req.custody {
            row.custody = rekey_core::connection::normalize_slugs("custody", c)?;
        }
        let new_secret = req.client_secret.is_some() || req.private_key_pem.is_some();
        if new_secret || req.auth_method.is_some() {
            let secret = self.validate_secret_for(
                &provider,
                &row,
                &req.client_secret,
                &req.private_key_pem,
            )?;
            row.credential_version += 1;
            self.write_integration_secret(&mut tx, &row, &secret)
                .await?;
            // A generated key waiting to be confirmed was for the old setup.
            secrets::delete_owner(tx.conn(), rotate_secret::PENDING_KIND, &row.id).await?;
        } else {
            let endpoints = Endpoints::parse(&row.endpoints);
            check_overrides(&self.outbound_policy(), &endpoints)?;
        }
        row.version += 1;
        row.updated_at = now_ms();
        if !store::update(tx.conn(), &row, old_version).await? {
            return Err(Error::conflict(
                ErrorCode::VersionConflict,
                format!("integration {id} was changed concurrently"),
            ));
        }
        record_ok(
            &mut tx,
            ctx,
            AuditAction::IntegrationUpdate,
            &id,
            json!({"secret_replaced": new_secret, "version": row.version, "tags": row.tags, "custody": row.custody}),
        )
        .await?;
        tx.commit().await?;
        Ok(Integration::new(row, &self.default_redirect_uri()))
    }

    pub async fn delete_integration(&self, ctx: &Ctx, id: &str) -> Result<(), Error> {
        let id = ids::parse_id(INTEGRATION_PREFIX, id)?;
        let mut tx = self.store().begin_write().await?;
        store::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        let n = store::connections_using(tx.conn(), &ctx.tenant, &id).await?;
        if n > 0 {
            return Err(Error::conflict(
                ErrorCode::IntegrationInUse,
                format!("{n} connections use integration {id}; delete or move them first"),
            ));
        }
        secrets::delete_owner(tx.conn(), OWNER_KIND, &id).await?;
        secrets::delete_owner(tx.conn(), rotate_secret::PENDING_KIND, &id).await?;
        store::delete(tx.conn(), &ctx.tenant, &id).await?;
        record_ok(&mut tx, ctx, AuditAction::IntegrationDelete, &id, json!({})).await?;
        tx.commit().await
    }

    /// The client credentials of an integration (decrypted, not audited as a
    /// credential read: it never leaves the process).
    pub(crate) async fn client_auth(&self, row: &IntegrationRow) -> Result<ClientAuth, Error> {
        let mut rows = {
            let mut c = self.store().read().await?;
            secrets::for_owner(&mut c, OWNER_KIND, &row.id).await?
        };
        // The secret changed after `row` was read (a PATCH of the client
        // secret): read the row and its secret again, in one snapshot.
        let fresh;
        let mut row = row;
        if rows.iter().any(|s| s.version != row.credential_version) {
            let mut tx = self.store().begin_snapshot().await?;
            fresh = store::get(&mut tx, &row.tenant, &row.id)
                .await?
                .ok_or_else(|| not_found(&row.id))?;
            rows = secrets::for_owner(&mut tx, OWNER_KIND, &row.id).await?;
            tx.commit().await?;
            row = &fresh;
        }
        let s = rows
            .first()
            .ok_or_else(|| Error::internal("integration has no stored secret"))?;
        let secret = crate::sealing::open_row(
            &*self.keyring()?,
            &aad(&row.tenant, &row.id, row.credential_version),
            s,
        )
        .map_err(|e| {
            Error::DecryptionFailed(format!(
                "client secret of integration {} failed to decrypt: {e}",
                row.id
            ))
        })??;
        Ok(ClientAuth {
            client_id: row.client_id.clone(),
            method: method_of(row)?,
            secret,
            key_id: row.key_id.clone(),
        })
    }
}

/// The parts of an integration that must be checked together.
#[derive(Clone, Copy)]
struct Fields<'a> {
    method: &'a str,
    secret: &'a Option<String>,
    pem: &'a Option<String>,
    params: &'a BTreeMap<String, String>,
    scopes: &'a [String],
    endpoints: &'a Endpoints,
    redirect: &'a Option<String>,
}

fn provider_has_all_overrides(e: &Endpoints) -> bool {
    e.token_url.is_some() || e.issuer.is_some()
}

/// The stored integration's client authentication method.
fn method_of(row: &IntegrationRow) -> Result<ClientAuthMethod, Error> {
    ClientAuthMethod::parse(&row.auth_method)
        .ok_or_else(|| Error::internal("stored auth method unknown"))
}

fn not_found(id: &str) -> Error {
    Error::not_found(ErrorCode::IntegrationNotFound, format!("integration {id}"))
}
