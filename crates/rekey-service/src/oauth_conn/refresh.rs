//! Fresh access tokens: on-demand refresh (single-flight per connection),
//! the scheduler's refresh pass, and what `credentials:read` returns.

use super::{
    had_recent_refresh, in_backoff, integration_of, meta_of, needs_refresh, RefreshRun,
    KEEPALIVE_MS,
};
use crate::audit::{record, record_ok};
use crate::connect::{access_expiry, token_material};
use crate::connection_rows::not_found;
use crate::status::{apply_observation, status_changed, Observation};
use crate::webhooks::emit;
use crate::{Connection, Ctx, Rekey};
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::{ConnectionKind, Status};
use rekey_core::events::EventType;
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::ErrorCode;
use rekey_core::{ids, Error, SecretString};
use rekey_oauth::{OAuthError, Severity, TokenSet};
use rekey_store::connections::{self as conns, ConnectionRow};
use rekey_store::Backend;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

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
                    tracing::warn!(connection = %id, code = %e.code(), "scheduled refresh failed");
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

    /// How `provider`'s API wants an access token presented: the catalog's
    /// prefix for it (Zoho: "Zoho-oauthtoken "), else "Bearer ".
    pub(crate) fn authorization_prefix(&self, provider: &str) -> String {
        self.catalog()
            .get(provider)
            .and_then(|p| p.oauth.as_ref())
            .and_then(|o| o.authorization_prefix.clone())
            .unwrap_or_else(|| "Bearer ".to_string())
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
                .access_expires_at
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
                record(&mut tx, ctx, AuditAction::ConnectionRefreshFailed, Some(id), AuditOutcome::Error, json!({
                    "error": e.code(), "status_from": row.status.as_str(), "status_to": r.status.as_str(),
                })).await?;
                emit(&mut tx, &ctx.tenant, EventType::ConnectionRefreshFailed, json!({
                    "connection_id": id, "provider": r.provider, "display_name": r.display_name,
                    "status": r.status.as_str(), "consecutive_failures": r.consecutive_failures,
                    "error": {"code": obs.code, "message": obs.message, "http_status": obs.http_status},
                })).await?;
                let still_valid = meta_of(&row)
                    .access_expires_at
                    .is_some_and(|exp| exp > now + 5_000);
                match e.severity() {
                    // A transient failure with a token that still works: hand it out.
                    Severity::Transient | Severity::Invalid if still_valid => Ok((r, s)),
                    Severity::Auth => Err(Error::conflict(
                        ErrorCode::NeedsReauth,
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
        let (mut meta, mut fresh) = token_material(integration_id, &tokens, now, meta_of(&row));
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
        meta.has_refresh_token = Some(fresh.contains_key("refresh_token"));
        meta.last_refreshed_at = Some(now);
        let meta = meta.to_column();
        let expires_at = access_expiry(&tokens, now);
        let mut base = row.clone();
        let (r, from, recovered) = loop {
            let (r, from, recovered) = refreshed(&base, &meta, expires_at, now);
            if conns::update(tx.conn(), &r, base.version).await? {
                break (r, from, recovered);
            }
            // The row moved while the provider answered (on SQLite nothing
            // is locked across the call: a health check, a rename). The
            // tokens are issued and, where the provider rotates refresh
            // tokens, the stored one is already dead: they are kept on the
            // row as it is now, so long as its credential is the one that
            // was refreshed and it is still in service. Under the write
            // lock the row cannot move again, so this runs at most twice.
            let current = conns::get(tx.conn(), &row.tenant, &row.id).await?;
            match current {
                Some(cur)
                    if base.version == row.version
                        && cur.credential_version == row.credential_version
                        && cur.credential_meta == row.credential_meta
                        && !cur.status.is_out_of_service() =>
                {
                    base = cur;
                }
                _ => {
                    return Err(Error::conflict(
                        ErrorCode::VersionConflict,
                        format!("connection {} changed during refresh", row.id),
                    ))
                }
            }
        };
        let failures = base.consecutive_failures;
        // Access token and rotated refresh token land in the same transaction.
        self.write_secrets(tx, &r, &fresh).await?;
        record_ok(tx, ctx, AuditAction::ConnectionRefreshed, &row.id, json!({
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
                EventType::ConnectionRefreshed,
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
        self.oauth_view(&row, &s)
    }

    /// Whether `row`'s access token can be handed out as it is (no
    /// refresh due): what the credential fetch's cached path serves.
    pub(crate) async fn oauth_fresh(&self, row: &ConnectionRow) -> bool {
        !needs_refresh(row, self.window_ms(row).await, now_ms())
    }

    /// The material of an OAuth connection from its row and opened secrets.
    pub(crate) fn oauth_view(
        &self,
        row: &ConnectionRow,
        s: &BTreeMap<String, SecretString>,
    ) -> Result<(i64, Value), Error> {
        let at = s
            .get("access_token")
            .ok_or_else(|| Error::internal("OAuth connection without access token"))?;
        let m = meta_of(row);
        let token_type = m.token_type.as_deref().unwrap_or("Bearer");
        let prefix = self.authorization_prefix(&row.provider);
        Ok((
            row.credential_version,
            json!({
                "access_token": at.expose(),
                "token_type": token_type,
                "expires_at": m.access_expires_at.map(ms_to_rfc3339),
                "scopes": row.scopes,
                "apply": {"headers": {"Authorization": format!("{prefix}{}", at.expose())}},
            }),
        ))
    }

    /// `POST /connections/{id}/refresh`: refresh now, whatever the expiry.
    pub async fn refresh_connection(&self, ctx: &Ctx, id: &str) -> Result<Connection, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let row = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &ctx.tenant, &id)
                .await?
                .ok_or_else(|| not_found(&id))?
        };
        if row.kind.is_static() {
            return Err(Error::unprocessable(
                ErrorCode::NotOauth,
                format!("connection {id} has static credentials; nothing to refresh"),
            ));
        }
        // A revoked (or disabled) grant is not kept alive: refreshing it
        // would mint new tokens from a refresh token meant to be dead.
        if row.status.is_out_of_service() {
            return Err(Error::conflict(
                ErrorCode::ConnectionUnusable,
                format!("connection {id} is {}; it is not refreshed", row.status),
            ));
        }
        let (row, _) = self.fresh_oauth(ctx, &id, true).await?;
        Ok(row.into())
    }
}

/// `base` with a refresh's outcome applied: the new material's metadata
/// and expiry, a new credential version, the failures cleared and a
/// connection that was failing back to active; the status it had, and
/// whether it recovered.
fn refreshed(
    base: &ConnectionRow,
    meta: &str,
    expires_at: Option<i64>,
    now: i64,
) -> (ConnectionRow, Status, bool) {
    let mut r = base.clone();
    let from = r.status;
    let recovered = matches!(
        from,
        Status::Degraded | Status::Pending | Status::NeedsReauth
    ) && from.can_transition(Status::Active);
    if recovered {
        r.status = Status::Active;
    }
    r.last_error = None;
    r.last_ok_at = Some(now);
    r.consecutive_failures = 0;
    r.first_failed_at = None;
    r.credential_meta = meta.to_string();
    r.expires_at = expires_at;
    r.credential_version += 1;
    r.version += 1;
    r.updated_at = now;
    (r, from, recovered)
}
