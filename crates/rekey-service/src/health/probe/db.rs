//! Database probes (`protocol = "postgres" | "mysql"`): log in with the
//! connection's user name and password and run the catalog's statement. A
//! rejected login (the catalog's `auth_failure_codes`: SQLSTATE `28P01`,
//! MySQL `1045`…) is an auth failure; timeouts and refused connections are
//! transient; anything else is unexpected. The host is resolved and every
//! address checked by the outbound policy before any login; a refused host
//! is `outbound_refused`.

use crate::status::{Observation, Outcome};
use crate::Rekey;
use rekey_core::SecretString;
use rekey_providers::probe::{Probe, ProbeProtocol};
use rekey_store::connections::ConnectionRow;
use sqlx::{ConnectOptions, Connection};
use std::time::Duration;

/// Where and as whom to log in; `password` is exposed only for the login.
struct Target<'a> {
    pub host: String,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub username: &'a str,
    pub password: &'a str,
    /// Other secrets the statements carry (a new password), scrubbed from errors too.
    pub also_secret: &'a [&'a str],
}

/// The code of an observation where the login worked and a statement then
/// failed: a health problem, but proof the credential is still accepted.
pub(crate) const LOGGED_IN_QUERY_FAILED: &str = "query_failed_after_login";

fn obs(outcome: Outcome, code: &str, message: String) -> Observation {
    Observation::failed(outcome, code, message)
}

/// Classify a login or query error. `codes` are the server's error codes
/// (SQLSTATE, and MySQL's error number).
fn judge_error(probe: &Probe, e: &sqlx::Error, secrets: &[&str]) -> Observation {
    let scrub = |s: &str| rekey_core::scrub::scrub_text(s, secrets);
    match e {
        sqlx::Error::Database(d) => {
            let mut codes: Vec<String> = d.code().map(|c| c.to_string()).into_iter().collect();
            if let Some(m) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                codes.push(m.number().to_string());
            }
            let what = format!(
                "the database answered {}: {}",
                codes.join("/"),
                scrub(d.message()).chars().take(200).collect::<String>()
            );
            if codes.iter().any(|c| probe.auth_failure_codes.contains(c)) {
                obs(Outcome::AuthFailure, "auth_rejected", what)
            } else {
                obs(Outcome::Unexpected, "unexpected_response", what)
            }
        }
        sqlx::Error::PoolTimedOut => obs(
            Outcome::Transient,
            "timeout",
            "the database did not answer in time".into(),
        ),
        sqlx::Error::Io(io) => obs(
            Outcome::Transient,
            "connection_failed",
            format!("cannot reach the database: {}", io.kind()),
        ),
        sqlx::Error::Tls(_) => obs(
            Outcome::Transient,
            "connection_failed",
            "TLS handshake with the database failed".into(),
        ),
        other => obs(
            Outcome::Unexpected,
            "unexpected_response",
            scrub(&other.to_string()).chars().take(200).collect(),
        ),
    }
}

/// Why no login was attempted, or how it failed.
enum Failure {
    Refused(rekey_oauth::Refused),
    Lookup(String),
    Sql(sqlx::Error),
    /// Logged in, then a statement failed: the credential works.
    AfterLogin(sqlx::Error),
}

/// The login itself failed, or a statement after a successful login.
enum LoginError {
    Login(sqlx::Error),
    AfterLogin(sqlx::Error),
}

/// Log in at one checked address, run the statements, log out.
async fn login(
    probe: &Probe,
    t: &Target<'_>,
    ip: std::net::IpAddr,
    port: u16,
    statements: &[String],
) -> Result<(), LoginError> {
    // The address is the one the policy checked: sqlx gets no name to
    // resolve again, so a second DNS answer cannot swap it.
    let host = ip.to_string();
    // The two drivers' option builders take the same calls but share no
    // trait for them.
    macro_rules! options {
        ($options:ty, $ssl:expr) => {{
            let o = <$options>::new()
                .host(&host)
                .port(port)
                .username(t.username)
                .password(t.password)
                .ssl_mode($ssl)
                .disable_statement_logging();
            match &t.database {
                Some(db) => o.database(db),
                None => o,
            }
        }};
    }
    match probe.protocol {
        ProbeProtocol::Postgres => {
            let o = options!(
                sqlx::postgres::PgConnectOptions,
                sqlx::postgres::PgSslMode::Prefer
            );
            session::<sqlx::Postgres>(o, statements).await
        }
        _ => {
            let o = options!(
                sqlx::mysql::MySqlConnectOptions,
                sqlx::mysql::MySqlSslMode::Preferred
            );
            session::<sqlx::MySql>(o, statements).await
        }
    }
}

/// Connect with `o`, run the statements, log out: the same steps on either
/// driver.
async fn session<DB>(
    o: <DB::Connection as Connection>::Options,
    statements: &[String],
) -> Result<(), LoginError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let mut c = o.connect().await.map_err(LoginError::Login)?;
    for q in statements {
        sqlx::query::<DB>(q)
            .execute(&mut c)
            .await
            .map_err(LoginError::AfterLogin)?;
    }
    c.close().await.map_err(LoginError::AfterLogin)
}

