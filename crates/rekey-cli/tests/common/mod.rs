//! The harness for tests of the real `rekey` binary: a data dir (and a
//! PostgreSQL database) per test, commands run against it, a server
//! started on an ephemeral port and stopped with SIGTERM.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::{Db, PgDb};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_rekey");

/// One API request to the server at `base` with the API key `key`: the
/// status and the JSON body.
pub async fn api_request(
    method: reqwest::Method,
    base: &str,
    key: &str,
    path: &str,
    body: Option<&Value>,
) -> (reqwest::StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// POST `body` to the API; asserts a success and returns the JSON body.
pub async fn api_post(base: &str, key: &str, path: &str, body: Value) -> Value {
    let (st, v) = api_request(reqwest::Method::POST, base, key, path, Some(&body)).await;
    assert!(st.is_success(), "{path}: {st} {v}");
    v
}

/// GET from the API: the JSON body, whatever the status.
pub async fn api_get(base: &str, key: &str, path: &str) -> Value {
    api_request(reqwest::Method::GET, base, key, path, None)
        .await
        .1
}

/// Read a connection's credentials through the API: status and body.
pub async fn read_credentials(base: &str, key: &str, id: &str) -> (u16, Value) {
    let path = format!("/api/v1/connections/{id}/credentials");
    let (st, v) = api_request(reqwest::Method::GET, base, key, &path, None).await;
    (st.as_u16(), v)
}

/// Create `n` `headers` connections through the API of the server at
/// `base`, the i-th holding `secret(i, "a")` in `X-A` and `secret(i, "b")`
/// in `X-B`; returns their ids.
pub async fn create_conns(
    base: &str,
    key: &str,
    n: usize,
    secret: impl Fn(usize, &str) -> String,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let body = json!({"provider": "custom-rest", "kind": "headers", "display_name": format!("c{i}"),
            "credentials": {"headers": {"X-A": secret(i, "a"), "X-B": secret(i, "b")}}});
        let (st, v) = api_request(
            reqwest::Method::POST,
            base,
            key,
            "/api/v1/connections",
            Some(&body),
        )
        .await;
        assert_eq!(st, 201);
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids
}

/// One data dir (and, for PostgreSQL, one database) shared by every
/// process a test starts.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub pg: Option<PgDb>,
    pub extra: Vec<(String, String)>,
}

impl Env {
    pub async fn new(db: Db) -> Env {
        let pg = match db {
            Db::Postgres => Some(PgDb::create().await),
            Db::Sqlite => None,
        };
        Env {
            dir: tempfile::tempdir().unwrap(),
            pg,
            extra: Vec::new(),
        }
    }

    /// [`Env::new`] with more environment for every process it starts.
    pub async fn with_env(db: Db, extra: &[(&str, &str)]) -> Env {
        let mut env = Env::new(db).await;
        env.extra = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.program(BIN);
        c.args(args);
        c
    }

    /// `program` with this test's environment (and nothing else from ours).
    pub fn program(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REKEY_DATA_DIR", self.data_dir())
            .env("REKEY_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(pg) = &self.pg {
            c.env("REKEY_DATABASE_URL", pg.url());
        }
        for (k, v) in &self.extra {
            c.env(k, v);
        }
        c
    }

    pub async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        tokio::time::timeout(Duration::from_secs(60), c.output())
            .await
            .expect("command timed out")
            .unwrap()
    }

    /// `rekey ARGS` as a client of the server at `base` with the API key
    /// `key` (`REKEY_URL`, `REKEY_TOKEN`), given `limit` to finish. The
    /// future owns what it needs, so a test's `cli(args)` closure can
    /// return it.
    pub fn remote(
        &self,
        base: &str,
        key: &str,
        args: &[&str],
        limit: Duration,
    ) -> impl std::future::Future<Output = Output> {
        let mut c = self.command(args);
        c.env("REKEY_URL", base).env("REKEY_TOKEN", key);
        async move {
            tokio::time::timeout(limit, c.output())
                .await
                .expect("command timed out")
                .unwrap()
        }
    }

    /// `rekey admin create-user` with the password in `REKEY_NEW_PASSWORD`.
    pub async fn create_user(&self, username: &str, role: &str, password: &str) -> Output {
        let args = [
            "admin",
            "create-user",
            "--username",
            username,
            "--role",
            role,
        ];
        self.run(&args, &[("REKEY_NEW_PASSWORD", password)]).await
    }

    pub async fn admin_key(&self, tenant: &str, scope: &str) -> String {
        let out = self
            .run(
                &[
                    "admin",
                    "create-key",
                    "--name",
                    "t",
                    "--scope",
                    scope,
                    "--tenant",
                    tenant,
                ],
                &[],
            )
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).unwrap();
        // Only the key, on one line.
        assert_eq!(key.lines().count(), 1, "stdout: {key:?}");
        let key = key.trim().to_string();
        assert!(key.starts_with("rk_") && key.len() == 46, "{key}");
        key
    }

    pub async fn serve(&self) -> Server {
        self.serve_with(&[], None).await
    }

    /// `rekey serve` with more flags, optionally started by `sh` after a
    /// shell prelude such as `ulimit -n 256` or `umask 022`.
    pub fn serve_command(&self, extra: &[&str], prelude: Option<&str>) -> Command {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        match prelude {
            None => self.command(&args),
            Some(p) => {
                let mut c = self.program("sh");
                c.arg("-c")
                    .arg(format!("{p} && exec \"$0\" \"$@\""))
                    .arg(BIN)
                    .args(&args);
                c
            }
        }
    }

    pub async fn serve_with(&self, extra: &[&str], prelude: Option<&str>) -> Server {
        start_server(self.serve_command(extra, prelude)).await
    }
}

