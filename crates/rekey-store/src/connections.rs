use crate::json_list;
use crate::rows::{self, AnyQuery, JsonList, Parsed, TenantScoped};
use rekey_core::connection::{ConnectionKind, Owner, Status};
use rekey_core::last_error::LastError;
use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct ConnectionRow {
    pub id: String,
    pub tenant: String,
    pub provider: String,
    #[sqlx(try_from = "Parsed<ConnectionKind>")]
    pub kind: ConnectionKind,
    pub display_name: String,
    #[sqlx(flatten, try_from = "OwnerColumns")]
    pub owner: Owner,
    #[sqlx(try_from = "JsonList")]
    pub scopes: Vec<String>,
    #[sqlx(try_from = "JsonList")]
    pub tags: Vec<String>,
    #[sqlx(try_from = "JsonList")]
    pub custody: Vec<String>,
    /// Non-secret credential fields (placement, username, fingerprints…), JSON object text.
    pub credential_meta: String,
    #[sqlx(try_from = "Parsed<Status>")]
    pub status: Status,
    /// JSON object text `{code, message, at, …}`.
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub rotated_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub version: i64,
    pub credential_version: i64,
    /// Values for the provider's URL placeholders, JSON object text.
    pub params: String,
    /// Overrides the catalog probe's URL (custom APIs, tests).
    pub probe_url: Option<String>,
    pub last_ok_at: Option<i64>,
    pub last_checked_at: Option<i64>,
    /// Start of the current run of failures; None while healthy.
    pub first_failed_at: Option<i64>,
    pub consecutive_failures: i64,
}

impl ConnectionRow {
    /// A new connection at version 1, created `now`, with nothing checked
    /// yet: callers fill in owner, scopes, labels and material.
    pub fn new(
        tenant: &str,
        provider: &str,
        kind: ConnectionKind,
        display_name: &str,
        status: Status,
        now: i64,
    ) -> ConnectionRow {
        ConnectionRow {
            id: rekey_core::ids::new_id(rekey_core::ids::CONNECTION),
            tenant: tenant.to_string(),
            provider: provider.to_string(),
            kind,
            display_name: display_name.to_string(),
            owner: Owner::default(),
            scopes: Vec::new(),
            tags: Vec::new(),
            custody: Vec::new(),
            credential_meta: "{}".into(),
            status,
            last_error: None,
            created_at: now,
            updated_at: now,
            rotated_at: None,
            expires_at: None,
            version: 1,
            credential_version: 1,
            params: "{}".into(),
            probe_url: None,
            last_ok_at: None,
            last_checked_at: None,
            first_failed_at: None,
            consecutive_failures: 0,
        }
    }

    /// The OAuth integration this connection's credential came from:
    /// `integration_id` at the top level of `credential_meta`. The store
    /// writes it into the `integration_id` column on every insert and update.
    pub fn integration_id(&self) -> Option<String> {
        integration_of_meta(&self.credential_meta)
    }

    /// `last_error` as a [`LastError`]: none when empty, or when the text
    /// is not one (see `LastError::from_column`).
    pub fn error_context(&self) -> Option<LastError> {
        LastError::from_column(self.last_error.as_deref())
    }
}

/// `integration_id` at the top level of a `credential_meta` JSON object, if
/// it is a string (the same rule as the column's backfill migration).
pub fn integration_of_meta(meta: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(meta).ok()?;
    v.get("integration_id")?.as_str().map(str::to_string)
}

/// The owner's three columns, decoded together into an [`Owner`].
#[doc(hidden)]
#[derive(FromRow)]
pub struct OwnerColumns {
    owner_subject: Option<String>,
    owner_email: Option<String>,
    owner_name: Option<String>,
}

impl From<OwnerColumns> for Owner {
    fn from(c: OwnerColumns) -> Self {
        Owner {
            subject: c.owner_subject,
            email: c.owner_email,
            name: c.owner_name,
        }
    }
}

const COLS: &str = "id, tenant, provider, kind, display_name, owner_subject, owner_email, owner_name, scopes, tags, custody, credential_meta, status, last_error, created_at, updated_at, rotated_at, expires_at, version, credential_version, params, probe_url, last_ok_at, last_checked_at, first_failed_at, consecutive_failures";