/// Resolve the host, check every address with the outbound policy, log in
/// at the allowed ones in turn (the next only when one cannot be reached),
/// run the statement, log out. Never errors: failure is the observation.
async fn run(
    probe: &Probe,
    t: Target<'_>,
    statements: &[String],
    outbound: &rekey_oauth::Outbound,
    timeout: Duration,
) -> Observation {
    let port = t.port.unwrap_or(match probe.protocol {
        ProbeProtocol::Postgres => 5432,
        _ => 3306,
    });
    let fut = async {
        let addrs = match outbound.resolve(&t.host, port).await {
            Ok(a) => a,
            Err(rekey_oauth::outbound::ResolveError::Refused(r)) => {
                return Err(Failure::Refused(r))
            }
            Err(e) => return Err(Failure::Lookup(e.to_string())),
        };
        let mut last = None;
        for a in addrs {
            match login(probe, &t, a.ip(), port, statements).await {
                Ok(()) => return Ok(()),
                Err(LoginError::Login(e @ sqlx::Error::Io(_))) => last = Some(e),
                Err(LoginError::Login(e)) => return Err(Failure::Sql(e)),
                Err(LoginError::AfterLogin(e)) => return Err(Failure::AfterLogin(e)),
            }
        }
        Err(match last {
            Some(e) => Failure::Sql(e),
            None => Failure::Lookup(format!("no address for {}", t.host)),
        })
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(())) => Observation::ok(),
        Ok(Err(Failure::Sql(e))) => {
            let mut secrets = vec![t.password];
            secrets.extend_from_slice(t.also_secret);
            judge_error(probe, &e, &secrets)
        }
        Ok(Err(Failure::AfterLogin(e))) => {
            let mut secrets = vec![t.password];
            secrets.extend_from_slice(t.also_secret);
            let mut o = judge_error(probe, &e, &secrets);
            // Not the login: the credential itself was accepted.
            if o.outcome == Outcome::AuthFailure {
                o.outcome = Outcome::Unexpected;
            }
            o.code = LOGGED_IN_QUERY_FAILED.to_string();
            o
        }
        Ok(Err(Failure::Refused(r))) => obs(Outcome::Unexpected, "outbound_refused", r.to_string()),
        Ok(Err(Failure::Lookup(m))) => obs(
            Outcome::Transient,
            "connection_failed",
            format!("cannot reach the database: {m}"),
        ),
        Err(_) => obs(
            Outcome::Transient,
            "timeout",
            format!("the database did not answer within {} s", timeout.as_secs()),
        ),
    }
}

/// Where a connection's database is: host, port and database name.
struct DbAddress {
    host: String,
    port: Option<u16>,
    database: Option<String>,
}

impl Rekey {
    /// The database a connection's `params` name, through the catalog
    /// probe's templates; a misconfiguration is the observation.
    async fn db_address(
        &self,
        row: &ConnectionRow,
        probe: &Probe,
    ) -> Result<DbAddress, Observation> {
        let params = self.probe_params(row).await;
        let misconfigured = |m: String| Err(Observation::misconfigured(m));
        let Some(provider) = self.catalog().get(&row.provider) else {
            return misconfigured(format!("provider `{}` is not in the catalog", row.provider));
        };
        // A missing optional part (port, database) falls back to the default.
        let render = |t: &Option<String>| -> Result<Option<String>, String> {
            match t {
                None => Ok(None),
                Some(t) => {
                    let missing = rekey_providers::placeholders(t)
                        .iter()
                        .any(|p| !params.contains_key(p));
                    if missing {
                        return Ok(None);
                    }
                    provider
                        .render_url(t, &params)
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
            }
        };
        let host = match render(&probe.host) {
            Ok(Some(h)) => h,
            Ok(None) => {
                return misconfigured(
                    "the database host is not set; set `params.host` on the connection".into(),
                )
            }
            Err(e) => return misconfigured(format!("cannot build the probe target: {e}")),
        };
        let port = match render(&probe.port) {
            Ok(p) => match p.map(|p| p.parse::<u16>()) {
                None => None,
                Some(Ok(n)) if n > 0 => Some(n),
                Some(_) => return misconfigured("`params.port` must be a port number".into()),
            },
            Err(e) => return misconfigured(format!("cannot build the probe target: {e}")),
        };
        let database = match render(&probe.database) {
            Ok(d) => d,
            Err(e) => return misconfigured(format!("cannot build the probe target: {e}")),
        };
        Ok(DbAddress {
            host,
            port,
            database,
        })
    }

    /// Log in to the connection's database. The host, port and database
    /// come from the connection's `params` through the catalog templates.
    pub(in crate::health) async fn run_db_probe(
        &self,
        row: &ConnectionRow,
        probe: &Probe,
        username: &str,
        password: &SecretString,
    ) -> Observation {
        let query = probe.query.clone().unwrap_or_else(|| "SELECT 1".into());
        self.db_exec(row, probe, username, password, &[query], &[])
            .await
    }

    /// Log in to the connection's database as `username` and run
    /// `statements` in order (the rotators' `ALTER ROLE …`); `also_secret`
    /// are values in the statements to keep out of any error. The outbound
    /// policy applies as for the probe. Never errors: failure is the
    /// observation, classified as the probe's.
    pub(crate) async fn db_exec(
        &self,
        row: &ConnectionRow,
        probe: &Probe,
        username: &str,
        password: &SecretString,
        statements: &[String],
        also_secret: &[&str],
    ) -> Observation {
        let a = match self.db_address(row, probe).await {
            Ok(a) => a,
            Err(o) => return o,
        };
        let timeout = Duration::from_secs(u64::from(probe.timeout_secs))
            .min(self.health_settings().max_probe_timeout);
        run(
            probe,
            Target {
                host: a.host,
                port: a.port,
                database: a.database,
                username,
                password: password.expose(),
                also_secret,
            },
            statements,
            &self.inner.outbound,
            timeout,
        )
        .await
    }
}
