use crate::audit::record;
use crate::{Ctx, Rekey};
use rekey_api::CreateApiKey;
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::scope::{Scope, Scopes};
use rekey_core::ErrorCode;
use rekey_core::{ids, Error, SecretString};
use rekey_store::api_keys::{self, ApiKeyRow};
use serde_json::json;
use zeroize::Zeroizing;

/// A key just made: the token, shown once and never stored, and its row.
pub struct IssuedApiKey {
    pub key: Zeroizing<String>,
    pub row: ApiKeyRow,
}

/// A rotated key: the new one, and the old one as it is now stored.
pub struct RotatedApiKey {
    pub issued: IssuedApiKey,
    pub previous: ApiKeyRow,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub tenant: String,
    pub scopes: Scopes,
}

impl Principal {
    pub fn require(&self, s: Scope) -> Result<(), Error> {
        if self.scopes.allows(s) {
            Ok(())
        } else {
            Err(Error::MissingScope(s.as_str().to_string()))
        }
    }

    pub fn ctx(&self, request_id: Option<String>, source: Option<String>) -> Ctx {
        Ctx {
            tenant: self.tenant.clone(),
            // Dashboard sessions act as `user:<name>`.
            actor: if self.key_id.starts_with("user:") {
                self.key_id.clone()
            } else {
                format!("api_key:{}", self.key_id)
            },
            request_id,
            source,
        }
    }
}

/// A caller resolved from the credential fetch's key cache (or, on a
/// miss, from the database): not yet proven still active. Only
/// [`Rekey::read_credentials_cached`] acts on it as it is, proving the key
/// active in the transaction that audits the read; anything else asks
/// [`Rekey::confirm`] for a [`Principal`] first.
#[derive(Debug, Clone)]
pub struct CachedPrincipal {
    pub(crate) principal: Principal,
    pub(crate) key_hash: String,
}

impl CachedPrincipal {
    /// The audit context of a request by this caller.
    pub fn ctx(&self, request_id: Option<String>, source: Option<String>) -> Ctx {
        self.principal.ctx(request_id, source)
    }
}

const TOUCH_EVERY_MS: i64 = 60_000;