/// Start a `rekey serve` command (see [`Env::serve_command`]) and wait for
/// its `rekey listening on` line.
pub async fn start_server(mut cmd: Command) -> Server {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("server did not start")
        .unwrap();
    let Some(line) = line else {
        let out = child.wait_with_output().await.unwrap();
        panic!("server exited: {}", String::from_utf8_lossy(&out.stderr));
    };
    let base = line
        .strip_prefix("rekey listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_string();
    // Drain stderr as it comes so verbose logging can never block the server.
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = logs.clone();
    let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(l)) = err_lines.next_line().await {
            let mut s = sink.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    Server { child, base, logs }
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub logs: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Send SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().unwrap();
        let st = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// SIGTERM and wait: the server must drain and exit 0.
    pub async fn stop(mut self) {
        self.terminate();
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("no graceful exit")
            .unwrap();
        assert!(status.success(), "serve exited with {status}");
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Wait up to `within` for the server to die of a fault switch
    /// (`REKEY_FAULT_AFTER`): it must stop, and not by a clean exit.
    /// `what` names the case in the failure.
    pub async fn aborted(&mut self, within: Duration, what: &str) {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("{what}: the fault did not stop the server: {}", self.logs())
            })
            .unwrap();
        assert!(!status.success(), "{what}: aborted, not exited");
    }
}

impl Env {
    /// Start `rekey serve`, collect the first `n` lines it prints on stdout
    /// (the first one is `rekey listening on …`), and stop it.
    pub async fn serve_banner(&self, n: usize) -> Vec<String> {
        let mut child = self
            .serve_command(&[], None)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut got = Vec::new();
        while got.len() < n {
            // The banner is printed at once: after the first line, a short
            // wait is enough to know that nothing more comes.
            let wait = Duration::from_secs(if got.is_empty() { 30 } else { 3 });
            match tokio::time::timeout(wait, lines.next_line()).await {
                Ok(Ok(Some(l))) => got.push(l),
                _ => break,
            }
        }
        let server = Server {
            child,
            base: String::new(),
            logs: Default::default(),
        };
        server.stop().await;
        got
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Runs one playwright-core script of `tests/e2e/` in Debian's headless
/// Chromium with `BASE` (the server) and `SHOTS` (target/e2e-screenshots)
/// set besides `vars`, and fails the test with the script's output when it
/// fails. Two minutes at most.
pub async fn run_browser_script(script: &str, base: &str, vars: &[(&str, &str)]) {
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("node");
    cmd.arg(format!("{root}/tests/e2e/{script}"))
        .env("BASE", base)
        .env("SHOTS", format!("{root}/target/e2e-screenshots"));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("browser run timed out")
        .expect("node runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "browser script {script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Create a campaign over the connections tagged `tag`, due in a day, and
/// start it; its id.
pub async fn start_campaign(
    c: &rekey_client::Client,
    name: &str,
    tag: &str,
    actions: std::collections::BTreeMap<String, Vec<String>>,
) -> String {
    let campaign = c
        .create_campaign(&rekey_client::api::CreateCampaign {
            name: name.into(),
            reason: "test".into(),
            filter: rekey_client::api::CampaignFilter {
                tag: Some(tag.into()),
                ..Default::default()
            },
            actions,
            rotation: Default::default(),
            deadline: rekey_core::time::ms_to_rfc3339(rekey_core::time::now_ms() + 86_400_000),
            notify: None,
        })
        .await
        .unwrap();
    c.campaign_control(&campaign.id, "start").await.unwrap();
    campaign.id
}
