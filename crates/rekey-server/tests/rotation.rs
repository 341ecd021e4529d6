//! Rotation against the real databases: PostgreSQL at 127.0.0.1:5432 (roles
//! in `rekey_password_login`, whose loopback logins check the password; see
//! .ci/setup) and MariaDB at 127.0.0.1:3306. After a rotation the password
//! rekey holds as current logs in and the old one is refused; bad requests
//! change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_api::{Grace, StartRotation};
use rekey_client::Client;
use rekey_testkit::dbtarget::{rotate_to, rotations_of, wait_for_rotation, DbTarget};
use rekey_testkit::{assert_api_error, audit_actions, both_backends, Db, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

both_backends!(postgres_single_user_twice);
both_backends!(postgres_alternate_users);
both_backends!(mysql_single_user);
both_backends!(mysql_alternate_users_with_an_admin);
both_backends!(bad_requests_change_nothing);
both_backends!(redshift_uses_the_postgres_rotator);

const PG: DbTarget = DbTarget::Postgres;

async fn pg_role(prefix: &str, pw: &str) -> String {
    PG.create_user(prefix, pw).await
}

async fn drop_pg_role(name: &str) {
    PG.drop_user(name).await
}

async fn pg_login(user: &str, pw: &str) -> bool {
    PG.login(user, pw).await
}

async fn db_conn(s: &TestServer, provider: &str, user: &str, pw: &str, params: Value) -> String {
    let r = s
        .post_admin("/api/v1/connections", json!({"provider": provider, "kind": "basic", "display_name": format!("{provider} {user}"),
                   "params": params, "credentials": {"username": user, "password": pw}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_string()
}

fn pg_params() -> Value {
    json!({"host": "127.0.0.1", "port": "5432", "database": "test"})
}

/// Whether the tenant has no rotation at all.
/// The connection's revocations once `n` of them have a verdict (the
/// verification follows a rotation's retire step), newest first.
async fn verified_revocations(c: &Client, id: &str, n: usize) -> Vec<rekey_api::RevocationView> {
    for _ in 0..100 {
        let items = c.list_revocations(id).await.unwrap().items;
        if items.len() == n && items.iter().all(|r| r.verdict.is_some()) {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "no verdicts: {:?}",
        c.list_revocations(id).await.unwrap().items
    );
}

async fn no_rotations(c: &Client) -> bool {
    let page = c.list_rotations(&Default::default()).await.unwrap();
    page.items.is_empty()
}

/// The username and password rekey holds as current.
async fn current(c: &Client, id: &str) -> (String, String) {
    let v = c.read_credentials(id).await.unwrap();
    (
        v.credentials["username"].as_str().unwrap().to_string(),
        v.credentials["password"].as_str().unwrap().to_string(),
    )
}

async fn postgres_single_user_twice(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let role = pg_role("rk_rot_single", "first-password-1").await;
    let id = db_conn(&s, "postgresql", &role, "first-password-1", pg_params()).await;
    let mut old_pw = "first-password-1".to_string();
    // Twice in a row: the second rotation starts from the first's result.
    for round in 0..2 {
        let r = c
            .start_rotation(&id, &StartRotation::default())
            .await
            .unwrap();
        assert_eq!(
            (r.state.as_str(), r.rotator.as_str()),
            ("created", "postgres")
        );
        let done = wait_for_rotation(&c, &r.id, "retired").await;
        assert_eq!(done.state, "retired", "round {round}: {done:?}");
        let (user, pw) = current(&c, &id).await;
        assert_eq!(user, role);
        assert_ne!(pw, old_pw);
        assert!(pg_login(&role, &pw).await, "the new password logs in");
        assert!(
            !pg_login(&role, &old_pw).await,
            "the old password is refused"
        );
        old_pw = pw;
    }
    // Versions: two rotations, the first credential retired; the single
    // user's old password died at `set`, so none is kept as previous.
    let v = c.list_versions(&id).await.unwrap().items;
    let got: Vec<(&str, &str)> = v
        .iter()
        .map(|x| (x.label.as_str(), x.source.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("current", "rotation"),
            ("retired", "rotation"),
            ("retired", "created")
        ]
    );
    assert_api_error(
        c.read_credentials_version(&id, "previous").await,
        404,
        "no_previous_version",
    );
    // Each retired password was then tried at the database: refused.
    let revs = verified_revocations(&c, &id, 2).await;
    for (rev, ver) in revs.iter().zip(&v[1..]) {
        assert_eq!(rev.method, "rotation", "{rev:?}");
        assert_eq!(rev.verdict.as_deref(), Some("verified_rejected"), "{rev:?}");
        assert_eq!(rev.fingerprint.as_deref(), Some(ver.fingerprint.as_str()));
        assert_eq!(
            rev.revoked_by.as_deref(),
            Some("system:rotation"),
            "{rev:?}"
        );
    }
    let v = c.list_versions(&id).await.unwrap().items;
    assert!(v[0].verdict.is_none());
    assert!(
        v[1..]
            .iter()
            .all(|x| x.verdict.as_deref() == Some("verified_rejected")),
        "{v:?}"
    );
    // Every step is in the audit log, with fingerprints and no secrets.
    let a = s
        .get_admin(&format!("/api/v1/audit?target={id}&limit=200"))
        .await;
    let actions = audit_actions(&a.json());
    for want in ["rotation.start", "rotation.step", "rotation.succeeded"] {
        assert!(actions.iter().any(|a| a == want), "{want} in {actions:?}");
    }
    assert!(!a.text.contains(&old_pw), "no password in the audit log");
    assert!(a.text.contains(&v[0].fingerprint), "fingerprints are");
    let list = rotations_of(&c, &id).await.unwrap();
    assert_eq!(list.items.len(), 2);
    assert!(list
        .items
        .iter()
        .all(|r| r.state == "retired" && r.finished));
    // The connection's check uses the new password.
    let r = s.check(&id).await;
    assert_eq!(r["outcome"], "ok", "{r}");
    drop_pg_role(&role).await;
    s.stop().await;
}

async fn postgres_alternate_users(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let a = pg_role("rk_rot_alt_a", "alt-a-password-1").await;
    let b = pg_role("rk_rot_alt_b", "alt-b-password-1").await;
    let id = db_conn(&s, "postgresql", &a, "alt-a-password-1", pg_params()).await;
    // The admin: postgres (trust on loopback; a real admin has a password).
    let admin = db_conn(&s, "postgresql", "postgres", "admin-pw", pg_params()).await;
    let req = StartRotation {
        grace: Some(Grace::Text("2s".into())),
        strategy: Some("alternate_users".into()),
        admin_connection_id: Some(admin.clone()),
        alternate_username: Some(b.clone()),
        ..Default::default()
    };
    let promoted = rotate_to(&c, &id, &req, "promoted").await;
    let (user, pw) = current(&c, &id).await;
    assert_eq!(user, b, "the idle role took over");
    assert!(pg_login(&b, &pw).await);
    // During the grace the old role still works and is handed out as previous.
    let prev = c.read_credentials_version(&id, "previous").await.unwrap();
    assert_eq!(prev.credentials["username"], a.as_str());
    assert!(pg_login(&a, "alt-a-password-1").await);
    s.retire_after_grace(&promoted.id).await;
    assert!(
        !pg_login(&a, "alt-a-password-1").await,
        "the old role is locked out"
    );
    assert!(pg_login(&b, &pw).await);
    assert_api_error(
        c.read_credentials_version(&id, "previous").await,
        404,
        "no_previous_version",
    );
    // The next rotation gives the first role a new password and switches back.
    let req = StartRotation {
        grace: Some(Grace::Seconds(0)),
        ..req
    };
    rotate_to(&c, &id, &req, "retired").await;
    let (user, pw2) = current(&c, &id).await;
    assert_eq!(user, a);
    assert!(pg_login(&a, &pw2).await);
    assert!(!pg_login(&b, &pw).await, "zero grace: locked out at once");
    drop_pg_role(&a).await;
    drop_pg_role(&b).await;
    s.stop().await;
}

async fn mysql_single_user(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let my = DbTarget::Mysql;
    let user = my.create_user("rkrot", "my-first-pw-1").await;
    let params = json!({"host": "127.0.0.1", "port": "3306", "database": "information_schema"});
    let id = db_conn(&s, "mysql", &user, "my-first-pw-1", params).await;
    let done = rotate_to(&c, &id, &StartRotation::default(), "retired").await;
    assert_eq!(done.rotator, "mysql");
    let (u, pw) = current(&c, &id).await;
    assert_eq!(u, user);
    assert!(my.login(&user, &pw).await, "the new password logs in");
    assert!(
        !my.login(&user, "my-first-pw-1").await,
        "the old one is refused"
    );
    my.drop_user(&user).await;
    s.stop().await;
}

async fn bad_requests_change_nothing(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    // A kind the catalog has no rotator for, asked for `api` rotation
    // (without a method it gets a guided one: see rotation_guided.rs).
    let key = s.api_key_conn("sk-norotator").await;
    assert_api_error(
        c.start_rotation(
            &key,
            &StartRotation {
                method: Some("api".into()),
                ..Default::default()
            },
        )
        .await,
        422,
        "no_rotator",
    );
    assert!(no_rotations(&c).await);
    let role = pg_role("rk_rot_bad", "bad-first-pw-1").await;
    let id = db_conn(&s, "postgresql", &role, "bad-first-pw-1", pg_params()).await;
    // Grace out of range, unknown strategy, alternate users without their
    // parameters, an admin connection of another provider.
    for (body, code) in [
        (json!({"grace": "31d"}), "invalid_grace"),
        (json!({"grace": -1}), "invalid_grace"),
        (json!({"strategy": "sideways"}), "invalid_strategy"),
        (json!({"method": "telepathy"}), "invalid_field"),
        (json!({"current_slot": 2}), "invalid_field"),
        (json!({"current_slot": 3}), "invalid_field"),
        (json!({"strategy": "alternate_users"}), "invalid_field"),
        (json!({"admin_connection_id": key}), "invalid_field"),
        (json!({"surprise": 1}), "invalid_body"),
    ] {
        let r = s
            .post_admin(&format!("/api/v1/connections/{id}/rotate"), body.clone())
            .await;
        assert!(
            r.status == 400 || r.status == 422,
            "{body}: {} {}",
            r.status,
            r.text
        );
        assert_eq!(r.json()["error"]["code"], code, "{body}: {}", r.text);
    }
    // An admin connection the database refuses: rolled back, nothing changed.
    let bad_admin = db_conn(&s, "postgresql", &role, "not-the-password", pg_params()).await;
    let r = c
        .start_rotation(
            &id,
            &StartRotation {
                admin_connection_id: Some(bad_admin),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let done = wait_for_rotation(&c, &r.id, "rolled_back").await;
    assert_eq!(done.state, "rolled_back", "{done:?}");
    assert!(
        done.next_action.is_some() && done.last_error.is_some(),
        "{done:?}"
    );
    assert_eq!(current(&c, &id).await.1, "bad-first-pw-1");
    assert!(
        pg_login(&role, "bad-first-pw-1").await,
        "the old password still works"
    );
    // The rolled-back pending version keeps its number; new material after it
    // takes the next one (this answered 409 already_exists once).
    let put = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/connections/{id}/credentials"),
            &s.admin_key,
            Some(json!({"credentials": {"username": role, "password": "bad-first-pw-1"}, "grace": 0})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    // A target that cannot be reached: retried, not failed; meanwhile a second
    // rotation and a credential replacement are refused.
    let down = db_conn(
        &s,
        "postgresql",
        &role,
        "bad-first-pw-1",
        json!({"host": "127.0.0.1", "port": "9", "database": "test"}),
    )
    .await;
    let r = c
        .start_rotation(&down, &StartRotation::default())
        .await
        .unwrap();
    let mut waiting = c.get_rotation(&r.id).await.unwrap();
    for _ in 0..100 {
        if waiting.attempts > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        waiting = c.get_rotation(&r.id).await.unwrap();
    }
    assert_eq!(waiting.state, "created", "{waiting:?}");
    assert!(waiting.attempts >= 1 && !waiting.finished, "{waiting:?}");
    assert_api_error(
        c.start_rotation(&down, &StartRotation::default()).await,
        409,
        "rotation_in_progress",
    );
    let put = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/connections/{down}/credentials"),
            &s.admin_key,
            Some(json!({"credentials": {"username": role, "password": "x-new-pw"}})),
        )
        .await;
    put.assert_error(409, "rotation_in_progress");
    // Disabled connections are not rotated.
    s.post_admin(&format!("/api/v1/connections/{id}/disable"), json!({}))
        .await;
    assert_api_error(
        c.start_rotation(&id, &StartRotation::default()).await,
        409,
        "connection_unusable",
    );
    assert_api_error(c.get_rotation("rot_nope").await, 400, "invalid_id");
    drop_pg_role(&role).await;
    s.stop().await;
}

both_backends!(scheduled_rotation);

/// A schedule starts a rotation when due and inside its window; outside
/// the window it waits for the window to open; bad schedules are refused.
async fn scheduled_rotation(db: Db) {
    use rekey_api::SetRotationSchedule;
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let role = pg_role("rk_rot_sched", "sched-first-pw-1").await;
    let id = db_conn(&s, "postgresql", &role, "sched-first-pw-1", pg_params()).await;
    let every = |period: &str, window: Option<&str>| SetRotationSchedule {
        window: window.map(str::to_string),
        ..SetRotationSchedule::every(Grace::Text(period.into()))
    };
    assert_api_error(
        c.get_rotation_schedule(&id).await,
        404,
        "rotation_schedule_not_found",
    );
    for (req, code) in [
        (every("10m", None), "invalid_field"),
        (every("400d", None), "invalid_field"),
        (every("30d", Some("25:00-01:00")), "invalid_field"),
    ] {
        assert_api_error(c.set_rotation_schedule(&id, &req).await, 400, code);
    }
    let key = s.api_key_conn("sk-sched").await;
    assert_api_error(
        c.set_rotation_schedule(&key, &every("30d", None)).await,
        422,
        "no_rotator",
    );
    // Not due yet: one period after the credential was created.
    let sched = c
        .set_rotation_schedule(&id, &every("30d", None))
        .await
        .unwrap();
    assert_eq!(
        (sched.period_secs, sched.window.as_str()),
        (30 * 86_400, "any")
    );
    s.rekey.start_scheduled_rotations(10).await.unwrap();
    assert!(no_rotations(&c).await);
    // Due, but the window is closed now: it moves to the window's opening.
    let now = time_of_day_minutes();
    let closed = format!(
        "{:02}:{:02}-{:02}:{:02}",
        ((now + 120) % 1440) / 60,
        ((now + 120) % 1440) % 60,
        ((now + 180) % 1440) / 60,
        ((now + 180) % 1440) % 60
    );
    c.set_rotation_schedule(&id, &every("30d", Some(&closed)))
        .await
        .unwrap();
    s.sql(&["UPDATE rotation_schedules SET next_due_at = 1"])
        .await;
    s.rekey.start_scheduled_rotations(10).await.unwrap();
    assert!(no_rotations(&c).await);
    let later = c.get_rotation_schedule(&id).await.unwrap();
    assert!(later.next_due_at.as_str() > "2000", "{later:?}");
    // Due inside the window: a rotation starts and runs; the next is a period on.
    c.set_rotation_schedule(&id, &every("30d", None))
        .await
        .unwrap();
    s.sql(&["UPDATE rotation_schedules SET next_due_at = 1"])
        .await;
    s.rekey.start_scheduled_rotations(10).await.unwrap();
    let after = c.get_rotation_schedule(&id).await.unwrap();
    let rid = after
        .last_rotation_id
        .clone()
        .expect("a rotation was started");
    assert!(after.last_error.is_none(), "{after:?}");
    let done = s.rekey.drive_rotation("default", &rid).await.unwrap();
    assert_eq!(done.state.as_str(), "retired");
    assert_eq!(done.requested_by, "system:schedule");
    let (_, pw) = current(&c, &id).await;
    assert!(pg_login(&role, &pw).await && !pg_login(&role, "sched-first-pw-1").await);
    c.delete_rotation_schedule(&id).await.unwrap();
    assert_api_error(
        c.get_rotation_schedule(&id).await,
        404,
        "rotation_schedule_not_found",
    );
    drop_pg_role(&role).await;
    s.stop().await;
}

fn time_of_day_minutes() -> i64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    (ms % 86_400_000) / 60_000
}

/// MariaDB, two users taking turns, changed by an admin connection (root):
/// `ALTER USER 'u'@'%'`; the old user is locked out at retirement.
async fn mysql_alternate_users_with_an_admin(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let my = DbTarget::Mysql;
    let a = my.create_user("rkalta", "my-alt-a-pw-1").await;
    let b = my.create_user("rkaltb", "my-alt-b-pw-1").await;
    let params = json!({"host": "127.0.0.1", "port": "3306", "database": "information_schema"});
    let id = db_conn(&s, "mysql", &a, "my-alt-a-pw-1", params.clone()).await;
    // An admin account allowed to change other accounts' passwords.
    let root = my.create_user("rkadm", "my-admin-pw-1").await;
    my.admin_exec(&format!("GRANT CREATE USER ON *.* TO '{root}'@'%'"))
        .await;
    let admin = db_conn(&s, "mysql", &root, "my-admin-pw-1", params).await;
    let req = StartRotation {
        grace: Some(Grace::Seconds(0)),
        strategy: Some("alternate_users".into()),
        admin_connection_id: Some(admin),
        alternate_username: Some(b.clone()),
        ..Default::default()
    };
    rotate_to(&c, &id, &req, "retired").await;
    let (user, pw) = current(&c, &id).await;
    assert_eq!(user, b, "the idle user took over");
    assert!(my.login(&b, &pw).await, "the new password logs in");
    assert!(
        !my.login(&a, "my-alt-a-pw-1").await,
        "the old user is locked out"
    );
    assert!(
        my.login(&root, "my-admin-pw-1").await,
        "the admin is untouched"
    );
    for u in [&a, &b, &root] {
        my.drop_user(u).await;
    }
    s.stop().await;
}

/// Redshift's catalog entry rotates with the postgres rotator. Redshift
/// cannot run here; it speaks PostgreSQL's protocol and `ALTER USER`, so
/// the rotation runs against the local PostgreSQL through the real
/// redshift entry, loaded with its cluster-host rule relaxed to reach
/// 127.0.0.1 (the only change).
async fn redshift_uses_the_postgres_rotator(db: Db) {
    let dir = std::env::temp_dir().join(format!(
        "rekey-redshift-catalog-{}-{db:?}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../providers");
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let text = if p.file_name().unwrap() == "redshift.toml" {
            let relaxed: String = text
                .lines()
                .filter(|l| !l.starts_with("host_suffixes"))
                .map(|l| format!("{l}\n"))
                .collect();
            assert_ne!(relaxed.len(), text.len(), "the host rule was there");
            relaxed
        } else {
            text
        };
        std::fs::write(dir.join(p.file_name().unwrap()), text).unwrap();
    }
    let s = TestServer::start_with_providers(db, Some(dir.clone())).await;
    let c = s.client(&s.admin_key);
    let role = pg_role("rk_rot_redshift", "Redshift-first-1").await;
    let id = db_conn(&s, "redshift", &role, "Redshift-first-1", pg_params()).await;
    let api = StartRotation {
        method: Some("api".into()),
        ..Default::default()
    };
    let done = rotate_to(&c, &id, &api, "retired").await;
    assert_eq!(done.rotator, "postgres");
    let (user, pw) = current(&c, &id).await;
    assert_eq!(user, role);
    // Redshift's password rule: upper case, lower case and a digit.
    assert!(pw.chars().any(|c| c.is_ascii_uppercase()));
    assert!(pw.chars().any(|c| c.is_ascii_lowercase()));
    assert!(pw.chars().any(|c| c.is_ascii_digit()));
    assert!(pg_login(&role, &pw).await, "the new password logs in");
    assert!(
        !pg_login(&role, "Redshift-first-1").await,
        "the old one is refused"
    );
    s.stop().await;
    drop_pg_role(&role).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A step that outlasts the rotation's lease keeps it: the lease is
/// renewed while the step runs, so another replica's worker never takes
/// the rotation over and runs the same step at once. The `set` step's
/// `ALTER USER` is held up by a transaction that has changed the role and
/// not committed; meanwhile the lease (300 ms here) passes many times.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_step_keeps_its_rotation_lease() {
    use sqlx::Connection;
    let s = TestServer::start(Db::Postgres).await;
    let b = s.replica().await;
    s.rekey.set_rotation_lease_ms(300);
    b.rekey.set_rotation_lease_ms(300);
    let c = s.client(&s.admin_key);
    let role = pg_role("rk_rot_slow", "first-password-1").await;
    let id = db_conn(&s, "postgresql", &role, "first-password-1", pg_params()).await;
    let mut blocker = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/test")
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query(&format!("ALTER ROLE \"{role}\" VALID UNTIL 'infinity'"))
        .execute(&mut blocker)
        .await
        .unwrap();
    let r = c
        .start_rotation(&id, &StartRotation::default())
        .await
        .unwrap();
    let mut db = sqlx::PgConnection::connect(&s.database_url())
        .await
        .unwrap();
    let owner = || {
        sqlx::query_scalar::<_, Option<String>>("SELECT lease_owner FROM rotations WHERE id = $1")
            .bind(&r.id)
    };
    // Wait for the step to start (it holds the lease), then let replica B's
    // worker look for due rotations for ten lease lengths.
    let mut held = false;
    for _ in 0..100 {
        if owner().fetch_one(&mut db).await.unwrap().as_deref() == Some(s.rekey.replica_id()) {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(held, "the rotation's step did not start");
    for _ in 0..30 {
        b.rekey.rotate_due(10).await.unwrap();
        let o = owner().fetch_one(&mut db).await.unwrap();
        assert_eq!(
            o.as_deref(),
            Some(s.rekey.replica_id()),
            "the lease stays with the replica running the step"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let done = wait_for_rotation(&c, &r.id, "retired").await;
    assert_eq!(done.state, "retired", "{done:?}");
    let (_, pw) = current(&c, &id).await;
    assert!(pg_login(&role, &pw).await, "the new password logs in");
    b.stop().await;
    s.stop().await;
    drop_pg_role(&role).await;
}
