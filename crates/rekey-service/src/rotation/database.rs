//! The PostgreSQL and MySQL/MariaDB password rotator (kind `basic`).
//!
//! `single_user`: the role changes its own password (`ALTER USER … PASSWORD`,
//! `ALTER USER CURRENT_USER() IDENTIFIED BY`), or an admin connection does;
//! the old password stops working at `set`, so it is never handed out as
//! `previous`. `alternate_users`: two roles with the same grants take
//! turns; an admin connection gives the idle one the new password, it
//! becomes current, and at retirement the other one's password is replaced
//! by a random one nobody keeps.
//!
//! Logins go through the same outbound policy as the probe (see
//! `health::probe::db`). Passwords are 32 random letters and digits, so
//! they need no quoting; role names are held to a safe character set.

use super::{At, Material, Options, Rotate, StepError};
use crate::status::{Observation, Outcome};
use crate::Rekey;
use rand::distributions::Alphanumeric;
use rand::Rng;
use rekey_core::rotation::RotationStrategy;
use rekey_core::{Error, ErrorCode, SecretString};
use rekey_providers::probe::{Probe, ProbeProtocol};
use rekey_store::connections::ConnectionRow;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbRotator {
    Postgres,
    Mysql,
}

/// 32 random letters and digits, with at least one upper-case letter, one
/// lower-case letter and one digit (Redshift refuses a password without;
/// about one draw in a hundred lacks one and is drawn again).
fn new_password() -> SecretString {
    loop {
        let p: String = rand::rngs::OsRng
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        if p.chars().any(|c| c.is_ascii_uppercase())
            && p.chars().any(|c| c.is_ascii_lowercase())
            && p.chars().any(|c| c.is_ascii_digit())
        {
            return SecretString::new(p);
        }
    }
}

/// Role names that are safe inside the statements' quotes.
fn safe_name(s: &str) -> bool {
    super::plain_name(s, super::ROLE_NAME.0, super::ROLE_NAME.1)
}

fn username(m: &Material) -> Option<&str> {
    m.meta.get("username").and_then(Value::as_str)
}

fn password(m: &Material) -> Option<&SecretString> {
    m.secrets.get("password")
}

fn missing(what: &str) -> StepError {
    StepError::permanent(
        "rotation_misconfigured",
        format!("the credential has no {what}"),
        "replace the credential with a user name and password (PUT …/credentials), then rotate again",
    )
}

/// A probe observation as a step's outcome; `who` names the login.
fn judge(o: Observation, who: &str) -> Result<(), StepError> {
    let next = match o.outcome {
        Outcome::Ok => return Ok(()),
        Outcome::Transient => None,
        Outcome::AuthFailure => Some(format!(
            "the database refused the login of {who}: check that its stored password is right (PUT …/credentials) and rotate again"
        )),
        Outcome::Unexpected => Some(format!(
            "check that {who} may change the password (PostgreSQL: the role itself, or CREATEROLE; MySQL: ALTER USER or CREATE USER privilege) and that the connection's host settings are right"
        )),
    };
    Err(StepError {
        code: o.code,
        message: o.message,
        retry: next.is_none(),
        next_action: next,
        operator: None,
    })
}

impl DbRotator {
    fn protocol(self) -> ProbeProtocol {
        match self {
            DbRotator::Postgres => ProbeProtocol::Postgres,
            DbRotator::Mysql => ProbeProtocol::Mysql,
        }
    }

    /// The statement that gives `user` the password `pw`; `own` when the
    /// login is the role itself.
    fn alter(self, user: &str, pw: &str, own: bool, host: &str) -> String {
        match (self, own) {
            // `ALTER USER` (PostgreSQL's alias of ALTER ROLE) is also what
            // Redshift, which speaks the same protocol, understands; a role
            // may always change its own password this way.
            (DbRotator::Postgres, _) => format!("ALTER USER \"{user}\" WITH PASSWORD '{pw}'"),
            // MariaDB and MySQL 5.7 let an account set its own password so
            // without privileges (MySQL 8 has no PASSWORD(): see `alter_own_mysql8`).
            (DbRotator::Mysql, true) => format!("SET PASSWORD = PASSWORD('{pw}')"),
            (DbRotator::Mysql, false) => {
                format!("ALTER USER '{user}'@'{host}' IDENTIFIED BY '{pw}'")
            }
        }
    }

    /// The catalog's probe for the connection, which says where the
    /// database is and how a refused login looks.
    fn probe(self, rk: &Rekey, row: &ConnectionRow) -> Result<Probe, StepError> {
        let p = rk.probe_of(row).map_err(|e| {
            StepError::permanent(
                "rotation_misconfigured",
                e,
                "set the connection's host parameters",
            )
        })?;
        if p.protocol != self.protocol() {
            return Err(StepError::permanent(
                "rotation_misconfigured",
                "the connection is not checked by logging in to the database (is `probe_url` set?)",
                "clear `probe_url` on the connection so rekey logs in to the database",
            ));
        }
        Ok(p)
    }

