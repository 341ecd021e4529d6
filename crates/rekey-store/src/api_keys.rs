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
}

const COLS: &str = "id, tenant, name, scopes, created_at, created_by, last_used_at, revoked_at";

impl TenantScoped for ApiKeyRow {
    const TABLE: &'static str = "api_keys";
    const COLUMNS: &'static str = COLS;
}

pub async fn insert(c: &mut AnyConnection, row: &ApiKeyRow, key_hash: &str) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant, name, scopes, key_hash, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&row.id)
    .bind(&row.tenant)
    .bind(&row.name)
    .bind(json_list(&row.scopes))
    .bind(key_hash)
    .bind(row.created_at)
    .bind(&row.created_by)
    .execute(c)
    .await?;
    Ok(())
}

/// The active (not revoked) key with this hash.
pub async fn find_active_by_hash(
    c: &mut AnyConnection,
    key_hash: &str,
) -> Result<Option<ApiKeyRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
    ))
    .bind(key_hash)
    .fetch_optional(c)
    .await?)
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
