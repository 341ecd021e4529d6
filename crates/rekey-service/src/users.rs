//! Dashboard users: local accounts with argon2id password hashes, roles
//! that map onto API scopes, and browser sessions (random token in an
//! HttpOnly cookie, its SHA-256 in the database, a per-session CSRF token).

use crate::audit::{record, record_ok};
use crate::signin_throttle::{Decision, MAX_NAME};
use crate::{Ctx, Principal, Rekey};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::scope::Scopes;
use rekey_core::time::now_ms;
use rekey_core::ErrorCode;
use rekey_core::{ids, Error, SecretString};
use rekey_crypto::hash_api_key;
use rekey_store::users::{self as store, UserRow};
use serde_json::json;

/// Sessions last this long (ms); logging in again starts a new one.
const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// Password checks in flight at once: argon2id costs ~19 MiB and real CPU
/// each, so a flood of sign-ins queues instead of exhausting the machine.
static VERIFY_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// What a dashboard user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything, including API keys, webhooks and credential reads.
    Admin,
    /// Manage connections: check, reauthorize, update, revoke, disable.
    Operator,
    /// Read connections and the audit log.
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, Error> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            _ => Err(Error::invalid(
                ErrorCode::InvalidRole,
                "`role` must be admin, operator or viewer",
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
    fn scopes(self) -> Result<Scopes, Error> {
        match self {
            Role::Admin => Scopes::parse(&["admin"]),
            Role::Operator => {
                Scopes::parse(&["connections:read", "connections:write", "audit:read"])
            }
            Role::Viewer => Scopes::parse(&["connections:read", "audit:read"]),
        }
    }
}

/// A signed-in dashboard user. `Debug` leaves the CSRF token out.
#[derive(Clone)]
pub struct SessionUser {
    pub username: String,
    pub role: Role,
    pub principal: Principal,
    /// The session's CSRF token: every form posts it back.
    pub csrf: String,
}

impl std::fmt::Debug for SessionUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionUser")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("principal", &self.principal)
            .field("csrf", &"[redacted]")
            .finish()
    }
}

impl SessionUser {
    pub fn ctx(&self, request_id: Option<String>, source: Option<String>) -> Ctx {
        self.principal.ctx(request_id, source)
    }
}

/// An argon2id hash of a random password, made once: unknown user names
/// are checked against it so they take as long as known ones.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(rekey_oauth::random_token().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// The address as the sign-in throttle counts it: IPv4 as is, IPv6 by /64.
fn throttle_key(source: &str) -> String {
    match source.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        _ => source.to_string(),
    }
}

fn validate_username(u: &str) -> Result<(), Error> {
    let ok = (3..=64).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            ErrorCode::InvalidUsername,
            "user names are 3–64 characters of a-z, A-Z, 0-9, '.', '_', '-', '@'",
        ))
    }
}

impl Rekey {
    /// Whether anyone can sign in to the dashboard yet (`rekey serve` says
    /// how to create the first user when not).
    pub async fn has_users(&self) -> Result<bool, Error> {
        let mut c = self.store().read().await?;
        store::any(&mut c).await
    }