    /// The admin connection's user name and password, when one is set.
    async fn admin(
        &self,
        rk: &Rekey,
        row: &ConnectionRow,
        opts: &Options,
    ) -> Result<Option<(String, SecretString)>, StepError> {
        let Some(id) = &opts.admin_connection_id else {
            return Ok(None);
        };
        let (a, secrets) = rk.load_with_secrets(&row.tenant, id).await.map_err(|e| {
            StepError::permanent(
                "rotation_misconfigured",
                format!("the admin connection {id} cannot be read: {e}"),
                "start the rotation again with an admin connection that exists",
            )
        })?;
        let m = Material {
            meta: serde_json::from_str(&a.credential_meta).unwrap_or_default(),
            secrets,
        };
        match (username(&m), password(&m)) {
            (Some(u), Some(p)) => Ok(Some((u.to_string(), p.clone()))),
            _ => Err(missing("admin user name and password")),
        }
    }

    /// Give `user` the password `pw` as the admin (or as `login`, the role
    /// itself, with its password).
    #[allow(clippy::too_many_arguments)]
    async fn change(
        self,
        rk: &Rekey,
        row: &ConnectionRow,
        probe: &Probe,
        admin: Option<&(String, SecretString)>,
        login: (&str, &SecretString),
        user: &str,
        pw: &SecretString,
        host: &str,
    ) -> Result<(), StepError> {
        let (who, as_user, as_pw, own) = match admin {
            Some((u, p)) => (format!("the admin role `{u}`"), u.as_str(), p, false),
            None => (format!("the role `{}`", login.0), login.0, login.1, true),
        };
        let stmt = self.alter(user, pw.expose(), own, host);
        let mut o = rk
            .db_exec(row, probe, as_user, as_pw, &[stmt], &[pw.expose()])
            .await;
        if own && self == DbRotator::Mysql && o.outcome == Outcome::Unexpected {
            // MySQL 8 refuses PASSWORD(); its own form needs no privilege either.
            let stmt = format!("ALTER USER USER() IDENTIFIED BY '{}'", pw.expose());
            o = rk
                .db_exec(row, probe, as_user, as_pw, &[stmt], &[pw.expose()])
                .await;
        }
        judge(o, &who)
    }
    /// `set`: give the new password to the role (see the module doc).
    async fn set_password(
        self,
        rk: &Rekey,
        row: &ConnectionRow,
        current: &Material,
        pending: &Material,
        opts: &Options,
    ) -> Result<(), StepError> {
        let probe = self.probe(rk, row)?;
        let (Some(new_user), Some(new_pw)) = (username(pending), password(pending)) else {
            return Err(missing("new password"));
        };
        let host = opts.user_host.as_deref().unwrap_or("%");
        let admin = self.admin(rk, row, opts).await?;
        if let Some(a) = &admin {
            return self
                .change(
                    rk,
                    row,
                    &probe,
                    Some(a),
                    (new_user, new_pw),
                    new_user,
                    new_pw,
                    host,
                )
                .await;
        }
        let (Some(user), Some(pw)) = (username(current), password(current)) else {
            return Err(missing("user name and password"));
        };
        match self
            .change(rk, row, &probe, None, (user, pw), user, new_pw, host)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                // Resuming after a crash that came after the change: the
                // old password is already gone and the new one logs in.
                let query = probe.query.clone().unwrap_or_else(|| "SELECT 1".into());
                let o = rk.db_exec(row, &probe, user, new_pw, &[query], &[]).await;
                if o.outcome == Outcome::Ok {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

impl Rotate for DbRotator {
    async fn prepare(
        &self,
        _rk: &Rekey,
        _row: &ConnectionRow,
        _current: &Material,
        _opts: &mut Options,
    ) -> Result<(), Error> {
        Ok(())
    }

    fn generate(&self, current: &Material, opts: &Options) -> Result<Material, Error> {
        let Some(user) = username(current) else {
            return Err(Error::unprocessable(
                ErrorCode::InvalidCredentials,
                "the connection's credential has no user name to rotate",
            ));
        };
        let next_user = match opts.strategy() {
            RotationStrategy::SingleUser => user.to_string(),
            RotationStrategy::AlternateUsers => {
                let alt = opts.alternate_username.as_deref().unwrap_or_default();
                let orig = opts.original_username.as_deref().unwrap_or(user);
                if user == alt { orig } else { alt }.to_string()
            }
        };
        if !safe_name(user) || !safe_name(&next_user) {
            return Err(Error::unprocessable(
                ErrorCode::InvalidCredentials,
                "rekey rotates roles whose names are 1–63 characters of A-Z, a-z, 0-9, '_', '.', '-', '@'",
            ));
        }
        let mut meta = current.meta.clone();
        meta.insert("username".into(), Value::String(next_user));
        let mut secrets = BTreeMap::new();
        secrets.insert("password".to_string(), new_password());
        Ok(Material { meta, secrets })
    }

    async fn set(
        &self,
        at: &At<'_>,
        current: &Material,
        pending: &Material,
    ) -> Result<Option<Material>, StepError> {
        let At { rk, row, opts } = *at;
        self.set_password(rk, row, current, pending, opts)
            .await
            .map(|()| None)
    }

    async fn discard(
        &self,
        _at: &At<'_>,
        _current: &Material,
        _pending: &Material,
    ) -> Result<(), StepError> {
        // A password exists only where it was set: nothing stands alone.
        Ok(())
    }

    async fn test(&self, at: &At<'_>, pending: &Material) -> Result<(), StepError> {
        let At { rk, row, .. } = *at;
        let probe = self.probe(rk, row)?;
        let (Some(user), Some(pw)) = (username(pending), password(pending)) else {
            return Err(missing("new password"));
        };
        let query = probe.query.clone().unwrap_or_else(|| "SELECT 1".into());
        let o = rk.db_exec(row, &probe, user, pw, &[query], &[]).await;
        judge(o, &format!("the role `{user}` with the new password"))
    }

    async fn retire(
        &self,
        at: &At<'_>,
        old: &Material,
        current: &Material,
    ) -> Result<(), StepError> {
        let At { rk, row, opts } = *at;
        if opts.strategy() == RotationStrategy::SingleUser {
            // The old password was replaced at `set`; nothing is left.
            return Ok(());
        }
        let (Some(old_user), Some(cur_user)) = (username(old), username(current)) else {
            return Err(missing("user name"));
        };
        if old_user == cur_user {
            return Ok(());
        }
        let probe = self.probe(rk, row)?;
        let admin = self.admin(rk, row, opts).await?;
        let host = opts.user_host.as_deref().unwrap_or("%");
        // Nobody keeps this password: the old role is locked out until the
        // next rotation gives it one again.
        let throwaway = new_password();
        let Some(a) = admin else {
            return Err(missing("admin connection"));
        };
        self.change(
            rk,
            row,
            &probe,
            Some(&a),
            (old_user, &throwaway),
            old_user,
            &throwaway,
            host,
        )
        .await
    }

    fn old_survives_set(&self, opts: &Options) -> bool {
        opts.strategy() == RotationStrategy::AlternateUsers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn material(user: &str) -> Material {
        Material {
            meta: json!({"username": user})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            secrets: BTreeMap::from([("password".to_string(), SecretString::new("old".into()))]),
        }
    }

    #[test]
    fn alternate_users_take_turns() {
        let opts = Options {
            alternate_username: Some("app_b".into()),
            original_username: Some("app_a".into()),
            strategy: Some("alternate_users".into()),
            ..Options::default()
        };
        let r = DbRotator::Postgres;
        let n = r.generate(&material("app_a"), &opts).unwrap();
        assert_eq!(username(&n), Some("app_b"));
        let n = r.generate(&material("app_b"), &opts).unwrap();
        assert_eq!(username(&n), Some("app_a"));
        let p = password(&n).unwrap().expose().to_string();
        assert_eq!(p.len(), 32);
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(r.old_survives_set(&opts));
        assert!(!r.old_survives_set(&Options::default()));
    }

    #[test]
    fn single_user_keeps_the_role_and_refuses_unsafe_names() {
        let r = DbRotator::Mysql;
        let n = r.generate(&material("app"), &Options::default()).unwrap();
        assert_eq!(username(&n), Some("app"));
        assert_ne!(password(&n).unwrap().expose(), "old");
        assert!(r
            .generate(&material("a'; DROP"), &Options::default())
            .is_err());
        assert_eq!(
            r.alter("app", "pw", false, "%"),
            "ALTER USER 'app'@'%' IDENTIFIED BY 'pw'"
        );
        assert_eq!(
            DbRotator::Postgres.alter("app", "pw", false, "%"),
            "ALTER USER \"app\" WITH PASSWORD 'pw'"
        );
        assert_eq!(
            DbRotator::Postgres.alter("app", "pw", true, "%"),
            "ALTER USER \"app\" WITH PASSWORD 'pw'"
        );
    }

    #[test]
    fn passwords_have_every_character_class() {
        for _ in 0..2000 {
            let p = new_password();
            let p = p.expose();
            assert_eq!(p.len(), 32);
            assert!(p.chars().any(|c| c.is_ascii_uppercase()), "{p}");
            assert!(p.chars().any(|c| c.is_ascii_lowercase()), "{p}");
            assert!(p.chars().any(|c| c.is_ascii_digit()), "{p}");
        }
    }
}
