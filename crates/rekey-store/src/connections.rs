use crate::{db_err, json_list, parse_list};
use rekey_core::connection::{ConnectionKind, Owner, Status};
use rekey_core::Error;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

#[derive(Debug, Clone)]
pub struct ConnectionRow {
    pub id: String,
    pub tenant: String,
    pub provider: String,
    pub kind: ConnectionKind,
    pub display_name: String,
    pub owner: Owner,
    pub scopes: Vec<String>,
    pub tags: Vec<String>,
    pub custody: Vec<String>,
    /// Non-secret credential fields (placement, username, fingerprints…), JSON object text.
    pub credential_meta: String,
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

const COLS: &str = "id, tenant, provider, kind, display_name, owner_subject, owner_email, owner_name, scopes, tags, custody, credential_meta, status, last_error, created_at, updated_at, rotated_at, expires_at, version, credential_version, params, probe_url, last_ok_at, last_checked_at, first_failed_at, consecutive_failures";

fn from_row(r: &AnyRow) -> Result<ConnectionRow, Error> {
    let g = |e: sqlx::Error| db_err(e);
    let kind: String = r.try_get("kind").map_err(g)?;
    let status: String = r.try_get("status").map_err(g)?;
    Ok(ConnectionRow {
        id: r.try_get("id").map_err(g)?,
        tenant: r.try_get("tenant").map_err(g)?,
        provider: r.try_get("provider").map_err(g)?,
        kind: kind
            .parse()
            .map_err(|_| Error::internal(format!("stored kind {kind} unknown")))?,
        display_name: r.try_get("display_name").map_err(g)?,
        owner: Owner {
            subject: r.try_get("owner_subject").map_err(g)?,
            email: r.try_get("owner_email").map_err(g)?,
            name: r.try_get("owner_name").map_err(g)?,
        },
        scopes: parse_list(&r.try_get::<String, _>("scopes").map_err(g)?),
        tags: parse_list(&r.try_get::<String, _>("tags").map_err(g)?),
        custody: parse_list(&r.try_get::<String, _>("custody").map_err(g)?),
        credential_meta: r.try_get("credential_meta").map_err(g)?,
        status: status
            .parse()
            .map_err(|_| Error::internal(format!("stored status {status} unknown")))?,
        last_error: r.try_get("last_error").map_err(g)?,
        created_at: r.try_get("created_at").map_err(g)?,
        updated_at: r.try_get("updated_at").map_err(g)?,
        rotated_at: r.try_get("rotated_at").map_err(g)?,
        expires_at: r.try_get("expires_at").map_err(g)?,
        version: r.try_get("version").map_err(g)?,
        credential_version: r.try_get("credential_version").map_err(g)?,
        params: r.try_get("params").map_err(g)?,
        probe_url: r.try_get("probe_url").map_err(g)?,
        last_ok_at: r.try_get("last_ok_at").map_err(g)?,
        last_checked_at: r.try_get("last_checked_at").map_err(g)?,
        first_failed_at: r.try_get("first_failed_at").map_err(g)?,
        consecutive_failures: r.try_get("consecutive_failures").map_err(g)?,
    })
}

async fn write_sets(c: &mut AnyConnection, row: &ConnectionRow) -> Result<(), Error> {
    sqlx::query("DELETE FROM connection_tags WHERE connection_id = $1")
        .bind(&row.id)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    sqlx::query("DELETE FROM connection_custody WHERE connection_id = $1")
        .bind(&row.id)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    for t in &row.tags {
        sqlx::query("INSERT INTO connection_tags (connection_id, tag) VALUES ($1, $2)")
            .bind(&row.id)
            .bind(t)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
    }
    for p in &row.custody {
        sqlx::query("INSERT INTO connection_custody (connection_id, place) VALUES ($1, $2)")
            .bind(&row.id)
            .bind(p)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

pub async fn insert(c: &mut AnyConnection, row: &ConnectionRow) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO connections ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)"
    ))
    .bind(&row.id)
    .bind(&row.tenant)
    .bind(&row.provider)
    .bind(row.kind.as_str())
    .bind(&row.display_name)
    .bind(&row.owner.subject)
    .bind(&row.owner.email)
    .bind(&row.owner.name)
    .bind(json_list(&row.scopes))
    .bind(json_list(&row.tags))
    .bind(json_list(&row.custody))
    .bind(&row.credential_meta)
    .bind(row.status.as_str())
    .bind(&row.last_error)
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(row.rotated_at)
    .bind(row.expires_at)
    .bind(row.version)
    .bind(row.credential_version)
    .bind(&row.params)
    .bind(&row.probe_url)
    .bind(row.last_ok_at)
    .bind(row.last_checked_at)
    .bind(row.first_failed_at)
    .bind(row.consecutive_failures)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    write_sets(c, row).await
}

