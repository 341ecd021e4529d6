//! OAuth connections at run time: handing out fresh access tokens (refresh
//! on demand, single-flight), client-credentials tokens, revocation, and
//! reauthorization.

use crate::audit::record;
use crate::connect::{access_expiry, revocable, token_material};
use crate::connections::not_found;
use crate::health::{apply_observation, status_changed, Observation};
use crate::webhooks::emit;
use crate::{Ctx, Rekey};
use rekey_api::{ConnectionView, CreateConnectSession, ReauthorizeResult, RevokeResult};
use rekey_core::connection::{ConnectionKind, Status};
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::{ids, Error, SecretString};
use rekey_oauth::{OAuthError, Severity, TokenSet};
use rekey_store::connections::{self as conns, ConnectionRow};
use rekey_store::Backend;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

fn meta_of(row: &ConnectionRow) -> Map<String, Value> {
    serde_json::from_str(&row.credential_meta).unwrap_or_default()
}

fn integration_of(row: &ConnectionRow) -> Result<String, Error> {
    meta_of(row)
        .get("integration_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::internal(format!("OAuth connection {} has no integration", row.id)))
}

/// Whether the access token should be renewed now.
fn needs_refresh(row: &ConnectionRow, window_ms: i64, now: i64) -> bool {
    let m = meta_of(row);
    match m.get("access_expires_at").and_then(Value::as_i64) {
        Some(exp) => exp - now <= window_ms,
        // No expiry given: tokens live until revoked.
        None => false,
    }
}

/// While a transient failure's backoff runs, don't call the provider again.
fn in_backoff(row: &ConnectionRow, now: i64) -> Option<i64> {
    if row.status != Status::Degraded {
        return None;
    }
    let err: Value = serde_json::from_str(row.last_error.as_deref()?).ok()?;
    // A probe's failure (an API rate limit, say) must not hold refreshes back.
    if err.get("source").and_then(Value::as_str) == Some("check") {
        return None;
    }
    let retry_at = err.get("retry_at").and_then(Value::as_i64)?;
    (retry_at > now).then_some(retry_at)
}

/// What one pass of the refresh scheduler did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshRun {
    pub due: usize,
    pub refreshed: usize,
    pub failed: usize,
}

/// Keep idle grants alive at least this often (providers whose refresh
/// tokens die when unused).
const KEEPALIVE_MS: i64 = 24 * 3600 * 1000;

impl Rekey {
    /// One scheduler pass: refresh every OAuth connection whose token expires
    /// within its provider's window, and keep idle grants alive where the
    /// catalog says refresh tokens expire when unused.
    pub async fn refresh_due(&self, limit: i64) -> Result<RefreshRun, Error> {
        let now = now_ms();
        let max_window = self
            .catalog()
            .all()
            .filter_map(|p| {
                p.oauth
                    .as_ref()
                    .map(|o| o.refresh_window_secs as i64 * 1000)
            })
            .max()
            .unwrap_or(900_000);
        let due = {
            let mut c = self.store().read().await?;
            conns::oauth_due(&mut c, now + max_window, now - KEEPALIVE_MS, limit).await?
        };
        let mut run = RefreshRun {
            due: due.len(),
            ..Default::default()
        };
        for (tenant, id) in due {
            let ctx = Ctx {
                tenant: tenant.clone(),
                actor: "system:refresh".into(),
                request_id: None,
                source: None,
            };
            let row = {
                let mut c = self.store().read().await?;
                match conns::get(&mut c, &tenant, &id).await? {
                    Some(r) => r,
                    None => continue,
                }
            };
            if in_backoff(&row, now).is_some() {
                continue;
            }
            let window = self.window_ms(&row).await;
            let expiring = row.expires_at.is_some_and(|e| e - now <= window);
            let idle_keepalive = !expiring
                && row.kind == ConnectionKind::OAuth2AuthorizationCode
                && now - row.updated_at >= KEEPALIVE_MS
                && self
                    .catalog()
                    .get(&row.provider)
                    .and_then(|p| p.oauth.as_ref())
                    .is_some_and(|o| o.refresh_token_idle_days.is_some());
            if !expiring && !idle_keepalive {
                continue;
            }
            match self.fresh_oauth(&ctx, &id, idle_keepalive).await {
                Ok(_) => run.refreshed += 1,
                Err(e) => {
                    run.failed += 1;
                    tracing::warn!(connection = %id, code = e.code(), "scheduled refresh failed");
                }
            }
        }
        Ok(run)
    }