impl TenantScoped for ConnectionRow {
    const TABLE: &'static str = "connections";
    const COLUMNS: &'static str = COLS;
}

async fn write_sets(c: &mut AnyConnection, row: &ConnectionRow) -> Result<(), Error> {
    rows::write_labels(c, "connection", &row.id, &row.tags, &row.custody).await
}

/// The health columns, in the order [`bind_health`] binds them: all that
/// [`update_health`] writes.
const HEALTH: &str = "status, last_error, updated_at, version, last_ok_at, last_checked_at, first_failed_at, consecutive_failures";

fn bind_health<'q>(q: AnyQuery<'q>, row: &'q ConnectionRow) -> AnyQuery<'q> {
    q.bind(row.status.as_str())
        .bind(&row.last_error)
        .bind(row.updated_at)
        .bind(row.version)
        .bind(row.last_ok_at)
        .bind(row.last_checked_at)
        .bind(row.first_failed_at)
        .bind(row.consecutive_failures)
}

/// The columns every write sets besides [`HEALTH`], in the order
/// [`bind_written`] binds them (`integration_id` follows `credential_meta`).
const WRITTEN: &str = "display_name, owner_subject, owner_email, owner_name, scopes, tags, custody, credential_meta, rotated_at, expires_at, credential_version, params, probe_url, integration_id";

/// Binds [`WRITTEN`], then [`HEALTH`].
fn bind_written<'q>(q: AnyQuery<'q>, row: &'q ConnectionRow) -> AnyQuery<'q> {
    let q = q
        .bind(&row.display_name)
        .bind(&row.owner.subject)
        .bind(&row.owner.email)
        .bind(&row.owner.name)
        .bind(json_list(&row.scopes))
        .bind(json_list(&row.tags))
        .bind(json_list(&row.custody))
        .bind(&row.credential_meta)
        .bind(row.rotated_at)
        .bind(row.expires_at)
        .bind(row.credential_version)
        .bind(&row.params)
        .bind(&row.probe_url)
        .bind(row.integration_id());
    bind_health(q, row)
}

pub async fn insert(c: &mut AnyConnection, row: &ConnectionRow) -> Result<(), Error> {
    insert_many(c, std::slice::from_ref(row)).await
}

/// Insert new connections with their tag and custody rows, a few dozen
/// rows per statement (an import's batch is a handful of statements).
pub async fn insert_many(c: &mut AnyConnection, new: &[ConnectionRow]) -> Result<(), Error> {
    let columns = format!("id, tenant, provider, kind, created_at, {WRITTEN}, {HEALTH}");
    rows::insert_many(c, "connections", &columns, new, |q, row| {
        let q = q
            .bind(&row.id)
            .bind(&row.tenant)
            .bind(&row.provider)
            .bind(row.kind.as_str())
            .bind(row.created_at);
        bind_written(q, row)
    })
    .await?;
    let labels: Vec<(&str, &[String], &[String])> = new
        .iter()
        .map(|r| (r.id.as_str(), r.tags.as_slice(), r.custody.as_slice()))
        .collect();
    rows::insert_labels(c, "connection", &labels).await
}

/// Write every mutable column (and the tag and custody rows), but only if
/// the stored version is still `expected_version` (optimistic concurrency).
/// Returns false on a lost race. `integration_id` follows `credential_meta`.
pub async fn update(
    c: &mut AnyConnection,
    row: &ConnectionRow,
    expected_version: i64,
) -> Result<bool, Error> {
    let sql = rows::versioned_update_sql("connections", &format!("{WRITTEN}, {HEALTH}"));
    let q = bind_written(sqlx::query(&sql), row);
    if !rows::run_versioned_update(q, &mut *c, &row.tenant, &row.id, expected_version).await? {
        return Ok(false);
    }
    write_sets(c, row).await?;
    Ok(true)
}

