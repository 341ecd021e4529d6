use crate::{db_err, json_list, parse_list};
use rekey_core::Error;
use sqlx::{AnyConnection, Row};

#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub created_by: String,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const COLS: &str = "id, tenant, name, scopes, created_at, created_by, last_used_at, revoked_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<ApiKeyRow, sqlx::Error> {
    Ok(ApiKeyRow {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        name: r.try_get("name")?,
        scopes: parse_list(&r.try_get::<String, _>("scopes")?),
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
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
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The active (not revoked) key with this hash.
pub async fn find_active_by_hash(
    c: &mut AnyConnection,
    key_hash: &str,
) -> Result<Option<ApiKeyRow>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
    ))
    .bind(key_hash)
    .fetch_optional(c)
    .await
    .map_err(db_err)?;
    row.as_ref().map(from_row).transpose().map_err(db_err)
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<ApiKeyRow>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLS} FROM api_keys WHERE tenant = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(c)
    .await
    .map_err(db_err)?;
    row.as_ref().map(from_row).transpose().map_err(db_err)
}

pub async fn list(c: &mut AnyConnection, tenant: &str) -> Result<Vec<ApiKeyRow>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLS} FROM api_keys WHERE tenant = $1 ORDER BY id"
    ))
    .bind(tenant)
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(from_row)
        .collect::<Result<_, _>>()
        .map_err(db_err)
}

pub async fn revoke(c: &mut AnyConnection, tenant: &str, id: &str, at: i64) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE tenant = $2 AND id = $3 AND revoked_at IS NULL",
    )
    .bind(at)
    .bind(tenant)
    .bind(id)
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(r.rows_affected() == 1)
}

pub async fn touch(c: &mut AnyConnection, id: &str, at: i64) -> Result<(), Error> {
    sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(())
}
