//! Test harness: the real router on an ephemeral port, on a fresh SQLite data
//! dir or a fresh PostgreSQL database (dropped afterwards), with a real HTTP
//! client and the typed `rekey-client` ([`TestServer::client`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod dbtarget;
pub mod moto;
pub mod oauth2_fixture;
pub mod oidc;
pub mod provider_fixture;
pub mod smtp;
pub mod snowflake;
pub mod webhook_receiver;

use rekey_service::{Ctx, LockMode, OpenOptions, Rekey};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A PostgreSQL database of its own for one test; dropped on drop.
pub struct PgDb {
    pub name: String,
}

impl PgDb {
    pub async fn create() -> PgDb {
        let name = format!("rekey_t_{}", uuid_like());
        let mut c = sqlx::PgConnection::connect(PG_ADMIN_URL)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 (user postgres, database test) must be running");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        PgDb { name }
    }
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
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

pub fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n, std::process::id()) + &format!("{:04x}", rand_u16())
}

/// 12 hex digits unlike any other call's in this run, across processes
/// (the fast-moving end of the clock, the process and a counter), for names
/// of database roles and users that tests running at once share a server for.
pub fn short_unique() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:05x}{:03x}{:04x}",
        (n as u64) & 0xfffff,
        std::process::id() & 0xfff,
        rand_u16()
    )
}

fn rand_u16() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static C: AtomicU16 = AtomicU16::new(0);
    C.fetch_add(1, Ordering::Relaxed)
}

pub struct TestServer {
    pub db: Db,
    pub base: String,
    pub http: reqwest::Client,
    pub admin_key: String,
    pub rekey: Rekey,
    pub dir: tempfile::TempDir,
    pub pg: Option<PgDb>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _opened: rekey_service::OpenedDataDir,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    /// Assert `200 OK` and return the JSON body.
    pub fn ok_json(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        self.json()
    }
    /// Assert `201 Created` and return the new resource's `id`.
    pub fn created_id(&self) -> String {
        assert_eq!(self.status, StatusCode::CREATED, "{}", self.text);
        self.json()["id"].as_str().unwrap().to_string()
    }
    /// Assert an error response with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) -> &Resp {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        let j = self.json();
        assert_eq!(j["error"]["code"], code, "body: {}", self.text);
        // Every code on the wire is one of the documented ones.
        assert!(
            rekey_core::ErrorCode::from_wire(code).is_some(),
            "`{code}` is not in rekey_core::ErrorCode"
        );
        assert!(
            j["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "body: {}",
            self.text
        );
        self
    }
}

/// Assert that a [`rekey_client`] call failed with the API's error of this
/// status and code, with a message (what [`Resp::assert_error`] checks of a
/// raw response).
pub fn assert_api_error<T: std::fmt::Debug>(
    r: Result<T, rekey_client::ClientError>,
    status: u16,
    code: &str,
) {
    match r {
        Err(rekey_client::ClientError::Api {
            status: got_status,
            code: got_code,
            message,
        }) => {
            assert_eq!(
                (got_status, got_code.as_str()),
                (status, code),
                "message: {message}"
            );
            assert!(!message.is_empty(), "{code} without a message");
            assert!(
                rekey_core::ErrorCode::from_wire(code).is_some(),
                "`{code}` is not in rekey_core::ErrorCode"
            );
        }
        other => panic!("expected the API error {status} {code}, got {other:?}"),
    }
}

/// The `items` of a list page (connections, audit entries, keys, …).
pub fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().unwrap()
}

