//! `rotations`: one row a credential rotation, its state the last step it
//! reached. Never holds material (the new secret is a pending
//! `credential_versions` row with sealed `secrets`).

use crate::rows::{self, AnyQuery, Parsed, TenantScoped};
use rekey_core::rotation::RotationState;
use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RotationRow {
    pub id: String,
    pub tenant: String,
    pub connection_id: String,
    /// The catalog's rotator name (`postgres`, `mysql`…).
    pub rotator: String,
    pub strategy: Option<String>,
    #[sqlx(try_from = "Parsed<RotationState>")]
    pub state: RotationState,
    /// The rotator's options, JSON object text.
    pub options: String,
    pub grace_ms: i64,
    pub pending_version_id: Option<String>,
    pub old_version_id: Option<String>,
    /// JSON `{code, message, at, step}`.
    pub last_error: Option<String>,
    pub next_action: Option<String>,
    pub attempts: i64,
    pub due_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub requested_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// The step (`set`, `retired`) waiting for an operator to confirm it
    /// done at the target; workers leave the rotation alone meanwhile.
    pub awaiting: Option<String>,
    /// What the operator must do, JSON (see the service's `Instructions`).
    pub instructions: Option<String>,
}

const COLS: &str = "id, tenant, connection_id, rotator, strategy, state, options, grace_ms, \
     pending_version_id, old_version_id, last_error, next_action, attempts, due_at, lease_owner, \
     lease_until, requested_by, created_at, updated_at, finished_at, awaiting, instructions";

impl TenantScoped for RotationRow {
    const TABLE: &'static str = "rotations";
    const COLUMNS: &'static str = COLS;
}

/// The moving parts of a rotation, which [`advance`] writes (options
/// included: confirmations are kept there), in the order [`bind_moving`]
/// binds them.
const MOVING: &str = "state, pending_version_id, old_version_id, last_error, next_action, \
     attempts, due_at, updated_at, finished_at, options, awaiting, instructions";

fn bind_moving<'q>(q: AnyQuery<'q>, r: &'q RotationRow) -> AnyQuery<'q> {
    q.bind(r.state.as_str())
        .bind(&r.pending_version_id)
        .bind(&r.old_version_id)
        .bind(&r.last_error)
        .bind(&r.next_action)
        .bind(r.attempts)
        .bind(r.due_at)
        .bind(r.updated_at)
        .bind(r.finished_at)
        .bind(&r.options)
        .bind(&r.awaiting)
        .bind(&r.instructions)
}

pub async fn insert(c: &mut AnyConnection, r: &RotationRow) -> Result<(), Error> {
    let columns = format!(
        "id, tenant, connection_id, rotator, strategy, grace_ms, lease_owner, lease_until, \
         requested_by, created_at, {MOVING}"
    );
    let sql = rows::insert_sql("rotations", &columns);
    let q = sqlx::query(&sql)
        .bind(&r.id)
        .bind(&r.tenant)
        .bind(&r.connection_id)
        .bind(&r.rotator)
        .bind(&r.strategy)
        .bind(r.grace_ms)
        .bind(&r.lease_owner)
        .bind(r.lease_until)
        .bind(&r.requested_by)
        .bind(r.created_at);
    bind_moving(q, r).execute(c).await?;
    Ok(())
}

/// Write the moving parts (options included: confirmations are kept
/// there), only if the rotation is still in state `from` (another worker
/// may have moved it on) and awaits what it did when read; false when not.
pub async fn advance(
    c: &mut AnyConnection,
    r: &RotationRow,
    from: RotationState,
) -> Result<bool, Error> {
    advance_from(c, r, from, None).await
}

