use crate::json_list;
use crate::rows::{self, JsonList, TenantScoped};
use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub tenant: String,
    pub name: String,
    #[sqlx(try_from = "JsonList")]
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub created_by: String,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// After a rotation with a grace: when this key stops working.
    pub expires_at: Option<i64>,
    /// The key this one replaced.
    pub rotated_from: Option<String>,
    /// The key that replaced this one.
    pub rotated_to: Option<String>,
}

const COLS: &str = "id, tenant, name, scopes, created_at, created_by, last_used_at, revoked_at, expires_at, rotated_from, rotated_to";

impl TenantScoped for ApiKeyRow {
    const TABLE: &'static str = "api_keys";
    const COLUMNS: &'static str = COLS;
}

pub async fn insert(c: &mut AnyConnection, row: &ApiKeyRow, key_hash: &str) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant, name, scopes, key_hash, created_at, created_by, rotated_from) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&row.id)
    .bind(&row.tenant)
    .bind(&row.name)
    .bind(json_list(&row.scopes))
    .bind(key_hash)
    .bind(row.created_at)
    .bind(&row.created_by)
    .bind(&row.rotated_from)
    .execute(c)
    .await?;
    Ok(())
}

/// The active key with this hash: not revoked, and not past the end of
/// its grace after a rotation at `now`.
pub async fn find_active_by_hash(
    c: &mut AnyConnection,
    key_hash: &str,
    now: i64,
) -> Result<Option<ApiKeyRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)"
    ))
    .bind(key_hash)
    .bind(now)
    .fetch_optional(c)
    .await?)
}

/// Mark `id` replaced by `to`: revoked at `now` without a grace, else
/// expiring at `expires_at`. Only a key not yet revoked, rotated or
/// expired; false when it was (a concurrent rotation won).
pub async fn mark_rotated(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    to: &str,
    now: i64,
    expires_at: Option<i64>,
) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE api_keys SET rotated_to = $1, expires_at = $2, revoked_at = $3 \
         WHERE tenant = $4 AND id = $5 AND revoked_at IS NULL AND rotated_to IS NULL AND (expires_at IS NULL OR expires_at > $6)",
    )
    .bind(to)
    .bind(expires_at)
    .bind(expires_at.is_none().then_some(now))
    .bind(tenant)
    .bind(id)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<ApiKeyRow>, Error> {
    rows::get(c, tenant, id).await
}

pub async fn list(c: &mut AnyConnection, tenant: &str) -> Result<Vec<ApiKeyRow>, Error> {
    rows::list(c, tenant).await
}

pub async fn revoke(c: &mut AnyConnection, tenant: &str, id: &str, at: i64) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE tenant = $2 AND id = $3 AND revoked_at IS NULL",
    )
    .bind(at)
    .bind(tenant)
    .bind(id)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn touch(c: &mut AnyConnection, id: &str, at: i64) -> Result<(), Error> {
    sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}
