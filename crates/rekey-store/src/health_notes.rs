//! `connection_health_notes`: what health knows about a connection beyond
//! its status columns — that no probe can check it (and why), and the last
//! operator confirmation that its data flows. One optional row per
//! connection, deleted with it. Kept out of `ConnectionRow` so its writers
//! (create, grant, update) need not know about it.

use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow)]
pub struct HealthNotes {
    pub connection_id: String,
    /// Why no probe can check the connection; None once a probe has run.
    pub unchecked_reason: Option<String>,
    pub confirmed_at: Option<i64>,
    /// The actor (API key id, `user:` id) who confirmed.
    pub confirmed_by: Option<String>,
    pub confirmation_note: Option<String>,
}

const COLS: &str = "connection_id, unchecked_reason, confirmed_at, confirmed_by, confirmation_note";

/// The notes of these connections of `tenant` (absent ones have none).
pub async fn for_connections(
    c: &mut AnyConnection,
    tenant: &str,
    ids: &[String],
) -> Result<Vec<HealthNotes>, Error> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT {COLS} FROM connection_health_notes WHERE tenant = $1 AND connection_id IN ({})",
        marks.join(", ")
    );
    let mut q = sqlx::query_as::<_, HealthNotes>(&sql).bind(tenant.to_string());
    for id in ids {
        q = q.bind(id.clone());
    }
    Ok(q.fetch_all(c).await?)
}

/// The notes of one connection, if any.
pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<HealthNotes>, Error> {
    Ok(for_connections(c, tenant, &[id.to_string()])
        .await?
        .into_iter()
        .next())
}

/// Set (Some) or clear (None) why no probe can check the connection; the
/// confirmation columns are left as they are.
pub async fn set_unchecked(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    reason: Option<&str>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO connection_health_notes (connection_id, tenant, unchecked_reason) VALUES ($1, $2, $3) \
         ON CONFLICT (connection_id) DO UPDATE SET unchecked_reason = excluded.unchecked_reason",
    )
    .bind(id)
    .bind(tenant)
    .bind(reason.map(str::to_string))
    .execute(c)
    .await?;
    Ok(())
}

/// Record an operator's confirmation (replacing the previous one).
pub async fn set_confirmed(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    at: i64,
    by: &str,
    note: Option<&str>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO connection_health_notes (connection_id, tenant, confirmed_at, confirmed_by, confirmation_note) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (connection_id) DO UPDATE SET confirmed_at = excluded.confirmed_at, confirmed_by = excluded.confirmed_by, confirmation_note = excluded.confirmation_note",
    )
    .bind(id)
    .bind(tenant)
    .bind(at)
    .bind(by)
    .bind(note.map(str::to_string))
    .execute(c)
    .await?;
    Ok(())
}