/// Write only the health columns ([`HEALTH`]) of `row`, if the stored
/// version is still `expected_version`. Returns false on a lost race. For
/// the health checker, which changes nothing else: no other column, and no
/// tag or custody row, is rewritten.
pub async fn update_health(
    c: &mut AnyConnection,
    row: &ConnectionRow,
    expected_version: i64,
) -> Result<bool, Error> {
    let sql = rows::versioned_update_sql("connections", HEALTH);
    let q = bind_health(sqlx::query(&sql), row);
    rows::run_versioned_update(q, c, &row.tenant, &row.id, expected_version).await
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<ConnectionRow>, Error> {
    rows::get(c, tenant, id).await
}

pub async fn delete(c: &mut AnyConnection, tenant: &str, id: &str) -> Result<bool, Error> {
    rows::delete::<ConnectionRow>(c, tenant, id).await
}

#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub provider: Option<String>,
    /// Any of these providers (with `provider`, both must hold).
    pub providers: Vec<String>,
    pub kind: Option<ConnectionKind>,
    pub status: Option<Status>,
    pub tag: Option<String>,
    pub custody: Option<String>,
    /// Matches the owner's subject id or email (exact).
    pub owner: Option<String>,
    /// Case-insensitive substring of the display name, owner email or id.
    pub search: Option<String>,
    pub created_before: Option<i64>,
    /// Not rotated since: `coalesce(rotated_at, created_at) < t`.
    pub rotated_before: Option<i64>,
    /// Made through this OAuth integration.
    pub integration: Option<String>,
    /// Read successfully at or after this time (from the audit log).
    pub last_read_after: Option<i64>,
    /// In this campaign's frozen plan.
    pub campaign: Option<String>,
    /// Cursor: only ids greater than this.
    pub after_id: Option<String>,
    pub limit: i64,
}

/// The filter's `WHERE` clause and its arguments (`after_id` and `limit`
/// aside), shared by [`list`] and [`count`].
fn filter_clause(tenant: &str, f: &ConnectionFilter) -> (String, Vec<Arg>) {
    let mut sql = " WHERE tenant = $1".to_string();
    let mut args: Vec<Arg> = vec![Arg::S(tenant.to_string())];
    let mut push = |sql: &mut String, clause: &str, a: Arg| {
        args.push(a);
        sql.push_str(&clause.replace("$?", &format!("${}", args.len())));
    };
    if let Some(v) = &f.provider {
        push(&mut sql, " AND provider = $?", Arg::S(v.clone()));
    }
    if !f.providers.is_empty() {
        sql.push_str(" AND provider IN (");
        for (i, p) in f.providers.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            push(&mut sql, "$?", Arg::S(p.clone()));
        }
        sql.push(')');
    }
    if let Some(v) = f.kind {
        push(&mut sql, " AND kind = $?", Arg::S(v.as_str().into()));
    }
    if let Some(v) = f.status {
        push(&mut sql, " AND status = $?", Arg::S(v.as_str().into()));
    }
    if let Some(v) = &f.tag {
        push(&mut sql, " AND EXISTS (SELECT 1 FROM connection_tags t WHERE t.connection_id = connections.id AND t.tag = $?)", Arg::S(v.clone()));
    }
    if let Some(v) = &f.custody {
        push(&mut sql, " AND EXISTS (SELECT 1 FROM connection_custody p WHERE p.connection_id = connections.id AND p.place = $?)", Arg::S(v.clone()));
    }
    if let Some(v) = &f.owner {
        push(
            &mut sql,
            " AND (owner_subject = $? OR owner_email = $?)",
            Arg::S(v.clone()),
        );
    }
    if let Some(v) = &f.search {
        // LIKE wildcards in the search text match themselves.
        // `!` as the escape character: no backslash semantics to differ
        // between SQLite and PostgreSQL. Case folding is ASCII-only on SQLite.
        let needle = v
            .to_lowercase()
            .replace('!', "!!")
            .replace('%', "!%")
            .replace('_', "!_");
        push(
            &mut sql,
            " AND (LOWER(display_name) LIKE $? ESCAPE '!' OR LOWER(COALESCE(owner_email, '')) LIKE $? ESCAPE '!' OR id LIKE $? ESCAPE '!')",
            Arg::S(format!("%{needle}%")),
        );
    }
    if let Some(v) = f.created_before {
        push(&mut sql, " AND created_at < $?", Arg::I(v));
    }
    if let Some(v) = f.rotated_before {
        push(
            &mut sql,
            " AND COALESCE(rotated_at, created_at) < $?",
            Arg::I(v),
        );
    }
    if let Some(v) = &f.integration {
        push(&mut sql, " AND integration_id = $?", Arg::S(v.clone()));
    }
    if let Some(v) = f.last_read_after {
        // The audit log's (tenant, target, action, at) index answers this.
        push(
            &mut sql,
            " AND EXISTS (SELECT 1 FROM audit_log a WHERE a.tenant = connections.tenant \
             AND a.target = connections.id AND a.action = 'credentials.read' \
             AND a.outcome = 'ok' AND a.at >= $?)",
            Arg::I(v),
        );
    }
    if let Some(v) = &f.campaign {
        push(
            &mut sql,
            " AND EXISTS (SELECT 1 FROM campaign_items ci WHERE ci.connection_id = connections.id \
             AND ci.tenant = connections.tenant AND ci.campaign_id = $?)",
            Arg::S(v.clone()),
        );
    }
    (sql, args)
}