/// [`advance`] from a rotation that awaited the operator's confirmation of
/// `awaited` (so two confirmations of one step cannot both be written).
pub async fn advance_from(
    c: &mut AnyConnection,
    r: &RotationRow,
    from: RotationState,
    awaited: Option<&str>,
) -> Result<bool, Error> {
    let (set, n) = rows::set_clause(MOVING);
    // A rotation that now waits for the operator, or has ended, is let go
    // in the same write: once the operator sees it waiting, a cancel or a
    // confirmation must not find a worker's lease still on it.
    let release = if r.awaiting.is_some() || r.finished_at.is_some() {
        ", lease_owner = NULL, lease_until = NULL"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE rotations SET {set}{release} WHERE tenant = ${} AND id = ${} AND state = ${} \
         AND COALESCE(awaiting, '') = ${}",
        n + 1,
        n + 2,
        n + 3,
        n + 4
    );
    let done = bind_moving(sqlx::query(&sql), r)
        .bind(&r.tenant)
        .bind(&r.id)
        .bind(from.as_str())
        .bind(awaited.unwrap_or_default().to_string())
        .execute(c)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<RotationRow>, Error> {
    rows::get(c, tenant, id).await
}

/// The connection's unfinished rotation, if any.
pub async fn running_for(
    c: &mut AnyConnection,
    tenant: &str,
    connection_id: &str,
) -> Result<Option<RotationRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM rotations WHERE tenant = $1 AND connection_id = $2 AND finished_at IS NULL"
    ))
    .bind(tenant)
    .bind(connection_id)
    .fetch_optional(c)
    .await?)
}

/// The newest rotation of the connection that `requested_by` asked for,
/// finished or not.
pub async fn latest_requested_by(
    c: &mut AnyConnection,
    tenant: &str,
    connection_id: &str,
    requested_by: &str,
) -> Result<Option<RotationRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM rotations WHERE tenant = $1 AND connection_id = $2 \
         AND requested_by = $3 ORDER BY id DESC LIMIT 1"
    ))
    .bind(tenant)
    .bind(connection_id)
    .bind(requested_by)
    .fetch_optional(c)
    .await?)
}

/// A page of `tenant`'s rotations, newest first (ids are time-ordered),
/// optionally of one connection, after the id `before`.
pub async fn list(
    c: &mut AnyConnection,
    tenant: &str,
    connection_id: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<RotationRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM rotations WHERE tenant = $1 \
         AND ($2 IS NULL OR connection_id = $2) AND ($3 IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(tenant)
    .bind(connection_id.map(str::to_string))
    .bind(before.map(str::to_string))
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// Unfinished rotations whose next step is due.
pub const DUE: crate::Due = crate::Due::new(
    "rotations",
    "finished_at IS NULL AND awaiting IS NULL AND due_at <= $1",
);

/// Claim up to `limit` unfinished rotations that are due and not leased by
/// a live worker: `(tenant, id)`. On PostgreSQL `FOR UPDATE SKIP LOCKED`
/// makes concurrent claims disjoint.
pub async fn claim_due(
    c: &mut AnyConnection,
    backend: crate::Backend,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, Error> {
    crate::rows::claim_due(c, backend, &DUE, "due_at", owner, now, lease_until, limit).await
}

/// Take the lease of one rotation for `owner` unless a live one is held by
/// another worker; true when taken.
pub async fn take_lease(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    owner: &str,
    now: i64,
    lease_until: i64,
) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE rotations SET lease_owner = $1, lease_until = $2 WHERE tenant = $3 AND id = $4 \
         AND finished_at IS NULL AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $5)",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(tenant)
    .bind(id)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Extend `owner`'s lease on a rotation to `lease_until`, only while
/// `owner` still holds it; false when it does not.
pub async fn renew_lease(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    owner: &str,
    lease_until: i64,
) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE rotations SET lease_until = $1 WHERE tenant = $2 AND id = $3 \
         AND finished_at IS NULL AND lease_owner = $4",
    )
    .bind(lease_until)
    .bind(tenant)
    .bind(id)
    .bind(owner)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Drop `owner`'s lease on a rotation (or every lease, with `None`).
pub async fn release(
    c: &mut AnyConnection,
    owner: Option<&str>,
    id: Option<&str>,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE rotations SET lease_owner = NULL, lease_until = NULL \
         WHERE ($1 IS NULL OR lease_owner = $1) AND ($2 IS NULL OR id = $2)",
    )
    .bind(owner.map(str::to_string))
    .bind(id.map(str::to_string))
    .execute(c)
    .await?;
    Ok(())
}