/// Write every mutable column, but only if the stored version is still
/// `expected_version` (optimistic concurrency). Returns false on a lost race.
pub async fn update(
    c: &mut AnyConnection,
    row: &ConnectionRow,
    expected_version: i64,
) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE connections SET display_name = $1, owner_subject = $2, owner_email = $3, owner_name = $4, scopes = $5, tags = $6, custody = $7, credential_meta = $8, status = $9, last_error = $10, updated_at = $11, rotated_at = $12, expires_at = $13, version = $14, credential_version = $15, params = $16, probe_url = $17, last_ok_at = $18, last_checked_at = $19, first_failed_at = $20, consecutive_failures = $21 WHERE id = $22 AND tenant = $23 AND version = $24",
    )
    .bind(&row.display_name)
    .bind(&row.owner.subject)
    .bind(&row.owner.email)
    .bind(&row.owner.name)
    .bind(json_list(&row.scopes))
    .bind(json_list(&row.tags))
    .bind(json_list(&row.custody))
    .bind(&row.credential_meta)
    .bind(row.status.as_str())
    .bind(&row.last_error)
    .bind(row.updated_at)
    .bind(row.rotated_at)
    .bind(row.expires_at)
    .bind(row.version)
    .bind(row.credential_version)
    .bind(&row.params)
    .bind(&row.probe_url)
    .bind(row.last_ok_at)
    .bind(row.last_checked_at)
    .bind(row.first_failed_at)
    .bind(row.consecutive_failures)
    .bind(&row.id)
    .bind(&row.tenant)
    .bind(expected_version)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    write_sets(c, row).await?;
    Ok(true)
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<ConnectionRow>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLS} FROM connections WHERE tenant = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(c)
    .await
    .map_err(db_err)?;
    row.as_ref().map(from_row).transpose()
}

pub async fn delete(c: &mut AnyConnection, tenant: &str, id: &str) -> Result<bool, Error> {
    let r = sqlx::query("DELETE FROM connections WHERE tenant = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() == 1)
}

#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub provider: Option<String>,
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
    /// Cursor: only ids greater than this.
    pub after_id: Option<String>,
    pub limit: i64,
}

pub async fn list(
    c: &mut AnyConnection,
    tenant: &str,
    f: &ConnectionFilter,
) -> Result<Vec<ConnectionRow>, Error> {
    let mut sql = format!("SELECT {COLS} FROM connections WHERE tenant = $1");
    let mut args: Vec<Arg> = vec![Arg::S(tenant.to_string())];
    let mut push = |sql: &mut String, clause: &str, a: Arg| {
        args.push(a);
        sql.push_str(&clause.replace("$?", &format!("${}", args.len())));
    };
    if let Some(v) = &f.provider {
        push(&mut sql, " AND provider = $?", Arg::S(v.clone()));
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
    if let Some(v) = &f.after_id {
        push(&mut sql, " AND id > $?", Arg::S(v.clone()));
    }
    args.push(Arg::I(f.limit));
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", args.len()));
    let mut q = sqlx::query(&sql);
    for a in &args {
        q = match a {
            Arg::S(s) => q.bind(s.clone()),
            Arg::I(i) => q.bind(*i),
        };
    }
    let rows = q.fetch_all(c).await.map_err(db_err)?;
    rows.iter().map(from_row).collect()
}

enum Arg {
    S(String),
    I(i64),
}

/// Count of connections per status across all tenants (for /metrics).
pub async fn count_by_status(c: &mut AnyConnection) -> Result<Vec<(String, i64)>, Error> {
    let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM connections GROUP BY status")
        .fetch_all(c)
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("status").map_err(db_err)?,
                r.try_get("n").map_err(db_err)?,
            ))
        })
        .collect()
}

/// PostgreSQL only: lock the row until the transaction ends.
pub async fn lock_row(c: &mut AnyConnection, tenant: &str, id: &str) -> Result<(), Error> {
    sqlx::query("SELECT id FROM connections WHERE tenant = $1 AND id = $2 FOR UPDATE")
        .bind(tenant)
        .bind(id)
        .fetch_optional(c)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// OAuth connections whose access token expires before `before`, or that
/// have not been refreshed since `idle_before` (keep-alive), oldest first.
pub async fn oauth_due(
    c: &mut AnyConnection,
    before: i64,
    idle_before: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, Error> {
    let rows = sqlx::query(
        "SELECT tenant, id FROM connections WHERE kind IN ('oauth2_authorization_code', 'oauth2_client_credentials') \
         AND status IN ('active', 'degraded', 'pending') \
         AND ((expires_at IS NOT NULL AND expires_at <= $1) OR updated_at <= $2) ORDER BY COALESCE(expires_at, updated_at) LIMIT $3",
    )
    .bind(before)
    .bind(idle_before)
    .bind(limit)
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("tenant").map_err(db_err)?,
                r.try_get("id").map_err(db_err)?,
            ))
        })
        .collect()
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
    let lock = match backend {
        crate::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        crate::Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE connections SET lease_owner = $1, lease_until = $2 WHERE id IN (\
         SELECT id FROM connections WHERE status IN ('pending', 'active', 'degraded') \
         AND (next_check_at IS NULL OR next_check_at <= $3) AND (lease_until IS NULL OR lease_until < $3) \
         ORDER BY COALESCE(next_check_at, 0) LIMIT $4{lock}) RETURNING tenant, id, provider"
    );
    let rows = sqlx::query(&sql)
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(c)
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("tenant").map_err(db_err)?,
                r.try_get("id").map_err(db_err)?,
                r.try_get("provider").map_err(db_err)?,
            ))
        })
        .collect()
}

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
    q.execute(c).await.map_err(db_err)?;
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
    }
    .map_err(db_err)?;
    Ok(r.rows_affected())
}