pub async fn list(
    c: &mut AnyConnection,
    tenant: &str,
    f: &ConnectionFilter,
) -> Result<Vec<ConnectionRow>, Error> {
    let (clause, mut args) = filter_clause(tenant, f);
    let mut sql = format!("SELECT {COLS} FROM connections{clause}");
    if let Some(v) = &f.after_id {
        args.push(Arg::S(v.clone()));
        sql.push_str(&format!(" AND id > ${}", args.len()));
    }
    args.push(Arg::I(f.limit));
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", args.len()));
    let mut q = sqlx::query_as::<_, ConnectionRow>(&sql);
    for a in &args {
        q = match a {
            Arg::S(s) => q.bind(s.clone()),
            Arg::I(i) => q.bind(*i),
        };
    }
    Ok(q.fetch_all(c).await?)
}

/// How many connections the filter selects (`after_id` and `limit` aside).
pub async fn count(
    c: &mut AnyConnection,
    tenant: &str,
    f: &ConnectionFilter,
) -> Result<i64, Error> {
    let (clause, args) = filter_clause(tenant, f);
    let sql = format!("SELECT COUNT(*) FROM connections{clause}");
    let mut q = sqlx::query_as::<_, (i64,)>(&sql);
    for a in &args {
        q = match a {
            Arg::S(s) => q.bind(s.clone()),
            Arg::I(i) => q.bind(*i),
        };
    }
    Ok(q.fetch_one(c).await?.0)
}

enum Arg {
    S(String),
    I(i64),
}

/// Count of connections per status across all tenants (for /metrics).
pub async fn count_by_status(c: &mut AnyConnection) -> Result<Vec<(String, i64)>, Error> {
    Ok(
        sqlx::query_as("SELECT status, COUNT(*) AS n FROM connections GROUP BY status")
            .fetch_all(c)
            .await?,
    )
}

/// PostgreSQL only: lock the row until the transaction ends.
pub async fn lock_row(c: &mut AnyConnection, tenant: &str, id: &str) -> Result<(), Error> {
    rows::lock_for_update::<ConnectionRow>(c, tenant, id).await
}

