//! What the row modules share: the generic tenant-scoped get/list/delete
//! ([`TenantScoped`]) and the column types that `#[derive(sqlx::FromRow)]`
//! decodes through (JSON lists, parsed enums).

use crate::parse_list;
use rekey_core::Error;
use sqlx::any::{AnyRow, AnyTypeInfo, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Any, AnyConnection, Decode, FromRow, Type};
use std::str::FromStr;

/// A row type of a table whose rows belong to one tenant and are named by an
/// `id` column: `get`, `list` and `delete` always carry the tenant in the
/// `WHERE`, so no caller can reach another tenant's rows.
pub trait TenantScoped: for<'r> FromRow<'r, AnyRow> + Send + Unpin {
    /// The table's name.
    const TABLE: &'static str;
    /// The columns the row type decodes, comma-separated, as in `SELECT`.
    const COLUMNS: &'static str;
}

/// The row `id` of `tenant`, if any.
pub(crate) async fn get<T: TenantScoped>(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<T>, Error> {
    let sql = format!(
        "SELECT {} FROM {} WHERE tenant = $1 AND id = $2",
        T::COLUMNS,
        T::TABLE
    );
    Ok(sqlx::query_as::<_, T>(&sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(c)
        .await?)
}

/// Every row of `tenant`, in id order.
pub(crate) async fn list<T: TenantScoped>(
    c: &mut AnyConnection,
    tenant: &str,
) -> Result<Vec<T>, Error> {
    let sql = format!(
        "SELECT {} FROM {} WHERE tenant = $1 ORDER BY id",
        T::COLUMNS,
        T::TABLE
    );
    Ok(sqlx::query_as::<_, T>(&sql)
        .bind(tenant)
        .fetch_all(c)
        .await?)
}

/// Delete the row `id` of `tenant`; false when there was none.
pub(crate) async fn delete<T: TenantScoped>(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<bool, Error> {
    let sql = format!("DELETE FROM {} WHERE tenant = $1 AND id = $2", T::TABLE);
    let r = sqlx::query(&sql).bind(tenant).bind(id).execute(c).await?;
    Ok(r.rows_affected() == 1)
}

/// `n` placeholders numbered from `first`, comma-separated (`$2, $3`), for
/// an `IN (…)` list.
pub(crate) fn marks(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// On PostgreSQL callers: lock the row `id` of `tenant` until the
/// transaction ends (`SELECT … FOR UPDATE`).
pub(crate) async fn lock_for_update<T: TenantScoped>(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<(), Error> {
    let sql = format!(
        "SELECT id FROM {} WHERE tenant = $1 AND id = $2 FOR UPDATE",
        T::TABLE
    );
    sqlx::query(&sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(c)
        .await?;
    Ok(())
}

/// A statement being built on the `Any` driver.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

/// `INSERT INTO {table} ({columns}) VALUES ($1, $2, …)` for the
/// comma-separated `columns`, bound in their order.
pub(crate) fn insert_sql(table: &str, columns: &str) -> String {
    insert_rows_sql(table, columns, 1)
}

/// `INSERT INTO {table} ({columns}) VALUES ($1, …), ($n+1, …), …` for
/// `rows` rows, bound row after row.
pub(crate) fn insert_rows_sql(table: &str, columns: &str, rows: usize) -> String {
    rows_sql(table, columns, rows, false)
}

/// [`insert_rows_sql`], with anonymous `?` placeholders when `positional`
/// (SQLite): sqlx-sqlite maps each numbered `$N` to its argument by asking
/// SQLite for the parameter's name, a linear search, which makes a
/// statement of a few hundred parameters cost quadratic time to bind;
/// anonymous ones are bound in order without it.
fn rows_sql(table: &str, columns: &str, rows: usize, positional: bool) -> String {
    use std::fmt::Write;
    let n = columns.split(", ").count();
    let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for i in 1..=n {
            if i > 1 {
                sql.push_str(", ");
            }
            if positional {
                sql.push('?');
            } else {
                // Writing to a String cannot fail.
                let _ = write!(sql, "${}", r * n + i);
            }
        }
        sql.push(')');
    }
    sql
}

/// Parameters one multi-row INSERT binds at the most: far below both
/// databases' limits (SQLite 32,766, PostgreSQL 65,535), large enough that a
/// batch of a thousand rows is a few dozen statements.
const MAX_PARAMS: usize = 2000;

/// Insert `items` into `table`, as many rows per statement as stay under
/// [`MAX_PARAMS`]; `bind` binds one item's `columns` in their order. One
/// statement for a few dozen rows instead of one each: what makes a bulk
/// write cheap on either database.
pub(crate) async fn insert_many<T>(
    c: &mut AnyConnection,
    table: &str,
    columns: &str,
    items: &[T],
    bind: impl for<'a> Fn(AnyQuery<'a>, &'a T) -> AnyQuery<'a>,
) -> Result<(), Error> {
    insert_many_then(c, table, columns, "", items, bind).await?;
    Ok(())
}

/// [`insert_many`] with `suffix` after each statement's `VALUES` (an
/// `ON CONFLICT …` clause, which binds nothing); how many rows the
/// statements wrote.
pub(crate) async fn insert_many_then<T>(
    c: &mut AnyConnection,
    table: &str,
    columns: &str,
    suffix: &str,
    items: &[T],
    bind: impl for<'a> Fn(AnyQuery<'a>, &'a T) -> AnyQuery<'a>,
) -> Result<u64, Error> {
    let per = (MAX_PARAMS / columns.split(", ").count()).max(1);
    let positional = c.backend_name().eq_ignore_ascii_case("sqlite");
    let mut written = 0;
    for chunk in items.chunks(per) {
        let mut sql = rows_sql(table, columns, chunk.len(), positional);
        sql.push_str(suffix);
        let mut q = sqlx::query(&sql);
        for item in chunk {
            q = bind(q, item);
        }
        written += q.execute(&mut *c).await?.rows_affected();
    }
    Ok(written)
}

/// An optimistic update of the comma-separated `columns` of one row:
/// `UPDATE {table} SET a = $1, b = $2, … WHERE tenant = $n AND id = $n+1 AND
/// version = $n+2`, bound with the columns, then the tenant, the id and the
/// version the caller read. No row changes on a lost race.
pub(crate) fn versioned_update_sql(table: &str, columns: &str) -> String {
    let (set, n) = set_clause(columns);
    format!(
        "UPDATE {table} SET {set} WHERE tenant = ${} AND id = ${} AND version = ${}",
        n + 1,
        n + 2,
        n + 3
    )
}

/// `a = $1, b = $2, …` for the comma-separated `columns`, and how many
/// parameters that is (the `WHERE` clause's start at the next one).
pub(crate) fn set_clause(columns: &str) -> (String, usize) {
    let set: Vec<String> = columns
        .split(", ")
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    (set.join(", "), set.len())
}

/// Run an update built by [`versioned_update_sql`] whose columns `q` has
/// bound: binds the row's `tenant`, `id` and the version the caller read.
/// Whether the row changed (false on a lost race).
pub(crate) async fn run_versioned_update<'q>(
    q: AnyQuery<'q>,
    c: &mut AnyConnection,
    tenant: &'q str,
    id: &'q str,
    expected_version: i64,
) -> Result<bool, Error> {
    let r = q
        .bind(tenant)
        .bind(id)
        .bind(expected_version)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Rewrite the tag and custody side rows of the `owner` row `id` from its
/// lists. `owner` is `connection` or `integration`: the tables
/// `{owner}_tags` (`tag`) and `{owner}_custody` (`place`), keyed by
/// `{owner}_id`, which make the label filters indexed lookups.
pub(crate) async fn write_labels(
    c: &mut AnyConnection,
    owner: &str,
    id: &str,
    tags: &[String],
    custody: &[String],
) -> Result<(), Error> {
    for table in ["tags", "custody"] {
        sqlx::query(&format!(
            "DELETE FROM {owner}_{table} WHERE {owner}_id = $1"
        ))
        .bind(id)
        .execute(&mut *c)
        .await?;
    }
    insert_labels(c, owner, &[(id, tags, custody)]).await
}

/// Write the tag and custody side rows of rows that have none yet (new
/// ones): `(id, tags, custody)` each, a few statements for all of them.
pub(crate) async fn insert_labels(
    c: &mut AnyConnection,
    owner: &str,
    labels: &[(&str, &[String], &[String])],
) -> Result<(), Error> {
    let tags: Vec<(&str, &str)> = labels
        .iter()
        .flat_map(|(id, tags, _)| tags.iter().map(move |t| (*id, t.as_str())))
        .collect();
    let custody: Vec<(&str, &str)> = labels
        .iter()
        .flat_map(|(id, _, places)| places.iter().map(move |p| (*id, p.as_str())))
        .collect();
    for (table, column, pairs) in [("tags", "tag", tags), ("custody", "place", custody)] {
        let columns = format!("{owner}_id, {column}");
        insert_many(
            c,
            &format!("{owner}_{table}"),
            &columns,
            &pairs,
            |q, (id, v)| q.bind(*id).bind(*v),
        )
        .await?;
    }
    Ok(())
}

/// A text column holding a JSON list of strings (`["a","b"]`). Text that is
/// not such a list reads as empty, as it always has.
pub struct JsonList(Vec<String>);

impl From<JsonList> for Vec<String> {
    fn from(l: JsonList) -> Self {
        l.0
    }
}

impl Type<Any> for JsonList {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for JsonList {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <String as Decode<'r, Any>>::decode(value)?;
        Ok(JsonList(parse_list(&s)))
    }
}

/// A text column holding one of a closed set of names, parsed with
/// `FromStr` (kind, status); an unknown name fails the row's decoding.
pub struct Parsed<T>(T);

impl<T> Type<Any> for Parsed<T> {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r, T: FromStr> Decode<'r, Any> for Parsed<T> {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <String as Decode<'r, Any>>::decode(value)?;
        s.parse()
            .map(Parsed)
            .map_err(|_| format!("stored value {s} unknown").into())
    }
}

impl From<Parsed<rekey_core::connection::ConnectionKind>>
    for rekey_core::connection::ConnectionKind
{
    fn from(p: Parsed<Self>) -> Self {
        p.0
    }
}

impl From<Parsed<rekey_core::versions::VersionLabel>> for rekey_core::versions::VersionLabel {
    fn from(p: Parsed<Self>) -> Self {
        p.0
    }
}

impl From<Parsed<rekey_core::rotation::RotationState>> for rekey_core::rotation::RotationState {
    fn from(p: Parsed<Self>) -> Self {
        p.0
    }
}

impl From<Parsed<rekey_core::connection::Status>> for rekey_core::connection::Status {
    fn from(p: Parsed<Self>) -> Self {
        p.0
    }
}

impl From<Parsed<rekey_core::connection::ConnectSessionStatus>>
    for rekey_core::connection::ConnectSessionStatus
{
    fn from(p: Parsed<Self>) -> Self {
        p.0
    }
}

impl From<Parsed<rekey_core::revocation::RevocationState>>
    for rekey_core::revocation::RevocationState
{
    fn from(p: Parsed<Self>) -> Self {
        p.0
    }
}

impl From<Parsed<rekey_core::revocation::RevocationMethod>>
    for rekey_core::revocation::RevocationMethod
{
    fn from(p: Parsed<Self>) -> Self {
        p.0
    }
}

/// Free the leases `owner` holds on rows of `table` (every lease with
/// None); how many. `table` is the caller's constant, never input.
pub(crate) async fn release_leases(
    c: &mut AnyConnection,
    table: &str,
    owner: Option<&str>,
) -> Result<u64, Error> {
    let r = sqlx::query(&format!(
        "UPDATE {table} SET lease_owner = NULL, lease_until = NULL \
         WHERE lease_owner IS NOT NULL AND ($1 IS NULL OR lease_owner = $1)"
    ))
    .bind(owner.map(str::to_string))
    .execute(c)
    .await?;
    Ok(r.rows_affected())
}

/// Claim up to `limit` rows of `table` that are `due` (an SQL condition on
/// the row in which `$3` is now) and not leased by a live worker, for
/// `owner` until `lease_until`, soonest `order_by` first: `(tenant, id)`.
/// On PostgreSQL `FOR UPDATE SKIP LOCKED` makes concurrent claims
/// disjoint. `table`, `due` and `order_by` are the caller's constants,
/// never input.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn claim_due(
    c: &mut AnyConnection,
    backend: crate::Backend,
    due: &Due,
    order_by: &str,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, Error> {
    claim_due_returning(
        c,
        backend,
        due,
        order_by,
        "tenant, id",
        owner,
        now,
        lease_until,
        limit,
    )
    .await
}

/// [`claim_due`] answering `returning` (columns of the claimed rows).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn claim_due_returning<T>(
    c: &mut AnyConnection,
    backend: crate::Backend,
    due: &Due,
    order_by: &str,
    returning: &str,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<T>, Error>
where
    T: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
{
    let lock = match backend {
        crate::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        crate::Backend::Sqlite => "",
    };
    let (table, cond) = (due.table, due.cond);
    let sql = format!(
        "UPDATE {table} SET lease_owner = $2, lease_until = $3 WHERE id IN (\
         SELECT id FROM {table} WHERE {cond} \
         AND (lease_until IS NULL OR lease_until < $1) ORDER BY {order_by} LIMIT $4{lock}) \
         RETURNING {returning}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(now)
        .bind(owner)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(c)
        .await?)
}

/// The rows of a leased table a worker's pass would claim (leases aside):
/// `cond` is SQL over `table`'s columns with `$1` the time. A claim's own
/// query asks for these rows (and a lapsed lease); [`crate::Store::claim`]
/// first asks, with a read, whether there are any.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    pub(crate) table: &'static str,
    pub(crate) cond: &'static str,
}

impl Due {
    pub(crate) const fn new(table: &'static str, cond: &'static str) -> Due {
        Due { table, cond }
    }

    /// Whether any row is due at `now`.
    pub(crate) async fn any(&self, c: &mut AnyConnection, now: i64) -> Result<bool, Error> {
        let sql = format!(
            "SELECT 1 AS one FROM {} WHERE {} LIMIT 1",
            self.table, self.cond
        );
        Ok(sqlx::query(&sql)
            .bind(now)
            .fetch_optional(c)
            .await?
            .is_some())
    }
}

/// Extend `owner`'s lease on row `id` of `table` (the caller's constant) to
/// `lease_until`, only while `owner` still holds it; false when it does not.
pub(crate) async fn renew_lease(
    c: &mut AnyConnection,
    table: &str,
    tenant: &str,
    id: &str,
    owner: &str,
    lease_until: i64,
) -> Result<bool, Error> {
    let r = sqlx::query(&format!(
        "UPDATE {table} SET lease_until = $1 WHERE tenant = $2 AND id = $3 AND lease_owner = $4"
    ))
    .bind(lease_until)
    .bind(tenant)
    .bind(id)
    .bind(owner)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

impl crate::Store {
    /// Extend `owner`'s lease on one row of `table` (`revocations`,
    /// `campaign_mail`) in a write transaction of its own; false when
    /// another worker holds the row now.
    pub async fn renew_lease(
        &self,
        table: Leased,
        tenant: &str,
        id: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, Error> {
        let mut tx = self.begin_write().await?;
        let kept = renew_lease(tx.conn(), table.name(), tenant, id, owner, lease_until).await?;
        tx.commit().await?;
        Ok(kept)
    }
}

/// Tables whose rows workers lease one at a time.
#[derive(Debug, Clone, Copy)]
pub enum Leased {
    Revocation,
    CampaignMail,
}

impl Leased {
    fn name(self) -> &'static str {
        match self {
            Leased::Revocation => "revocations",
            Leased::CampaignMail => "campaign_mail",
        }
    }
}

impl crate::Store {
    /// Run one of the row modules' `claim_*` functions (`claim_due`,
    /// `claim_checks`, `claim_mail`…) in a write transaction of its own:
    /// what it answers of each row now leased to `owner` until
    /// `lease_until`. `due` is that module's [`Due`] (`DUE`, `CHECKS_DUE`,
    /// `MAIL_DUE`…): when a read finds no row due, no write transaction is
    /// opened. Most passes find nothing, and on SQLite a write transaction
    /// holds up every audited read (the audit writer waits for the lock)
    /// for as long as its statements take on a busy runtime.
    pub async fn claim<T>(
        &self,
        due: &Due,
        claim: impl AsyncFnOnce(
            &mut AnyConnection,
            crate::Backend,
            &str,
            i64,
            i64,
            i64,
        ) -> Result<Vec<T>, Error>,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<T>, Error> {
        if !due.any(&mut *self.read().await?, now).await? {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let backend = tx.backend();
        let claimed = claim(tx.conn(), backend, owner, now, lease_until, limit).await?;
        tx.commit().await?;
        Ok(claimed)
    }
}

impl From<Parsed<rekey_core::campaign::CampaignState>> for rekey_core::campaign::CampaignState {
    fn from(p: Parsed<Self>) -> Self {
        p.0
    }
}

impl From<Parsed<rekey_core::campaign::ItemState>> for rekey_core::campaign::ItemState {
    fn from(p: Parsed<Self>) -> Self {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_insert_sql_numbers_or_orders_its_placeholders() {
        assert_eq!(
            rows_sql("t", "a, b", 2, false),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            rows_sql("t", "a, b", 2, true),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
        assert_eq!(insert_sql("t", "a"), "INSERT INTO t (a) VALUES ($1)");
    }
}
