//! `credential_versions`: the history of a connection's credentials, one row
//! a version (label, fingerprint, who and when). Never holds material: the
//! sealed secrets of pending and previous versions are `secrets` rows under
//! [`OWNER_KIND`] and the version's id.

use crate::rows::{self, AnyQuery, Parsed};
use rekey_core::versions::VersionLabel;
use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

/// The `owner_kind` of a non-current version's secret rows.
pub const OWNER_KIND: &str = "credential_version";

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct VersionRow {
    pub id: String,
    pub tenant: String,
    pub connection_id: String,
    /// The connection's `credential_version` this material is sealed for.
    pub seq: i64,
    #[sqlx(try_from = "Parsed<VersionLabel>")]
    pub label: VersionLabel,
    pub fingerprint: String,
    /// How the fingerprint was made (`aws_access_key_id`, `rsa_sha256`, `keyed_hash`).
    pub fingerprint_kind: String,
    /// The connection's non-secret credential fields for this version, JSON object text.
    pub meta: String,
    /// What made it: `created`, `replaced`, `rotation`, `reauthorized`, `backfill`.
    pub source: String,
    pub created_at: i64,
    pub created_by: String,
    pub promoted_at: Option<i64>,
    pub promoted_by: Option<String>,
    /// For `previous`: its material may be read until then.
    pub grace_until: Option<i64>,
    pub retired_at: Option<i64>,
    pub retired_by: Option<String>,
}

const COLS: &str = "id, tenant, connection_id, seq, label, fingerprint, fingerprint_kind, meta, \
     source, created_at, created_by, promoted_at, promoted_by, grace_until, retired_at, retired_by";

pub async fn insert(c: &mut AnyConnection, v: &VersionRow) -> Result<(), Error> {
    insert_many(c, std::slice::from_ref(v)).await
}

/// Insert every version of `vs`, a few dozen per statement.
pub async fn insert_many(c: &mut AnyConnection, vs: &[VersionRow]) -> Result<(), Error> {
    rows::insert_many(c, "credential_versions", COLS, vs, bind_row).await
}

/// Binds the version's [`COLS`].
fn bind_row<'q>(q: AnyQuery<'q>, v: &'q VersionRow) -> AnyQuery<'q> {
    q.bind(&v.id)
        .bind(&v.tenant)
        .bind(&v.connection_id)
        .bind(v.seq)
        .bind(v.label.as_str())
        .bind(&v.fingerprint)
        .bind(&v.fingerprint_kind)
        .bind(&v.meta)
        .bind(&v.source)
        .bind(v.created_at)
        .bind(&v.created_by)
        .bind(v.promoted_at)
        .bind(&v.promoted_by)
        .bind(v.grace_until)
        .bind(v.retired_at)
        .bind(&v.retired_by)
}

/// Write a version's mutable columns (label, promotion, grace, retirement).
pub async fn update(c: &mut AnyConnection, v: &VersionRow) -> Result<(), Error> {
    sqlx::query(
        "UPDATE credential_versions SET label = $1, promoted_at = $2, promoted_by = $3, \
         grace_until = $4, retired_at = $5, retired_by = $6 WHERE tenant = $7 AND id = $8",
    )
    .bind(v.label.as_str())
    .bind(v.promoted_at)
    .bind(v.promoted_by.clone())
    .bind(v.grace_until)
    .bind(v.retired_at)
    .bind(v.retired_by.clone())
    .bind(&v.tenant)
    .bind(&v.id)
    .execute(c)
    .await?;
    Ok(())
}

/// A pending version's material became known after it was recorded (an
/// AWS access key is made by AWS at `set`): its fields and fingerprint.
pub async fn set_material(c: &mut AnyConnection, v: &VersionRow) -> Result<(), Error> {
    sqlx::query(
        "UPDATE credential_versions SET meta = $1, fingerprint = $2, fingerprint_kind = $3 \
         WHERE tenant = $4 AND id = $5",
    )
    .bind(&v.meta)
    .bind(&v.fingerprint)
    .bind(&v.fingerprint_kind)
    .bind(&v.tenant)
    .bind(&v.id)
    .execute(c)
    .await?;
    Ok(())
}

/// Every version of a connection of `tenant`, newest first.
pub async fn for_connection(
    c: &mut AnyConnection,
    tenant: &str,
    connection_id: &str,
) -> Result<Vec<VersionRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM credential_versions WHERE tenant = $1 AND connection_id = $2 \
         ORDER BY seq DESC"
    ))
    .bind(tenant)
    .bind(connection_id)
    .fetch_all(c)
    .await?)
}

/// The connection's version with `label`, if any (the newest, should the
/// label ever be held twice).
pub async fn with_label(
    c: &mut AnyConnection,
    tenant: &str,
    connection_id: &str,
    label: VersionLabel,
) -> Result<Option<VersionRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM credential_versions WHERE tenant = $1 AND connection_id = $2 \
         AND label = $3 ORDER BY seq DESC LIMIT 1"
    ))
    .bind(tenant)
    .bind(connection_id)
    .bind(label.as_str())
    .fetch_optional(c)
    .await?)
}

/// Previous versions whose grace ended at or before `now`, any tenant, oldest first.
pub async fn grace_over(
    c: &mut AnyConnection,
    now: i64,
    limit: i64,
) -> Result<Vec<VersionRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM credential_versions WHERE label = 'previous' \
         AND grace_until IS NOT NULL AND grace_until <= $1 ORDER BY grace_until LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// The ids of a connection's versions (any tenant check is the caller's),
/// so their secret rows can be deleted with the connection.
pub async fn ids_of_connection(
    c: &mut AnyConnection,
    connection_id: &str,
) -> Result<Vec<String>, Error> {
    Ok(
        sqlx::query_scalar("SELECT id FROM credential_versions WHERE connection_id = $1")
            .bind(connection_id)
            .fetch_all(c)
            .await?,
    )
}