/// OAuth connections whose access token expires before `before`, or that
/// have not been refreshed since `idle_before` (keep-alive), oldest first.
pub async fn oauth_due(
    c: &mut AnyConnection,
    before: i64,
    idle_before: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, Error> {
    Ok(sqlx::query_as(
        "SELECT tenant, id FROM connections WHERE kind IN ('oauth2_authorization_code', 'oauth2_client_credentials') \
         AND status IN ('active', 'degraded', 'pending') \
         AND ((expires_at IS NOT NULL AND expires_at <= $1) OR updated_at <= $2) ORDER BY COALESCE(expires_at, updated_at) LIMIT $3",
    )
    .bind(before)
    .bind(idle_before)
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// Claim up to `limit` connections whose health check is due: status
/// pending/active/degraded, `next_check_at` passed, no live lease. The lease
/// (`owner` until `lease_until`) keeps other replicas off them; on
/// PostgreSQL `FOR UPDATE SKIP LOCKED` makes concurrent claims disjoint.
pub async fn claim_checks(
    c: &mut AnyConnection,
    backend: crate::Backend,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<(String, String, String)>, Error> {
    crate::rows::claim_due_returning(
        c,
        backend,
        &CHECKS_DUE,
        "COALESCE(next_check_at, 0)",
        "tenant, id, provider",
        owner,
        now,
        lease_until,
        limit,
    )
    .await
}

/// Connections in service whose health check is due.
pub const CHECKS_DUE: crate::Due = crate::Due::new(
    "connections",
    "status IN ('pending', 'active', 'degraded') AND (next_check_at IS NULL OR next_check_at <= $1)",
);

/// Set when the next check is due. With `owner` (the scheduler), also drop
/// that replica's lease — and touch nothing if another replica holds the
/// row now. Without (a manual check, new credentials), leases stay.
pub async fn schedule_check(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    next_check_at: i64,
    owner: Option<&str>,
) -> Result<(), Error> {
    let q = match owner {
        Some(o) => sqlx::query(
            "UPDATE connections SET next_check_at = $1, lease_owner = NULL, lease_until = NULL \
             WHERE tenant = $2 AND id = $3 AND (lease_owner IS NULL OR lease_owner = $4)",
        )
        .bind(next_check_at)
        .bind(tenant)
        .bind(id)
        .bind(o.to_string()),
        None => {
            sqlx::query("UPDATE connections SET next_check_at = $1 WHERE tenant = $2 AND id = $3")
                .bind(next_check_at)
                .bind(tenant)
                .bind(id)
        }
    };
    q.execute(c).await?;
    Ok(())
}

/// Drop every lease `owner` holds (a replica starting up or shutting down).
pub async fn release_check_leases(
    c: &mut AnyConnection,
    owner: Option<&str>,
) -> Result<u64, Error> {
    let r = match owner {
        Some(o) => sqlx::query("UPDATE connections SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
            .bind(o)
            .execute(c)
            .await,
        None => sqlx::query("UPDATE connections SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL")
            .execute(c)
            .await,
    }?;
    Ok(r.rows_affected())
}

/// One tenant's connections at a glance (the dashboard's summary line and
/// filter suggestions): count per status, and the tags and custody places
/// in use, each sorted.
pub async fn tenant_summary(
    c: &mut AnyConnection,
    tenant: &str,
) -> Result<(Vec<(String, i64)>, Vec<String>, Vec<String>), Error> {
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*) AS n FROM connections WHERE tenant = $1 GROUP BY status",
    )
    .bind(tenant)
    .fetch_all(&mut *c)
    .await?;
    let tags = labels_in_use(c, tenant, "connection_tags", "tag").await?;
    let places = labels_in_use(c, tenant, "connection_custody", "place").await?;
    Ok((counts, tags, places))
}

/// The distinct values of `column` in the label table `table` that some
/// connection of `tenant` carries, sorted. A loose index scan (the next
/// value after the last, through the `column` index) visits each distinct
/// value once, where `SELECT DISTINCT … JOIN connections` read every label
/// row: with 100,000 connections that was most of a dashboard view.
async fn labels_in_use(
    c: &mut AnyConnection,
    tenant: &str,
    table: &str,
    column: &str,
) -> Result<Vec<String>, Error> {
    let sql = format!(
        "WITH RECURSIVE v(val) AS (\
           SELECT MIN({column}) FROM {table} \
           UNION ALL \
           SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > v.val) FROM v WHERE v.val IS NOT NULL) \
         SELECT val FROM v WHERE val IS NOT NULL AND EXISTS (\
           SELECT 1 FROM {table} x JOIN connections c ON c.id = x.connection_id \
           WHERE x.{column} = v.val AND c.tenant = $1) \
         ORDER BY val"
    );
    let vals: Vec<(String,)> = sqlx::query_as(&sql).bind(tenant).fetch_all(c).await?;
    Ok(vals.into_iter().map(|v| v.0).collect())
}

/// (integration id, connection id, display name, status) of every connection
/// of the tenant that came from an OAuth integration, by display name.
pub async fn by_integration(
    c: &mut AnyConnection,
    tenant: &str,
) -> Result<Vec<(String, String, String, String)>, Error> {
    Ok(sqlx::query_as(
        "SELECT integration_id, id, display_name, status FROM connections WHERE tenant = $1 AND integration_id IS NOT NULL ORDER BY display_name, id",
    )
    .bind(tenant)
    .fetch_all(c)
    .await?)
}
