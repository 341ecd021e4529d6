use crate::json_list;
use crate::rows::{self, AnyQuery, JsonList, TenantScoped};
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

/// The columns every write sets, in the order [`bind_written`] binds them.
const WRITTEN: &str = "display_name, client_id, auth_method, key_id, scopes, extra_params, params, endpoints, redirect_uri, updated_at, version, credential_version, tags, custody";

fn bind_written<'q>(q: AnyQuery<'q>, i: &'q IntegrationRow) -> AnyQuery<'q> {
    q.bind(&i.display_name)
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
}

pub async fn insert(c: &mut AnyConnection, i: &IntegrationRow) -> Result<(), Error> {
    let columns = format!("id, tenant, provider, created_at, {WRITTEN}");
    let sql = rows::insert_sql("integrations", &columns);
    let q = sqlx::query(&sql)
        .bind(&i.id)
        .bind(&i.tenant)
        .bind(&i.provider)
        .bind(i.created_at);
    bind_written(q, i).execute(&mut *c).await?;
    write_sets(c, i).await
}

/// The tag and custody side rows, rewritten from the row's lists.
async fn write_sets(c: &mut AnyConnection, i: &IntegrationRow) -> Result<(), Error> {
    rows::write_labels(c, "integration", &i.id, &i.tags, &i.custody).await
}

pub async fn update(
    c: &mut AnyConnection,
    i: &IntegrationRow,
    expected_version: i64,
) -> Result<bool, Error> {
    let sql = rows::versioned_update_sql("integrations", WRITTEN);
    let q = bind_written(sqlx::query(&sql), i);
    if !rows::run_versioned_update(q, &mut *c, &i.tenant, &i.id, expected_version).await? {
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

/// The kinds of the connections that use integration `id` (each once).
pub async fn connection_kinds_using(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Vec<String>, Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT kind FROM connections WHERE tenant = $1 AND integration_id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(c)
    .await?;
    Ok(rows.into_iter().map(|(k,)| k).collect())
}