impl Rekey {
    /// Create an API key in `ctx.tenant`. The returned key is shown once.
    pub async fn create_api_key(
        &self,
        ctx: &Ctx,
        req: &CreateApiKey,
    ) -> Result<IssuedApiKey, Error> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(Error::invalid(
                ErrorCode::InvalidField,
                "`name` must be 1–100 printable characters",
            ));
        }
        ids::validate_slug("tenant", &ctx.tenant, 64)?;
        let scopes = Scopes::parse(&req.scopes)?;
        let key = rekey_crypto::generate_api_key();
        let row = ApiKeyRow {
            id: ids::new_id(ids::API_KEY),
            tenant: ctx.tenant.clone(),
            name: name.to_string(),
            scopes: scopes.as_strings(),
            created_at: rekey_core::time::now_ms(),
            created_by: ctx.actor.clone(),
            last_used_at: None,
            revoked_at: None,
            expires_at: None,
            rotated_from: None,
            rotated_to: None,
        };
        let mut tx = self.store().begin_write().await?;
        api_keys::insert(tx.conn(), &row, &rekey_crypto::hash_api_key(&key)).await?;
        record(
            &mut tx,
            ctx,
            AuditAction::ApiKeyCreate,
            Some(&row.id),
            AuditOutcome::Ok,
            json!({"name": row.name, "scopes": row.scopes}),
        )
        .await?;
        tx.commit().await?;
        Ok(IssuedApiKey { key, row })
    }

    /// Resolve a bearer token. Unknown, malformed and revoked keys all give
    /// the same `unauthorized` answer.
    pub async fn authenticate(&self, token: &SecretString) -> Result<Principal, Error> {
        self.authenticate_hash(&token_hash(token)?).await
    }

    /// [`Rekey::authenticate`] through the credential fetch's key cache:
    /// a hit costs no database read, and is proven at commit (see
    /// [`CachedPrincipal`]).
    pub async fn authenticate_cached(
        &self,
        token: &SecretString,
    ) -> Result<CachedPrincipal, Error> {
        let key_hash = token_hash(token)?;
        if let Some(principal) = self.inner.hot.key(&key_hash) {
            return Ok(CachedPrincipal {
                principal,
                key_hash,
            });
        }
        let principal = self.authenticate_hash(&key_hash).await?;
        self.inner.hot.put_key(&key_hash, principal.clone());
        Ok(CachedPrincipal {
            principal,
            key_hash,
        })
    }

    /// The cached caller, proven active now against the database (and
    /// dropped from the cache when it is not).
    pub async fn confirm(&self, cp: &CachedPrincipal) -> Result<Principal, Error> {
        let res = self.authenticate_hash(&cp.key_hash).await;
        if res.is_err() {
            self.inner.hot.forget_key(&cp.key_hash);
        }
        res
    }

    async fn authenticate_hash(&self, hash: &str) -> Result<Principal, Error> {
        let row = {
            let mut c = self.store().read().await?;
            api_keys::find_active_by_hash(&mut c, hash, rekey_core::time::now_ms()).await?
        }
        .ok_or(Error::Unauthorized)?;
        let scopes = Scopes::parse(&row.scopes).map_err(|_| Error::Unauthorized)?;
        self.touch(&row.id).await;
        Ok(Principal {
            key_id: row.id,
            tenant: row.tenant,
            scopes,
        })
    }

    /// Best effort: a failure to record last use must not fail the request.
    pub(crate) async fn touch(&self, key_id: &str) {
        let now = rekey_core::time::now_ms();
        {
            let Ok(mut m) = self.inner.touched.lock() else {
                return;
            };
            match m.get(key_id) {
                Some(t) if now - *t < TOUCH_EVERY_MS => return,
                _ => {
                    m.insert(key_id.to_string(), now);
                }
            }
        }
        let res = async {
            let mut tx = self.store().begin_write().await?;
            api_keys::touch(tx.conn(), key_id, now).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, key_id, "could not record API key use");
        }
    }

    pub async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRow>, Error> {
        let mut c = self.store().read().await?;
        api_keys::list(&mut c, tenant).await
    }

    pub async fn revoke_api_key(&self, ctx: &Ctx, id: &str) -> Result<ApiKeyRow, Error> {
        let id = ids::parse_id(ids::API_KEY, id)?;
        let mut tx = self.store().begin_write().await?;
        let not_found = || Error::not_found(ErrorCode::ApiKeyNotFound, format!("API key {id}"));
        let row = api_keys::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(not_found)?;
        if row.revoked_at.is_some() {
            return Err(Error::conflict(
                ErrorCode::AlreadyRevoked,
                format!("API key {id} is already revoked"),
            ));
        }
        let now = rekey_core::time::now_ms();
        api_keys::revoke(tx.conn(), &ctx.tenant, &id, now).await?;
        record(
            &mut tx,
            ctx,
            AuditAction::ApiKeyRevoke,
            Some(&id),
            AuditOutcome::Ok,
            json!({"name": row.name}),
        )
        .await?;
        tx.commit().await?;
        let mut c = self.store().read().await?;
        let row = api_keys::get(&mut c, &ctx.tenant, &id)
            .await?
            .ok_or_else(not_found)?;
        Ok(row)
    }

    /// Replace an API key with a new one of the same name and scopes (shown
    /// once). The old key keeps working for `grace` (default one hour, at
    /// most 30 days) so its users can switch, or stops at once with a zero
    /// grace. A key already revoked, rotated or expired: 409.
    pub async fn rotate_api_key(
        &self,
        ctx: &Ctx,
        id: &str,
        grace: Option<std::time::Duration>,
    ) -> Result<RotatedApiKey, Error> {
        let id = ids::parse_id(ids::API_KEY, id)?;
        let grace = grace.unwrap_or(rekey_core::versions::DEFAULT_GRACE);
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let now = rekey_core::time::now_ms();
        let mut tx = self.store().begin_write().await?;
        let not_found = || Error::not_found(ErrorCode::ApiKeyNotFound, format!("API key {id}"));
        let old = api_keys::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(not_found)?;
        if old.revoked_at.is_some() {
            return Err(Error::conflict(
                ErrorCode::AlreadyRevoked,
                format!("API key {id} is revoked; create a new key instead"),
            ));
        }
        if old.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::conflict(
                ErrorCode::ApiKeyExpired,
                format!("API key {id} has expired; create a new key instead"),
            ));
        }
        if let Some(to) = &old.rotated_to {
            return Err(Error::conflict(
                ErrorCode::AlreadyRotated,
                format!("API key {id} was already rotated (to {to}); rotate that one"),
            ));
        }
        let key = rekey_crypto::generate_api_key();
        let new = ApiKeyRow {
            id: ids::new_id(ids::API_KEY),
            tenant: ctx.tenant.clone(),
            name: old.name.clone(),
            scopes: old.scopes.clone(),
            created_at: now,
            created_by: ctx.actor.clone(),
            last_used_at: None,
            revoked_at: None,
            expires_at: None,
            rotated_from: Some(old.id.clone()),
            rotated_to: None,
        };
        api_keys::insert(tx.conn(), &new, &rekey_crypto::hash_api_key(&key)).await?;
        let expires_at = (grace_ms > 0).then(|| now.saturating_add(grace_ms));
        if !api_keys::mark_rotated(tx.conn(), &ctx.tenant, &id, &new.id, now, expires_at).await? {
            return Err(Error::conflict(
                ErrorCode::AlreadyRotated,
                format!("API key {id} was rotated or revoked meanwhile"),
            ));
        }
        record(
            &mut tx,
            ctx,
            AuditAction::ApiKeyRotate,
            Some(&id),
            AuditOutcome::Ok,
            json!({"name": old.name, "new_key": new.id, "grace_secs": grace_ms / 1000}),
        )
        .await?;
        tx.commit().await?;
        // The old key as now stored, built here: a failed read after the
        // commit must not lose the new key, which is shown only now.
        let previous = ApiKeyRow {
            rotated_to: Some(new.id.clone()),
            expires_at,
            revoked_at: expires_at.is_none().then_some(now),
            ..old
        };
        Ok(RotatedApiKey {
            issued: IssuedApiKey { key, row: new },
            previous,
        })
    }
}

/// The stored hash of a bearer token that looks like one of our keys.
fn token_hash(token: &SecretString) -> Result<String, Error> {
    let t = token.expose();
    if !t.starts_with(rekey_crypto::API_KEY_PREFIX) || t.len() > 200 {
        return Err(Error::Unauthorized);
    }
    Ok(rekey_crypto::hash_api_key(t))
}
