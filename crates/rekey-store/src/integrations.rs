use crate::json_list;
use crate::rows::{self, JsonList, TenantScoped};
use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

/// An OAuth app registration. The client secret / private key lives in `secrets`.
#[derive(Debug, Clone, FromRow)]
pub struct IntegrationRow {
    pub id: String,
    pub tenant: String,
    pub provider: String,
    pub display_name: String,
    pub client_id: String,
    pub auth_method: String,
    pub key_id: Option<String>,
    #[sqlx(try_from = "JsonList")]
    pub scopes: Vec<String>,
    /// JSON object of extra authorize parameters.
    pub extra_params: String,
    /// JSON object of URL placeholder values.
    pub params: String,
    /// JSON object of endpoint overrides.
    pub endpoints: String,
    pub redirect_uri: Option<String>,
    /// Sorted, unique slugs; also one row each in `integration_tags`.
    #[sqlx(try_from = "JsonList")]
    pub tags: Vec<String>,
    /// Where copies of the client secret live; also in `integration_custody`.
    #[sqlx(try_from = "JsonList")]
    pub custody: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
    pub credential_version: i64,
}

const COLS: &str = "id, tenant, provider, display_name, client_id, auth_method, key_id, scopes, extra_params, params, endpoints, redirect_uri, created_at, updated_at, version, credential_version, tags, custody";

impl TenantScoped for IntegrationRow {
    const TABLE: &'static str = "integrations";
    const COLUMNS: &'static str = COLS;
}

pub async fn insert(c: &mut AnyConnection, i: &IntegrationRow) -> Result<(), Error> {
    sqlx::query(&format!("INSERT INTO integrations ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"))
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
        .bind(json_list(&i.tags))
        .bind(json_list(&i.custody))
        .execute(&mut *c)
        .await?;
    write_sets(c, i).await
}

/// The tag and custody side rows, rewritten from the row's lists.
async fn write_sets(c: &mut AnyConnection, i: &IntegrationRow) -> Result<(), Error> {
    for table in ["integration_tags", "integration_custody"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE integration_id = $1"))
            .bind(&i.id)
            .execute(&mut *c)
            .await?;
    }
    for t in &i.tags {
        sqlx::query("INSERT INTO integration_tags (integration_id, tag) VALUES ($1, $2)")
            .bind(&i.id)
            .bind(t)
            .execute(&mut *c)
            .await?;
    }
    for p in &i.custody {
        sqlx::query("INSERT INTO integration_custody (integration_id, place) VALUES ($1, $2)")
            .bind(&i.id)
            .bind(p)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

pub async fn update(
    c: &mut AnyConnection,
    i: &IntegrationRow,
    expected_version: i64,
) -> Result<bool, Error> {
    let r = sqlx::query("UPDATE integrations SET display_name = $1, client_id = $2, auth_method = $3, key_id = $4, scopes = $5, extra_params = $6, params = $7, endpoints = $8, redirect_uri = $9, updated_at = $10, version = $11, credential_version = $12, tags = $13, custody = $14 WHERE id = $15 AND tenant = $16 AND version = $17")
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
        .bind(json_list(&i.tags))
        .bind(json_list(&i.custody))
        .bind(&i.id)
        .bind(&i.tenant)
        .bind(expected_version)
        .execute(&mut *c)
        .await?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    write_sets(c, i).await?;
    Ok(true)
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<IntegrationRow>, Error> {
    rows::get(c, tenant, id).await
}

pub async fn list(c: &mut AnyConnection, tenant: &str) -> Result<Vec<IntegrationRow>, Error> {
    rows::list(c, tenant).await
}

/// What `list_filtered` keeps: every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct IntegrationFilter {
    pub provider: Option<String>,
    pub tag: Option<String>,
    pub custody: Option<String>,
}

/// The tenant's integrations matching `f`, in id order (the side tables,
/// as for connections, so a filter is an indexed lookup).
pub async fn list_filtered(
    c: &mut AnyConnection,
    tenant: &str,
    f: &IntegrationFilter,
) -> Result<Vec<IntegrationRow>, Error> {
    let mut sql = format!("SELECT {COLS} FROM integrations WHERE tenant = $1");
    let mut args = vec![tenant.to_string()];
    for (v, clause) in [
        (&f.provider, " AND provider = $?"),
        (&f.tag, " AND EXISTS (SELECT 1 FROM integration_tags t WHERE t.integration_id = integrations.id AND t.tag = $?)"),
        (&f.custody, " AND EXISTS (SELECT 1 FROM integration_custody p WHERE p.integration_id = integrations.id AND p.place = $?)"),
    ] {
        if let Some(v) = v {
            args.push(v.clone());
            sql.push_str(&clause.replace("$?", &format!("${}", args.len())));
        }
    }
    sql.push_str(" ORDER BY id");
    let mut q = sqlx::query_as::<_, IntegrationRow>(&sql);
    for a in args {
        q = q.bind(a);
    }
    Ok(q.fetch_all(c).await?)
}

pub async fn delete(c: &mut AnyConnection, tenant: &str, id: &str) -> Result<bool, Error> {
    rows::delete::<IntegrationRow>(c, tenant, id).await
}

/// How many connections use this integration (the `integration_id` column,
/// which the store keeps equal to `credential_meta`'s `integration_id`).
pub async fn connections_using(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<i64, Error> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) AS n FROM connections WHERE tenant = $1 AND integration_id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_one(c)
    .await?;
    Ok(n)
}
