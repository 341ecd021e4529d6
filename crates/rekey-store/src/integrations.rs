use crate::{db_err, json_list, parse_list};
use rekey_core::Error;
use sqlx::{AnyConnection, Row};

/// An OAuth app registration. The client secret / private key lives in `secrets`.
#[derive(Debug, Clone)]
pub struct IntegrationRow {
    pub id: String,
    pub tenant: String,
    pub provider: String,
    pub display_name: String,
    pub client_id: String,
    pub auth_method: String,
    pub key_id: Option<String>,
    pub scopes: Vec<String>,
    /// JSON object of extra authorize parameters.
    pub extra_params: String,
    /// JSON object of URL placeholder values.
    pub params: String,
    /// JSON object of endpoint overrides.
    pub endpoints: String,
    pub redirect_uri: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
    pub credential_version: i64,
}

const COLS: &str = "id, tenant, provider, display_name, client_id, auth_method, key_id, scopes, extra_params, params, endpoints, redirect_uri, created_at, updated_at, version, credential_version";

fn from_row(r: &sqlx::any::AnyRow) -> Result<IntegrationRow, sqlx::Error> {
    Ok(IntegrationRow {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        provider: r.try_get("provider")?,
        display_name: r.try_get("display_name")?,
        client_id: r.try_get("client_id")?,
        auth_method: r.try_get("auth_method")?,
        key_id: r.try_get("key_id")?,
        scopes: parse_list(&r.try_get::<String, _>("scopes")?),
        extra_params: r.try_get("extra_params")?,
        params: r.try_get("params")?,
        endpoints: r.try_get("endpoints")?,
        redirect_uri: r.try_get("redirect_uri")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
        credential_version: r.try_get("credential_version")?,
    })
}

pub async fn insert(c: &mut AnyConnection, i: &IntegrationRow) -> Result<(), Error> {
    sqlx::query(&format!("INSERT INTO integrations ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"))
        .bind(&i.id)
        .bind(&i.tenant)
        .bind(&i.provider)
        .bind(&i.display_name)
        .bind(&i.client_id)
        .bind(&i.auth_method)
        .bind(&i.key_id)
        .bind(json_list(&i.scopes))
        .bind(&i.extra_params)
        .bind(&i.params)
        .bind(&i.endpoints)
        .bind(&i.redirect_uri)
        .bind(i.created_at)
        .bind(i.updated_at)
        .bind(i.version)
        .bind(i.credential_version)
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub async fn update(
    c: &mut AnyConnection,
    i: &IntegrationRow,
    expected_version: i64,
) -> Result<bool, Error> {
    let r = sqlx::query("UPDATE integrations SET display_name = $1, client_id = $2, auth_method = $3, key_id = $4, scopes = $5, extra_params = $6, params = $7, endpoints = $8, redirect_uri = $9, updated_at = $10, version = $11, credential_version = $12 WHERE id = $13 AND tenant = $14 AND version = $15")
        .bind(&i.display_name)
        .bind(&i.client_id)
        .bind(&i.auth_method)
        .bind(&i.key_id)
        .bind(json_list(&i.scopes))
        .bind(&i.extra_params)
        .bind(&i.params)
        .bind(&i.endpoints)
        .bind(&i.redirect_uri)
        .bind(i.updated_at)
        .bind(i.version)
        .bind(i.credential_version)
        .bind(&i.id)
        .bind(&i.tenant)
        .bind(expected_version)
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() == 1)
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<IntegrationRow>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLS} FROM integrations WHERE tenant = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(c)
    .await
    .map_err(db_err)?;
    row.as_ref().map(from_row).transpose().map_err(db_err)
}

pub async fn list(c: &mut AnyConnection, tenant: &str) -> Result<Vec<IntegrationRow>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLS} FROM integrations WHERE tenant = $1 ORDER BY id"
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

pub async fn delete(c: &mut AnyConnection, tenant: &str, id: &str) -> Result<bool, Error> {
    let r = sqlx::query("DELETE FROM integrations WHERE tenant = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() == 1)
}

/// How many connections use this integration (they reference it in credential_meta).
pub async fn connections_using(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<i64, Error> {
    let pattern = format!("%\"integration_id\":\"{id}\"%");
    let r = sqlx::query(
        "SELECT COUNT(*) AS n FROM connections WHERE tenant = $1 AND credential_meta LIKE $2",
    )
    .bind(tenant)
    .bind(pattern)
    .fetch_one(c)
    .await
    .map_err(db_err)?;
    r.try_get("n").map_err(db_err)
}
