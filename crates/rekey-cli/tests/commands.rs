//! The API client commands of the real `rekey` binary: exit statuses by
//! error class, `--json` errors, the commands for every API operation, a
//! closed stdout, and no colour codes when output is not a terminal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_client::Client;
use rekey_testkit::{both_backends, Db};
use serde_json::{json, Value};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

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
        Api::start_with(db, &[]).await
    }

    /// With more environment for every process (the server too).
    async fn start_with(db: Db, extra: &[(&str, &str)]) -> Api {
        let env = Env::with_env(db, extra).await;
        let key = env.admin_key("default", "admin").await;
        let server = env.serve().await;
        Api { env, server, key }
    }

    fn client(&self) -> Client {
        Client::new(&self.server.base, self.key.clone()).unwrap()
    }

    /// `rekey ARGS` with REKEY_URL and REKEY_TOKEN set, plus `env`.
    async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut vars = vec![
            ("REKEY_URL", self.server.base.as_str()),
            ("REKEY_TOKEN", self.key.as_str()),
        ];
        vars.extend_from_slice(env);
        self.env.run(args, &vars).await
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

    /// Run and expect success; stdout as JSON.
    async fn ok_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let out = self.ok(args).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("rekey {args:?}: {e}: {out}"))
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

both_backends!(
    exit_statuses_and_json_errors,
    connection_commands_change_what_the_api_shows,
    connect_link_for_key_kinds,
    audit_list_filters_and_pages,
    closed_stdout_is_not_a_panic,
    no_colour_codes_when_not_a_terminal,
    api_keys_providers_and_integration_updates,
    integration_labels_and_confirm_working,
    evidence_export_and_verify,
    campaign_commands,
);

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

    // No key at all → 6 too.
    let out = api
        .run_with(&["connections", "list", "--json"], &[("REKEY_TOKEN", "")])
        .await;
    assert_eq!(code(&out), Some(6), "{}", stderr(&out));
    assert_eq!(json_error(&out)["error"]["code"], "missing_token");

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

/// Tags or custody as a sorted list, whatever order the API keeps.
fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

