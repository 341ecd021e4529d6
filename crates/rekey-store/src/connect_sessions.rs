use crate::json_list;
use crate::rows::{JsonList, Parsed};
use rekey_core::connection::ConnectSessionStatus;
use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

/// A short-lived, single-use connect session. Looked up by the hash of its
/// URL token, and during the OAuth callback by the hash of its `state`.
#[derive(Debug, Clone, FromRow)]
pub struct ConnectSessionRow {
    pub id: String,
    pub tenant: String,
    pub token_hash: String,
    pub state_hash: Option<String>,
    /// '' for key-based sessions.
    pub integration_id: String,
    /// Key-based sessions: the provider and static kind whose form is shown.
    pub provider: Option<String>,
    pub kind: Option<String>,
    pub display_name: Option<String>,
    pub owner_hint: Option<String>,
    #[sqlx(try_from = "JsonList")]
    pub tags: Vec<String>,
    #[sqlx(try_from = "JsonList")]
    pub custody: Vec<String>,
    pub reauthorize_id: Option<String>,
    pub nonce: Option<String>,
    pub redirect_uri: Option<String>,
    #[sqlx(try_from = "Parsed<ConnectSessionStatus>")]
    pub status: ConnectSessionStatus,
    pub error: Option<String>,
    pub connection_id: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

const COLS: &str = "id, tenant, token_hash, state_hash, integration_id, provider, kind, display_name, owner_hint, tags, custody, reauthorize_id, nonce, redirect_uri, status, error, connection_id, created_by, created_at, expires_at, used_at";

pub async fn insert(c: &mut AnyConnection, s: &ConnectSessionRow) -> Result<(), Error> {
    sqlx::query(&format!("INSERT INTO connect_sessions ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"))
        .bind(&s.id)
        .bind(&s.tenant)
        .bind(&s.token_hash)
        .bind(&s.state_hash)
        .bind(&s.integration_id)
        .bind(&s.provider)
        .bind(&s.kind)
        .bind(&s.display_name)
        .bind(&s.owner_hint)
        .bind(json_list(&s.tags))
        .bind(json_list(&s.custody))
        .bind(&s.reauthorize_id)
        .bind(&s.nonce)
        .bind(&s.redirect_uri)
        .bind(s.status.as_str())
        .bind(&s.error)
        .bind(&s.connection_id)
        .bind(&s.created_by)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.used_at)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn by_token_hash(
    c: &mut AnyConnection,
    h: &str,
) -> Result<Option<ConnectSessionRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM connect_sessions WHERE token_hash = $1"
    ))
    .bind(h)
    .fetch_optional(c)
    .await?)
}

pub async fn by_state_hash(
    c: &mut AnyConnection,
    h: &str,
) -> Result<Option<ConnectSessionRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM connect_sessions WHERE state_hash = $1"
    ))
    .bind(h)
    .fetch_optional(c)
    .await?)
}

/// Retire the unused reauthorization links of `connection_id` other than
/// `keep` (status `superseded`): only the newest link works. Returns how many.
pub async fn supersede_reauthorizations(
    c: &mut AnyConnection,
    tenant: &str,
    connection_id: &str,
    keep: &str,
) -> Result<u64, Error> {
    let r = sqlx::query("UPDATE connect_sessions SET status = 'superseded' WHERE tenant = $1 AND reauthorize_id = $2 AND status = 'created' AND id <> $3")
        .bind(tenant)
        .bind(connection_id)
        .bind(keep)
        .execute(c)
        .await?;
    Ok(r.rows_affected())
}

/// Move `id` from status `from` to `to`, recording state/nonce when starting.
/// Returns false when another request got there first (single use).
pub async fn transition(
    c: &mut AnyConnection,
    id: &str,
    from: ConnectSessionStatus,
    to: ConnectSessionStatus,
    state_hash: Option<&str>,
    nonce: Option<&str>,
    at: i64,
) -> Result<bool, Error> {
    let r = sqlx::query("UPDATE connect_sessions SET status = $1, state_hash = COALESCE($2, state_hash), nonce = COALESCE($3, nonce), used_at = $4 WHERE id = $5 AND status = $6")
        .bind(to.as_str())
        .bind(state_hash)
        .bind(nonce)
        .bind(at)
        .bind(id)
        .bind(from.as_str())
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

async fn finish(
    c: &mut AnyConnection,
    id: &str,
    status: ConnectSessionStatus,
    error: Option<&str>,
    connection_id: Option<&str>,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE connect_sessions SET status = $1, error = $2, connection_id = $3 WHERE id = $4",
    )
    .bind(status.as_str())
    .bind(error)
    .bind(connection_id)
    .bind(id)
    .execute(c)
    .await?;
    Ok(())
}

/// The exact redirect URI sent in the authorization request (reused at the token endpoint).
pub async fn set_redirect(
    c: &mut AnyConnection,
    id: &str,
    redirect_uri: &str,
) -> Result<(), Error> {
    sqlx::query("UPDATE connect_sessions SET redirect_uri = $1 WHERE id = $2")
        .bind(redirect_uri)
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

/// The link did its job: `completed`, naming the connection it made.
pub async fn complete(c: &mut AnyConnection, id: &str, connection_id: &str) -> Result<(), Error> {
    finish(
        c,
        id,
        ConnectSessionStatus::Completed,
        None,
        Some(connection_id),
    )
    .await
}

/// The link failed for good with `code` (an `ErrorCode` name).
pub async fn fail(
    c: &mut AnyConnection,
    id: &str,
    code: rekey_core::ErrorCode,
) -> Result<(), Error> {
    finish(
        c,
        id,
        ConnectSessionStatus::Failed,
        Some(code.as_str()),
        None,
    )
    .await
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<ConnectSessionRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM connect_sessions WHERE tenant = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(c)
    .await?)
}

/// Retire an unused session (a cancelled or resent link); false when it
/// was used or retired already.
pub async fn cancel(c: &mut AnyConnection, tenant: &str, id: &str) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE connect_sessions SET status = 'superseded' WHERE tenant = $1 AND id = $2 \
         AND status = 'created'",
    )
    .bind(tenant)
    .bind(id)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}