    fn refresh_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = match self.inner.refresh_locks.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(id.to_string()).or_default().clone()
    }

    async fn window_ms(&self, row: &ConnectionRow) -> i64 {
        self.catalog()
            .get(&row.provider)
            .and_then(|p| p.oauth.as_ref())
            .map(|o| o.refresh_window_secs as i64 * 1000)
            .unwrap_or(900_000)
    }

    /// Return the connection and its secrets with an access token that is
    /// not about to expire, refreshing (or re-requesting, for client
    /// credentials) first when needed. At most one refresh per connection
    /// runs at a time: in-process by a mutex, across replicas by a row lock.
    pub(crate) async fn fresh_oauth(
        &self,
        ctx: &Ctx,
        id: &str,
        force: bool,
    ) -> Result<(ConnectionRow, BTreeMap<String, SecretString>), Error> {
        let (row, s) = self.load_with_secrets(&ctx.tenant, id).await?;
        let window = self.window_ms(&row).await;
        if !force && !needs_refresh(&row, window, now_ms()) {
            return Ok((row, s));
        }
        let lock = self.refresh_lock(id);
        let _guard = lock.lock().await;
        // PostgreSQL: hold the connection's row lock across the provider call
        // so refreshers on other replicas wait and then see our result.
        // SQLite is single-process: the mutex above is enough, and its write
        // lock must not be held during network calls.
        let pg_tx = if self.store().backend() == Backend::Postgres {
            let mut tx = self.store().begin_write().await?;
            conns::lock_row(tx.conn(), &ctx.tenant, id).await?;
            Some(tx)
        } else {
            None
        };
        // Someone may have refreshed while we waited.
        let (row, s) = self.load_with_secrets(&ctx.tenant, id).await?;
        let now = now_ms();
        let fresh_enough = if force {
            had_recent_refresh(&row, now)
        } else {
            !needs_refresh(&row, window, now)
        };
        if fresh_enough {
            if let Some(tx) = pg_tx {
                tx.commit().await?;
            }
            return Ok((row, s));
        }
        if let (false, Some(retry_at)) = (force, in_backoff(&row, now)) {
            if let Some(tx) = pg_tx {
                tx.commit().await?;
            }
            let still_valid = meta_of(&row)
                .get("access_expires_at")
                .and_then(Value::as_i64)
                .is_some_and(|exp| exp > now + 5_000);
            if still_valid {
                return Ok((row, s));
            }
            return Err(Error::Unavailable(format!(
                "connection {id}: the provider failed recently; next attempt in {} s",
                (retry_at - now + 999) / 1000
            )));
        }
        let integ = self
            .integration_row(&row.tenant, &integration_of(&row)?)
            .await?;
        let resolved = self.resolve(&integ).await?;
        let auth = self.client_auth(&integ).await?;
        let result = match row.kind {
            ConnectionKind::OAuth2ClientCredentials => {
                rekey_oauth::client_credentials(
                    &self.inner.http,
                    &resolved.token_url,
                    &auth,
                    &row.scopes,
                    &resolved.spec.scope_separator,
                )
                .await
            }
            _ => match s.get("refresh_token") {
                Some(rt) => {
                    rekey_oauth::refresh(&self.inner.http, &resolved.token_url, &auth, rt).await
                }
                None => Err(OAuthError::Provider {
                    status: 400,
                    error: "invalid_grant".into(),
                    description: Some("no refresh token is stored; reauthorize".into()),
                }),
            },
        };
        let mut tx = match pg_tx {
            Some(tx) => tx,
            None => self.store().begin_write().await?,
        };
        let outcome = match result {
            Ok(tokens) => {
                let updated = self
                    .store_refreshed(&mut tx, ctx, row, s, &integ.id, tokens)
                    .await?;
                Ok(updated)
            }
            Err(e) => {
                let now = now_ms();
                // The provider's text may echo the grant or the client secret.
                let known: Vec<&str> = s
                    .values()
                    .map(|v| v.expose())
                    .chain([auth.secret.expose()])
                    .collect();
                let obs = Observation::from_oauth(&e, &known);
                let r = apply_observation(&mut tx, ctx, id, &obs, "refresh", false)
                    .await?
                    .unwrap_or_else(|| row.clone());
                record(&mut tx, ctx, "connection.refresh_failed", Some(id), "error", json!({
                    "error": e.code(), "status_from": row.status.as_str(), "status_to": r.status.as_str(),
                })).await?;
                emit(&mut tx, &ctx.tenant, "connection.refresh_failed", json!({
                    "connection_id": id, "provider": r.provider, "display_name": r.display_name,
                    "status": r.status.as_str(), "consecutive_failures": r.consecutive_failures,
                    "error": {"code": obs.code, "message": obs.message, "http_status": obs.http_status},
                })).await?;
                let still_valid = meta_of(&row)
                    .get("access_expires_at")
                    .and_then(Value::as_i64)
                    .is_some_and(|exp| exp > now + 5_000);
                match e.severity() {
                    // A transient failure with a token that still works: hand it out.
                    Severity::Transient | Severity::Invalid if still_valid => Ok((r, s)),
                    Severity::Auth => Err(Error::conflict(
                        "needs_reauth",
                        format!("connection {id} needs reauthorization: {}", obs.message),
                    )),
                    _ => Err(Error::Unavailable(format!(
                        "could not refresh connection {id}: {}",
                        obs.message
                    ))),
                }
            }
        };
        tx.commit().await?;
        outcome
    }

    async fn store_refreshed(
        &self,
        tx: &mut rekey_store::WriteTx,
        ctx: &Ctx,
        row: ConnectionRow,
        old: BTreeMap<String, SecretString>,
        integration_id: &str,
        tokens: TokenSet,
    ) -> Result<(ConnectionRow, BTreeMap<String, SecretString>), Error> {
        let now = now_ms();
        let prev = meta_of(&row);
        let (meta, mut fresh) = token_material(integration_id, &tokens, now, Value::Object(prev));
        // A response without refresh_token keeps the stored one: never wipe it.
        let rotated = tokens.refresh_token.is_some();
        if !rotated {
            if let Some(rt) = old.get("refresh_token") {
                fresh.insert("refresh_token".into(), rt.clone());
            }
        }
        // Keep a parked grant, if any.
        for (k, v) in &old {
            if k.starts_with("pending:") {
                fresh.insert(k.clone(), v.clone());
            }
        }
        let mut meta = meta;
        if let Some(m) = meta.as_object_mut() {
            m.insert(
                "has_refresh_token".into(),
                Value::Bool(fresh.contains_key("refresh_token")),
            );
            m.insert("last_refreshed_at".into(), json!(now));
        }
        let mut r = row.clone();
        let from = r.status;
        let recovered = matches!(
            from,
            Status::Degraded | Status::Pending | Status::NeedsReauth
        ) && from.can_transition(Status::Active);
        if recovered {
            r.status = Status::Active;
        }
        let failures = row.consecutive_failures;
        r.last_error = None;
        r.last_ok_at = Some(now);
        r.consecutive_failures = 0;
        r.first_failed_at = None;
        r.credential_meta = meta.to_string();
        r.expires_at = access_expiry(&tokens, now);
        r.credential_version += 1;
        r.version += 1;
        r.updated_at = now;
        if !conns::update(tx.conn(), &r, row.version).await? {
            return Err(Error::conflict(
                "version_conflict",
                format!("connection {} changed during refresh", row.id),
            ));
        }
        // Access token and rotated refresh token land in the same transaction.
        self.write_secrets(tx, &r, &fresh).await?;
        record(tx, ctx, "connection.refreshed", Some(&row.id), "ok", json!({
            "refresh_token_rotated": rotated, "recovered_from": if recovered { Some(from.as_str()) } else { None },
            "credential_version": r.credential_version,
        })).await?;
        if recovered {
            status_changed(tx, ctx, &r, from, "refresh", None).await?;
        }
        // Routine refreshes are not news; a refresh after failures is.
        if recovered || failures > 0 {
            emit(
                tx,
                &ctx.tenant,
                "connection.refreshed",
                json!({
                    "connection_id": r.id, "provider": r.provider, "display_name": r.display_name,
                    "recovered": true, "recovered_from": from.as_str(), "failures_before": failures,
                    "status": r.status.as_str(),
                }),
            )
            .await?;
        }
        Ok((r, fresh))
    }

    /// The material of an OAuth connection for a `credentials:read` caller.
    pub(crate) async fn oauth_material(
        &self,
        ctx: &Ctx,
        row: &ConnectionRow,
    ) -> Result<(i64, Value), Error> {
        let (row, s) = self.fresh_oauth(ctx, &row.id, false).await?;
        let at = s
            .get("access_token")
            .ok_or_else(|| Error::internal("OAuth connection without access token"))?;
        let m = meta_of(&row);
        let token_type = m
            .get("token_type")
            .and_then(Value::as_str)
            .unwrap_or("Bearer");
        // The catalog may say how the provider's API wants the token (Zoho: "Zoho-oauthtoken ").
        let prefix = self
            .catalog()
            .get(&row.provider)
            .and_then(|p| p.oauth.as_ref())
            .and_then(|o| o.authorization_prefix.clone())
            .unwrap_or_else(|| "Bearer ".to_string());
        Ok((
            row.credential_version,
            json!({
                "access_token": at.expose(),
                "token_type": token_type,
                "expires_at": m.get("access_expires_at").and_then(Value::as_i64).map(ms_to_rfc3339),
                "scopes": row.scopes,
                "apply": {"headers": {"Authorization": format!("{prefix}{}", at.expose())}},
            }),
        ))
    }

    /// `POST /connections/{id}/refresh`: refresh now, whatever the expiry.
    pub async fn refresh_connection(&self, ctx: &Ctx, id: &str) -> Result<ConnectionView, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let row = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &ctx.tenant, &id)
                .await?
                .ok_or_else(|| not_found(&id))?
        };
        if row.kind.is_static() {
            return Err(Error::unprocessable(
                "not_oauth",
                format!("connection {id} has static credentials; nothing to refresh"),
            ));
        }
        let (row, _) = self.fresh_oauth(ctx, &id, true).await?;
        Ok(crate::views::connection(&row))
    }

    /// Create a client-credentials (M2M) connection from an integration; the
    /// first token is requested now, which also proves the client works.
    pub(crate) async fn create_m2m(
        &self,
        ctx: &Ctx,
        req: &rekey_api::CreateConnection,
    ) -> Result<ConnectionView, Error> {
        let integ_id = req
            .credentials
            .get("integration")
            .and_then(Value::as_str)
            .filter(|_| req.credentials.as_object().is_some_and(|o| o.len() == 1))
            .ok_or_else(|| Error::invalid("invalid_credentials", "`credentials` must be {\"integration\": \"int_…\"} for oauth2_client_credentials"))?;
        let integ = self.integration_row(&ctx.tenant, integ_id).await?;
        if integ.provider != req.provider {
            return Err(Error::unprocessable(
                "integration_provider_mismatch",
                format!(
                    "integration {} is for provider `{}`",
                    integ.id, integ.provider
                ),
            ));
        }
        let resolved = self.resolve(&integ).await?;
        let auth = self.client_auth(&integ).await?;
        let scopes = if req.scopes.is_empty() {
            integ.scopes.clone()
        } else {
            rekey_core::connection::normalize_scopes(&req.scopes)?
        };
        let tokens = rekey_oauth::client_credentials(
            &self.inner.http,
            &resolved.token_url,
            &auth,
            &scopes,
            &resolved.spec.scope_separator,
        )
        .await
        .map_err(|e| {
            crate::oauth_error(e, |e| {
                Error::unprocessable(
                    "token_request_failed",
                    format!(
                        "the provider refused the client-credentials request: {}",
                        rekey_core::scrub::scrub_text(&e.to_string(), &[auth.secret.expose()])
                    ),
                )
            })
        })?;
        let now = now_ms();
        let (meta, s) = token_material(&integ.id, &tokens, now, Value::Null);
        let granted = rekey_oauth::granted_scopes(&tokens, None, &resolved.spec.scope_separator)
            .unwrap_or(scopes);
        rekey_core::connection::validate_display_name(&req.display_name)?;
        let row = ConnectionRow {
            id: ids::new_id(ids::CONNECTION),
            tenant: ctx.tenant.clone(),
            provider: integ.provider.clone(),
            kind: ConnectionKind::OAuth2ClientCredentials,
            display_name: req.display_name.trim().into(),
            owner: rekey_core::connection::Owner {
                subject: Some(integ.client_id.clone()),
                email: None,
                name: Some(integ.display_name.clone()),
            },
            scopes: granted,
            tags: rekey_core::connection::normalize_slugs("tags", &req.tags)?,
            custody: rekey_core::connection::normalize_slugs("custody", &req.custody)?,
            credential_meta: meta.to_string(),
            status: Status::Active,
            last_error: None,
            created_at: now,
            updated_at: now,
            rotated_at: None,
            expires_at: access_expiry(&tokens, now),
            version: 1,
            credential_version: 1,
            params: "{}".into(),
            probe_url: None,
            last_ok_at: None,
            last_checked_at: None,
            first_failed_at: None,
            consecutive_failures: 0,
        };
        let mut tx = self.store().begin_write().await?;
        conns::insert(tx.conn(), &row).await?;
        self.write_secrets(&mut tx, &row, &s).await?;
        record(
            &mut tx,
            ctx,
            "connection.create",
            Some(&row.id),
            "ok",
            json!({"provider": row.provider, "kind": row.kind.as_str(), "integration": integ.id}),
        )
        .await?;
        emit(
            &mut tx,
            &ctx.tenant,
            "connection.created",
            crate::webhooks::connection_data(&row),
        )
        .await?;
        tx.commit().await?;
        Ok(crate::views::connection(&row))
    }

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
            record(&mut tx, ctx, "connection.provider_revocation", Some(cid), if ok { "ok" } else { "error" },
                json!({"tokens": tokens.iter().map(|(h, _)| *h).collect::<Vec<_>>(), "error": res.as_ref().err().map(|e| e.code())})).await?;
            tx.commit().await
        };
        if let Err(e) = audit.await {
            tracing::error!(error = %e, "could not audit provider revocation");
        }
        ok
    }

    /// `POST /connections/{id}/revoke`.
    pub async fn revoke_connection(&self, ctx: &Ctx, id: &str) -> Result<RevokeResult, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let (row, s) = self.load_with_secrets(&ctx.tenant, &id).await?;
        if row.status == Status::Revoked {
            return Err(Error::conflict(
                "already_revoked",
                format!("connection {id} is already revoked"),
            ));
        }
        let provider = self.catalog().get(&row.provider).cloned();
        let manual_steps = provider
            .as_ref()
            .map(|p| p.revoke.steps.clone())
            .unwrap_or_default();
        let mut at_provider = false;
        if !row.kind.is_static() {
            let integ = integration_of(&row)?;
            let mut tokens = revocable(&s, "");
            tokens.extend(revocable(&s, "pending:"));
            at_provider = self.revoke_at_provider(ctx, &id, &integ, tokens).await;
        }
        if !at_provider && row.status == Status::RevokePending {
            return Ok(RevokeResult {
                connection: crate::views::connection(&row),
                revoked_at_provider: false,
                manual_steps,
            });
        }
        let to = if at_provider {
            Status::Revoked
        } else {
            Status::RevokePending
        };
        let view = self
            .move_status(ctx, &id, to, json!({"revoked_at_provider": at_provider}))
            .await?;
        Ok(RevokeResult {
            connection: view,
            revoked_at_provider: at_provider,
            manual_steps: if at_provider {
                Vec::new()
            } else {
                manual_steps
            },
        })
    }

    /// `POST /connections/{id}/revoke/confirm`: an operator did the manual step.
    pub async fn confirm_revocation(&self, ctx: &Ctx, id: &str) -> Result<ConnectionView, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let row = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &ctx.tenant, &id)
                .await?
                .ok_or_else(|| not_found(&id))?
        };
        if row.status != Status::RevokePending {
            return Err(Error::conflict(
                "not_revoke_pending",
                format!("connection {id} is `{}`, not revoke_pending", row.status),
            ));
        }
        self.move_status(
            ctx,
            &id,
            Status::Revoked,
            json!({"confirmed_manually": true}),
        )
        .await
    }

    async fn move_status(
        &self,
        ctx: &Ctx,
        id: &str,
        to: Status,
        details: Value,
    ) -> Result<ConnectionView, Error> {
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
                "version_conflict",
                format!("connection {id} changed concurrently"),
            ));
        }
        let action = match to {
            Status::Revoked => "connection.revoked",
            Status::RevokePending => "connection.revoke_pending",
            _ => "connection.status_change",
        };
        let mut d = details;
        if let Some(m) = d.as_object_mut() {
            m.insert("from".into(), from.as_str().into());
            m.insert("to".into(), to.as_str().into());
        }
        record(&mut tx, ctx, action, Some(id), "ok", d).await?;
        status_changed(&mut tx, ctx, &row, from, "operator", None).await?;
        if to == Status::Revoked {
            emit(
                &mut tx,
                &ctx.tenant,
                "connection.revoked",
                crate::webhooks::connection_data(&row),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(crate::views::connection(&row))
    }

    /// `POST /connections/{id}/reauthorize`: a connect session for the
    /// original authorizer, or (with `accept_mismatch`) switch to a parked grant.
    pub async fn reauthorize(
        &self,
        ctx: &Ctx,
        id: &str,
        accept_mismatch: bool,
    ) -> Result<ReauthorizeResult, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let (row, s) = self.load_with_secrets(&ctx.tenant, &id).await?;
        if row.kind.is_static() && !accept_mismatch {
            // Key-based: a Connect-page form for whoever holds the new key.
            let session = self
                .create_connect_session(
                    ctx,
                    CreateConnectSession {
                        owner_hint: row.owner.email.clone(),
                        reauthorize: Some(id.clone()),
                        ..Default::default()
                    },
                )
                .await?;
            return Ok(ReauthorizeResult {
                connection: crate::views::connection(&row),
                session: Some(session),
                accepted_pending_grant: false,
            });
        }
        if row.kind != ConnectionKind::OAuth2AuthorizationCode {
            return Err(Error::unprocessable(
                "not_oauth",
                format!("connection {id} has no OAuth grant to reauthorize or accept"),
            ));
        }
        let integ = integration_of(&row)?;
        if accept_mismatch {
            let mut meta = meta_of(&row);
            let pending = meta.remove("pending_grant").ok_or_else(|| {
                Error::conflict(
                    "no_pending_grant",
                    format!("connection {id} has no parked grant to accept"),
                )
            })?;
            let old_tokens = revocable(&s, "");
            let mut fresh = BTreeMap::new();
            for (k, v) in &s {
                if let Some(k) = k.strip_prefix("pending:") {
                    fresh.insert(k.to_string(), v.clone());
                }
            }
            let mut r = row.clone();
            let new_meta = pending.get("meta").cloned().unwrap_or(Value::Null);
            r.credential_meta = new_meta.to_string();
            r.owner.subject = pending
                .get("subject")
                .and_then(Value::as_str)
                .map(str::to_string);
            r.owner.email = pending
                .get("email")
                .and_then(Value::as_str)
                .map(str::to_string);
            r.owner.name = pending
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string);
            r.scopes = pending
                .get("scopes")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            r.expires_at = new_meta.get("access_expires_at").and_then(Value::as_i64);
            let status_before = r.status;
            if r.status.can_transition(Status::Active) {
                r.status = Status::Active;
            }
            r.last_error = None;
            r.consecutive_failures = 0;
            r.first_failed_at = None;
            r.credential_version += 1;
            r.version += 1;
            let now = now_ms();
            r.updated_at = now;
            r.rotated_at = Some(now);
            let mut tx = self.store().begin_write().await?;
            if !conns::update(tx.conn(), &r, row.version).await? {
                return Err(Error::conflict(
                    "version_conflict",
                    format!("connection {id} changed concurrently"),
                ));
            }
            self.write_secrets(&mut tx, &r, &fresh).await?;
            record(&mut tx, ctx, "connection.reauthorize_accepted", Some(&id), "ok", json!({
                "accepted_mismatch": true, "subject": r.owner.subject, "email": r.owner.email, "scopes": r.scopes,
            })).await?;
            if r.status != status_before {
                status_changed(&mut tx, ctx, &r, status_before, "reauthorization", None).await?;
            }
            let mut data = crate::webhooks::connection_data(&r);
            data["method"] = json!("accepted_pending_grant");
            emit(&mut tx, &ctx.tenant, "connection.reauthorized", data).await?;
            tx.commit().await?;
            self.revoke_at_provider(ctx, &id, &integ, old_tokens).await;
            return Ok(ReauthorizeResult {
                connection: crate::views::connection(&r),
                session: None,
                accepted_pending_grant: true,
            });
        }
        let session = self
            .create_connect_session(
                ctx,
                CreateConnectSession {
                    integration: Some(integ),
                    owner_hint: row.owner.email.clone().or(row.owner.subject.clone()),
                    reauthorize: Some(id.clone()),
                    ..Default::default()
                },
            )
            .await?;
        Ok(ReauthorizeResult {
            connection: crate::views::connection(&row),
            session: Some(session),
            accepted_pending_grant: false,
        })
    }
}

fn had_recent_refresh(row: &ConnectionRow, now: i64) -> bool {
    // A forced refresh that lands right after another one is the same refresh.
    meta_of(row)
        .get("last_refreshed_at")
        .and_then(Value::as_i64)
        .is_some_and(|t| now - t < 2_000)
}
