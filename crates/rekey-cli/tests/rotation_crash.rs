//! Rotation survives a crash at every step: the real binary is started with
//! `REKEY_FAULT_AFTER=<step>` (debug builds abort right after that step's
//! side effect, before its outcome is written), then started again without
//! it. The worker resumes the rotation; afterwards the target accepts
//! exactly the password rekey holds as current, the old one is refused, no
//! pending version is left and no credential was lost. PostgreSQL roles are
//! members of `rekey_password_login` (checked SCRAM logins, see .ci/setup);
//! MySQL is MariaDB at 127.0.0.1:3306. AWS is moto in server mode with
//! signature checking on, running across the crash and the restart: after
//! the resume the user holds exactly one access key, the current one, and
//! it works (moto, like AWS, refuses a third key, so no more than two ever
//! existed at once).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Env;
use rekey_client::api::StartRotation;
use rekey_client::Client;
use rekey_testkit::dbtarget::{rotations_of, DbTarget};
use rekey_testkit::Db;
use serde_json::json;
use std::time::Duration;

const STEPS: [&str; 5] = ["created", "set", "tested", "promoted", "retired"];

#[tokio::test]
async fn postgres_rotation_resumes_after_a_crash_at_every_step() {
    for step in STEPS {
        crash_at(Db::Sqlite, DbTarget::Postgres, step).await;
    }
}

#[tokio::test]
async fn mysql_rotation_resumes_after_a_crash_at_every_step() {
    for step in STEPS {
        crash_at(Db::Sqlite, DbTarget::Mysql, step).await;
    }
}

#[tokio::test]
async fn aws_rotation_resumes_after_a_crash_at_every_step() {
    for step in STEPS {
        aws_crash_at(step).await;
    }
}

/// RSA key pairs, with the operator's steps done against the Snowflake
/// stand-in (the only peer there is for them here) around the crash.
#[tokio::test]
async fn key_pair_rotation_resumes_after_a_crash_at_every_step() {
    for step in STEPS {
        key_pair_crash_at(step).await;
    }
}

/// On PostgreSQL another process takes the rotation over once the crashed
/// one's lease has lapsed.
#[tokio::test]
async fn rotation_resumes_on_a_postgres_store_after_a_crash() {
    crash_at(Db::Postgres, DbTarget::Postgres, "set").await;
}

/// `rekey serve` with a fast worker, set to abort right after `fault_after`
/// when given, and a client of it.
async fn serve(env: &Env, key: &str, fault_after: Option<&str>) -> (common::Server, Client) {
    let mut cmd = env.serve_command(&["--worker-tick-ms", "100"], None);
    if let Some(step) = fault_after {
        cmd.env("REKEY_FAULT_AFTER", step);
    }
    let server = common::start_server(cmd).await;
    let c = Client::new(&server.base, key.to_string()).unwrap();
    (server, c)
}

/// The labels of the connection's versions, newest first.
async fn version_labels(c: &Client, id: &str) -> Vec<String> {
    let versions = c.list_versions(id).await.unwrap().items;
    versions.into_iter().map(|v| v.label).collect()
}

/// Start the rotation on a server that aborts after `step` and wait for
/// the abort: the connection's id.
async fn crash(
    env: &Env,
    key: &str,
    step: &str,
    what: &str,
    connection: serde_json::Value,
    req: StartRotation,
) -> String {
    let (mut server, c) = serve(env, key, Some(step)).await;
    let created = c
        .create_connection(&serde_json::from_value(connection).unwrap())
        .await
        .unwrap();
    let id = created.id;
    // The answer may never come when the crash is at `created`.
    let _ = c.start_rotation(&id, &req).await;
    server
        .aborted(Duration::from_secs(30), &format!("{what}/{step}"))
        .await;
    said_fault(&server, step, what).await;

    id
}

