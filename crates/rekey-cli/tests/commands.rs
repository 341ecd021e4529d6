//! The API client commands of the real `rekey` binary: exit statuses by
//! error class, `--json` errors, the commands for every API operation, a
//! closed stdout, and no colour codes when output is not a terminal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_client::Client;
use rekey_testkit::{both_backends, Db};
use serde_json::{json, Value};
use std::process::Output;
use std::time::Duration;

mod common;
use common::*;

/// A running server, an admin key and a way to run `rekey` against them.
struct Api {
    env: Env,
    server: Server,
    key: String,
}

impl Api {
    async fn start(db: Db) -> Api {
        let env = Env::new(db).await;
        let key = env.admin_key("default", "admin").await;
        let server = env.serve().await;
        Api { env, server, key }
    }

    fn client(&self) -> Client {
        Client::new(&self.server.base, self.key.clone()).unwrap()
    }

    /// `rekey ARGS` with REKEY_URL and REKEY_TOKEN set, plus `env`.
    async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.env.command(args);
        c.env("REKEY_URL", &self.server.base)
            .env("REKEY_TOKEN", &self.key);
        for (k, v) in env {
            c.env(k, v);
        }
        tokio::time::timeout(Duration::from_secs(60), c.output())
            .await
            .expect("rekey timed out")
            .unwrap()
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[]).await
    }

    /// Run and expect success; stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "rekey {args:?}: {:?}\n{}",
            out.status.code(),
            stderr(&out)
        );
        stdout(&out)
    }

    /// A `custom-rest` connection with one secret header, made through the client crate.
    async fn connection(&self, name: &str, secret: &str) -> String {
        let req: rekey_client::api::CreateConnection = serde_json::from_value(json!({
            "provider": "custom-rest", "kind": "headers", "display_name": name,
            "credentials": {"headers": {"X-Secret": secret}}
        }))
        .unwrap();
        self.client().create_connection(&req).await.unwrap().id
    }
}

const MISSING: &str = "con_00000000000000000000000000000000";

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

/// stderr as the `--json` error object.
fn json_error(o: &Output) -> Value {
    let text = stderr(o);
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

both_backends!(exit_statuses_and_json_errors);

async fn exit_statuses_and_json_errors(db: Db) {
    let api = Api::start(db).await;

    // --help documents the statuses.
    let help = api.ok(&["--help"]).await;
    for line in [
        "3  a check failed",
        "4  not found",
        "5  conflict",
        "6  not authorized",
        "7  server error or unreachable",
    ] {
        assert!(help.contains(line), "{line}: {help}");
    }

    // Usage: clap's 2.
    let out = api.run(&["connections", "show"]).await;
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    let out = api.run(&["connections", "frobnicate"]).await;
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));

    // 404 → 4, text as before, JSON with --json.
    let out = api.run(&["connections", "show", MISSING]).await;
    assert_eq!(code(&out), Some(4));
    assert_eq!(
        stderr(&out).trim(),
        format!("error: connection_not_found (404): connection {MISSING} not found")
    );
    let out = api.run(&["connections", "show", MISSING, "--json"]).await;
    assert_eq!(code(&out), Some(4));
    assert!(out.stdout.is_empty());
    assert_eq!(
        json_error(&out),
        json!({"error": {"code": "connection_not_found", "message": format!("connection {MISSING} not found"), "status": 404}})
    );

    // 409 → 5: a check of a connection whose revocation is pending.
    let id = api.connection("to revoke", "s3cret-409").await;
    api.ok(&["connections", "revoke", &id]).await;
    let out = api.run(&["connections", "check", &id]).await;
    assert_eq!(code(&out), Some(5), "{}", stderr(&out));
    let out = api.run(&["connections", "check", &id, "--json"]).await;
    assert_eq!(code(&out), Some(5));
    let e = json_error(&out);
    assert_eq!(e["error"]["code"], "connection_unusable");
    assert_eq!(e["error"]["status"], 409);

    // 401 → 6.
    let out = api
        .run_with(
            &["connections", "list", "--json"],
            &[("REKEY_TOKEN", "rk_wrong")],
        )
        .await;
    assert_eq!(code(&out), Some(6));
    let e = json_error(&out);
    assert_eq!(e["error"]["code"], "unauthorized");
    assert_eq!(e["error"]["status"], 401);
    // 403 → 6: a key without the scope.
    let reader = api
        .client()
        .create_api_key(&rekey_client::api::CreateApiKey {
            name: "reader".into(),
            scopes: vec!["connections:read".into()],
        })
        .await
        .unwrap()
        .key;
    let out = api
        .run_with(
            &["connections", "revoke", &id, "--json"],
            &[("REKEY_TOKEN", &reader)],
        )
        .await;
    assert_eq!(code(&out), Some(6), "{}", stderr(&out));
    assert_eq!(json_error(&out)["error"]["status"], 403);

    // 400 → 1.
    let out = api.run(&["connections", "show", "bogus", "--json"]).await;
    assert_eq!(code(&out), Some(1));
    assert_eq!(json_error(&out)["error"]["code"], "invalid_id");

    // Nobody listening → 7.
    let out = api
        .run_with(
            &["connections", "list", "--json"],
            &[("REKEY_URL", "http://127.0.0.1:1")],
        )
        .await;
    assert_eq!(code(&out), Some(7), "{}", stderr(&out));
    let e = json_error(&out);
    assert_eq!(e["error"]["code"], "unreachable");
    assert!(e["error"]["status"].is_null());

    // A failure of the CLI itself, with --json: still JSON.
    let out = api
        .run(&[
            "connections",
            "create",
            "--json",
            "--provider",
            "custom-rest",
            "--kind",
            "headers",
            "--name",
            "x",
            "--credentials-file",
            "/nonexistent/creds.json",
        ])
        .await;
    assert_eq!(code(&out), Some(1));
    let e = json_error(&out);
    assert_eq!(e["error"]["code"], "cli_error");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/creds.json"));

    api.server.stop().await;
}
