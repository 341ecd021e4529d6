//! Dashboard users and their sessions. Password hashes and session-token
//! hashes only; never a password or a token.

use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

#[derive(Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub tenant: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

const COLS: &str = "id, tenant, username, password_hash, role, created_at, disabled_at";

pub async fn insert(c: &mut AnyConnection, u: &UserRow) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO users ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&u.id)
    .bind(&u.tenant)
    .bind(&u.username)
    .bind(&u.password_hash)
    .bind(&u.role)
    .bind(u.created_at)
    .bind(u.disabled_at)
    .execute(c)
    .await?;
    Ok(())
}

/// Whether any dashboard user exists, in any tenant.
pub async fn any(c: &mut AnyConnection) -> Result<bool, Error> {
    let n: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users LIMIT 1")
        .fetch_optional(c)
        .await?;
    Ok(n.is_some())
}

pub async fn by_username(c: &mut AnyConnection, username: &str) -> Result<Option<UserRow>, Error> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLS} FROM users WHERE username = $1"))
            .bind(username)
            .fetch_optional(c)
            .await?,
    )
}

pub async fn insert_session(
    c: &mut AnyConnection,
    token_hash: &str,
    user_id: &str,
    csrf: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO ui_sessions (token_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf)
        .bind(now)
        .bind(expires_at)
        .execute(c)
        .await?;
    Ok(())
}

/// The live session for a token hash, with its user (None when expired,
/// unknown, or the user is disabled).
pub async fn session(
    c: &mut AnyConnection,
    token_hash: &str,
    now: i64,
) -> Result<Option<(UserRow, String)>, Error> {
    let r: Option<SessionUser> = sqlx::query_as(
        "SELECT u.id, u.tenant, u.username, u.password_hash, u.role, u.created_at, u.disabled_at, s.csrf \
         FROM ui_sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(c)
    .await?;
    Ok(r.map(|s| (s.user, s.csrf)))
}

/// A session's user and its CSRF token, as one joined row.
#[derive(FromRow)]
struct SessionUser {
    #[sqlx(flatten)]
    user: UserRow,
    csrf: String,
}

pub async fn delete_session(c: &mut AnyConnection, token_hash: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM ui_sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(c)
        .await?;
    Ok(())
}

/// Drop expired sessions (at login, so the table stays small).
pub async fn delete_expired(c: &mut AnyConnection, now: i64) -> Result<(), Error> {
    sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(c)
        .await?;
    Ok(())
}
