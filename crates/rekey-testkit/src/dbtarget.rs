//! The databases the rotation tests rotate passwords on: PostgreSQL at
//! 127.0.0.1:5432 (roles in `rekey_password_login`, whose loopback logins
//! check the password, see .ci/setup) and MariaDB at 127.0.0.1:3306. Users
//! get names unique across concurrent tests; tests drop them at the end.

use crate::short_unique;
use rekey_api::RotationView;
use rekey_client::Client;
use serde_json::json;
use sqlx::Connection;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub enum DbTarget {
    Postgres,
    Mysql,
}

impl DbTarget {
    /// Run `sql` as the server's administrator (postgres, root).
    pub async fn admin_exec(self, sql: &str) {
        match self {
            DbTarget::Postgres => {
                let mut c = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/test")
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
            DbTarget::Mysql => {
                let mut c = sqlx::MySqlConnection::connect("mysql://root@127.0.0.1:3306/test")
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
        }
    }

    /// A new user with password `pw`, named `prefix` and a unique suffix.
    pub async fn create_user(self, prefix: &str, pw: &str) -> String {
        let name = format!("{prefix}{}", short_unique());
        self.admin_exec(&match self {
            DbTarget::Postgres => {
                format!("CREATE ROLE {name} LOGIN PASSWORD '{pw}' IN ROLE rekey_password_login")
            }
            DbTarget::Mysql => format!("CREATE USER '{name}'@'%' IDENTIFIED BY '{pw}'"),
        })
        .await;
        name
    }

    pub async fn drop_user(self, name: &str) {
        self.admin_exec(&match self {
            DbTarget::Postgres => format!("DROP ROLE IF EXISTS {name}"),
            DbTarget::Mysql => format!("DROP USER IF EXISTS '{name}'@'%'"),
        })
        .await;
    }

    /// Whether `user` logs in with `pw`; anything but a refused password panics.
    pub async fn login(self, user: &str, pw: &str) -> bool {
        let r = match self {
            DbTarget::Postgres => {
                sqlx::PgConnection::connect(&format!("postgres://{user}:{pw}@127.0.0.1:5432/test"))
                    .await
                    .map(|_| ())
            }
            DbTarget::Mysql => sqlx::MySqlConnection::connect(&format!(
                "mysql://{user}:{pw}@127.0.0.1:3306/information_schema"
            ))
            .await
            .map(|_| ()),
        };
        match r {
            Ok(()) => true,
            Err(sqlx::Error::Database(d))
                if matches!(d.code().as_deref(), Some("28P01") | Some("28000")) =>
            {
                false
            }
            Err(e) => panic!("unexpected login error for {user}: {e}"),
        }
    }

    /// A connection body for the user (`POST /api/v1/connections`).
    pub fn connection(self, user: &str, pw: &str) -> serde_json::Value {
        match self {
            DbTarget::Postgres => {
                json!({"provider": "postgresql", "kind": "basic", "display_name": "test pg",
                "params": {"host": "127.0.0.1", "port": "5432", "database": "test"},
                "credentials": {"username": user, "password": pw}})
            }
            DbTarget::Mysql => {
                json!({"provider": "mysql", "kind": "basic", "display_name": "test my",
                "params": {"host": "127.0.0.1", "port": "3306", "database": "information_schema"},
                "credentials": {"username": user, "password": pw}})
            }
        }
    }
}

/// Poll a rotation until it is finished or reaches `state`.
pub async fn wait_for_rotation(c: &Client, id: &str, state: &str) -> RotationView {
    for _ in 0..300 {
        let r = c.get_rotation(id).await.unwrap();
        if r.state == state || r.finished {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rotation {id} did not reach {state}");
}

/// Start a rotation of the connection `id` with `req` and wait until it
/// reaches `state`; asserts that it did (and did not end otherwise).
pub async fn rotate_to(
    c: &Client,
    id: &str,
    req: &rekey_api::StartRotation,
    state: &str,
) -> RotationView {
    let r = c.start_rotation(id, req).await.unwrap();
    let done = wait_for_rotation(c, &r.id, state).await;
    assert_eq!(done.state, state, "{done:?}");
    done
}

/// The rotations of the connection `id`, newest first.
pub async fn rotations_of(c: &Client, id: &str) -> rekey_client::Result<rekey_api::RotationList> {
    let query = rekey_api::RotationQuery {
        connection: Some(id.to_string()),
        ..Default::default()
    };
    c.list_rotations(&query).await
}
