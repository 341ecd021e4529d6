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
    bind_row(sqlx::query(sql), s)
}

/// Binds the row's [`COLS`].
fn bind_row<'q>(q: AnyQuery<'q>, s: &'q SecretRow) -> AnyQuery<'q> {
    q.bind(&s.owner_kind)
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

/// Insert every row of `rows` (new owners': nothing is replaced), a few
/// dozen per statement.
pub async fn insert_many(c: &mut AnyConnection, rows: &[SecretRow]) -> Result<(), Error> {
    rows::insert_many(c, "secrets", COLS, rows, bind_row).await
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

/// Where a pass over the secrets stands: the key of the last row seen.
#[derive(Debug, Clone, Default)]
pub struct SecretKey {
    pub owner_kind: String,
    pub owner_id: String,
    pub field: String,
}

/// The next `limit` secrets after `after` (in key order) that `kek_id`
/// does not wrap. A keyset page: a pass over a million rows reads each
/// once, where `LIMIT` alone would skip the rows already re-wrapped on
/// every page.
pub async fn not_wrapped_by(
    c: &mut AnyConnection,
    kek_id: &str,
    after: &SecretKey,
    limit: i64,
) -> Result<Vec<SecretRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM secrets WHERE kek_id <> $1 AND (owner_kind, owner_id, field) > ($2, $3, $4) \
         ORDER BY owner_kind, owner_id, field LIMIT $5"
    ))
    .bind(kek_id)
    .bind(&after.owner_kind)
    .bind(&after.owner_id)
    .bind(&after.field)
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// Rows per statement in [`rewrap_all`]: six parameters each, well under
/// both databases' limits.
const REWRAP_ROWS: usize = 500;

/// Swap the wrapped data keys of `rows` (already re-wrapped; each with
/// the KEK it had), each only if the row is still wrapped by that old KEK
/// (a concurrent credential update may have replaced it). One statement
/// per [`REWRAP_ROWS`] rows; returns how many rows changed.
pub async fn rewrap_all(c: &mut AnyConnection, rows: &[(SecretRow, String)]) -> Result<u64, Error> {
    let mut changed = 0;
    for chunk in rows.chunks(REWRAP_ROWS) {
        let values = (0..chunk.len())
            .map(|i| {
                let b = i * 6;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH v (owner_kind, owner_id, field, old_kek, kek_id, wrapped_dek) AS (VALUES {values}) \
             UPDATE secrets SET kek_id = v.kek_id, wrapped_dek = v.wrapped_dek FROM v \
             WHERE secrets.owner_kind = v.owner_kind AND secrets.owner_id = v.owner_id \
             AND secrets.field = v.field AND secrets.kek_id = v.old_kek"
        );
        let mut q = sqlx::query(&sql);
        for (s, old_kek) in chunk {
            q = q
                .bind(&s.owner_kind)
                .bind(&s.owner_id)
                .bind(&s.field)
                .bind(old_kek)
                .bind(&s.kek_id)
                .bind(&s.wrapped_dek);
        }
        changed += q.execute(&mut *c).await?.rows_affected();
    }
    Ok(changed)
}

/// Which KEKs are in use, with their secret counts.
pub async fn kek_usage(c: &mut AnyConnection) -> Result<Vec<(String, i64)>, Error> {
    Ok(
        sqlx::query_as("SELECT kek_id, COUNT(*) AS n FROM secrets GROUP BY kek_id ORDER BY kek_id")
            .fetch_all(c)
            .await?,
    )
}