    /// Create a dashboard user (offline admin command).
    pub async fn create_user(
        &self,
        ctx: &Ctx,
        username: &str,
        password: &SecretString,
        role: Role,
    ) -> Result<String, Error> {
        validate_username(username)?;
        ids::validate_slug("tenant", &ctx.tenant, 64)?;
        let pw = password.expose();
        if pw.chars().count() < 12 || pw.len() > 1024 {
            return Err(Error::invalid(
                ErrorCode::WeakPassword,
                "passwords are 12–1024 characters",
            ));
        }
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .map_err(|e| Error::internal(format!("argon2: {e}")))?
            .to_string();
        let row = UserRow {
            id: ids::new_id("usr"),
            tenant: ctx.tenant.clone(),
            username: username.to_string(),
            password_hash: hash,
            role: role.as_str().into(),
            created_at: now_ms(),
            disabled_at: None,
        };
        let mut tx = self.store().begin_write().await?;
        store::insert(tx.conn(), &row)
            .await
            .map_err(|e| match e.code() {
                ErrorCode::AlreadyExists => {
                    Error::conflict(ErrorCode::UserExists, "a user with this name exists")
                }
                _ => e,
            })?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::UserCreated,
            &row.id,
            json!({"username": username, "role": role.as_str()}),
        )
        .await?;
        tx.commit().await?;
        Ok(row.id)
    }

    /// Check a password and open a session: (session token, user). Wrong
    /// user and wrong password fail alike, in about the same time. The
    /// request id and client address go to the audit entry; the address
    /// also counts for sign-in throttling.
    pub async fn login(
        &self,
        username: &str,
        password: &SecretString,
        request_id: Option<String>,
        source: Option<String>,
    ) -> Result<(SecretString, SessionUser), Error> {
        let now = now_ms();
        // No such user can exist; refusing before anything is remembered
        // keeps the throttle's memory bounded.
        if username.len() > MAX_NAME {
            return Err(Error::Unauthorized);
        }
        // IPv6 clients usually own a whole /64: count them as one address.
        let key = source.as_deref().map(throttle_key);
        let src = key.as_deref();
        let decision = self.signin_throttle().check(username, src, now);
        match decision {
            Decision::Allow => {}
            Decision::AllowAfter(ms) => {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            Decision::Refuse(ms) => {
                return Err(Error::conflict(
                    ErrorCode::TooManyAttempts,
                    format!(
                        "too many failed sign-ins for this user or from this address; try again in {} s",
                        (ms + 999) / 1000
                    ),
                ));
            }
        }
        let _slot = VERIFY_SLOTS
            .acquire()
            .await
            .map_err(|_| Error::Unavailable("sign-in is shutting down".into()))?;
        let user = {
            let mut c = self.store().read().await?;
            store::by_username(&mut c, username).await?
        };
        // Verify against a real hash even for unknown users (no timing oracle).
        let hash: String = user
            .as_ref()
            .map_or_else(|| dummy_hash().to_string(), |u| u.password_hash.clone());
        let ok = PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.expose().as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        let user = match user {
            Some(u) if ok && u.disabled_at.is_none() => u,
            other => {
                self.signin_throttle().failure(username, src, now);
                if let Some(u) = other {
                    let ctx = Ctx {
                        tenant: u.tenant.clone(),
                        actor: format!("user:{}", u.username),
                        request_id,
                        source,
                    };
                    let mut tx = self.store().begin_write().await?;
                    record(
                        &mut tx,
                        &ctx,
                        AuditAction::UserLogin,
                        Some(&u.id),
                        AuditOutcome::Denied,
                        json!({}),
                    )
                    .await?;
                    tx.commit().await?;
                }
                return Err(Error::Unauthorized);
            }
        };
        self.signin_throttle().success(username, src);
        let token = SecretString::new(rekey_oauth::random_token());
        let csrf = rekey_oauth::random_token();
        let role = Role::parse(&user.role)?;
        let su = SessionUser {
            username: user.username.clone(),
            role,
            principal: Principal {
                key_id: format!("user:{}", user.username),
                tenant: user.tenant.clone(),
                scopes: role.scopes()?,
            },
            csrf: csrf.clone(),
        };
        let mut tx = self.store().begin_write().await?;
        store::delete_expired(tx.conn(), now).await?;
        store::insert_session(
            tx.conn(),
            &hash_api_key(token.expose()),
            &user.id,
            &csrf,
            now,
            now + SESSION_TTL_MS,
        )
        .await?;
        record_ok(
            &mut tx,
            &su.ctx(request_id, source),
            AuditAction::UserLogin,
            &user.id,
            json!({"role": role.as_str()}),
        )
        .await?;
        tx.commit().await?;
        Ok((token, su))
    }

    /// The user behind a session cookie, if the session is live.
    pub async fn session_user(&self, token: &SecretString) -> Result<Option<SessionUser>, Error> {
        let mut c = self.store().read().await?;
        let Some((u, csrf)) =
            store::session(&mut c, &hash_api_key(token.expose()), now_ms()).await?
        else {
            return Ok(None);
        };
        let role = Role::parse(&u.role)?;
        Ok(Some(SessionUser {
            username: u.username.clone(),
            role,
            principal: Principal {
                key_id: format!("user:{}", u.username),
                tenant: u.tenant,
                scopes: role.scopes()?,
            },
            csrf,
        }))
    }

    pub async fn logout(&self, token: &SecretString) -> Result<(), Error> {
        let mut tx = self.store().begin_write().await?;
        store::delete_session(tx.conn(), &hash_api_key(token.expose())).await?;
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn throttle_keys_count_ipv6_per_64() {
        assert_eq!(super::throttle_key("10.1.2.3"), "10.1.2.3");
        assert_eq!(
            super::throttle_key("2001:db8:1:2:aaaa::1"),
            super::throttle_key("2001:db8:1:2:bbbb::9")
        );
        assert_ne!(
            super::throttle_key("2001:db8:1:2::1"),
            super::throttle_key("2001:db8:1:3::1")
        );
        assert_eq!(super::throttle_key("::ffff:10.1.2.3"), "10.1.2.3");
    }
}
