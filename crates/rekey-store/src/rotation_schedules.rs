//! `rotation_schedules`: one optional schedule per connection (period, a
//! daily window in UTC, the rotation's options) and when it is next due.

use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ScheduleRow {
    pub connection_id: String,
    pub tenant: String,
    pub period_secs: i64,
    /// Minutes after midnight UTC; the window is `[start, end)`, wrapping
    /// midnight when `start > end`; `start == end` means any time.
    pub window_start: i64,
    pub window_end: i64,
    /// The rotation's options, JSON object text.
    pub options: String,
    pub next_due_at: i64,
    pub last_rotation_id: Option<String>,
    /// JSON `{code, message, at}`.
    pub last_error: Option<String>,
    pub created_by: String,
    pub updated_at: i64,
}

const COLS: &str = "connection_id, tenant, period_secs, window_start, window_end, options, \
     next_due_at, last_rotation_id, last_error, created_by, updated_at";

/// Create or replace the connection's schedule.
pub async fn upsert(c: &mut AnyConnection, s: &ScheduleRow) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO rotation_schedules ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (connection_id) DO UPDATE SET period_secs = $3, window_start = $4, \
         window_end = $5, options = $6, next_due_at = $7, last_rotation_id = $8, last_error = $9, \
         created_by = $10, updated_at = $11"
    ))
    .bind(&s.connection_id)
    .bind(&s.tenant)
    .bind(s.period_secs)
    .bind(s.window_start)
    .bind(s.window_end)
    .bind(&s.options)
    .bind(s.next_due_at)
    .bind(s.last_rotation_id.clone())
    .bind(s.last_error.clone())
    .bind(&s.created_by)
    .bind(s.updated_at)
    .execute(c)
    .await?;
    Ok(())
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    connection_id: &str,
) -> Result<Option<ScheduleRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM rotation_schedules WHERE tenant = $1 AND connection_id = $2"
    ))
    .bind(tenant)
    .bind(connection_id)
    .fetch_optional(c)
    .await?)
}

pub async fn delete(
    c: &mut AnyConnection,
    tenant: &str,
    connection_id: &str,
) -> Result<bool, Error> {
    let r = sqlx::query("DELETE FROM rotation_schedules WHERE tenant = $1 AND connection_id = $2")
        .bind(tenant)
        .bind(connection_id)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Schedules whose `next_due_at` has passed (any tenant), oldest first.
pub async fn due(c: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<ScheduleRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM rotation_schedules WHERE next_due_at <= $1 ORDER BY next_due_at LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// Move a schedule on, only if nobody else did since it was read (its
/// `next_due_at` is still `was`); false when another replica got there first.
pub async fn advance(c: &mut AnyConnection, s: &ScheduleRow, was: i64) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE rotation_schedules SET next_due_at = $1, last_rotation_id = $2, last_error = $3, \
         updated_at = $4 WHERE tenant = $5 AND connection_id = $6 AND next_due_at = $7",
    )
    .bind(s.next_due_at)
    .bind(s.last_rotation_id.clone())
    .bind(s.last_error.clone())
    .bind(s.updated_at)
    .bind(&s.tenant)
    .bind(&s.connection_id)
    .bind(was)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}
