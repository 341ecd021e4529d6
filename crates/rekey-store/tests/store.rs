//! rekey-store against real databases: each test runs on a fresh SQLite file
//! and on a PostgreSQL database of its own (dropped afterwards), like the
//! API tests' `both_backends!`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_core::connection::{ConnectionKind, Owner, Status};
use rekey_store::api_keys::{self, ApiKeyRow};
use rekey_store::connections::{self, ConnectionFilter, ConnectionRow};
use rekey_store::integrations::{self, IntegrationRow};
use rekey_store::webhooks::{self, WebhookRow};
use rekey_store::{Backend, Store};
use sqlx::{AnyConnection, Connection};

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

/// One test's database: a SQLite file in a temporary directory, or a
/// PostgreSQL database of its own, dropped when this is dropped.
struct TestDb {
    url: String,
    dir: tempfile::TempDir,
    pg_name: Option<String>,
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{nanos:x}{:x}{:04x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDb {
    async fn create(db: Db) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        match db {
            Db::Sqlite => TestDb {
                url: format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("rekey.db").display()
                ),
                dir,
                pg_name: None,
            },
            Db::Postgres => {
                let name = format!("rekey_store_t_{}", unique());
                let mut c = sqlx::PgConnection::connect(PG_ADMIN_URL).await.expect(
                    "PostgreSQL at 127.0.0.1:5432 (user postgres, database test) must be running",
                );
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
                TestDb {
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    async fn store(&self) -> Store {
        Store::connect(&self.url).await.unwrap()
    }

    /// A fresh database and the store opened on it (migrated).
    async fn open(db: Db) -> (TestDb, Store) {
        let t = TestDb::create(db).await;
        let store = t.store().await;
        (t, store)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs inside a tokio runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(PG_ADMIN_URL).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::Db::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(super::Db::Postgres).await
                }
            }
        )*
    };
}

both_backends!(
    update_health_writes_only_the_health_columns,
    update_health_checks_the_version_and_the_tenant,
    integration_id_column_follows_credential_meta,
    connections_using_matches_the_id_exactly,
    migration_backfills_integration_id,
    tenant_scoped_get_list_delete,
    rows_decode_what_was_written,
    database_errors_map_to_domain_errors,
    integration_labels_and_health_notes,
    batch_insert_and_summary_keep_tenants_apart,
);

fn connection(tenant: &str, id: &str, meta: &str) -> ConnectionRow {
    ConnectionRow {
        id: id.into(),
        tenant: tenant.into(),
        provider: "custom-rest".into(),
        kind: ConnectionKind::OAuth2AuthorizationCode,
        display_name: "Test".into(),
        owner: Owner {
            subject: Some("sub-1".into()),
            email: Some("a@example.com".into()),
            name: None,
        },
        scopes: vec!["read".into(), "write".into()],
        tags: vec!["prod".into()],
        custody: vec!["vault".into()],
        credential_meta: meta.into(),
        status: Status::Active,
        last_error: None,
        created_at: 1_000,
        updated_at: 1_000,
        rotated_at: None,
        expires_at: Some(9_000),
        version: 1,
        credential_version: 1,
        params: "{}".into(),
        probe_url: None,
        last_ok_at: None,
        last_checked_at: None,
        first_failed_at: None,
        consecutive_failures: 0,
    }
}

async fn insert(store: &Store, row: &ConnectionRow) {
    let mut tx = store.begin_write().await.unwrap();
    connections::insert(tx.conn(), row).await.unwrap();
    tx.commit().await.unwrap();
}

async fn get(store: &Store, tenant: &str, id: &str) -> Option<ConnectionRow> {
    let mut c = store.read().await.unwrap();
    connections::get(&mut c, tenant, id).await.unwrap()
}

async fn with_tag(store: &Store, tenant: &str, tag: &str) -> Vec<String> {
    let mut c = store.read().await.unwrap();
    let f = ConnectionFilter {
        tag: Some(tag.into()),
        limit: 100,
        ..Default::default()
    };
    connections::list(&mut c, tenant, &f)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

async fn using(store: &Store, tenant: &str, integration: &str) -> i64 {
    let mut c = store.read().await.unwrap();
    integrations::connections_using(&mut c, tenant, integration)
        .await
        .unwrap()
}

/// The `integration_id` column as stored.
async fn integration_column(store: &Store, id: &str) -> Option<String> {
    let mut c = store.read().await.unwrap();
    let (v,): (Option<String>,) =
        sqlx::query_as("SELECT integration_id FROM connections WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *c)
            .await
            .unwrap();
    v
}

/// Assert the `integration_id` column of connection `id` as stored.
async fn assert_integration_column(store: &Store, id: &str, want: Option<&str>) {
    assert_eq!(integration_column(store, id).await.as_deref(), want, "{id}");
}

/// `connections::update_health` in a write transaction of its own: whether
/// it wrote.
async fn update_health(store: &Store, row: &ConnectionRow, expected_version: i64) -> bool {
    let mut tx = store.begin_write().await.unwrap();
    let wrote = connections::update_health(tx.conn(), row, expected_version)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    wrote
}

/// The health columns the health checker moves together.
fn health(r: &ConnectionRow) -> (Status, i64, i64) {
    (r.status, r.version, r.consecutive_failures)
}

/// Assert that two rows read the same, field by field (the row types have
/// no `PartialEq`).
fn assert_same_row<T: std::fmt::Debug>(got: &T, want: &T) {
    assert_eq!(format!("{got:?}"), format!("{want:?}"));
}

async fn update_health_writes_only_the_health_columns(db: Db) {
    let (_t, store) = TestDb::open(db).await;
    let row = connection("t1", "con_1", r#"{"integration_id":"int_a"}"#);
    insert(&store, &row).await;

    // The checker's view, with changes to columns it must not write.
    let mut r = row.clone();
    r.status = Status::Degraded;
    r.last_error = Some(r#"{"code":"http_500"}"#.into());
    r.updated_at = 2_000;
    r.version = 2;
    r.last_ok_at = Some(1_500);
    r.last_checked_at = Some(2_000);
    r.first_failed_at = Some(2_000);
    r.consecutive_failures = 1;
    r.display_name = "Renamed".into();
    r.tags = vec!["staging".into()];
    r.custody = vec![];
    r.scopes = vec![];
    r.credential_meta = r#"{"integration_id":"int_b"}"#.into();
    r.expires_at = None;
    r.probe_url = Some("https://example.com/probe".into());
    r.credential_version = 7;
    assert!(update_health(&store, &r, 1).await);

    let got = get(&store, "t1", "con_1").await.unwrap();
    // Health columns: written.
    assert_eq!(got.status, Status::Degraded);
    assert_eq!(got.last_error.as_deref(), Some(r#"{"code":"http_500"}"#));
    assert_eq!(got.updated_at, 2_000);
    assert_eq!(got.version, 2);
    assert_eq!(got.last_ok_at, Some(1_500));
    assert_eq!(got.last_checked_at, Some(2_000));
    assert_eq!(got.first_failed_at, Some(2_000));
    assert_eq!(got.consecutive_failures, 1);
    // Everything else: as inserted.
    assert_eq!(got.display_name, "Test");
    assert_eq!(got.tags, vec!["prod".to_string()]);
    assert_eq!(got.custody, vec!["vault".to_string()]);
    assert_eq!(got.scopes, vec!["read".to_string(), "write".to_string()]);
    assert_eq!(got.credential_meta, row.credential_meta);
    assert_eq!(got.expires_at, Some(9_000));
    assert_eq!(got.probe_url, None);
    assert_eq!(got.credential_version, 1);
    assert_eq!(got.owner, row.owner);
    // The side tables and the integration column were not touched.
    assert_eq!(with_tag(&store, "t1", "prod").await, vec!["con_1"]);
    assert!(with_tag(&store, "t1", "staging").await.is_empty());
    assert_integration_column(&store, "con_1", Some("int_a")).await;

    // Back to healthy: the error context is cleared.
    let mut ok = got.clone();
    ok.status = Status::Active;
    ok.last_error = None;
    ok.first_failed_at = None;
    ok.consecutive_failures = 0;
    ok.version = 3;
    assert!(update_health(&store, &ok, 2).await);
    let got = get(&store, "t1", "con_1").await.unwrap();
    assert_eq!(health(&got), (Status::Active, 3, 0));
    assert_eq!(got.last_error, None);
    assert_eq!(got.first_failed_at, None);
    store.close().await;
}

async fn update_health_checks_the_version_and_the_tenant(db: Db) {
    let (_t, store) = TestDb::open(db).await;
    let row = connection("t1", "con_1", "{}");
    insert(&store, &row).await;

    let mut r = row.clone();
    r.status = Status::NeedsReauth;
    r.version = 2;
    r.consecutive_failures = 3;
    // A stale version loses the race and writes nothing.
    assert!(!update_health(&store, &r, 5).await);
    // Another tenant's row of the same id is out of reach.
    let mut other = r.clone();
    other.tenant = "t2".into();
    assert!(!update_health(&store, &other, 1).await);
    // An unknown id: nothing to write.
    let mut missing = r.clone();
    missing.id = "con_missing".into();
    assert!(!update_health(&store, &missing, 1).await);
    let got = get(&store, "t1", "con_1").await.unwrap();
    assert_eq!(health(&got), (Status::Active, 1, 0));

    // The current version wins once; replaying the same write loses.
    assert!(update_health(&store, &r, 1).await);
    assert!(!update_health(&store, &r, 1).await);
    let got = get(&store, "t1", "con_1").await.unwrap();
    assert_eq!(health(&got), (Status::NeedsReauth, 2, 3));
    store.close().await;
}

async fn integration_id_column_follows_credential_meta(db: Db) {
    let (_t, store) = TestDb::open(db).await;
    let a = connection("t1", "con_a", r#"{"integration_id":"int_a","x":1}"#);
    let b = connection("t1", "con_b", r#"{"integration_id":"int_a"}"#);
    let mut s = connection("t1", "con_s", r#"{"placement":"header"}"#);
    s.kind = ConnectionKind::ApiKey;
    // Written before its meta is known (connect flow): not JSON at all.
    let blank = connection("t1", "con_blank", "");
    let other_tenant = connection("t2", "con_t2", r#"{"integration_id":"int_a"}"#);
    for r in [&a, &b, &s, &blank, &other_tenant] {
        insert(&store, r).await;
    }
    assert_eq!(a.integration_id().as_deref(), Some("int_a"));
    assert_integration_column(&store, "con_a", Some("int_a")).await;
    assert_integration_column(&store, "con_s", None).await;
    assert_integration_column(&store, "con_blank", None).await;
    assert_eq!(using(&store, "t1", "int_a").await, 2);
    assert_eq!(using(&store, "t2", "int_a").await, 1);
    assert_eq!(using(&store, "t1", "int_b").await, 0);

    // A full update moves the column with the meta.
    let mut a2 = a.clone();
    a2.credential_meta = r#"{"integration_id":"int_b","token_type":"Bearer"}"#.into();
    a2.version = 2;
    let mut tx = store.begin_write().await.unwrap();
    assert!(connections::update(tx.conn(), &a2, 1).await.unwrap());
    // The blank connection gets its meta (as the connect flow does).
    let mut blank2 = blank.clone();
    blank2.credential_meta = r#"{"integration_id":"int_b"}"#.into();
    blank2.version = 2;
    assert!(connections::update(tx.conn(), &blank2, 1).await.unwrap());
    // A meta without an integration clears it.
    let mut b2 = b.clone();
    b2.credential_meta = r#"{"integration_id":null}"#.into();
    b2.version = 2;
    assert!(connections::update(tx.conn(), &b2, 1).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(using(&store, "t1", "int_a").await, 0);
    assert_eq!(using(&store, "t1", "int_b").await, 2);
    assert_integration_column(&store, "con_b", None).await;

    // Deleting a connection stops counting it.
    let mut tx = store.begin_write().await.unwrap();
    assert!(connections::delete(tx.conn(), "t1", "con_a").await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(using(&store, "t1", "int_b").await, 1);
    store.close().await;
}

async fn connections_using_matches_the_id_exactly(db: Db) {
    let (_t, store) = TestDb::open(db).await;
    insert(
        &store,
        &connection("t1", "con_1", r#"{"integration_id":"int_abc"}"#),
    )
    .await;
    // A JSON value elsewhere in the meta that looks like the key is no use.
    insert(
        &store,
        &connection(
            "t1",
            "con_2",
            r#"{"note":"\"integration_id\":\"int_xyz\"","nested":{"integration_id":"int_xyz"}}"#,
        ),
    )
    .await;
    assert_eq!(using(&store, "t1", "int_abc").await, 1);
    // LIKE wildcards and prefixes do not match.
    assert_eq!(using(&store, "t1", "int_a_c").await, 0);
    assert_eq!(using(&store, "t1", "int_%").await, 0);
    assert_eq!(using(&store, "t1", "int_ab").await, 0);
    assert_eq!(using(&store, "t1", "int_xyz").await, 0);
    store.close().await;
}

/// A connection to `t`'s fresh database with only the migrations whose
/// file names sort before `first_left_out` run (there must be `count`);
/// opening a store on it then runs the rest, as an upgrade would.
async fn migrated_before(t: &TestDb, db: Db, first_left_out: &str, count: usize) -> AnyConnection {
    let dialect = match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    };
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let old = t.dir.path().join("old-migrations");
    std::fs::create_dir(&old).unwrap();
    let mut copied = 0;
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name.as_str() < first_left_out {
            std::fs::copy(e.path(), old.join(&name)).unwrap();
            copied += 1;
        }
    }
    assert_eq!(copied, count);
    sqlx::any::install_default_drivers();
    let mut c = AnyConnection::connect(&t.url).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run_direct(&mut c)
        .await
        .unwrap();
    c
}

/// Run the migrations before `0007` on a fresh database, write connections
/// the old way (the integration only in the JSON), then open the store,
/// which runs the rest: the column is backfilled.
async fn migration_backfills_integration_id(db: Db) {
    let t = TestDb::create(db).await;
    let mut c = migrated_before(&t, db, "0007", 6).await;
    let rows = [
        (
            "con_1",
            "t1",
            r#"{"integration_id":"int_a","token_type":"Bearer"}"#,
        ),
        (
            "con_2",
            "t1",
            r#"{"token_type":"Bearer","integration_id":"int_a"}"#,
        ),
        ("con_3", "t2", r#"{"integration_id":"int_a"}"#),
        ("con_4", "t1", r#"{"placement":"header"}"#),
        ("con_5", "t1", r#"{"integration_id":5}"#),
        ("con_6", "t1", ""),
        ("con_7", "t1", "not json"),
    ];
    for (id, tenant, meta) in rows {
        sqlx::query(
            "INSERT INTO connections (id, tenant, provider, kind, display_name, scopes, tags, custody, credential_meta, status, created_at, updated_at, version, credential_version) \
             VALUES ($1, $2, 'custom-rest', 'oauth2_authorization_code', 'Old', '[]', '[]', '[]', $3, 'active', 1, 1, 1, 1)",
        )
        .bind(id)
        .bind(tenant)
        .bind(meta)
        .execute(&mut c)
        .await
        .unwrap();
    }
    c.close().await.unwrap();

    let store = t.store().await;
    for id in ["con_1", "con_2"] {
        assert_integration_column(&store, id, Some("int_a")).await;
    }
    for id in ["con_4", "con_5", "con_6", "con_7"] {
        assert_integration_column(&store, id, None).await;
    }
    assert_eq!(using(&store, "t1", "int_a").await, 2);
    assert_eq!(using(&store, "t2", "int_a").await, 1);
    // The old rows read back whole.
    let got = get(&store, "t1", "con_1").await.unwrap();
    assert_eq!(got.integration_id().as_deref(), Some("int_a"));
    assert_eq!(got.params, "{}");
    assert_eq!(got.consecutive_failures, 0);
    store.close().await;
}

fn integration(tenant: &str, id: &str) -> IntegrationRow {
    IntegrationRow {
        id: id.into(),
        tenant: tenant.into(),
        provider: "github".into(),
        display_name: "GitHub".into(),
        client_id: "client".into(),
        auth_method: "client_secret_basic".into(),
        key_id: None,
        scopes: vec!["repo".into()],
        extra_params: "{}".into(),
        params: "{}".into(),
        endpoints: "{}".into(),
        redirect_uri: None,
        tags: vec!["crm".into()],
        custody: vec!["salesforce".into()],
        created_at: 1,
        updated_at: 1,
        version: 1,
        credential_version: 1,
    }
}

fn webhook(tenant: &str, id: &str) -> WebhookRow {
    WebhookRow {
        id: id.into(),
        tenant: tenant.into(),
        url: "https://example.com/hook".into(),
        events: vec!["connection.*".into()],
        description: Some("d".into()),
        disabled_at: None,
        created_at: 1,
        updated_at: 1,
        version: 1,
    }
}

fn api_key(tenant: &str, id: &str) -> ApiKeyRow {
    ApiKeyRow {
        id: id.into(),
        tenant: tenant.into(),
        name: "k".into(),
        scopes: vec!["admin".into()],
        created_at: 1,
        created_by: "test".into(),
        last_used_at: None,
        revoked_at: None,
        expires_at: None,
        rotated_from: None,
        rotated_to: None,
    }
}

/// Whether `$module::get` finds the row `$id` of `$tenant` on `$c`.
macro_rules! found {
    ($module:ident, $c:expr, $tenant:expr, $id:expr) => {
        $module::get(&mut *$c, $tenant, $id)
            .await
            .unwrap()
            .is_some()
    };
}

/// Whether `$module::delete` deleted the row `$id` of `$tenant` in `$tx`.
macro_rules! deleted {
    ($module:ident, $tx:expr, $tenant:expr, $id:expr) => {
        $module::delete($tx.conn(), $tenant, $id).await.unwrap()
    };
}

async fn tenant_scoped_get_list_delete(db: Db) {
    let (_t, store) = TestDb::open(db).await;
    let mut tx = store.begin_write().await.unwrap();
    for (tenant, id) in [("t1", "int_2"), ("t1", "int_1"), ("t2", "int_3")] {
        integrations::insert(tx.conn(), &integration(tenant, id))
            .await
            .unwrap();
    }
    webhooks::insert(tx.conn(), &webhook("t1", "whk_1"))
        .await
        .unwrap();
    api_keys::insert(tx.conn(), &api_key("t1", "key_1"), "hash-1")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    insert(&store, &connection("t1", "con_1", "{}")).await;

    let mut c = store.read().await.unwrap();
    // get: only in its own tenant.
    assert!(found!(integrations, c, "t1", "int_1"));
    assert!(!found!(integrations, c, "t2", "int_1"));
    assert!(found!(webhooks, c, "t1", "whk_1"));
    assert!(!found!(webhooks, c, "t2", "whk_1"));
    assert!(found!(api_keys, c, "t1", "key_1"));
    assert!(!found!(api_keys, c, "t2", "key_1"));
    assert!(!found!(connections, c, "t2", "con_1"));
    // list: the tenant's rows in id order.
    let ids: Vec<String> = integrations::list(&mut c, "t1")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["int_1", "int_2"]);
    assert_eq!(integrations::list(&mut c, "t2").await.unwrap().len(), 1);
    assert!(integrations::list(&mut c, "t3").await.unwrap().is_empty());
    assert_eq!(api_keys::list(&mut c, "t1").await.unwrap().len(), 1);
    assert!(api_keys::list(&mut c, "t2").await.unwrap().is_empty());
    drop(c);

    // delete: another tenant's delete finds nothing and leaves the row.
    let mut tx = store.begin_write().await.unwrap();
    assert!(!deleted!(integrations, tx, "t2", "int_1"));
    assert!(!deleted!(webhooks, tx, "t2", "whk_1"));
    assert!(!deleted!(connections, tx, "t2", "con_1"));
    assert!(deleted!(integrations, tx, "t1", "int_1"));
    assert!(!deleted!(integrations, tx, "t1", "int_1"));
    assert!(deleted!(webhooks, tx, "t1", "whk_1"));
    assert!(deleted!(connections, tx, "t1", "con_1"));
    // Row locks take the same tenant-scoped path (a no-op on SQLite).
    rekey_store::lock_row(&mut tx, rekey_store::Locked::Integration, "t1", "int_2")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert!(!found!(integrations, c, "t1", "int_1"));
    assert!(found!(integrations, c, "t1", "int_2"));
    assert!(!found!(webhooks, c, "t1", "whk_1"));
    drop(c);
    store.close().await;
}

async fn rows_decode_what_was_written(db: Db) {
    let (_t, store) = TestDb::open(db).await;
    let mut row = connection("t1", "con_1", r#"{"integration_id":"int_a"}"#);
    row.owner.name = Some("Ada".into());
    row.last_error = Some(r#"{"code":"x"}"#.into());
    row.rotated_at = Some(5);
    row.last_ok_at = Some(6);
    row.last_checked_at = Some(7);
    row.first_failed_at = Some(8);
    row.consecutive_failures = 2;
    row.probe_url = Some("https://example.com/p".into());
    insert(&store, &row).await;
    let got = get(&store, "t1", "con_1").await.unwrap();
    assert_same_row(&got, &row);

    let i = integration("t1", "int_a");
    let w = webhook("t1", "whk_1");
    let k = api_key("t1", "key_1");
    let mut tx = store.begin_write().await.unwrap();
    integrations::insert(tx.conn(), &i).await.unwrap();
    webhooks::insert(tx.conn(), &w).await.unwrap();
    api_keys::insert(tx.conn(), &k, "hash-1").await.unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    let gi = integrations::get(&mut c, "t1", "int_a")
        .await
        .unwrap()
        .unwrap();
    assert_same_row(&gi, &i);
    let gw = webhooks::get(&mut c, "t1", "whk_1").await.unwrap().unwrap();
    assert_same_row(&gw, &w);
    let gk = api_keys::find_active_by_hash(&mut c, "hash-1", 2)
        .await
        .unwrap()
        .unwrap();
    assert_same_row(&gk, &k);

    // A list column that is not a JSON list reads as empty, as before.
    sqlx::query("UPDATE connections SET tags = 'not json' WHERE id = 'con_1'")
        .execute(&mut *c)
        .await
        .unwrap();
    let got = connections::get(&mut c, "t1", "con_1")
        .await
        .unwrap()
        .unwrap();
    assert!(got.tags.is_empty());
    // An unknown status is an internal error, not a guess.
    sqlx::query("UPDATE connections SET status = 'bogus' WHERE id = 'con_1'")
        .execute(&mut *c)
        .await
        .unwrap();
    let e = connections::get(&mut c, "t1", "con_1").await.unwrap_err();
    assert_eq!(e.code(), "internal");
    drop(c);
    store.close().await;
}

async fn database_errors_map_to_domain_errors(db: Db) {
    let (_t, store) = TestDb::open(db).await;
    assert_eq!(
        store.backend(),
        match db {
            Db::Sqlite => Backend::Sqlite,
            Db::Postgres => Backend::Postgres,
        }
    );
    let row = connection("t1", "con_1", "{}");
    insert(&store, &row).await;
    let mut tx = store.begin_write().await.unwrap();
    let e = connections::insert(tx.conn(), &row).await.unwrap_err();
    assert_eq!(e.code(), "already_exists");
    assert_eq!(
        e.public_message(),
        "a record with this identity already exists"
    );
    drop(tx);
    let mut c = store.read().await.unwrap();
    let e = sqlx::query("SELECT nope FROM connections")
        .execute(&mut *c)
        .await
        .map_err(rekey_core::Error::from)
        .unwrap_err();
    assert_eq!(e.code(), "internal");
    assert_eq!(e.public_message(), "internal error; see server logs");
    drop(c);
    store.close().await;
}

/// Integrations' tag and custody side rows follow updates and filter the
/// list per tenant; a connection's health notes are upserted in parts and
/// go with the connection.
async fn integration_labels_and_health_notes(db: Db) {
    use rekey_store::health_notes;
    use rekey_store::integrations::IntegrationFilter;
    let (_t, store) = TestDb::open(db).await;
    let mut tx = store.begin_write().await.unwrap();
    integrations::insert(tx.conn(), &integration("t1", "int_1"))
        .await
        .unwrap();
    let mut other = integration("t2", "int_2");
    other.tags = vec![];
    integrations::insert(tx.conn(), &other).await.unwrap();
    tx.commit().await.unwrap();
    insert(&store, &connection("t1", "con_1", "{}")).await;
    // The ids `list_filtered` answers for a tag and a custody place.
    async fn filtered(
        c: &mut AnyConnection,
        tenant: &str,
        tag: Option<&str>,
        custody: Option<&str>,
    ) -> Vec<String> {
        let f = IntegrationFilter {
            provider: None,
            tag: tag.map(str::to_string),
            custody: custody.map(str::to_string),
        };
        let rows = integrations::list_filtered(c, tenant, &f).await.unwrap();
        rows.into_iter().map(|r| r.id).collect()
    }
    let mut c = store.read().await.unwrap();
    let got = filtered(&mut c, "t1", Some("crm"), Some("salesforce")).await;
    assert_eq!(got, vec!["int_1"]);
    // Custody matches in t2 too, but tenants never mix.
    assert!(filtered(&mut c, "t2", Some("crm"), None).await.is_empty());
    drop(c);
    // An update rewrites the side rows.
    let mut tx = store.begin_write().await.unwrap();
    let mut row = integrations::get(tx.conn(), "t1", "int_1")
        .await
        .unwrap()
        .unwrap();
    row.tags = vec!["erp".into()];
    row.version = 2;
    assert!(integrations::update(tx.conn(), &row, 1).await.unwrap());
    health_notes::set_unchecked(tx.conn(), "t1", "con_1", Some("no probe"))
        .await
        .unwrap();
    health_notes::set_confirmed(tx.conn(), "t1", "con_1", 5, "api_key:k", Some("seen"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert!(filtered(&mut c, "t1", Some("crm"), None).await.is_empty());
    let erp = filtered(&mut c, "t1", Some("erp"), None).await;
    assert_eq!(erp, vec!["int_1"]);
    let n = health_notes::get(&mut c, "t1", "con_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        n.unchecked_reason.as_deref(),
        Some("no probe"),
        "kept by set_confirmed"
    );
    assert_eq!(
        (n.confirmed_at, n.confirmed_by.as_deref()),
        (Some(5), Some("api_key:k"))
    );
    assert!(!found!(health_notes, c, "t2", "con_1"));
    drop(c);
    let mut tx = store.begin_write().await.unwrap();
    connections::delete(tx.conn(), "t1", "con_1").await.unwrap();
    integrations::delete(tx.conn(), "t1", "int_1")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut c = store.read().await.unwrap();
    assert!(!found!(health_notes, c, "t1", "con_1"));
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) AS n FROM integration_tags WHERE integration_id = 'int_1'")
            .fetch_one(&mut *c)
            .await
            .unwrap();
    assert_eq!(n, 0, "side rows go with the integration");
    drop(c);
    store.close().await;
}

/// A write transaction whose caller goes away at any moment (a client that
/// hangs up mid-request drops the handler's future) must not leave the
/// database locked: found by wrk, after whose runs a SQLite server answered
/// no write again ("database is locked"). Cancelled at many points of
/// `begin_write`, a statement and `commit`; afterwards writes still go
/// through at once.
#[tokio::test]
async fn a_cancelled_write_leaves_no_lock() {
    for db in [Db::Sqlite, Db::Postgres] {
        let (_t, store) = TestDb::open(db).await;
        for round in 0..400u64 {
            let s = store.clone();
            let work = async move {
                let mut tx = s.begin_write().await?;
                sqlx::query("SELECT 1").execute(tx.conn()).await?;
                tx.commit().await
            };
            // From 0 to ~2 ms: before, during and after the BEGIN.
            let _ = tokio::time::timeout(std::time::Duration::from_micros(round * 5), work).await;
        }
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            for _ in 0..20 {
                let mut tx = store.begin_write().await?;
                sqlx::query("SELECT 1").execute(tx.conn()).await?;
                tx.commit().await?;
            }
            Ok::<_, rekey_core::Error>(())
        })
        .await;
        assert!(
            matches!(next, Ok(Ok(()))),
            "{db:?}: writes after cancelled ones: {next:?}"
        );
    }
}

/// A worker's pass that finds nothing due opens no write transaction: on
/// SQLite it would hold up every audited read behind the write lock. So a
/// claim with nothing due answers while another writer holds the lock;
/// with a row due it waits for the lock and claims it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_with_nothing_due_takes_no_write_lock() {
    let (_t, store) = TestDb::open(Db::Sqlite).await;
    let now = rekey_core::time::now_ms();
    let claim = |s: Store| async move {
        s.claim(
            &connections::CHECKS_DUE,
            connections::claim_checks,
            "worker",
            now,
            now + 60_000,
            10,
        )
        .await
    };
    let held = store.begin_write().await.unwrap();
    let r = tokio::time::timeout(std::time::Duration::from_secs(30), claim(store.clone())).await;
    assert!(
        matches!(&r, Ok(Ok(v)) if v.is_empty()),
        "a claim with nothing due waited for the write lock: {r:?}"
    );
    held.commit().await.unwrap();
    // A connection never checked is due: the claim waits for the writer
    // holding the lock, then leases it.
    insert(&store, &connection("t1", "con_1", "{}")).await;
    let held = store.begin_write().await.unwrap();
    let waiting = tokio::spawn(claim(store.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "a claim with a row due took no write lock"
    );
    held.commit().await.unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(
        got,
        vec![(
            "t1".to_string(),
            "con_1".to_string(),
            "custom-rest".to_string()
        )]
    );
}

/// SQLite: the log is copied into the database file by the store's own
/// checkpoint thread while the store is open (SQLite's automatic
/// checkpoint is off, so nothing else grows the file), and every entry is
/// there after close and reopen.
#[tokio::test]
async fn the_wal_is_checkpointed_while_the_store_is_open() {
    let (t, store) = TestDb::open(Db::Sqlite).await;
    let db = t.dir.path().join("rekey.db");
    let wal = t.dir.path().join("rekey.db-wal");
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    // Let any checkpoint of the migrations land first.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let before = size(&db);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..2_000 {
        let s = store.clone();
        tasks.spawn(async move { s.append_audit(audit_entry(n)).await.unwrap() });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert!(size(&wal) > 0, "the entries went to the log");
    let mut grown = false;
    for _ in 0..200 {
        if size(&db) > before + 100_000 {
            grown = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        grown,
        "no checkpoint copied the log into {db:?} within 10 s"
    );
    // Nothing was lost on the way.
    assert_eq!(entries_after_reopen(&store, &t.url).await, 2_000);
}

/// Close `store`, open the database at `url` again and count its audit
/// entries.
async fn entries_after_reopen(store: &Store, url: &str) -> usize {
    store.close().await;
    let reopened = Store::connect(url).await.unwrap();
    let mut c = reopened.read().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    n as usize
}

/// A PostgreSQL database whose default is `synchronous_commit = off`
/// (commits answered before their WAL flush) still gets durable commits
/// from rekey: an audit entry must be on disk before the secret leaves.
/// A stronger setting is kept.
#[tokio::test]
async fn postgres_commits_wait_for_their_flush_even_where_off_is_the_default() {
    for (default, expected) in [("off", "on"), ("remote_apply", "remote_apply")] {
        let t = TestDb::create(Db::Postgres).await;
        let name = t.pg_name.clone().unwrap();
        let mut admin = sqlx::PgConnection::connect(PG_ADMIN_URL).await.unwrap();
        sqlx::query(&format!(
            "ALTER DATABASE {name} SET synchronous_commit = {default}"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        let store = t.store().await;
        let mut c = store.pool().acquire().await.unwrap();
        let (level,): (String,) = sqlx::query_as("SELECT current_setting('synchronous_commit')")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(level, expected, "database default {default}");
        drop(c);
        store.close().await;
    }
}

/// Every SQLite commit syncs the write-ahead log before it returns
/// (`synchronous = FULL`, 2): what has committed, such as a credential
/// read's audit entry before the secret leaves, survives a power loss.
#[tokio::test]
async fn every_sqlite_commit_syncs_the_log() {
    let (_t, store) = TestDb::open(Db::Sqlite).await;
    let mut seen = Vec::new();
    // Several of the pool's connections, not only the first one opened.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = store.pool().acquire().await.unwrap();
        let (level,): (i64,) = sqlx::query_as("PRAGMA synchronous")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        seen.push(level);
        held.push(c);
    }
    assert_eq!(seen, vec![2, 2, 2]);
}

/// SQLite: under writes that never pause the log still starts over from
/// its beginning, so it does not grow for as long as they last. (SQLite
/// restarts the log only when a writer begins while every frame has been
/// copied, which a checkpoint running beside constant commits never
/// achieves; past the limit the checkpoint thread finishes its copy under
/// the write lock.) The log's header counts its restarts: bytes 12..16,
/// the checkpoint sequence number. Nothing written is lost.
#[tokio::test]
async fn the_wal_starts_over_under_constant_writes() {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (t, store) = TestDb::open(Db::Sqlite).await;
    store.set_wal_limit(256 * 1024);
    let wal = t.dir.path().join("rekey.db-wal");
    let restarts = || -> Option<u32> {
        let mut h = [0u8; 16];
        std::fs::File::open(&wal).ok()?.read_exact(&mut h).ok()?;
        Some(u32::from_be_bytes([h[12], h[13], h[14], h[15]]))
    };
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let written = std::sync::Arc::new(AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8usize {
        let (s, stop, written) = (store.clone(), stop.clone(), written.clone());
        writers.spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                s.append_audit(audit_entry(w * 10_000_000 + n))
                    .await
                    .unwrap();
                written.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        });
    }
    let mut first = None;
    let mut last = None;
    // Up to 30 s of writing; done as soon as the log has started over
    // three times while the writers went on.
    for _ in 0..300 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = restarts();
        if first.is_none() {
            first = now;
        }
        last = now;
        if let (Some(a), Some(b)) = (first, last) {
            if b >= a + 3 {
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = writers.join_next().await {
        r.unwrap();
    }
    let (a, b) = (first.unwrap(), last.unwrap());
    assert!(
        b >= a + 3,
        "the log started over {} times in 30 s of constant writes",
        b - a
    );
    // Each restart writes the file over from its start, so its size stays
    // at what one cycle wrote (here up to the first restart, as the first
    // checkpoint comes half a second after the store opens), not at what
    // the whole run wrote; the restarts above are what bound it.
    assert_eq!(
        entries_after_reopen(&store, &t.url).await,
        written.load(Ordering::Relaxed)
    );
}

/// A write transaction holding the audit log the way another writer
/// would (on PostgreSQL, its table lock too), until it ends.
async fn hold_audit_lock(store: &Store, db: Db) -> rekey_store::WriteTx {
    let mut blocker = store.begin_write().await.unwrap();
    if db == Db::Postgres {
        sqlx::query("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
            .execute(blocker.conn())
            .await
            .unwrap();
    }
    blocker
}

fn audit_entry(n: usize) -> rekey_core::audit::AuditEntry {
    rekey_core::audit::AuditEntry {
        seq: 0,
        id: format!("aud_group_{n}"),
        at: 1_700_000_000_000 + n as i64,
        tenant: "t1".into(),
        actor: "test".into(),
        action: "credentials.read".into(),
        target: Some(format!("conn_{}", n % 7)),
        request_id: Some(format!("req-{n}")),
        source: None,
        outcome: "ok".into(),
        details: "{}".into(),
    }
}

/// The whole chain from the first entry: it verifies, and its entries'
/// ids in chain order.
async fn verified_chain(store: &Store) -> Vec<String> {
    let mut c = store.read().await.unwrap();
    let rows = rekey_store::audit::page_from(&mut c, 0, 100_000)
        .await
        .unwrap();
    let mut v = rekey_core::audit::Verifier::default();
    for r in &rows {
        v.feed(r).unwrap();
    }
    rows.into_iter().map(|r| r.entry.id).collect()
}

/// Group commit: appends made while the audit log is locked wait (none
/// answers before its transaction commits), then go in together; every
/// entry is in the chain once, the chain verifies, and each answered
/// append's entry is already readable. The per-entry mode writes the same.
async fn audit_group_commit_keeps_the_chain(db: Db) {
    use rekey_store::AuditCommit;
    for mode in [AuditCommit::Group, AuditCommit::Each] {
        let (_t, store) = TestDb::open(db).await;
        let store = store.with_audit_commit(mode);
        let blocker = hold_audit_lock(&store, db).await;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..120 {
            let s = store.clone();
            tasks.spawn(async move {
                s.append_audit(audit_entry(n)).await.unwrap();
                // Answered, so committed: visible to a fresh reader.
                let mut c = s.read().await.unwrap();
                let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE id = $1")
                    .bind(format!("aud_group_{n}"))
                    .fetch_one(&mut *c)
                    .await
                    .unwrap();
                assert_eq!(seen, 1, "{mode:?}: entry {n} answered before commit");
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            tasks.try_join_next().is_none(),
            "{mode:?}: an append returned while the log was locked"
        );
        blocker.commit().await.unwrap();
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let ids = verified_chain(&store).await;
        assert_eq!(ids.len(), 120, "{mode:?}");
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 120, "{mode:?}: an entry written twice");
    }
}

/// The group writer (on SQLite a connection of its own on its own thread)
/// and every other writer append to one chain: write transactions of the
/// same store, and those of a second store on the same database — what an
/// offline command or another replica is, with no in-process lock shared.
/// All at once; every entry lands once and the chain verifies.
async fn audit_writer_shares_the_chain_with_other_writers(db: Db) {
    let (t, store) = TestDb::open(db).await;
    let other = t.store().await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..300 {
        let (s, o) = (store.clone(), other.clone());
        tasks.spawn(async move {
            match n % 3 {
                0 => {
                    s.append_audit(audit_entry(n)).await.unwrap();
                }
                _ => {
                    let w = if n % 3 == 1 { &s } else { &o };
                    let mut tx = w.begin_write().await.unwrap();
                    let backend = tx.backend();
                    rekey_store::audit::append_all(tx.conn(), backend, vec![audit_entry(n)])
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let ids = verified_chain(&store).await;
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (300, 300));
    other.close().await;
}

/// Callers that go away (a client hanging up) neither block the writer
/// nor break the chain; the store writes on afterwards, and a closed store
/// answers appends with an error instead of hanging.
async fn audit_group_commit_survives_cancelled_callers(db: Db) {
    let (_t, store) = TestDb::open(db).await;
    for round in 0..200u64 {
        let s = store.clone();
        let _ = tokio::time::timeout(
            std::time::Duration::from_micros(round * 10),
            s.append_audit(audit_entry(round as usize)),
        )
        .await;
    }
    for n in 1000..1010 {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            store.append_audit(audit_entry(n)),
        )
        .await
        .expect("append after cancelled ones hung")
        .unwrap();
    }
    let ids = verified_chain(&store).await;
    assert!(ids.ends_with(
        &(1000..1010)
            .map(|n| format!("aud_group_{n}"))
            .collect::<Vec<_>>()
    ));
    store.close().await;
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.append_audit(audit_entry(2000)),
    )
    .await
    .expect("append on a closed store hung");
    assert!(closed.is_err());
}

/// A credential read served from a cache writes its entry only if the
/// key is still active and the connection still at the version read, in
/// the transaction that writes it; checks that fail leave nothing, and the
/// entries that are written keep the chain — through the group writer
/// (concurrent callers, some failing) and one transaction per entry alike.
async fn audit_entries_written_only_if_their_check_holds(db: Db) {
    use rekey_store::{AuditCommit, ReadCheck};
    let (t, group) = TestDb::open(db).await;
    let each = t.store().await.with_audit_commit(AuditCommit::Each);
    let mut tx = group.begin_write().await.unwrap();
    api_keys::insert(tx.conn(), &api_key("t1", "key_live"), "hash-live")
        .await
        .unwrap();
    api_keys::insert(tx.conn(), &api_key("t1", "key_gone"), "hash-gone")
        .await
        .unwrap();
    api_keys::insert(tx.conn(), &api_key("t1", "key_expired"), "hash-expired")
        .await
        .unwrap();
    // Rotated long ago with a grace that has run out.
    assert!(
        api_keys::mark_rotated(tx.conn(), "t1", "key_expired", "key_live", 1, Some(2))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    insert(&group, &connection("t1", "conn_1", "{}")).await;
    let mut tx = group.begin_write().await.unwrap();
    assert!(api_keys::revoke(tx.conn(), "t1", "key_gone", 5)
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let check = |key: &str, tenant: &str, conn: &str, version: i64| {
        Some(ReadCheck {
            api_key_id: key.into(),
            tenant: tenant.into(),
            connection_id: conn.into(),
            connection_version: version,
        })
    };
    // (check, whether it holds)
    let cases = [
        (check("key_live", "t1", "conn_1", 1), true),
        (check("key_gone", "t1", "conn_1", 1), false),
        (check("key_expired", "t1", "conn_1", 1), false),
        (check("key_live", "t1", "conn_1", 2), false),
        (check("key_live", "t2", "conn_1", 1), false),
        (check("key_live", "t1", "conn_none", 1), false),
        (check("key_none", "t1", "conn_1", 1), false),
        (None, true),
    ];
    let mut calls = Vec::new();
    for round in 0..4 {
        for (i, (chk, holds)) in cases.iter().enumerate() {
            let s = group.clone();
            let (chk, n) = (chk.clone(), round * 100 + i);
            calls.push((
                n,
                *holds,
                tokio::spawn(async move { s.append_audit_if(audit_entry(n), chk).await }),
            ));
        }
    }
    let mut want = Vec::new();
    for (n, holds, call) in calls {
        assert_eq!(call.await.unwrap().unwrap(), holds, "entry {n}");
        if holds {
            want.push(format!("aud_group_{n}"));
        }
    }
    for (i, (chk, holds)) in cases.iter().enumerate() {
        let n = 1000 + i;
        assert_eq!(
            each.append_audit_if(audit_entry(n), chk.clone())
                .await
                .unwrap(),
            *holds
        );
        if *holds {
            want.push(format!("aud_group_{n}"));
        }
    }
    let mut got = verified_chain(&group).await;
    // Concurrent callers are chained in arrival order; compare as sets.
    got.sort();
    want.sort();
    assert_eq!(got, want);
    each.close().await;
}

/// A key that expires while its read's entry waits for the audit lock
/// (held by a revocation, say) is judged when the lock is had, not when
/// the entry was queued: the entry is refused.
async fn a_key_expiring_while_its_entry_waits_is_refused(db: Db) {
    use rekey_store::ReadCheck;
    let (_t, store) = TestDb::open(db).await;
    let now = rekey_core::time::now_ms();
    let mut tx = store.begin_write().await.unwrap();
    for id in ["key_next", "key_ending"] {
        api_keys::insert(tx.conn(), &api_key("t1", id), &format!("hash-{id}"))
            .await
            .unwrap();
    }
    // Rotated just now, with 400 ms of grace left.
    assert!(api_keys::mark_rotated(
        tx.conn(),
        "t1",
        "key_ending",
        "key_next",
        now,
        Some(now + 400)
    )
    .await
    .unwrap());
    tx.commit().await.unwrap();
    insert(&store, &connection("t1", "conn_1", "{}")).await;
    let blocker = hold_audit_lock(&store, db).await;
    let s = store.clone();
    let waiting = tokio::spawn(async move {
        s.append_audit_if(
            audit_entry(1),
            Some(ReadCheck {
                api_key_id: "key_ending".into(),
                tenant: "t1".into(),
                connection_id: "conn_1".into(),
                connection_version: 1,
            }),
        )
        .await
    });
    // Well past the key's end before the lock is let go.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    blocker.commit().await.unwrap();
    assert!(
        !waiting.await.unwrap().unwrap(),
        "an entry for a key that expired while it waited was written"
    );
    assert!(verified_chain(&store).await.is_empty());
}

/// An `audit_log` row, every column, as stored.
type AuditRow = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    String,
);

const AUDIT_COLS: &str = "seq, id, at, tenant, actor, action, target, request_id, source, \
     outcome, details, prev_hash, hash";

async fn audit_rows(c: &mut AnyConnection) -> Vec<AuditRow> {
    sqlx::query_as(&format!("SELECT {AUDIT_COLS} FROM audit_log ORDER BY seq"))
        .fetch_all(c)
        .await
        .unwrap()
}

/// Each row's columns written out, to compare (a 13-tuple has no `==`).
fn shown(rows: &[AuditRow]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {} {:?} {:?} {:?} {} {} {} {}",
                r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12
            )
        })
        .collect()
}

/// Migration 0023 (an audit entry in fewer B-trees): a log written before
/// it is kept entry for entry, its chain still verifies, appends go on
/// from its head, and the table has the indexes the migration says.
async fn an_audit_log_from_before_0023_is_kept(db: Db) {
    // Entries chained by today's store...
    let (_a, source) = TestDb::open(db).await;
    for n in 0..40 {
        source.append_audit(audit_entry(n)).await.unwrap();
    }
    let before = audit_rows(&mut source.read().await.unwrap()).await;
    assert_eq!(before.len(), 40);
    // ...in a database migrated only up to 0022.
    let t = TestDb::create(db).await;
    let mut c = migrated_before(&t, db, "0023", 22).await;
    let marks = (1..=13)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    for r in &before {
        sqlx::query(&format!(
            "INSERT INTO audit_log ({AUDIT_COLS}) VALUES ({marks})"
        ))
        .bind(r.0)
        .bind(&r.1)
        .bind(r.2)
        .bind(&r.3)
        .bind(&r.4)
        .bind(&r.5)
        .bind(&r.6)
        .bind(&r.7)
        .bind(&r.8)
        .bind(&r.9)
        .bind(&r.10)
        .bind(&r.11)
        .bind(&r.12)
        .execute(&mut c)
        .await
        .unwrap();
    }
    c.close().await.unwrap();
    // The store opens it and runs 0023.
    let store = t.store().await;
    let mut c = store.read().await.unwrap();
    assert_eq!(
        shown(&audit_rows(&mut c).await),
        shown(&before),
        "every entry kept as it was"
    );
    let indexes: i64 = match db {
        // The rowid is `seq` itself; the tenant and target indexes remain.
        Db::Sqlite => {
            // Only a column declared exactly `INTEGER PRIMARY KEY` is the rowid.
            let aliased: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pragma_table_info('audit_log') \
                 WHERE name = 'seq' AND type = 'INTEGER' AND pk = 1",
            )
            .fetch_one(&mut *c)
            .await
            .unwrap();
            assert_eq!(aliased, 1);
            sqlx::query_scalar("SELECT COUNT(*) FROM pragma_index_list('audit_log')")
                .fetch_one(&mut *c)
                .await
                .unwrap()
        }
        // The primary key and the tenant and target indexes.
        Db::Postgres => {
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'audit_log'")
                .fetch_one(&mut *c)
                .await
                .unwrap()
        }
    };
    assert_eq!(indexes, if db == Db::Sqlite { 2 } else { 3 });
    drop(c);
    store.append_audit(audit_entry(1_000)).await.unwrap();
    let ids = verified_chain(&store).await;
    assert_eq!(ids.len(), 41);
    assert_eq!(ids[40], "aud_group_1000");
    // Still append-only.
    let mut w = store.begin_write().await.unwrap();
    let refused = sqlx::query("UPDATE audit_log SET outcome = 'x' WHERE seq = 3")
        .execute(w.conn())
        .await;
    assert!(refused.is_err(), "audit_log must refuse UPDATE");
    let refused = sqlx::query("DELETE FROM audit_log WHERE seq = 3")
        .execute(w.conn())
        .await;
    assert!(refused.is_err(), "audit_log must refuse DELETE");
}

both_backends!(
    audit_group_commit_keeps_the_chain,
    audit_writer_shares_the_chain_with_other_writers,
    audit_group_commit_survives_cancelled_callers,
    audit_entries_written_only_if_their_check_holds,
    a_key_expiring_while_its_entry_waits_is_refused,
    an_audit_log_from_before_0023_is_kept,
    audit_entries_keep_every_character,
);

/// Entries whose text holds what a serialisation could bend — quotes,
/// backslashes, control characters, non-ASCII, JSON inside a string —
/// are stored as given through the group writer (on PostgreSQL, passed to
/// the batch function as JSON) and the chain over them verifies.
async fn audit_entries_keep_every_character(db: Db) {
    let (_t, store) = TestDb::open(db).await;
    let odd = [
        r#"{"note":"a \"quoted\" value","path":"C:\\tmp"}"#,
        "tab\there, newline\nthere, ünïcødé ключ 鍵 🔑",
        "'; DROP TABLE audit_log; --",
    ];
    for (n, text) in odd.iter().enumerate() {
        let mut e = audit_entry(n);
        e.details = text.to_string();
        e.target = Some(format!("{text}-target"));
        e.request_id = None;
        store.append_audit(e).await.unwrap();
    }
    verified_chain(&store).await;
    let mut c = store.read().await.unwrap();
    let rows: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT details, target, request_id FROM audit_log ORDER BY seq")
            .fetch_all(&mut *c)
            .await
            .unwrap();
    let want: Vec<_> = odd
        .iter()
        .map(|t| (t.to_string(), Some(format!("{t}-target")), None))
        .collect();
    assert_eq!(rows, want);
}

/// `insert_many` writes every row with its labels (more rows than fit one
/// statement), and the summary's labels in use are the tenant's own: a
/// tag only another tenant uses is not suggested.
async fn batch_insert_and_summary_keep_tenants_apart(db: Db) {
    let (_t, store) = TestDb::open(db).await;
    let mut rows = Vec::new();
    for i in 0..150 {
        let mut r = connection("t1", &format!("conn_batch{i:03}"), "{}");
        r.tags = vec![if i % 2 == 0 { "even" } else { "odd" }.into(), "all".into()];
        r.custody = vec![format!("place{}", i % 3)];
        r.status = if i < 100 {
            Status::Active
        } else {
            Status::Degraded
        };
        rows.push(r);
    }
    let mut other = connection("t2", "conn_other", "{}");
    other.tags = vec!["secret-project".into()];
    other.custody = vec!["elsewhere".into()];
    rows.push(other);
    let mut tx = store.begin_write().await.unwrap();
    connections::insert_many(tx.conn(), &rows).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(with_tag(&store, "t1", "even").await.len(), 75);
    assert_eq!(with_tag(&store, "t1", "odd").await.len(), 75);
    assert_eq!(with_tag(&store, "t2", "all").await.len(), 0);
    let back = get(&store, "t1", "conn_batch149").await.unwrap();
    assert_eq!(back.tags, vec!["odd".to_string(), "all".to_string()]);

    let mut c = store.read().await.unwrap();
    let (mut counts, tags, places) = connections::tenant_summary(&mut c, "t1").await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        vec![("active".to_string(), 100), ("degraded".to_string(), 50)]
    );
    assert_eq!(tags, vec!["all", "even", "odd"]);
    assert_eq!(places, vec!["place0", "place1", "place2"]);
    let (_, tags, places) = connections::tenant_summary(&mut c, "t2").await.unwrap();
    assert_eq!(tags, vec!["secret-project"]);
    assert_eq!(places, vec!["elsewhere"]);
    let (counts, tags, _) = connections::tenant_summary(&mut c, "nobody").await.unwrap();
    assert!(counts.is_empty() && tags.is_empty());
}

/// One call of the audit writer's batch function (PostgreSQL, migration
/// 0025): `SELECT rekey_audit_batch(head seq, head hash, last seq, checks,
/// entries)`; its rows, sorted.
async fn batch_call(
    c: &mut AnyConnection,
    head: Option<(i64, &str)>,
    last_seq: Option<i64>,
    checks: serde_json::Value,
    entries: &[rekey_core::audit::ChainedEntry],
) -> Vec<(String, String, String, i64)> {
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .map(|ce| {
            let e = &ce.entry;
            serde_json::json!({"seq": e.seq, "id": e.id, "at": e.at, "tenant": e.tenant,
                "actor": e.actor, "action": e.action, "target": e.target,
                "request_id": e.request_id, "source": e.source, "outcome": e.outcome,
                "details": e.details, "prev_hash": ce.prev_hash, "hash": ce.hash})
        })
        .collect();
    let mut got: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT r_what, r_id, r_tenant, r_n FROM \
         rekey_audit_batch($1, $2, $3, CAST($4 AS JSON), CAST($5 AS JSON))",
    )
    .bind(head.map(|h| h.0))
    .bind(head.map(|h| h.1.to_string()))
    .bind(last_seq)
    .bind(checks.to_string())
    .bind(serde_json::Value::Array(rows).to_string())
    .fetch_all(&mut *c)
    .await
    .unwrap();
    got.sort();
    got
}

/// The batch function writes a batch only after the head it was chained
/// to and only while every check is as expected; otherwise it writes
/// nothing and tells the state. A batch sent again after it was written
/// (its first answer lost) is not written twice, and the answer shows its
/// last entry, which is how the writer knows.
#[tokio::test]
async fn the_audit_batch_function_writes_only_what_was_chained_to_the_head() {
    use rekey_core::audit::GENESIS;
    let (_t, store) = TestDb::open(Db::Postgres).await;
    let mut tx = store.begin_write().await.unwrap();
    api_keys::insert(tx.conn(), &api_key("t1", "key_live"), "hash-live")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    insert(&store, &connection("t1", "conn_1", "{}")).await;
    let mut c = store.read().await.unwrap();
    let w = |s: &str| (s.to_string(), String::new(), String::new(), 0);
    let ok = serde_json::json!([{"k": "key_live", "c": "conn_1", "t": "t1", "v": 1, "e": true}]);
    // An empty log: chained after nothing.
    let first = rekey_store::audit::chain(None, vec![audit_entry(1), audit_entry(2)]);
    assert_eq!(
        batch_call(&mut c, None, Some(2), ok.clone(), &first).await,
        [w("w")]
    );
    let h2 = first[1].hash.clone();
    assert_eq!(first[0].prev_hash, GENESIS);
    // The same batch again: nothing written; the head and the batch's own
    // last entry come back.
    let again = batch_call(&mut c, None, Some(2), ok.clone(), &first).await;
    let state = vec![
        ("c".to_string(), "conn_1".to_string(), "t1".to_string(), 1),
        ("h".to_string(), h2.clone(), String::new(), 2),
        ("k".to_string(), "key_live".to_string(), String::new(), 0),
        ("x".to_string(), h2.clone(), String::new(), 2),
    ];
    assert_eq!(again, state);
    // Chained to a head that is not the chain's: nothing written.
    let forked = rekey_store::audit::chain(Some((1, first[0].hash.clone())), vec![audit_entry(3)]);
    let got = batch_call(
        &mut c,
        Some((1, &first[0].hash)),
        Some(2),
        ok.clone(),
        &forked,
    )
    .await;
    assert!(!got.contains(&w("w")) && got.contains(&("h".into(), h2.clone(), String::new(), 2)));
    // A check expected to hold that does not (the version moved): nothing.
    let next = rekey_store::audit::chain(Some((2, h2.clone())), vec![audit_entry(4)]);
    let moved = serde_json::json!([{"k": "key_live", "c": "conn_1", "t": "t1", "v": 2, "e": true}]);
    assert!(
        !batch_call(&mut c, Some((2, &h2)), Some(3), moved.clone(), &next)
            .await
            .contains(&w("w"))
    );
    // Expected to fail, but holding (the version the check names is the
    // connection's): nothing, as the writer would have left its entry out.
    let wrong =
        serde_json::json!([{"k": "key_live", "c": "conn_1", "t": "t1", "v": 1, "e": false}]);
    assert!(!batch_call(&mut c, Some((2, &h2)), Some(3), wrong, &next)
        .await
        .contains(&w("w")));
    // Expected to fail, and failing: written (the entries sent are those
    // of the checks the writer expected to hold).
    let expected =
        serde_json::json!([{"k": "key_live", "c": "conn_1", "t": "t1", "v": 2, "e": false}]);
    assert_eq!(
        batch_call(&mut c, Some((2, &h2)), Some(3), expected, &next).await,
        [w("w")]
    );
    let ids = verified_chain(&store).await;
    assert_eq!(ids, ["aud_group_1", "aud_group_2", "aud_group_4"]);
}

/// The audit writer keeps its PostgreSQL connection between batches; when
/// the server has closed it meanwhile (a restart, an idle timeout, an
/// administrator), the next batch goes through on a fresh one, once.
#[tokio::test]
async fn the_audit_writer_outlives_its_connection() {
    let (t, store) = TestDb::open(Db::Postgres).await;
    let name = t.pg_name.clone().unwrap();
    let mut admin = sqlx::PgConnection::connect(PG_ADMIN_URL).await.unwrap();
    for round in 0..3usize {
        for n in 0..5 {
            store
                .append_audit(audit_entry(round * 10 + n))
                .await
                .unwrap();
        }
        let (killed,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()) k",
        )
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert!(killed >= 1, "no connection of the store to close");
    }
    store.append_audit(audit_entry(99)).await.unwrap();
    let ids = verified_chain(&store).await;
    let mut want: Vec<String> = (0..3)
        .flat_map(|r| (0..5).map(move |n| format!("aud_group_{}", r * 10 + n)))
        .collect();
    want.push("aud_group_99".into());
    assert_eq!(ids, want);
}

/// A database whose default isolation is repeatable read still takes
/// audited reads: the audit writer's connection runs read committed (the
/// batch function reads the head and the checks after its lock, which a
/// snapshot from before the lock would not see), and the function refuses
/// to run under anything else rather than chain from a stale head.
#[tokio::test]
async fn the_audit_writer_reads_committed_whatever_the_default() {
    let t = TestDb::create(Db::Postgres).await;
    let name = t.pg_name.clone().unwrap();
    let mut admin = sqlx::PgConnection::connect(PG_ADMIN_URL).await.unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let store = t.store().await;
    let other = t.store().await;
    for n in 0..6 {
        store.append_audit(audit_entry(n)).await.unwrap();
        // Another writer moves the head between batches.
        let mut tx = other.begin_write().await.unwrap();
        let backend = tx.backend();
        rekey_store::audit::append_all(tx.conn(), backend, vec![audit_entry(100 + n)])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(verified_chain(&store).await.len(), 12);
    let mut c = sqlx::PgConnection::connect(&t.url).await.unwrap();
    let refused = sqlx::query(
        "SELECT * FROM rekey_audit_batch(NULL, NULL, NULL, CAST('[]' AS JSON), CAST('[]' AS JSON))",
    )
    .execute(&mut c)
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("read committed"), "{refused}");
    other.close().await;
    store.close().await;
}