/// The aborted server logged that the fault switch stopped it after `step`
/// (its last lines may reach the pipe a moment after the exit).
async fn said_fault(server: &common::Server, step: &str, what: &str) {
    let said = format!("REKEY_FAULT_AFTER={step}");
    for _ in 0..50 {
        if server.logs().contains(&said) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(
        server.logs().contains(&said),
        "{what}/{step}: {}",
        server.logs()
    );
}

/// Start the server again without the fault: the restarted server, and the
/// rotation once the worker resumed and finished it.
async fn resume(
    env: &Env,
    key: &str,
    id: &str,
    step: &str,
    what: &str,
) -> (common::Server, Client, rekey_client::api::RotationView) {
    let (server, c) = serve(env, key, None).await;
    for _ in 0..400 {
        let page = rotations_of(&c, id).await.unwrap();
        assert_eq!(page.items.len(), 1, "{what}/{step}: one rotation");
        if page.items[0].finished {
            let done = page.items[0].clone();
            return (server, c, done);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}/{step}: the rotation did not resume");
}

async fn aws_crash_at(step: &str) {
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let moto = rekey_testkit::moto::Moto::start_with_setup_calls(3).await;
    let user = "rekey-crash";
    let first = moto.create_iam_user(user).await;
    let conn = json!({"provider": "aws", "kind": "aws_access_key", "display_name": "crash aws",
        "probe_url": format!("{}/", moto.url),
        "credentials": {"access_key_id": first.0, "secret_access_key": first.1}});
    let req = StartRotation {
        grace: Some(rekey_client::api::Grace::Seconds(0)),
        endpoint: Some(format!("{}/", moto.url)),
        ..Default::default()
    };
    let id = crash(&env, &key, step, "aws", conn, req).await;
    if step == "set" {
        let keys = moto.access_keys(&first, user).await;
        // The crash came between CreateAccessKey and its write: a key
        // rekey does not hold, which the resumed `set` must delete.
        assert_eq!(keys.len(), 2, "aws/set: the orphan is there: {keys:?}");
    }
    let (server, c, done) = resume(&env, &key, &id, step, "aws").await;
    assert_eq!(done.state, "retired", "aws/{step}: {done:?}");
    let cur = c.read_credentials(&id).await.unwrap().credentials;
    let now = (
        cur["access_key_id"].as_str().unwrap().to_string(),
        cur["secret_access_key"].as_str().unwrap().to_string(),
    );
    assert_ne!(now.0, first.0);
    assert!(moto.key_works(&now).await, "aws/{step}: current works");
    assert!(
        !moto.key_works(&first).await,
        "aws/{step}: the old key is gone"
    );
    assert_eq!(
        moto.access_keys(&now, user).await,
        [(now.0.clone(), "Active".to_string())],
        "aws/{step}: exactly one key, the current: no orphan"
    );
    assert_eq!(
        version_labels(&c, &id).await,
        ["current", "retired"],
        "aws/{step}: no pending left"
    );
    server.stop().await;
    moto.stop().await;
}

async fn crash_at(db: Db, target: DbTarget, step: &str) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let first_pw = "crash-first-pw-1";
    let user = target.create_user("rkcrash", first_pw).await;

    let what = format!("{target:?}");
    let id = crash(
        &env,
        &key,
        step,
        &what,
        target.connection(&user, first_pw),
        StartRotation::default(),
    )
    .await;
    let (server, c, done) = resume(&env, &key, &id, step, &what).await;
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
    assert_eq!(
        version_labels(&c, &id).await,
        ["current", "retired"],
        "{target:?}/{step}: no pending left"
    );
    server.stop().await;
    target.drop_user(&user).await;
}

/// Do what a key-pair rotation waits for (run the statement shown at the
/// stand-in, confirm) until it finishes or `server` dies; the finished
/// rotation, if it finished.
async fn operate(
    c: &Client,
    sf: &rekey_testkit::snowflake::SnowflakeFixture,
    id: &str,
    server: &mut common::Server,
) -> Option<rekey_client::api::RotationView> {
    for _ in 0..600 {
        if let Ok(Some(_)) = server.child.try_wait() {
            return None;
        }
        let Ok(page) = rotations_of(c, id).await else {
            // Between a crash and the exit being noticed.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if let Some(r) = page.items.first() {
            if r.finished {
                return Some(r.clone());
            }
            if let (Some(step), Some(i)) = (&r.awaiting, &r.instructions) {
                for st in &i.statements {
                    sf.exec(st);
                }
                let _ = c
                    .confirm_rotation(
                        &r.id,
                        &rekey_client::api::ConfirmRotation {
                            step: step.clone(),
                            note: None,
                            credentials: None,
                        },
                    )
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("key pair: the rotation neither finished nor crashed");
}

async fn key_pair_crash_at(step: &str) {
    use rekey_testkit::snowflake::SnowflakeFixture;
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let sf = SnowflakeFixture::start("crash-acct").await;
    let (mut server, c) = serve(&env, &key, Some(step)).await;
    let conn = json!({"provider": "snowflake", "kind": "rsa_key_pair", "display_name": "crash key pair",
        "params": {"account": sf.account}, "probe_url": sf.statements_url(),
        "credentials": {"private_key_pem": rekey_testkit::fixture("test-rsa-2048.pem"), "username": "crash_user"}});
    let id = c
        .create_connection(&serde_json::from_value(conn).unwrap())
        .await
        .unwrap()
        .id;
    let first = c.read_credentials(&id).await.unwrap().credentials;
    sf.set_key("crash_user", 1, first["public_key_pem"].as_str().unwrap());
    let req = StartRotation {
        grace: Some(rekey_client::api::Grace::Seconds(0)),
        ..Default::default()
    };
    let _ = c.start_rotation(&id, &req).await;
    assert!(
        operate(&c, &sf, &id, &mut server).await.is_none(),
        "key pair/{step}: finished without the crash"
    );
    said_fault(&server, step, "key pair").await;

    let (mut server, c) = serve(&env, &key, None).await;
    let done = operate(&c, &sf, &id, &mut server)
        .await
        .unwrap_or_else(|| panic!("key pair/{step}: the restarted server died"));
    assert_eq!(done.state, "retired", "key pair/{step}: {done:?}");
    // The stand-in holds exactly the key rekey has as current, in one slot.
    let versions = c.list_versions(&id).await.unwrap().items;
    let labels: Vec<&str> = versions.iter().map(|v| v.label.as_str()).collect();
    assert_eq!(
        labels,
        ["current", "retired"],
        "key pair/{step}: no pending left"
    );
    let current = &versions[0].fingerprint;
    assert_eq!(
        sf.slots("crash_user"),
        [None, Some(current.clone())],
        "key pair/{step}: the new key in slot 2, slot 1 unset"
    );
    let cur = c.read_credentials(&id).await.unwrap().credentials;
    assert_ne!(cur["private_key_pem"], first["private_key_pem"]);
    let checked = c.check_connection(&id).await.unwrap();
    assert_eq!(checked.status, "active", "key pair/{step}: {checked:?}");
    server.stop().await;
    sf.stop().await;
}

/// A scheduled rotation survives a crash on either side of its start: the
/// claim on the due schedule lapses after two minutes, not a period (a
/// crash right after the claim skipped the rotation for a whole period),
/// and a rotation the crashed process had started is the slot's (taken
/// again after the claim lapsed, the schedule adopts it instead of
/// starting a second one). The lapse is made by hand (`next_due_at`).
#[tokio::test]
async fn a_scheduled_rotation_survives_a_crash_around_its_start() {
    for point in ["schedule_claimed", "schedule_started"] {
        scheduled_crash_at(point).await;
    }
}

async fn scheduled_crash_at(point: &str) {
    use rekey_client::api::{Grace, SetRotationSchedule};
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let pg = DbTarget::Postgres;
    let role = pg.create_user("rksc", "sched-crash-pw-1").await;
    let (mut server, c) = serve(&env, &key, Some(point)).await;
    let id = c
        .create_connection(
            &serde_json::from_value(pg.connection(&role, "sched-crash-pw-1")).unwrap(),
        )
        .await
        .unwrap()
        .id;
    let every = SetRotationSchedule {
        grace: Some(Grace::Seconds(0)),
        ..SetRotationSchedule::every(Grace::Text("30d".into()))
    };
    c.set_rotation_schedule(&id, &every).await.unwrap();
    let url = format!("sqlite://{}", env.data_dir().join("rekey.db").display());
    let due_now = ["UPDATE rotation_schedules SET next_due_at = 1"];
    rekey_testkit::raw_sql(url.clone(), &due_now).await;
    server.aborted(Duration::from_secs(30), point).await;
    said_fault(&server, point, "schedule").await;

    let (server, c) = serve(&env, &key, None).await;
    let held = c.get_rotation_schedule(&id).await.unwrap();
    let soon = rekey_core::time::ms_to_rfc3339(rekey_core::time::now_ms() + 130_000);
    assert!(
        held.next_due_at < soon,
        "{point}: the claim lapses within minutes: {held:?}"
    );
    // The claim lapses.
    rekey_testkit::raw_sql(url, &due_now).await;
    let mut done = None;
    for _ in 0..400 {
        let s = c.get_rotation_schedule(&id).await.unwrap();
        let page = rotations_of(&c, &id).await.unwrap();
        assert!(page.items.len() <= 1, "{point}: one rotation: {page:?}");
        if let (Some(rid), Some(r)) = (&s.last_rotation_id, page.items.first()) {
            assert_eq!(rid, &r.id, "{point}: {s:?}");
            if r.finished && s.next_due_at > soon {
                done = Some(r.clone());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = done.unwrap_or_else(|| panic!("{point}: no rotation recorded: {}", server.logs()));
    assert_eq!(done.state, "retired", "{point}: {done:?}");
    assert_eq!(done.requested_by, "system:schedule");
    let cur = c.read_credentials(&id).await.unwrap().credentials;
    assert!(
        pg.login(&role, cur["password"].as_str().unwrap()).await,
        "{point}: current works"
    );
    assert!(
        !pg.login(&role, "sched-crash-pw-1").await,
        "{point}: the old is refused"
    );
    server.stop().await;
    pg.drop_user(&role).await;
}

/// A database password set through an admin connection, then a crash
/// before the move to `set` was written, then the admin's login refused
/// (its password changed meanwhile): the resumed `set` fails for good,
/// but the target already takes the new password, so the rotation goes
/// on instead of rolling back and throwing away the only copy of the
/// password the role now has.
#[tokio::test]
async fn a_password_set_before_a_crash_is_not_thrown_away() {
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let pg = DbTarget::Postgres;
    let user = pg.create_user("rkset", "set-first-pw-1").await;
    let admin = pg.create_user("rkadm", "admin-pw-1").await;
    pg.admin_exec(&format!("ALTER ROLE \"{admin}\" CREATEROLE"))
        .await;
    let (server, c) = serve(&env, &key, None).await;
    let admin_conn = c
        .create_connection(&serde_json::from_value(pg.connection(&admin, "admin-pw-1")).unwrap())
        .await
        .unwrap()
        .id;
    server.stop().await;
    let req = StartRotation {
        admin_connection_id: Some(admin_conn),
        grace: Some(rekey_client::api::Grace::Seconds(0)),
        ..Default::default()
    };
    let id = crash(
        &env,
        &key,
        "set",
        "admin",
        pg.connection(&user, "set-first-pw-1"),
        req,
    )
    .await;
    pg.admin_exec(&format!("ALTER ROLE \"{admin}\" PASSWORD 'admin-pw-2'"))
        .await;
    let (server, c, done) = resume(&env, &key, &id, "set", "admin").await;
    assert_eq!(done.state, "retired", "{done:?}");
    let cur = c.read_credentials(&id).await.unwrap().credentials;
    let pw = cur["password"].as_str().unwrap();
    assert!(
        pg.login(&user, pw).await,
        "the password rekey holds logs in"
    );
    assert!(!pg.login(&user, "set-first-pw-1").await);
    server.stop().await;
    pg.drop_user(&user).await;
    pg.drop_user(&admin).await;
}