async fn connection_commands_change_what_the_api_shows(db: Db) {
    let api = Api::start(db).await;
    let c = api.client();
    let req: rekey_client::api::CreateConnection = serde_json::from_value(json!({
        "provider": "custom-rest", "kind": "headers", "display_name": "billing",
        "owner": {"subject": "u-42", "email": "old@example.com"},
        "tags": ["old"],
        "credentials": {"headers": {"X-Secret": "s3cret-first"}}
    }))
    .unwrap();
    let id = c.create_connection(&req).await.unwrap().id;

    // credentials: the API's credential JSON, first thing on stdout.
    let out = api.ok(&["connections", "credentials", &id]).await;
    assert!(out.starts_with('{'), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["connection_id"], id.as_str());
    assert_eq!(v["credentials"]["headers"]["X-Secret"], "s3cret-first");

    // update: only what is given changes; the owner keeps its subject.
    let out = api.run(&["connections", "update", &id]).await;
    assert_eq!(code(&out), Some(2), "nothing to change is a usage error");
    api.ok(&[
        "connections",
        "update",
        &id,
        "--name",
        "billing (prod)",
        "--owner-email",
        "new@example.com",
        "--tag",
        "prod",
        "--tag",
        "crm,eu",
        "--custody",
        "salesforce",
        "--expires-at",
        "2030-01-02T03:04:05Z",
        "--probe-url",
        "http://127.0.0.1:9/health",
    ])
    .await;
    let v = c.get_connection(&id).await.unwrap();
    assert_eq!(v.display_name, "billing (prod)");
    assert_eq!(v.owner.email.as_deref(), Some("new@example.com"));
    assert_eq!(v.owner.subject.as_deref(), Some("u-42"));
    assert_eq!(sorted(&v.tags), ["crm", "eu", "prod"]);
    assert_eq!(v.custody, ["salesforce"]);
    assert!(
        v.expires_at
            .as_deref()
            .unwrap()
            .starts_with("2030-01-02T03:04:05"),
        "{:?}",
        v.expires_at
    );
    assert_eq!(v.probe_url.as_deref(), Some("http://127.0.0.1:9/health"));
    let shown: Value = api
        .ok_json(&["connections", "update", &id, "--tag", "", "--json"])
        .await;
    assert_eq!(shown["tags"], json!([]));
    let v = c.get_connection(&id).await.unwrap();
    assert!(v.tags.is_empty());
    assert_eq!(v.display_name, "billing (prod)");
    assert_eq!(v.custody, ["salesforce"]);
    assert_eq!(v.owner.email.as_deref(), Some("new@example.com"));

    // disable / enable, with the reason in the audit log.
    let out = api
        .ok(&[
            "connections",
            "disable",
            &id,
            "--reason",
            "leaked in a breach",
        ])
        .await;
    assert_eq!(out.trim(), format!("{id} is disabled"));
    assert_eq!(c.get_connection(&id).await.unwrap().status, "disabled");
    let log = c
        .list_all_audit(rekey_client::api::AuditQuery {
            target: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        log.iter()
            .any(|e| e.details.to_string().contains("leaked in a breach")),
        "{log:?}"
    );
    // A disabled connection's credential is not handed out: 409.
    let out = api.run(&["connections", "credentials", &id]).await;
    assert_eq!(code(&out), Some(5), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let shown: Value = api.ok_json(&["connections", "enable", &id, "--json"]).await;
    assert_eq!(shown["status"], "pending");
    let out = api.run(&["connections", "enable", &id]).await;
    assert_eq!(code(&out), Some(5), "{}", stderr(&out));

    // replace-credentials from stdin (never argv).
    let mut cmd = api.env.command(&[
        "connections",
        "replace-credentials",
        &id,
        "--credentials-file",
        "-",
    ]);
    cmd.env("REKEY_URL", &api.server.base)
        .env("REKEY_TOKEN", &api.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(br#"{"headers": {"X-Secret": "s3cret-second"}}"#)
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("s3cret-second"));
    let creds = c.read_credentials(&id).await.unwrap();
    assert_eq!(creds.credentials["headers"]["X-Secret"], "s3cret-second");
    // From a file, and a file that is not JSON.
    let file = api.env.dir.path().join("creds.json");
    std::fs::write(&file, r#"{"headers": {"X-Secret": "s3cret-third"}}"#).unwrap();
    api.ok(&[
        "connections",
        "replace-credentials",
        &id,
        "--credentials-file",
        file.to_str().unwrap(),
    ])
    .await;
    let creds = c.read_credentials(&id).await.unwrap();
    assert_eq!(creds.credentials["headers"]["X-Secret"], "s3cret-third");
    std::fs::write(&file, "X-Secret: s3cret-fourth").unwrap();
    let out = api
        .run(&[
            "connections",
            "replace-credentials",
            &id,
            "--credentials-file",
            file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code(&out), Some(1));
    assert!(!stderr(&out).contains("s3cret-fourth"), "{}", stderr(&out));

    // confirm-revocation: refused before a revocation, then done.
    let out = api.run(&["connections", "confirm-revocation", &id]).await;
    assert_eq!(code(&out), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not_revoke_pending"),
        "{}",
        stderr(&out)
    );
    let out = api.ok(&["connections", "revoke", &id]).await;
    assert!(
        out.contains(&format!("rekey connections confirm-revocation {id}")),
        "{out}"
    );
    assert_eq!(
        c.get_connection(&id).await.unwrap().status,
        "revoke_pending"
    );
    let out = api
        .ok(&[
            "connections",
            "confirm-revocation",
            &id,
            "--note",
            "SEC-1234: app removed in Salesforce",
        ])
        .await;
    assert_eq!(
        out.lines().next(),
        Some(format!("{id} is revoked").as_str())
    );
    // Then the revocation: the step with its note, and what rekey found.
    assert!(out.contains("[x] 1.") && out.contains("SEC-1234"), "{out}");
    assert!(out.contains("verdict:"), "{out}");
    assert_eq!(c.get_connection(&id).await.unwrap().status, "revoked");
    // The note is the evidence in the audit log.
    let out = api
        .ok(&["audit", "list", "--action", "connection.revoked", "--json"])
        .await;
    assert!(out.contains("SEC-1234: app removed in Salesforce"), "{out}");

    api.server.stop().await;
}

async fn connect_link_for_key_kinds(db: Db) {
    let api = Api::start(db).await;
    let sess: Value = api
        .ok_json(&[
            "connect-link",
            "--provider",
            "sixsense",
            "--kind",
            "api_key",
            "--name",
            "partner API",
            "--tag",
            "partner",
            "--custody",
            "vault,ci",
            "--owner-hint",
            "ops@example.com",
            "--json",
        ])
        .await;
    assert_eq!(sess["provider"], "sixsense");
    assert_eq!(sess["kind"], "api_key");
    let url = sess["url"].as_str().unwrap();
    assert!(url.starts_with(&api.server.base), "{url}");
    // The link opens the provider's key form; what it creates has the
    // name, tags, custody and owner given on the command line.
    let b = rekey_testkit::oauth2_fixture::browser();
    let page = b.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"name="key""#), "{html}");
    let key = "k".repeat(40);
    let r = b
        .post(format!("{url}/submit"))
        .form(&[("key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let conns = api
        .client()
        .list_all_connections(Default::default())
        .await
        .unwrap();
    assert_eq!(conns.len(), 1, "{conns:?}");
    let v = &conns[0];
    assert_eq!(
        (v.provider.as_str(), v.kind.as_str()),
        ("sixsense", "api_key")
    );
    assert_eq!(v.display_name, "partner API");
    assert_eq!(v.tags, ["partner"]);
    assert_eq!(sorted(&v.custody), ["ci", "vault"]);
    assert_eq!(v.owner.email.as_deref(), Some("ops@example.com"));

    // Without --json: the URL alone.
    let out = api
        .ok(&[
            "connect-link",
            "--provider",
            "custom-rest",
            "--kind",
            "headers",
        ])
        .await;
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with(&api.server.base), "{out}");

    // --provider needs --kind (usage); no target at all is refused too.
    let out = api
        .run(&["connect-link", "--provider", "custom-rest"])
        .await;
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    let out = api.run(&["connect-link"]).await;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--provider"), "{}", stderr(&out));
    // An unknown provider is the API's 4xx, passed on.
    let out = api
        .run(&[
            "connect-link",
            "--provider",
            "no-such",
            "--kind",
            "api_key",
            "--json",
        ])
        .await;
    assert_ne!(code(&out), Some(0));
    assert!(json_error(&out)["error"]["status"].is_number());

    api.server.stop().await;
}

async fn audit_list_filters_and_pages(db: Db) {
    let api = Api::start(db).await;
    let c = api.client();
    for i in 0..3 {
        api.connection(&format!("audited {i}"), "s3cret-audit")
            .await;
    }
    let all = c.list_all_audit(Default::default()).await.unwrap();
    assert!(all.len() >= 3, "{all:?}");

    // --limit is one page; --all follows the cursor to the end.
    let out = api.ok(&["audit", "list", "--limit", "2", "--json"]).await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&out).unwrap().len(), 2);
    let listed: Vec<Value> = api
        .ok_json(&["audit", "list", "--limit", "2", "--all", "--json"])
        .await;
    assert_eq!(listed.len(), all.len());

    // --actor
    let actor = all[0].actor.clone();
    let listed: Vec<Value> = api
        .ok_json(&["audit", "list", "--all", "--actor", &actor, "--json"])
        .await;
    assert!(!listed.is_empty());
    assert!(listed.iter().all(|e| e["actor"] == actor.as_str()));
    let out = api
        .ok(&["audit", "list", "--actor", "api_key:nobody", "--json"])
        .await;
    assert_eq!(out.trim(), "[]");

    // --since
    let out = api
        .ok(&[
            "audit",
            "list",
            "--since",
            "2000-01-01T00:00:00Z",
            "--all",
            "--json",
        ])
        .await;
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&out).unwrap().len(),
        all.len()
    );
    let out = api
        .ok(&["audit", "list", "--since", "2100-01-01T00:00:00Z", "--json"])
        .await;
    assert_eq!(out.trim(), "[]");
    let out = api
        .run(&["audit", "list", "--since", "yesterday", "--json"])
        .await;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert_eq!(json_error(&out)["error"]["status"], 400);

    // The table too.
    let out = api.ok(&["audit", "list", "--actor", &actor]).await;
    assert!(out.starts_with("SEQ"), "{out}");
    assert!(out.contains("connection.create"), "{out}");

    api.server.stop().await;
}

/// `rekey ARGS` whose stdout is a pipe nobody reads any more: the read end
/// is closed right after the start, long before the answer of the API
/// arrives, so every write meets a closed pipe (EPIPE).
async fn with_stdout_closed(api: &Api, args: &[&str]) -> Output {
    let mut c = api.env.command(args);
    c.env("REKEY_URL", &api.server.base)
        .env("REKEY_TOKEN", &api.key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stdout.take());
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("rekey timed out")
        .unwrap()
}

async fn closed_stdout_is_not_a_panic(db: Db) {
    let api = Api::start(db).await;
    let id = api.connection("piped", "s3cret-pipe").await;
    for i in 0..3 {
        api.connection(&format!("more {i}"), "s3cret-more").await;
    }
    for args in [
        vec!["connections", "list"],
        vec!["connections", "list", "--json"],
        vec!["connections", "show", &id],
        vec!["audit", "list"],
        vec!["providers", "list"],
    ] {
        let out = with_stdout_closed(&api, &args).await;
        assert_eq!(code(&out), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}: quiet");
    }

    // A secret shown once is never lost silently.
    let out = with_stdout_closed(&api, &["connections", "credentials", &id]).await;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the secret may not have been received"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("s3cret-pipe"),
        "{err}"
    );
    let out = with_stdout_closed(
        &api,
        &[
            "webhooks",
            "create",
            "--endpoint",
            "http://127.0.0.1:9/hook",
            "--event",
            "*",
        ],
    )
    .await;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the secret may not have been received"),
        "{}",
        stderr(&out)
    );

    // As typed in a shell.
    let mut c = api.env.program("sh");
    c.arg("-c")
        .arg(r#""$0" connections list | head -c 2; "$0" connections list --json | head -n 1"#)
        .arg(BIN)
        .env("REKEY_URL", &api.server.base)
        .env("REKEY_TOKEN", &api.key);
    let out = c.output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ID[\n");
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    api.server.stop().await;
}

async fn no_colour_codes_when_not_a_terminal(db: Db) {
    // A terminal type that would get colours, but pipes for stdout and stderr.
    let api = Api::start_with(db, &[("REKEY_LOG", "info"), ("TERM", "xterm-256color")]).await;
    let id = api.connection("logged", "s3cret-log").await;
    for args in [
        vec!["--help"],
        vec!["connections", "--help"],
        vec!["connections", "frobnicate"],
        vec!["connections", "show", MISSING],
        vec!["connections", "list"],
        vec!["connections", "check", &id],
    ] {
        let out = api.run(&args).await;
        for text in [stdout(&out), stderr(&out)] {
            assert!(!text.contains('\x1b'), "{args:?}: {text:?}");
        }
    }
    // The server's log on a pipe.
    let server = api.server;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = server.logs();
    assert!(!logs.trim().is_empty(), "the server logged nothing at info");
    assert!(!logs.contains('\x1b'), "{logs:?}");
    server.stop().await;
}

/// `rekey ARGS` with `input` on stdin.
async fn with_stdin(api: &Api, args: &[&str], input: &str) -> Output {
    let mut c = api.env.command(args);
    c.env("REKEY_URL", &api.server.base)
        .env("REKEY_TOKEN", &api.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("rekey timed out")
        .unwrap()
}

async fn api_keys_providers_and_integration_updates(db: Db) {
    let api = Api::start(db).await;
    let c = api.client();

    // api-keys: create prints only the key; it works, shows in the list, and
    // stops working once revoked.
    let out = api
        .ok(&[
            "api-keys",
            "create",
            "--name",
            "ci reader",
            "--scope",
            "connections:read",
        ])
        .await;
    let key = out.trim().to_string();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(key.starts_with("rk_"), "{key}");
    let out = api
        .run_with(&["connections", "list"], &[("REKEY_TOKEN", &key)])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = api.ok(&["api-keys", "list", "--json"]).await;
    let keys: Vec<Value> = serde_json::from_str(&out).unwrap();
    let listed = keys.iter().find(|k| k["name"] == "ci reader").unwrap();
    assert_eq!(listed["scopes"], json!(["connections:read"]));
    assert!(!out.contains(&key));
    let first_id = listed["id"].as_str().unwrap().to_string();
    // rotate: only the new key on stdout, the old one's end on stderr; the
    // old works through its grace, and with grace 0 stops at once.
    let out = api
        .run(&["api-keys", "rotate", &first_id, "--grace", "10m"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rotated = stdout(&out).trim().to_string();
    assert!(rotated.starts_with("rk_") && rotated != key, "{rotated}");
    assert!(stderr(&out).contains("works until"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(&rotated));
    for k in [&key, &rotated] {
        let out = api
            .run_with(&["connections", "list"], &[("REKEY_TOKEN", k)])
            .await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = api
        .run(&["api-keys", "rotate", &first_id, "--grace", "0"])
        .await;
    assert_eq!(code(&out), Some(5), "rotating twice: {}", stderr(&out));
    let out = api
        .run(&["api-keys", "rotate", &first_id, "--grace", "soon"])
        .await;
    assert_eq!(code(&out), Some(1), "bad grace: {}", stderr(&out));
    let keys: Vec<Value> = api.ok_json(&["api-keys", "list", "--json"]).await;
    let second = keys
        .iter()
        .find(|k| k["rotated_from"] == first_id.as_str())
        .unwrap();
    let id = second["id"].as_str().unwrap().to_string();
    let out = api.ok(&["api-keys", "rotate", &id, "--grace", "0"]).await;
    let third = out.trim().to_string();
    let out = api
        .run_with(&["connections", "list"], &[("REKEY_TOKEN", &rotated)])
        .await;
    assert_eq!(code(&out), Some(6), "grace 0: {}", stderr(&out));
    let out = api
        .run_with(&["connections", "list"], &[("REKEY_TOKEN", &third)])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let keys: Vec<Value> = api.ok_json(&["api-keys", "list", "--json"]).await;
    let id = keys
        .iter()
        .find(|k| k["rotated_from"] == id.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = third;
    let table = api.ok(&["api-keys", "list"]).await;
    assert!(table.starts_with("ID") && table.contains(&id), "{table}");
    let out = api.ok(&["api-keys", "revoke", &id]).await;
    assert_eq!(out.trim(), format!("revoked {id}"));
    let out = api
        .run_with(&["connections", "list"], &[("REKEY_TOKEN", &key)])
        .await;
    assert_eq!(code(&out), Some(6), "{}", stderr(&out));
    let out = api.run(&["api-keys", "revoke", &id]).await;
    assert_eq!(code(&out), Some(5), "revoking twice: {}", stderr(&out));

    // providers show: the entry with its runbooks.
    let p: Value = api.ok_json(&["providers", "show", "sixsense"]).await;
    assert_eq!(p["id"], "sixsense");
    assert!(p["revoke"]["steps"].is_array(), "{p}");
    let out = api.run(&["providers", "show", "no-such-provider"]).await;
    assert_eq!(code(&out), Some(4), "{}", stderr(&out));

    // integrations update: e.g. a new client secret, from stdin.
    let body = json!({"provider": "custom-oauth2", "display_name": "CRM", "client_id": "crm-client",
        "client_secret": "s3cret-client-one",
        "endpoints": {"authorize_url": "http://127.0.0.1:9/authorize", "token_url": "http://127.0.0.1:9/token",
                      "revocation_url": "http://127.0.0.1:9/revoke", "identity_url": "http://127.0.0.1:9/me"}});
    let out = with_stdin(
        &api,
        &["integrations", "create", "--file", "-"],
        &body.to_string(),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let integ = stdout(&out).trim().to_string();
    let before = c.get_integration(&integ).await.unwrap();
    let out = with_stdin(
        &api,
        &["integrations", "update", &integ, "--file", "-"],
        r#"{"client_secret": "s3cret-client-two", "display_name": "CRM (rotated)"}"#,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("s3cret-client-two"));
    let after = c.get_integration(&integ).await.unwrap();
    assert_eq!(after.display_name, "CRM (rotated)");
    assert!(after.version > before.version);
    let out = with_stdin(
        &api,
        &["integrations", "update", &integ, "--file", "-"],
        r#"{"client_secret": 42, "scopes": "s3cret-not-a-list"}"#,
    )
    .await;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("UpdateIntegration") && !stderr(&out).contains("s3cret-not-a-list"),
        "{}",
        stderr(&out)
    );

    // integrations rotate-secret: tested at the token endpoint first, which
    // here cannot be reached, so nothing changes (exit 1); no generated key
    // waits, so confirm/discard are conflicts (exit 5); one of --file and
    // --generate-key is required (usage, exit 2).
    let before = c.get_integration(&integ).await.unwrap();
    let out = with_stdin(
        &api,
        &["integrations", "rotate-secret", &integ, "--file", "-"],
        r#"{"client_secret": "s3cret-client-three"}"#,
    )
    .await;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("s3cret-client-three"));
    assert_eq!(
        c.get_integration(&integ).await.unwrap().version,
        before.version
    );
    for cmd in ["confirm-secret", "discard-secret"] {
        let out = api.run(&["integrations", cmd, &integ]).await;
        assert_eq!(code(&out), Some(5), "{cmd}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no generated key"),
            "{}",
            stderr(&out)
        );
    }
    let out = api.run(&["integrations", "rotate-secret", &integ]).await;
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));

    // A secret shown once: the API key, to a closed pipe.
    let out = with_stdout_closed(
        &api,
        &["api-keys", "create", "--name", "lost", "--scope", "admin"],
    )
    .await;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the secret may not have been received"),
        "{}",
        stderr(&out)
    );

    api.server.stop().await;
}

/// `integrations create/update --tag --custody`, the list filters, and
/// `connections confirm-working` (with its audit entry).
async fn integration_labels_and_confirm_working(db: Db) {
    let api = Api::start(db).await;
    let c = api.client();
    let body = json!({"provider": "custom-oauth2", "display_name": "CRM", "client_id": "crm-client",
        "client_secret": "s3cret-client-one",
        "endpoints": {"authorize_url": "http://127.0.0.1:9/authorize", "token_url": "http://127.0.0.1:9/token",
                      "revocation_url": "http://127.0.0.1:9/revoke", "identity_url": "http://127.0.0.1:9/me"}});
    let out = with_stdin(
        &api,
        &[
            "integrations",
            "create",
            "--file",
            "-",
            "--tag",
            "crm,prod",
            "--custody",
            "salesforce",
        ],
        &body.to_string(),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let integ = stdout(&out).trim().to_string();
    let v = c.get_integration(&integ).await.unwrap();
    assert_eq!(
        (v.tags, v.custody),
        (
            vec!["crm".to_string(), "prod".to_string()],
            vec!["salesforce".to_string()]
        )
    );
    // Update without a file: only the labels change.
    api.ok(&[
        "integrations",
        "update",
        &integ,
        "--custody",
        "vault,salesforce",
    ])
    .await;
    let v = c.get_integration(&integ).await.unwrap();
    assert_eq!(
        v.custody,
        vec!["salesforce".to_string(), "vault".to_string()]
    );
    assert_eq!(v.tags, vec!["crm".to_string(), "prod".to_string()]);
    // List filters.
    let found: Vec<Value> = api
        .ok_json(&["integrations", "list", "--custody", "vault", "--json"])
        .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], integ.as_str());
    let none = api
        .ok(&["integrations", "list", "--tag", "billing", "--json"])
        .await;
    assert_eq!(none.trim(), "[]");
    // A bad tag is the API's validation error, exit 1, as JSON with --json.
    let out = api
        .run(&[
            "integrations",
            "update",
            &integ,
            "--tag",
            "Not A Slug",
            "--json",
        ])
        .await;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert_eq!(json_error(&out)["error"]["code"], "invalid_field");
    // Neither a file nor a label: a usage error.
    let out = api.run(&["integrations", "update", &integ]).await;
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));

    // confirm-working: a connection no probe can check.
    let id = api.connection("Unprobed", "s3cret-header").await;
    let out = api.run(&["connections", "check", &id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("cannot be checked automatically: confirm data flows"),
        "{}",
        stdout(&out)
    );
    let out = api
        .ok(&[
            "connections",
            "confirm-working",
            &id,
            "--note",
            "sync arrived",
        ])
        .await;
    assert_eq!(out.trim(), format!("{id} is active"));
    let v = c.get_connection(&id).await.unwrap();
    assert_eq!(
        v.health.confirmation.unwrap().note.as_deref(),
        Some("sync arrived")
    );
    let audit = api
        .ok(&[
            "audit",
            "list",
            "--action",
            "connection.confirm_working",
            "--json",
        ])
        .await;
    assert!(
        audit.contains(&id) && audit.contains("sync arrived"),
        "{audit}"
    );
    let out = api.run(&["connections", "confirm-working", MISSING]).await;
    assert_eq!(code(&out), Some(4), "{}", stderr(&out));

    api.server.stop().await;
}

/// `rekey evidence export` writes a sealed file; `rekey evidence verify`
/// accepts it as written and refuses it edited (exit 3), whether only the
/// content changed or the seal was recomputed to match.
async fn evidence_export_and_verify(db: Db) {
    let api = Api::start(db).await;
    let id = api.connection("audited", "s3cret-evidence").await;
    api.ok(&["connections", "revoke", &id]).await;
    let dir = tempfile::tempdir().unwrap();
    for format in ["csv", "json"] {
        let file = dir.path().join(format!("evidence.{format}"));
        let path = file.to_str().unwrap();
        api.ok(&[
            "evidence",
            "export",
            "--provider",
            "custom-rest",
            "--format",
            format,
            "-o",
            path,
        ])
        .await;
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(&id), "{text}");
        assert!(!text.contains("s3cret-evidence"), "no secret: {text}");
        assert!(!dir.path().join("evidence.partial").exists());
        let out = api.ok(&["evidence", "verify", path]).await;
        assert!(out.starts_with("evidence intact: evd_"), "{out}");
        let v: Value = api.ok_json(&["evidence", "verify", path, "--json"]).await;
        assert_eq!(v["ok"], true, "{v}");

        // One character of a row changed.
        let edited = text.replacen("revocation_open", "verified_rejected", 1);
        assert_ne!(edited, text);
        std::fs::write(&file, &edited).unwrap();
        let out = api.run(&["evidence", "verify", path]).await;
        assert_eq!(code(&out), Some(3), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("does not match its seal"),
            "{}",
            stderr(&out)
        );

        // The seal recomputed to match the edit: the audit chain still knows.
        let seal = rekey_api::read_seal(edited.as_bytes()).unwrap();
        use sha2::Digest;
        let forged = format!(
            "{:x}",
            sha2::Sha256::digest(&edited.as_bytes()[..seal.sealed_len])
        );
        std::fs::write(&file, edited.replace(&seal.sha256, &forged)).unwrap();
        let out = api.run(&["evidence", "verify", path]).await;
        assert_eq!(code(&out), Some(3), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("not the one the audit chain recorded"),
            "{}",
            stderr(&out)
        );

        // Cut short: no seal line.
        std::fs::write(&file, &text[..text.len() / 2]).unwrap();
        let out = api.run(&["evidence", "verify", path]).await;
        assert_eq!(code(&out), Some(3), "{}", stderr(&out));
        assert!(stderr(&out).contains("no seal line"), "{}", stderr(&out));
    }
    // To stdout (`--json` is `--format json`), and the filter refused as
    // the API refuses it.
    let out = api.ok(&["evidence", "export"]).await;
    assert!(out.starts_with("# rekey evidence export,evd_"), "{out}");
    let v: Value = api.ok_json(&["evidence", "export", "--json"]).await;
    assert_eq!(v["rows"][0]["connection_id"], id.as_str(), "{v}");
    // A reader that goes away early is no failure.
    let out = with_stdout_closed(&api, &["evidence", "export"]).await;
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let out = api.run(&["evidence", "export", "--format", "xml"]).await;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid_format"), "{}", stderr(&out));
    // Once confirmed, the credential's version shows its revocation and
    // verdict (no probe for this connection: unverifiable).
    api.ok(&["connections", "confirm-revocation", &id, "--note", "SEC-1"])
        .await;
    let out = api.ok(&["connections", "versions", &id]).await;
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(out.starts_with("LABEL") && out.contains("VERDICT"), "{out}");
    assert!(row.contains("unverifiable"), "{out}");
}

/// `rekey campaign status ID --json` until `done` holds (30 s at most).
async fn campaign_status_until(api: &Api, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut status = Value::Null;
    for _ in 0..300 {
        status = api.ok_json(&["campaign", "status", id, "--json"]).await;
        if done(&status) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status
}

/// `rekey campaign …`: create with filters and action overrides, the plan,
/// start, status, the owners' links as CSV, an operator's confirmation,
/// completion, and the exit statuses of refused moves.
async fn campaign_commands(db: Db) {
    let api = Api::start(db).await;
    let a = api.connection("campaign a", "s3cret-a").await;
    let b = api.connection("campaign b", "s3cret-b").await;
    let c = api.client();
    for id in [&a, &b] {
        let req: rekey_client::api::UpdateConnection =
            serde_json::from_value(json!({"tags": ["leak"], "owner": {"email": "o@example.com"}}))
                .unwrap();
        c.update_connection(id, &req, None).await.unwrap();
    }
    let disable = format!("{b}=disable");
    let v: Value = api
        .ok_json(&[
            "campaign",
            "create",
            "--name",
            "Leak",
            "--reason",
            "vendor breach",
            "--tag",
            "leak",
            "--deadline",
            "2d",
            "--action",
            "headers=reauthorize",
            "--action",
            &disable,
            "--json",
        ])
        .await;
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["state"], "draft");
    let plan = api.ok(&["campaign", "plan", &id]).await;
    assert!(plan.contains(&a) && plan.contains(&b), "{plan}");
    assert!(plan.contains("reauthorize (owner)"), "{plan}");
    assert!(plan.contains("disable (automatic)"), "{plan}");
    assert!(plan.contains("2 connections; 1 need a person"), "{plan}");
    let out = api.ok(&["campaign", "start", &id]).await;
    assert!(out.contains("running"), "{out}");
    // Started twice: a conflict (exit 5).
    assert_eq!(code(&api.run(&["campaign", "start", &id]).await), Some(5));
    let status = campaign_status_until(&api, &id, |status| {
        status["counts"]["waiting_for_owner"] == 1 && status["counts"]["done"] == 1
    })
    .await;
    assert_eq!(status["counts"]["waiting_for_owner"], 1, "{status}");
    let csv = api.ok(&["campaign", "links", &id, "--csv"]).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "connection_id,display_name,owner,url,expires_at,status"
    );
    assert!(
        lines[1].starts_with(&format!("{a},campaign a,o@example.com,http")),
        "{csv}"
    );
    assert!(lines[1].contains("/connect/"), "{csv}");
    let out = api
        .ok(&[
            "campaign",
            "confirm",
            &id,
            &a,
            "--comment",
            "rotated by hand, INC-9",
        ])
        .await;
    assert!(out.contains("done"), "{out}");
    let status = campaign_status_until(&api, &id, |status| status["state"] == "completed").await;
    assert_eq!(status["state"], "completed", "{status}");
    let text = api.ok(&["campaign", "status", &id]).await;
    assert!(text.contains("2 of 2 done (100%)"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("campaign.csv");
    api.ok(&["campaign", "export", &id, "-o", file.to_str().unwrap()])
        .await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("# campaign name,Leak") && text.contains(&a),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    api.ok(&["evidence", "verify", file.to_str().unwrap()])
        .await;
    let list = api.ok(&["campaign", "list"]).await;
    assert!(list.contains(&id), "{list}");
    // Refused: a finished campaign (5), an unknown one (4), no filter (1),
    // a malformed --action (usage).
    assert_eq!(code(&api.run(&["campaign", "cancel", &id]).await), Some(5));
    let missing = "cmp_00000000000000000000000000000000";
    assert_eq!(
        code(&api.run(&["campaign", "status", missing]).await),
        Some(4)
    );
    let o = api
        .run(&[
            "campaign",
            "create",
            "--name",
            "n",
            "--reason",
            "r",
            "--deadline",
            "1d",
        ])
        .await;
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("at least one field"), "{}", stderr(&o));
    let o = api
        .run(&[
            "campaign",
            "create",
            "--name",
            "n",
            "--reason",
            "r",
            "--deadline",
            "1d",
            "--tag",
            "leak",
            "--action",
            "nonsense",
        ])
        .await;
    assert_ne!(code(&o), Some(0));
    assert!(
        stderr(&o).contains("KIND_OR_CONNECTION=action"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("s3cret"));
}