/// The `action` of each entry of an audit page, in its order.
pub fn audit_actions(page: &Value) -> Vec<String> {
    items(page)
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

/// Assert a health check's answer: its `outcome` and the connection's
/// resulting `status`.
pub fn assert_checked(r: &Value, outcome: &str, status: &str) {
    assert_eq!(
        (r["outcome"].as_str(), r["status"].as_str()),
        (Some(outcome), Some(status)),
        "{r}"
    );
}

/// Assert that the `last_error.message` of a connection (or a check's
/// answer) contains `text`.
pub fn assert_error_mentions(r: &Value, text: &str) {
    assert!(
        r["last_error"]["message"].as_str().unwrap().contains(text),
        "{r}"
    );
}

/// Serve `rekey` on an ephemeral loopback port until the sender fires.
async fn spawn_server(
    rekey: &Rekey,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    rekey.set_public_url(&format!("http://{addr}"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let r2 = rekey.clone();
    let task = tokio::spawn(async move {
        rekey_server::serve(listener, r2, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (format!("http://{addr}"), tx, task)
}

/// A second server started by [`TestServer::replica`].
pub struct Replica {
    pub base: String,
    /// The replica's own service (its own pool, and on SQLite its own write
    /// lock), e.g. to run a worker pass on it.
    pub rekey: Rekey,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _opened: rekey_service::OpenedDataDir,
}

impl Replica {
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl TestServer {
    pub async fn start(db: Db) -> TestServer {
        TestServer::start_with_providers(db, None).await
    }

    /// A server whose provider catalog is loaded from `providers_dir`
    /// instead of the built-in one (as `--providers-dir` does).
    pub async fn start_with_providers(
        db: Db,
        providers_dir: Option<std::path::PathBuf>,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let pg = match db {
            Db::Postgres => Some(PgDb::create().await),
            Db::Sqlite => None,
        };
        let opts = OpenOptions {
            data_dir: dir.path().join("data"),
            database_url: pg.as_ref().map(|p| p.url().into()),
            providers_dir,
            ..Default::default()
        };
        let opened = opts.open(LockMode::Shared).await.unwrap();
        let rekey = opened.rekey.clone();
        let admin_key = rekey
            .create_api_key(
                &Ctx::cli("default"),
                &rekey_api::CreateApiKey {
                    name: "admin".into(),
                    scopes: vec!["admin".into()],
                },
            )
            .await
            .unwrap()
            .key
            .to_string();
        let (base, tx, task) = spawn_server(&rekey).await;
        TestServer {
            db,
            base,
            http: reqwest::Client::new(),
            admin_key,
            rekey,
            dir,
            pg,
            shutdown: Some(tx),
            task: Some(task),
            _opened: opened,
        }
    }

    /// Another server on the same database and keyring, as a replica
    /// would run (PostgreSQL; on SQLite it shares the process's database).
    pub async fn replica(&self) -> Replica {
        let opts = OpenOptions {
            data_dir: self.dir.path().join("data"),
            database_url: self.pg.as_ref().map(|p| p.url().into()),
            ..Default::default()
        };
        let opened = opts.open(LockMode::Shared).await.unwrap();
        let rekey = opened.rekey.clone();
        let (base, tx, task) = spawn_server(&rekey).await;
        Replica {
            base,
            rekey,
            shutdown: Some(tx),
            task: Some(task),
            _opened: opened,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.rekey.store().close().await;
    }

    /// The typed API client of this server, authenticated with `key`.
    pub fn client(&self, key: &str) -> rekey_client::Client {
        rekey_client::Client::with_http_client(self.http.clone(), &self.base, key)
    }

    /// A key with the given scopes in `tenant`.
    pub async fn key(&self, tenant: &str, scopes: &[&str]) -> String {
        self.rekey
            .create_api_key(
                &Ctx::cli(tenant),
                &rekey_api::CreateApiKey {
                    name: "test".into(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                },
            )
            .await
            .unwrap()
            .key
            .to_string()
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some((ct, b)) = body {
            if !ct.is_empty() {
                req = req.header("content-type", ct);
            }
            req = req.body(b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        Resp {
            status: r.status(),
            headers: r.headers().clone(),
            text: r.text().await.unwrap(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
        self.raw(method, path, Some(key), body, &[]).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.call(Method::GET, path, key, None).await
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, key, Some(body)).await
    }

    pub async fn put(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, key, Some(body)).await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Resp {
        self.call(Method::DELETE, path, key, None).await
    }

    /// GET `path` with the admin key.
    pub async fn get_admin(&self, path: &str) -> Resp {
        self.get(path, &self.admin_key).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call(Method::POST, path, key, Some(body)).await
    }

    /// POST `body` to `path` with the admin key.
    pub async fn post_admin(&self, path: &str, body: Value) -> Resp {
        self.post(path, &self.admin_key, body).await
    }

    /// PATCH `path` with `body` and the admin key.
    pub async fn patch_admin(&self, path: &str, body: Value) -> Resp {
        self.patch(path, &self.admin_key, body).await
    }

    /// PUT `body` at `path` with the admin key.
    pub async fn put_admin(&self, path: &str, body: Value) -> Resp {
        self.put(path, &self.admin_key, body).await
    }

    /// POST `{}` to `path` with the admin key: an action on a resource
    /// (`/check`, `/refresh`, `/revoke`, `/reauthorize`, a webhook's `/test`).
    pub async fn act(&self, path: &str) -> Resp {
        self.post(path, &self.admin_key, json!({})).await
    }

    /// Check the connection `id` now with the admin key; asserts `200 OK`
    /// and returns the check's answer (`outcome`, `status`, `connection`…).
    pub async fn check(&self, id: &str) -> Value {
        self.act(&format!("/api/v1/connections/{id}/check"))
            .await
            .ok_json()
    }

    /// Let a one-second grace run out, then drive the default tenant's
    /// rotation `id` on; asserts it reached `retired`.
    pub async fn retire_after_grace(&self, id: &str) {
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        let done = self.rekey.drive_rotation("default", id).await.unwrap();
        assert_eq!(done.state.as_str(), "retired");
    }

    /// Reauthorize the connection `id` with the admin key; asserts `200 OK`
    /// and returns the new Connect link (`session.url`).
    pub async fn reauthorize_link(&self, id: &str) -> String {
        let r = self
            .act(&format!("/api/v1/connections/{id}/reauthorize"))
            .await
            .ok_json();
        r["session"]["url"].as_str().unwrap().to_string()
    }

    /// Run delivery passes until the delivery `did` of the webhook `hook` is
    /// no longer pending (or 20 s have passed); its view.
    pub async fn settle_delivery(&self, hook: &str, did: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let path = format!("/api/v1/webhooks/{hook}/deliveries/{did}");
        loop {
            self.rekey.deliver_due("w", 100).await.unwrap();
            let d = self.get_admin(&path).await.json();
            if d["status"] != "pending" || std::time::Instant::now() > deadline {
                return d;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Create an api_key connection; returns its id.
    pub async fn create_api_key_conn(&self, key: &str, secret: &str, extra: Value) -> String {
        let mut body = json!({
            "provider": "custom-rest", "kind": "api_key", "display_name": "Test API",
            "credentials": {"key": secret, "placement": "header", "name": "X-Api-Key"},
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.post("/api/v1/connections", key, body)
            .await
            .created_id()
    }

    /// Create an api_key connection holding `secret` with the admin key and
    /// nothing else set; returns its id.
    pub async fn api_key_conn(&self, secret: &str) -> String {
        self.create_api_key_conn(&self.admin_key, secret, json!({}))
            .await
    }

    /// An `api_key` connection that sends `key` as `Authorization: Bearer`
    /// and is probed at `probe_url` (a fixture API).
    pub async fn bearer_key_conn(&self, probe_url: &str, key: &str) -> String {
        self.create_api_key_conn(
            &self.admin_key,
            key,
            json!({"probe_url": probe_url,
                   "credentials": {"key": key, "placement": "header", "name": "Authorization", "prefix": "Bearer "}}),
        )
        .await
    }

    /// Create a connection from `body` with the admin key; returns its id.
    pub async fn create_connection(&self, body: Value) -> String {
        self.post("/api/v1/connections", &self.admin_key, body)
            .await
            .created_id()
    }

    /// Run raw SQL against this test's database (for tamper tests).
    pub async fn sql(&self, statements: &[&str]) {
        raw_sql(self.database_url(), statements).await
    }

    pub fn database_url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url(),
            None => format!(
                "sqlite://{}",
                self.dir.path().join("data/rekey.db").display()
            ),
        }
    }

    /// Every byte the database holds, as text (for plaintext scans).
    pub async fn dump_database(&self) -> Vec<u8> {
        match self.db {
            Db::Sqlite => {
                let mut out = Vec::new();
                for f in ["rekey.db", "rekey.db-wal", "rekey.db-shm"] {
                    if let Ok(b) = std::fs::read(self.dir.path().join("data").join(f)) {
                        out.extend(b);
                    }
                }
                out
            }
            Db::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.pg.as_ref().unwrap().url())
                    .await
                    .unwrap();
                let tables: Vec<(String,)> = sqlx::query_as(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
                )
                .fetch_all(&mut c)
                .await
                .unwrap();
                assert!(tables.len() >= 5);
                let mut out = Vec::new();
                for (t,) in tables {
                    let rows: Vec<(String,)> =
                        sqlx::query_as(&format!("SELECT x::text FROM {t} x"))
                            .fetch_all(&mut c)
                            .await
                            .unwrap();
                    for (r,) in rows {
                        out.extend(r.into_bytes());
                        out.push(b'\n');
                    }
                }
                out
            }
        }
    }
}

/// The text of `tests/fixtures/{name}` (keys, certificates, provider files).
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Run a test body on both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(rekey_testkit::Db::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(rekey_testkit::Db::Postgres).await
                }
            }
        )*
    };
}

/// Run statements against a database URL (`sqlite://…` or `postgres://…`).
pub async fn raw_sql(url: String, statements: &[&str]) {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
    for s in statements {
        sqlx::query(s)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}
