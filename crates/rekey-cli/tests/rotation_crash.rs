//! Rotation survives a crash at every step: the real binary is started with
//! `REKEY_FAULT_AFTER=<step>` (debug builds abort right after that step's
//! side effect, before its outcome is written), then started again without
//! it. The worker resumes the rotation; afterwards the target accepts
//! exactly the password rekey holds as current, the old one is refused, no
//! pending version is left and no credential was lost. PostgreSQL roles are
//! members of `rekey_password_login` (checked SCRAM logins, see .ci/setup);
//! MySQL is MariaDB at 127.0.0.1:3306.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Env;
use rekey_client::api::{RotationQuery, StartRotation};
use rekey_client::Client;
use rekey_testkit::{short_unique, Db};
use serde_json::json;
use sqlx::Connection;
use std::time::Duration;

const STEPS: [&str; 5] = ["created", "set", "tested", "promoted", "retired"];

#[derive(Clone, Copy, Debug)]
enum Target {
    Postgres,
    Mysql,
}

impl Target {
    async fn create_user(self, pw: &str) -> String {
        let name = format!("rkcrash{}", short_unique());
        match self {
            Target::Postgres => {
                let mut c = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/test")
                    .await
                    .unwrap();
                sqlx::raw_sql(&format!(
                    "CREATE ROLE {name} LOGIN PASSWORD '{pw}' IN ROLE rekey_password_login"
                ))
                .execute(&mut c)
                .await
                .unwrap();
            }
            Target::Mysql => {
                let mut c = sqlx::MySqlConnection::connect("mysql://root@127.0.0.1:3306/test")
                    .await
                    .unwrap();
                sqlx::raw_sql(&format!("CREATE USER '{name}'@'%' IDENTIFIED BY '{pw}'"))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
        name
    }

    async fn drop_user(self, name: &str) {
        match self {
            Target::Postgres => {
                let mut c = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/test")
                    .await
                    .unwrap();
                sqlx::raw_sql(&format!("DROP ROLE IF EXISTS {name}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Target::Mysql => {
                let mut c = sqlx::MySqlConnection::connect("mysql://root@127.0.0.1:3306/test")
                    .await
                    .unwrap();
                sqlx::raw_sql(&format!("DROP USER IF EXISTS '{name}'@'%'"))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }

    /// Whether `user` logs in with `pw`; anything but a refused password panics.
    async fn login(self, user: &str, pw: &str) -> bool {
        let r = match self {
            Target::Postgres => {
                sqlx::PgConnection::connect(&format!("postgres://{user}:{pw}@127.0.0.1:5432/test"))
                    .await
                    .map(|_| ())
            }
            Target::Mysql => sqlx::MySqlConnection::connect(&format!(
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

    fn connection(self, user: &str, pw: &str) -> serde_json::Value {
        match self {
            Target::Postgres => {
                json!({"provider": "postgresql", "kind": "basic", "display_name": "crash pg",
                "params": {"host": "127.0.0.1", "port": "5432", "database": "test"},
                "credentials": {"username": user, "password": pw}})
            }
            Target::Mysql => {
                json!({"provider": "mysql", "kind": "basic", "display_name": "crash my",
                "params": {"host": "127.0.0.1", "port": "3306", "database": "information_schema"},
                "credentials": {"username": user, "password": pw}})
            }
        }
    }
}

#[tokio::test]
async fn postgres_rotation_resumes_after_a_crash_at_every_step() {
    for step in STEPS {
        crash_at(Db::Sqlite, Target::Postgres, step).await;
    }
}

#[tokio::test]
async fn mysql_rotation_resumes_after_a_crash_at_every_step() {
    for step in STEPS {
        crash_at(Db::Sqlite, Target::Mysql, step).await;
    }
}

/// On PostgreSQL another process takes the rotation over once the crashed
/// one's lease has lapsed.
#[tokio::test]
async fn rotation_resumes_on_a_postgres_store_after_a_crash() {
    crash_at(Db::Postgres, Target::Postgres, "set").await;
}

async fn crash_at(db: Db, target: Target, step: &str) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let first_pw = "crash-first-pw-1";
    let user = target.create_user(first_pw).await;

    let mut crashing = env.serve_command(&["--worker-tick-ms", "100"], None);
    crashing.env("REKEY_FAULT_AFTER", step);
    let mut server = common::start_server(crashing).await;
    let c = Client::new(&server.base, key.clone()).unwrap();
    let created = c
        .create_connection(&serde_json::from_value(target.connection(&user, first_pw)).unwrap())
        .await
        .unwrap();
    let id = created.id;
    // The answer may never come when the crash is at `created`.
    let _ = c.start_rotation(&id, &StartRotation::default()).await;
    let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .unwrap_or_else(|_| panic!("{target:?}/{step}: the fault did not stop the server"))
        .unwrap();
    assert!(!status.success(), "{target:?}/{step}: aborted, not exited");
    let said = format!("REKEY_FAULT_AFTER={step}");
    for _ in 0..50 {
        if server.logs().contains(&said) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(
        server.logs().contains(&said),
        "{target:?}/{step}: {}",
        server.logs()
    );

    // Restart without the fault: the worker resumes the rotation.
    let server = env.serve_with(&["--worker-tick-ms", "100"], None).await;
    let c = Client::new(&server.base, key).unwrap();
    let mut done = None;
    for _ in 0..400 {
        let page = c
            .list_rotations(&RotationQuery {
                connection: Some(id.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1, "{target:?}/{step}: one rotation");
        if page.items[0].finished {
            done = Some(page.items[0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = done.unwrap_or_else(|| panic!("{target:?}/{step}: the rotation did not resume"));
    assert_eq!(done.state, "retired", "{target:?}/{step}: {done:?}");

    // The target accepts exactly what rekey holds; the old password is gone.
    let cur = c.read_credentials(&id).await.unwrap().credentials;
    let pw = cur["password"].as_str().unwrap();
    assert_eq!(cur["username"], user.as_str());
    assert_ne!(pw, first_pw);
    assert!(
        target.login(&user, pw).await,
        "{target:?}/{step}: current logs in"
    );
    assert!(
        !target.login(&user, first_pw).await,
        "{target:?}/{step}: the old password is refused"
    );
    let labels: Vec<String> = c
        .list_versions(&id)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|v| v.label)
        .collect();
    assert_eq!(
        labels,
        ["current", "retired"],
        "{target:?}/{step}: no pending left"
    );
    server.stop().await;
    target.drop_user(&user).await;
}
