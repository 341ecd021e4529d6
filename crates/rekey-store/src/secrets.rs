//! Sealed secret rows. This module moves opaque bytes; it never sees plaintext.

use crate::rows::{self, AnyQuery};
use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

#[derive(Clone, FromRow)]
pub struct SecretRow {
    pub owner_kind: String,
    pub owner_id: String,
    pub field: String,
    pub tenant: String,
    pub version: i64,
    pub kek_id: String,
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRow")
            .field("owner_id", &self.owner_id)
            .field("field", &self.field)
            .field("version", &self.version)
            .field("kek_id", &self.kek_id)
            .finish_non_exhaustive()
    }
}

const COLS: &str = "owner_kind, owner_id, field, tenant, version, kek_id, wrapped_dek, ciphertext";

/// `sql` (an insert of [`COLS`]) bound with the row's columns.
fn bind_all<'q>(sql: &'q str, s: &'q SecretRow) -> AnyQuery<'q> {
    sqlx::query(sql)
        .bind(&s.owner_kind)
        .bind(&s.owner_id)
        .bind(&s.field)
        .bind(&s.tenant)
        .bind(s.version)
        .bind(&s.kek_id)
        .bind(&s.wrapped_dek)
        .bind(&s.ciphertext)
}

pub async fn insert(c: &mut AnyConnection, s: &SecretRow) -> Result<(), Error> {
    let sql = rows::insert_sql("secrets", COLS);
    bind_all(&sql, s).execute(c).await?;
    Ok(())
}

/// Insert `s` unless a row for its owner and field exists (a concurrent
/// writer may have made it first); false when one did.
pub async fn insert_if_absent(c: &mut AnyConnection, s: &SecretRow) -> Result<bool, Error> {
    let sql = format!(
        "{} ON CONFLICT (owner_kind, owner_id, field) DO NOTHING",
        rows::insert_sql("secrets", COLS)
    );
    let r = bind_all(&sql, s).execute(c).await?;
    Ok(r.rows_affected() == 1)
}

pub async fn for_owner(
    c: &mut AnyConnection,
    owner_kind: &str,
    owner_id: &str,
) -> Result<Vec<SecretRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM secrets WHERE owner_kind = $1 AND owner_id = $2 ORDER BY field"
    ))
    .bind(owner_kind)
    .bind(owner_id)
    .fetch_all(c)
    .await?)
}

pub async fn delete_owner(
    c: &mut AnyConnection,
    owner_kind: &str,
    owner_id: &str,
) -> Result<u64, Error> {
    let r = sqlx::query("DELETE FROM secrets WHERE owner_kind = $1 AND owner_id = $2")
        .bind(owner_kind)
        .bind(owner_id)
        .execute(c)
        .await?;
    Ok(r.rows_affected())
}

/// A batch of secrets not wrapped by `kek_id`, for re-wrapping.
pub async fn not_wrapped_by(
    c: &mut AnyConnection,
    kek_id: &str,
    limit: i64,
) -> Result<Vec<SecretRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM secrets WHERE kek_id <> $1 ORDER BY owner_kind, owner_id, field LIMIT $2"
    ))
    .bind(kek_id)
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// Swap the wrapped data key, only if the row is still wrapped by `old_kek`
/// (a concurrent credential update may have replaced it).
pub async fn rewrap(c: &mut AnyConnection, s: &SecretRow, old_kek: &str) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE secrets SET kek_id = $1, wrapped_dek = $2 WHERE owner_kind = $3 AND owner_id = $4 AND field = $5 AND kek_id = $6",
    )
    .bind(&s.kek_id)
    .bind(s.wrapped_dek.clone())
    .bind(&s.owner_kind)
    .bind(&s.owner_id)
    .bind(&s.field)
    .bind(old_kek)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Which KEKs are in use, with their secret counts.
pub async fn kek_usage(c: &mut AnyConnection) -> Result<Vec<(String, i64)>, Error> {
    Ok(
        sqlx::query_as("SELECT kek_id, COUNT(*) AS n FROM secrets GROUP BY kek_id ORDER BY kek_id")
            .fetch_all(c)
            .await?,
    )
}
