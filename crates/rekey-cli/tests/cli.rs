//! Tests of the real `rekey` binary: serve, offline admin, the API client,
//! KEK rotation killed halfway and resumed, audit tamper detection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::{both_backends, Db};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

mod common;
use common::*;

/// The header secret `h` of the i-th connection made by `create_conns`.
fn header_secret(prefix: &str) -> impl Fn(usize, &str) -> String + '_ {
    move |i, h| format!("{prefix}-{h}-{i}")
}

async fn assert_all_readable(base: &str, key: &str, ids: &[String], prefix: &str) {
    for (i, id) in ids.iter().enumerate() {
        let (status, body) = read_credentials(base, key, id).await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(
            body["credentials"]["headers"]["X-A"],
            format!("{prefix}-a-{i}")
        );
        assert_eq!(
            body["credentials"]["headers"]["X-B"],
            format!("{prefix}-b-{i}")
        );
    }
}

fn keyring_ids(data_dir: &Path) -> Vec<String> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir.join("keyring.json")).unwrap())
            .unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect()
}

both_backends!(
    cli_end_to_end,
    kek_rotation_survives_a_crash,
    audit_verify_exit_codes,
    refresh_killed_midway_leaves_consistent_state,
    oauth_cli_commands,
    health_and_webhooks_cli,
    webhooks_survive_sigkill,
    webhook_cap_flag_and_paged_list,
    check_killed_midway_resumes,
    dashboard_user_from_cli,
    offline_commands_refuse_a_missing_rekey,
    inventory_import_then_kek_rotation_in_pages,
    import_killed_midway_is_all_or_nothing,
);

async fn cli_end_to_end(db: Db) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let cli = |args: &[&str]| env.remote(&server.base, &key, args, Duration::from_secs(30));
    let creds = env.dir.path().join("creds.json");
    std::fs::write(
        &creds,
        r#"{"key": "cli-secret-value-123xxxxxxxxxxxxxxxxxxxx", "placement": "header", "name": "X-Api-Key"}"#,
    )
    .unwrap();
    let out = cli(&[
        "connections",
        "create",
        "--provider",
        "sixsense",
        "--kind",
        "api_key",
        "--name",
        "6sense prod",
        "--credentials-file",
        creds.to_str().unwrap(),
        "--tag",
        "prod,crm",
        "--custody",
        "salesforce",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(id.starts_with("con_"), "{id}");

    let out = cli(&["connections", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.starts_with("ID")
            && table.contains(&id)
            && table.contains("sixsense")
            && table.contains("pending"),
        "{table}"
    );
    assert!(!table.contains("cli-secret-value-123xxxxxxxxxxxxxxxxxxxx"));

    let out = cli(&["connections", "list", "--json", "--tag", "crm"]).await;
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let out = cli(&["connections", "list", "--json", "--tag", "nope"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&out)).unwrap(),
        json!([])
    );
    // Search in names (the API's `q`).
    let out = cli(&["connections", "list", "--json", "--search", "6SENSE"]).await;
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    let out = cli(&[
        "connections",
        "list",
        "--json",
        "--search",
        "nothing-like-it",
    ])
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&out)).unwrap(),
        json!([])
    );

    let out = cli(&["connections", "show", &id, "--json"]).await;
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["custody"], json!(["salesforce"]));
    assert!(!stdout(&out).contains("cli-secret-value-123xxxxxxxxxxxxxxxxxxxx"));

    let out = cli(&["providers", "list"]).await;
    assert!(
        stdout(&out).contains("snowflake") && stdout(&out).contains("manual"),
        "{}",
        stdout(&out)
    );

    let out = cli(&["audit", "list", "--json"]).await;
    let audit: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "connection.create"));
    let out = cli(&["audit", "verify"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("intact"));

    // Errors: one line on stderr, non-zero exit.
    let out = cli(&[
        "connections",
        "show",
        "con_00000000000000000000000000000000",
    ])
    .await;
    assert!(!out.status.success());
    assert_eq!(stderr(&out).trim(), "error: connection_not_found (404): connection con_00000000000000000000000000000000 not found");
    let out = cli(&["connections", "show", "bogus"]).await;
    assert!(!out.status.success() && stderr(&out).contains("invalid_id"));
    let mut c = env.command(&["connections", "list"]);
    c.env("REKEY_URL", &server.base)
        .env("REKEY_TOKEN", "rk_wrong");
    let out = c.output().await.unwrap();
    assert!(
        !out.status.success() && stderr(&out).contains("unauthorized (401)"),
        "{}",
        stderr(&out)
    );
    let out = env
        .run(&["connections", "list"], &[("REKEY_URL", &server.base)])
        .await;
    assert!(
        !out.status.success() && stderr(&out).contains("REKEY_TOKEN"),
        "{}",
        stderr(&out)
    );

    // Keys rotation needs the data dir to itself.
    let out = env.run(&["keys", "rotate"], &[]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("in use by a running rekey"),
        "{}",
        stderr(&out)
    );

    let out = cli(&["connections", "delete", &id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    server.stop().await;
}

async fn kek_rotation_survives_a_crash(db: Db) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    // 12 secrets, and the fingerprint key made with the first connection.
    let ids = create_conns(&server.base, &key, 6, header_secret("kek")).await;
    server.stop().await;
    let before = keyring_ids(&env.data_dir());
    assert_eq!(before.len(), 1);

    // Crash after 5 of 12 re-wraps.
    let out = env
        .run(
            &["keys", "rotate"],
            &[("REKEY_FAULT_ABORT_AFTER_REWRAPS", "5")],
        )
        .await;
    assert!(
        !out.status.success(),
        "the fault hook must kill the process"
    );
    assert!(stderr(&out).contains("fault injection"), "{}", stderr(&out));
    let mid = keyring_ids(&env.data_dir());
    assert_eq!(mid.len(), 2, "old and new KEK both kept while re-wrapping");
    let status = stdout(&env.run(&["keys", "status"], &[]).await);
    assert!(
        status.contains(&format!("{} (primary)\t5 secrets", mid[1])),
        "{status}"
    );
    assert!(
        status.contains(&format!("{}\t8 secrets", before[0])),
        "{status}"
    );

    // Every secret is readable in the half-rotated state.
    let server = env.serve().await;
    assert_all_readable(&server.base, &key, &ids, "kek").await;
    server.stop().await;

    // A rerun finishes the job and drops the old key.
    let out = env.run(&["keys", "rotate"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("resumed an interrupted rotation"), "{text}");
    assert!(text.contains("re-wrapped data keys: 8"), "{text}");
    assert!(
        text.contains(&format!("dropped unused key: {}", before[0])),
        "{text}"
    );
    assert_eq!(keyring_ids(&env.data_dir()), vec![mid[1].clone()]);

    let server = env.serve().await;
    assert_all_readable(&server.base, &key, &ids, "kek").await;
    server.stop().await;

    // A fresh rotation starts a new key and re-wraps everything.
    let out = env.run(&["keys", "rotate"], &[]).await;
    assert!(
        out.status.success() && stdout(&out).contains("re-wrapped data keys: 13"),
        "{}",
        stdout(&out)
    );
    let after = keyring_ids(&env.data_dir());
    assert_eq!(after.len(), 1);
    assert_ne!(after[0], mid[1]);
    let server = env.serve().await;
    assert_all_readable(&server.base, &key, &ids, "kek").await;
    server.stop().await;
}

async fn audit_verify_exit_codes(db: Db) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    create_conns(&server.base, &key, 2, header_secret("aud")).await;
    server.stop().await;
    let out = env.run(&["audit", "verify", "--offline"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // Tamper with entry 2 behind rekey's back.
    let stmts: Vec<&str> = match db {
        Db::Sqlite => vec![
            "DROP TRIGGER audit_log_no_update",
            "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2",
        ],
        Db::Postgres => vec![
            "DROP TRIGGER audit_log_no_update ON audit_log",
            "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2",
        ],
    };
    rekey_testkit::raw_sql(
        env.pg
            .as_ref()
            .map(|p| p.url())
            .unwrap_or_else(|| format!("sqlite://{}", env.data_dir().join("rekey.db").display())),
        &stmts,
    )
    .await;
    let out = env.run(&["audit", "verify", "--offline"], &[]).await;
    assert!(!out.status.success());
    assert!(stdout(&out).contains("entry 2"), "{}", stdout(&out));
    assert!(stderr(&out).contains("verification failed"));
    // Same through the API.
    let server = env.serve().await;
    let out = env
        .run(
            &["audit", "verify", "--json"],
            &[("REKEY_URL", &server.base), ("REKEY_TOKEN", &key)],
        )
        .await;
    assert!(!out.status.success());
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["first_broken_seq"], 2);
    server.stop().await;
}

#[tokio::test]
async fn bad_catalog_entry_stops_start_naming_file_and_field() {
    let env = Env::new(Db::Sqlite).await;
    let dir = env.dir.path().join("providers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("acme.toml"), "id = \"acme\"\ndisplay_name = \"Acme\"\ncategory = \"crm\"\ndocs_url = \"http://insecure.example\"\nauth_kinds = [\"api_key\"]\n[revoke]\nmethod = \"api\"\n[rotate]\nmethod = \"api\"\n").unwrap();
    let out = env
        .run(
            &["serve", "--listen", "127.0.0.1:0"],
            &[("REKEY_PROVIDERS_DIR", dir.to_str().unwrap())],
        )
        .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("acme.toml") && err.contains("docs_url") && err.contains("https"),
        "{err}"
    );
}

/// `--allow-outbound` / `REKEY_ALLOW_OUTBOUND`: a bad value stops start-up
/// naming the setting and the item; a good one lets exactly the named range
/// through the outbound policy.
#[tokio::test]
async fn allow_outbound_is_validated_and_applied() {
    let mut env = Env::new(Db::Sqlite).await;
    for (args, envs) in [
        (
            vec!["serve", "--listen", "127.0.0.1:0"],
            vec![("REKEY_ALLOW_OUTBOUND", "10.0.0.0/8,10.0.0.0/33")],
        ),
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--allow-outbound",
                "https://vault.internal/",
            ],
            vec![],
        ),
    ] {
        let out = env.run(&args, &envs).await;
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("REKEY_ALLOW_OUTBOUND (--allow-outbound)")
                && (err.contains("10.0.0.0/33") || err.contains("https://vault.internal/")),
            "{err}"
        );
    }
    let key = env.admin_key("default", "admin").await;
    let hook = |url: &str| json!({"url": url, "events": ["*"]});
    let http = reqwest::Client::new();
    let post = |base: String, body: Value| {
        let (http, key) = (http.clone(), key.clone());
        async move {
            http.post(format!("{base}/api/v1/webhooks"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let server = env.serve().await;
    assert_eq!(
        post(server.base.clone(), hook("https://10.20.0.5/h")).await,
        400
    );
    server.stop().await;
    env.extra.push((
        "REKEY_ALLOW_OUTBOUND".into(),
        "10.20.0.0/16, vault.internal".into(),
    ));
    let server = env.serve().await;
    assert_eq!(
        post(server.base.clone(), hook("https://10.20.0.5/h")).await,
        201
    );
    assert_eq!(
        post(server.base.clone(), hook("https://10.21.0.5/h")).await,
        400
    );
    server.stop().await;
}

#[tokio::test]
async fn master_key_mode_and_config_errors() {
    let mut env = Env::new(Db::Sqlite).await;
    let mk_file = env.dir.path().join("mk");
    std::fs::write(&mk_file, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    env.extra.push((
        "REKEY_MASTER_KEY_FILE".into(),
        mk_file.to_str().unwrap().into(),
    ));
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let ids = create_conns(&server.base, &key, 2, header_secret("mk")).await;
    server.stop().await;
    assert!(
        !env.data_dir().join("keyring.json").exists(),
        "master-key mode must not write a keyring file"
    );
    // Without the master key the data is refused rather than silently re-keyed.
    env.extra.clear();
    let out = env.run(&["serve", "--listen", "127.0.0.1:0"], &[]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("key-encryption keys this keyring lacks"),
        "{}",
        stderr(&out)
    );
    // Rotating to a new master key: old one supplied as previous.
    let new_mk = "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";
    let old_mk = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let out = env
        .run(
            &["keys", "rotate"],
            &[
                ("REKEY_MASTER_KEY", new_mk),
                ("REKEY_PREVIOUS_MASTER_KEYS", old_mk),
            ],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        // The connections' secrets and the fingerprint key.
        stdout(&out).contains("re-wrapped data keys: 5"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("remove from REKEY_PREVIOUS_MASTER_KEYS"),
        "{}",
        stdout(&out)
    );
    env.extra.push(("REKEY_MASTER_KEY".into(), new_mk.into()));
    let server = env.serve().await;
    assert_all_readable(&server.base, &key, &ids, "mk").await;
    server.stop().await;
    // Config errors are one clear line.
    let out = env
        .run(&["serve"], &[("REKEY_DATABASE_URL", "mysql://x")])
        .await;
    assert!(
        !out.status.success()
            && stderr(&out).contains("REKEY_DATABASE_URL must start with postgres://"),
        "{}",
        stderr(&out)
    );
    let out = env
        .run(&["serve"], &[("REKEY_MASTER_KEY_FILE", "/nonexistent/mk")])
        .await;
    assert!(
        !out.status.success() && stderr(&out).contains("REKEY_MASTER_KEY_FILE"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["serve", "--listen", "not-an-addr"], &[]).await;
    assert!(
        !out.status.success() && stderr(&out).contains("cannot listen on not-an-addr"),
        "{}",
        stderr(&out)
    );
}

/// SIGKILL the server while a token refresh is in flight; after restart the
/// connection is whole (old or new tokens, never a mix), readable, and the
/// audit chain intact.
async fn refresh_killed_midway_leaves_consistent_state(db: Db) {
    use rekey_testkit::oauth2_fixture::{browser, walk_connect, OAuth2Fixture};
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let mut server = env.serve().await;
    let fx =
        OAuth2Fixture::start("cid", "csecret", &format!("{}/oauth/callback", server.base)).await;
    fx.with(|s| {
        s.access_ttl = 60; // inside the refresh window: every read refreshes
        s.rotate_refresh = false;
    });
    let http = reqwest::Client::new();
    let integ: Value = api_post(&server.base, &key, "/api/v1/integrations", json!({"provider": "custom-oauth2", "display_name": "Acme", "client_id": "cid", "client_secret": "csecret",
            "endpoints": fx.endpoints()})).await;
    let sess: Value = api_post(
        &server.base,
        &key,
        "/api/v1/connect-sessions",
        json!({"integration": integ["id"]}),
    )
    .await;
    let b = browser();
    let cb = walk_connect(&b, sess["url"].as_str().unwrap()).await;
    assert_eq!(b.get(&cb).send().await.unwrap().status(), 200);
    let list: Value = api_get(&server.base, &key, "/api/v1/connections").await;
    let id = list["items"][0]["id"].as_str().unwrap().to_string();

    // A slow provider; kill the server while the refresh waits on it.
    fx.with(|s| s.token_delay_ms = 5_000);
    let before = fx.token_requests();
    let url = format!("{}/api/v1/connections/{id}/credentials", server.base);
    let k2 = key.clone();
    let pending = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(k2)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    for _ in 0..100 {
        if fx.token_requests() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        fx.token_requests() > before,
        "the refresh never reached the provider"
    );
    server.child.kill().await.unwrap();
    assert!(
        pending.await.unwrap().is_err(),
        "the request cannot have completed"
    );

    // Restart: everything readable, refresh works, chain intact.
    fx.with(|s| s.token_delay_ms = 0);
    let server = env.serve().await;
    let r = http
        .get(format!(
            "{}/api/v1/connections/{id}/credentials",
            server.base
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let c: Value = api_get(&server.base, &key, &format!("/api/v1/connections/{id}")).await;
    assert_eq!(c["status"], "active", "{c}");
    server.stop().await;
    let out = env.run(&["audit", "verify", "--offline"], &[]).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// The OAuth CLI: integrations, connect-link, refresh, reauthorize, revoke.
async fn oauth_cli_commands(db: Db) {
    use rekey_testkit::oauth2_fixture::{browser, walk_connect, OAuth2Fixture};
    let mut env = Env::new(db).await;
    // Debug logging, to prove no secret reaches the log even there.
    env.extra.push((
        "REKEY_LOG".into(),
        "debug,sqlx=warn,hyper=info,reqwest=info".into(),
    ));
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let fx = OAuth2Fixture::start(
        "cli-client",
        "cli-secret",
        &format!("{}/oauth/callback", server.base),
    )
    .await;
    let cli = |args: &[&str]| env.remote(&server.base, &key, args, Duration::from_secs(30));
    let file = env.dir.path().join("integration.json");
    std::fs::write(&file, json!({"provider": "custom-oauth2", "display_name": "CLI CRM", "client_id": "cli-client", "client_secret": "cli-secret",
        "endpoints": fx.endpoints()}).to_string()).unwrap();
    let out = cli(&[
        "integrations",
        "create",
        "--file",
        &file.display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let integ = stdout(&out).trim().to_string();
    assert!(integ.starts_with("int_"), "{integ}");
    let out = cli(&["integrations", "list"]).await;
    assert!(
        stdout(&out).contains(&integ)
            && stdout(&out).contains("client_secret_basic")
            && !stdout(&out).contains("cli-secret"),
        "{}",
        stdout(&out)
    );
    let out = cli(&["connect-link", "--integration", &integ]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let link = stdout(&out).trim().to_string();
    assert!(
        link.starts_with(&format!("{}/connect/", server.base)),
        "{link}"
    );
    let b = browser();
    let cb = walk_connect(&b, &link).await;
    assert_eq!(b.get(&cb).send().await.unwrap().status(), 200);
    let out = cli(&[
        "connections",
        "list",
        "--json",
        "--kind",
        "oauth2_authorization_code",
    ])
    .await;
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    let out = cli(&["connections", "refresh", &id]).await;
    assert!(
        out.status.success() && stdout(&out).starts_with("refreshed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = cli(&["connections", "reauthorize", &id]).await;
    assert!(
        out.status.success()
            && stdout(&out)
                .trim()
                .starts_with(&format!("{}/connect/", server.base)),
        "{}",
        stdout(&out)
    );
    let out = cli(&["connect-link", "--reauthorize", &id]).await;
    assert!(
        out.status.success() && stdout(&out).contains("/connect/"),
        "{}",
        stderr(&out)
    );
    let out = cli(&["connections", "revoke", &id]).await;
    assert!(
        out.status.success() && stdout(&out).contains("revoked at the provider"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = cli(&["integrations", "delete", &integ]).await;
    assert!(
        !out.status.success() && stderr(&out).contains("integration_in_use"),
        "{}",
        stderr(&out)
    );
    let out = cli(&["connections", "delete", &id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["integrations", "delete", &integ]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let logs = server.logs();
    assert!(
        logs.contains("/oauth/callback"),
        "debug logs expected: {logs}"
    );
    let connect_token = link.rsplit('/').next().unwrap();
    for secret in [
        "cli-secret",
        "at-alice",
        "rt-alice",
        "code=code-",
        connect_token,
        key.as_str(),
    ] {
        assert!(!logs.contains(secret), "log leaks `{secret}`");
    }
    server.stop().await;
}

/// The scheduler in the real binary verifies a new connection on its own;
/// `connections check` and `webhooks …` from the command line.
async fn health_and_webhooks_cli(db: Db) {
    use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
    use rekey_testkit::webhook_receiver::{verify_signature, WebhookReceiver};
    let env = Env::with_env(
        db,
        &[
            ("REKEY_CHECK_INTERVAL", "600"),
            ("REKEY_WORKER_TICK_MS", "100"),
            ("REKEY_WEBHOOK_RETRY_BASE_MS", "50"),
        ],
    )
    .await;
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let cli = |args: &[&str]| env.remote(&server.base, &key, args, Duration::from_secs(30));
    let rx = WebhookReceiver::start(1).await;
    let out = cli(&[
        "webhooks",
        "create",
        "--endpoint",
        &rx.url(),
        "--event",
        "connection.status_changed,connection.created",
        "--description",
        "ops",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let hook = text.lines().next().unwrap().trim().to_string();
    assert!(hook.starts_with("whk_"), "{text}");
    let secret = text
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .unwrap()
        .to_string();
    let out = cli(&["webhooks", "list"]).await;
    assert!(stdout(&out).contains(&hook) && !stdout(&out).contains(&secret));

    let fx = ProviderFixture::start().await;
    fx.set_valid_credential(Some("Bearer cli-key-1"));
    let creds = env.dir.path().join("c.json");
    std::fs::write(&creds, r#"{"key": "cli-key-1", "prefix": "Bearer "}"#).unwrap();
    let out = cli(&[
        "connections",
        "create",
        "--provider",
        "custom-rest",
        "--kind",
        "api_key",
        "--name",
        "Probe me",
        "--credentials-file",
        creds.to_str().unwrap(),
        "--probe-url",
        &fx.rest_url(),
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    // No manual check: the scheduler picks the new connection up.
    let mut status = String::new();
    for _ in 0..100 {
        status = api_get(&server.base, &key, &format!("/api/v1/connections/{id}")).await["status"]
            .as_str()
            .unwrap()
            .to_string();
        if status == "active" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "active");
    assert!(fx.hits() >= 1);

    fx.set_mode(Mode::Unauthorized);
    let out = cli(&["connections", "check", &id]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let t = stdout(&out);
    assert!(
        t.contains("auth_failure")
            && t.contains("active -> needs_reauth")
            && t.contains("HTTP 401"),
        "{t}"
    );
    let out = cli(&["connections", "list", "--status", "needs_reauth"]).await;
    assert!(out.status.success());
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));
    let out = cli(&["connections", "list", "--status", "active"]).await;
    assert!(!stdout(&out).contains(&id));
    fx.set_mode(Mode::Ok);
    let out = cli(&["connections", "check", &id, "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["status"], "active");

    // The worker delivered created + three transitions, the first after a retry.
    let got = rx
        .wait_until(Duration::from_secs(20), |d| d.len() >= 4)
        .await;
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.iter().all(|r| verify_signature(&secret, r)));
    // The receiver sees a POST before the worker records its answer, so
    // wait for the fourth delivery to be marked delivered.
    let mut t = String::new();
    for _ in 0..100 {
        t = stdout(&cli(&["webhooks", "deliveries", &hook]).await);
        if t.matches("delivered").count() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(t.matches("delivered").count(), 4, "{t}");
    let did = t
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let out = cli(&["webhooks", "delivery", &hook, &did]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["webhooks", "replay", &hook, &did]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let got = rx
        .wait_until(Duration::from_secs(20), |d| d.len() >= 5)
        .await;
    assert_eq!(got.len(), 5);
    let out = cli(&["webhooks", "update", &hook, "--disable"]).await;
    assert!(stdout(&out).contains("paused"), "{}", stdout(&out));
    let out = cli(&["webhooks", "rotate-secret", &hook]).await;
    assert!(stdout(&out).contains("whsec_"));
    let out = cli(&["webhooks", "delete", &hook]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["webhooks", "show", &hook]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("webhook_not_found"),
        "{}",
        stderr(&out)
    );
    server.stop().await;
}

/// SIGKILL the server while events wait for a receiver that is down; after
/// a restart every event is delivered at least once, with valid signatures.
async fn webhooks_survive_sigkill(db: Db) {
    use rekey_testkit::webhook_receiver::{verify_signature, WebhookReceiver};
    use std::collections::BTreeSet;
    let env = Env::with_env(
        db,
        &[
            ("REKEY_CHECK_INTERVAL", "0"),
            ("REKEY_WORKER_TICK_MS", "20"),
            ("REKEY_WEBHOOK_RETRY_BASE_MS", "20"),
        ],
    )
    .await;
    let key = env.admin_key("default", "admin").await;
    let mut server = env.serve().await;
    let rx = WebhookReceiver::start(1_000_000).await;
    let created = api_post(
        &server.base,
        &key,
        "/api/v1/webhooks",
        json!({"url": rx.url(), "events": ["connection.created"]}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    let ids = create_conns(&server.base, &key, 25, header_secret("kill")).await;
    // Attempts are failing and being retried while we kill the process.
    for _ in 0..200 {
        if rx.received().len() >= 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(rx.received().len() >= 30, "deliveries were being attempted");
    server.child.kill().await.unwrap();
    assert!(rx.delivered().is_empty());

    rx.set_fail_next(0);
    let server = env.serve().await;
    let got = rx
        .wait_until(Duration::from_secs(90), |d| {
            d.iter()
                .map(|r| r.id.clone())
                .collect::<BTreeSet<_>>()
                .len()
                >= 25
        })
        .await;
    let mut seen = BTreeSet::new();
    for r in &got {
        assert!(verify_signature(&secret, r));
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        seen.insert(b["data"]["connection_id"].as_str().unwrap().to_string());
    }
    let want: BTreeSet<String> = ids.into_iter().collect();
    assert_eq!(seen, want, "every event delivered at least once");
    server.stop().await;
    let out = env.run(&["audit", "verify", "--offline"], &[]).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// `REKEY_MAX_WEBHOOKS` sets the per-tenant cap (validated range), and
/// `rekey webhooks list` follows `next_cursor` past the 200-item page.
async fn webhook_cap_flag_and_paged_list(db: Db) {
    let mut env = Env::new(db).await;
    for bad in ["0", "1001", "many"] {
        let out = env
            .run(
                &["serve", "--listen", "127.0.0.1:0"],
                &[("REKEY_MAX_WEBHOOKS", bad)],
            )
            .await;
        assert!(!out.status.success(), "REKEY_MAX_WEBHOOKS={bad} accepted");
        assert!(stderr(&out).contains("max-webhooks"), "{}", stderr(&out));
    }
    env.extra = vec![
        ("REKEY_CHECK_INTERVAL".into(), "0".into()),
        ("REKEY_MAX_WEBHOOKS".into(), "205".into()),
    ];
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let http = reqwest::Client::new();
    let post = || {
        http.post(format!("{}/api/v1/webhooks", server.base))
            .bearer_auth(&key)
            .json(&json!({"url": "https://hooks.example.com/rekey", "events": ["*"]}))
            .send()
    };
    let mut want = std::collections::BTreeSet::new();
    for _ in 0..205 {
        let r = post().await.unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        want.insert(v["webhook"]["id"].as_str().unwrap().to_string());
    }
    let r = post().await.unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "webhook_limit", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("205"),
        "{v}"
    );

    let out = env
        .run(
            &["webhooks", "list", "--json"],
            &[("REKEY_URL", &server.base), ("REKEY_TOKEN", &key)],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let items: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(items.len(), 205, "every page");
    let got: std::collections::BTreeSet<String> = items
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want);
    server.stop().await;
}

/// SIGKILL the server while a scheduled check waits on a slow provider:
/// after restart the claim is released (SQLite at start, PostgreSQL when
/// the lease lapses) and the check runs to completion.
async fn check_killed_midway_resumes(db: Db) {
    use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
    let env = Env::with_env(
        db,
        &[
            ("REKEY_CHECK_INTERVAL", "600"),
            ("REKEY_CHECK_TIMEOUT", "2"),
            // No rate limit: the lease is then 2 × 2 s + 20 s.
            ("REKEY_CHECK_RATE", "0"),
            ("REKEY_WORKER_TICK_MS", "50"),
        ],
    )
    .await;
    let key = env.admin_key("default", "admin").await;
    let fx = ProviderFixture::start().await;
    fx.set_mode(Mode::Slow(Duration::from_millis(1500)));
    let mut server = env.serve().await;
    let c = api_post(
        &server.base,
        &key,
        "/api/v1/connections",
        json!({
        "provider": "custom-rest", "kind": "api_key", "display_name": "slow",
        "probe_url": fx.rest_url(), "credentials": {"key": "k-slow-1"}}),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        if fx.hits() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fx.hits(), 1, "the scheduler started the check");
    server.child.kill().await.unwrap();
    let c = api_get_offline(&env, &id).await;
    assert_eq!(c, "pending", "the check did not complete before the kill");

    fx.set_mode(Mode::Ok);
    let server = env.serve().await;
    let mut status = String::new();
    for _ in 0..400 {
        status = api_get(&server.base, &key, &format!("/api/v1/connections/{id}")).await["status"]
            .as_str()
            .unwrap()
            .to_string();
        if status == "active" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "active");
    assert_eq!(fx.hits(), 2, "checked once more, not in a loop");
    server.stop().await;
    let out = env.run(&["audit", "verify", "--offline"], &[]).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// A connection's status read straight from the database (server down).
async fn api_get_offline(env: &Env, id: &str) -> String {
    let url = match &env.pg {
        Some(pg) => pg.url(),
        None => format!("sqlite://{}/rekey.db", env.data_dir().display()),
    };
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
    let (s,): (String,) = sqlx::query_as("SELECT status FROM connections WHERE id = $1")
        .bind(id)
        .fetch_one(&mut c)
        .await
        .unwrap();
    s
}

/// `rekey admin create-user` takes the password from the environment (or
/// stdin), never argv; the user can then sign in to the dashboard.
async fn dashboard_user_from_cli(db: Db) {
    let env = Env::new(db).await;
    let pw = "a long enough password";
    // A first start says where the dashboard is and how to get in.
    let banner = env.serve_banner(3).await;
    assert!(
        banner[0].starts_with("rekey listening on http://"),
        "{banner:?}"
    );
    let base = banner[0].trim_start_matches("rekey listening on ");
    assert_eq!(banner[1], format!("dashboard: {base}/ui"), "{banner:?}");
    assert!(
        banner[2].starts_with(
            "no dashboard user yet; create one with: rekey admin create-user --data-dir "
        ) && banner[2].contains("--role admin"),
        "{banner:?}"
    );
    let out = env.create_user("ada", "admin", pw).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).trim().starts_with("usr_"), "{}", stdout(&out));
    let out = env.create_user("bob", "root", pw).await;
    assert!(!out.status.success());
    let out = env.create_user("bob", "viewer", "short").await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("12"), "{}", stderr(&out));
    // With a user, no hint (the server says nothing more on stdout).
    let banner = env.serve_banner(3).await;
    assert_eq!(banner.len(), 2, "{banner:?}");
    assert!(banner[1].starts_with("dashboard: "), "{banner:?}");
    let server = env.serve().await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/ui/login", server.base))
        .form(&[("username", "ada"), ("password", pw)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("HttpOnly"));
    server.stop().await;
    assert!(!db_file_contains(&env, pw));
}

fn db_file_contains(env: &Env, needle: &str) -> bool {
    // The keyring and database files hold no password either.
    let db = env.data_dir().join("rekey.db");
    std::fs::read(db)
        .map(|b| String::from_utf8_lossy(&b).contains(needle))
        .unwrap_or(false)
}

/// The dashboard in a real browser: Debian's headless Chromium driven by
/// playwright-core (tests/e2e/dashboard.mjs) against the real binary.
/// Screenshots land in target/e2e-screenshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    use rekey_testkit::oauth2_fixture::browser;
    use rekey_testkit::oidc::{
        authorize_as, client_secret, code_client, start_connect, OidcProvider,
    };
    use rekey_testkit::provider_fixture::{Mode, ProviderFixture};
    // No scheduler and no background refresh: the browser's "Check now" is
    // what finds the broken credentials.
    let env = Env::with_env(
        Db::Sqlite,
        &[
            ("REKEY_CHECK_INTERVAL", "0"),
            ("REKEY_REFRESH_INTERVAL", "0"),
        ],
    )
    .await;
    let pw = "dashboard e2e password";
    for (user, role) in [("olga", "operator"), ("vic", "viewer")] {
        let out = env.create_user(user, role, pw).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let fx = ProviderFixture::start().await;
    // The provider accepts only the new key: the stored one is dead.
    fx.set_mode(Mode::Ok);
    fx.set_valid_credential(Some("k-new-2"));
    let c = api_post(
        &server.base,
        &key,
        "/api/v1/connections",
        json!({
        "provider": "custom-rest", "kind": "api_key", "display_name": "Acme CRM", "tags": ["crm"],
        "probe_url": fx.rest_url(), "credentials": {"key": "e2e-key-1"}}),
    )
    .await;
    // Two more for the bulk check of a filtered set (tag `crm`).
    for (name, tag) in [("Zeta CRM", "crm"), ("Ledger", "finance")] {
        api_post(
            &server.base,
            &key,
            "/api/v1/connections",
            json!({
            "provider": "custom-rest", "kind": "api_key", "display_name": name, "tags": [tag],
            "probe_url": fx.rest_url(), "credentials": {"key": "e2e-old-key"}}),
        )
        .await;
    }
    // An OAuth grant from a real OpenID provider, connected as alice.
    let secret = client_secret("dash-client");
    let client = code_client(&server.base, "dash-client", "client_secret_basic");
    let op = OidcProvider::start(json!([client])).await;
    let integ = api_post(&server.base, &key, "/api/v1/integrations", json!({
        "provider": "custom-oidc", "display_name": "Acme IdP", "client_id": "dash-client", "client_secret": secret,
        "auth_method": "client_secret_basic", "scopes": ["openid", "email", "profile"], "endpoints": {"issuer": op.issuer}}))
    .await;
    let sess = api_post(
        &server.base,
        &key,
        "/api/v1/connect-sessions",
        json!({"integration": integ["id"], "display_name": "Acme IdP"}),
    )
    .await;
    let to_idp = start_connect(sess["url"].as_str().unwrap()).await;
    let cb = authorize_as(&to_idp, "alice", true).await;
    let done = rekey_testkit::browser::get_text(&browser(), &cb).await;
    assert!(done.contains("Connected"), "{done}");
    let conns = api_get(
        &server.base,
        &key,
        "/api/v1/connections?kind=oauth2_authorization_code",
    )
    .await;
    let oauth_id = conns["items"][0]["id"].as_str().unwrap().to_string();
    // Checked by calling the provider's userinfo endpoint with the token.
    let r = reqwest::Client::new()
        .patch(format!("{}/api/v1/connections/{oauth_id}", server.base))
        .bearer_auth(&key)
        .json(&json!({"probe_url": op.url("/me")}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    // The next token request (the check's refresh) finds the grant gone.
    op.set_faults(json!({"token_status": 400, "token_count": 1,
        "token_body": {"error": "invalid_grant", "error_description": "grant revoked by the user"}}))
        .await;
    run_browser_script(
        "dashboard.mjs",
        &server.base,
        &[
            ("OPERATOR", "olga"),
            ("VIEWER", "vic"),
            ("PASSWORD", pw),
            ("CONN_ID", c["id"].as_str().unwrap()),
            ("CONN_NAME", "Acme CRM"),
            ("OAUTH_CONN_ID", &oauth_id),
            ("OAUTH_CONN_NAME", "Acme IdP"),
            ("IDP", &op.issuer),
        ],
    )
    .await;
    server.stop().await;
}

/// Verification and key commands never create what they should find: a
/// mistyped data dir (or an empty PostgreSQL database) is an error, not
/// "intact: 0 entries". Creating a key or a user may set up a new rekey,
/// but says so.
async fn offline_commands_refuse_a_missing_rekey(db: Db) {
    let env = Env::new(db).await;
    let backup = env.dir.path().join("backup.db");
    let cmds: [Vec<&str>; 4] = [
        vec!["audit", "verify", "--offline"],
        vec!["keys", "status"],
        vec!["keys", "rotate"],
        vec!["admin", "backup", "--to", backup.to_str().unwrap()],
    ];
    for args in &cmds {
        let out = env.run(args, &[]).await;
        assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("no data directory at"), "{args:?}: {err}");
        assert!(!stdout(&out).contains("intact"), "{args:?}");
        assert!(!env.data_dir().exists(), "{args:?} created the data dir");
    }
    if env.pg.is_some() {
        // PostgreSQL with the master key needs no local data dir (commands
        // may run on another host): the empty database is what is refused.
        let mk = [(
            "REKEY_MASTER_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )];
        let out = env.run(&["audit", "verify", "--offline"], &mk).await;
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("holds no rekey data"),
            "{}",
            stderr(&out)
        );
        assert!(!env.data_dir().exists());
    }
    // A data dir without a database is refused too (on PostgreSQL: an
    // empty database, also with the master key given instead of a keyring).
    std::fs::create_dir(env.data_dir()).unwrap();
    let mk = [(
        "REKEY_MASTER_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )];
    for args in &cmds {
        for extra in [&[][..], &mk[..]] {
            let out = env.run(args, extra).await;
            assert!(!out.status.success(), "{args:?}");
            let want = if env.pg.is_some() {
                "the PostgreSQL database in REKEY_DATABASE_URL holds no rekey data"
            } else {
                "no database (rekey.db) in"
            };
            assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
            assert!(!env.data_dir().join("rekey.db").exists(), "{args:?}");
            assert!(!env.data_dir().join("keyring.json").exists(), "{args:?}");
        }
    }
    // create-key sets up a new rekey here, and says so.
    let out = env
        .run(
            &["admin", "create-key", "--name", "k", "--scope", "admin"],
            &[],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a new rekey was set up there"),
        "{}",
        stderr(&out)
    );
    // Now there is a rekey to verify, and a second key is no news.
    let out = env.run(&["audit", "verify", "--offline"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .run(
            &["admin", "create-key", "--name", "k2", "--scope", "admin"],
            &[],
        )
        .await;
    assert!(out.status.success());
    assert!(!stderr(&out).contains("new rekey"), "{}", stderr(&out));
    // A database without its keyring: refused, and no new keyring is left.
    let keyring = env.data_dir().join("keyring.json");
    let kept = env.dir.path().join("keyring.kept");
    std::fs::rename(&keyring, &kept).unwrap();
    let out = env.run(&["keys", "status"], &[]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no keyring.json in"),
        "{}",
        stderr(&out)
    );
    assert!(!keyring.exists());
    std::fs::rename(&kept, &keyring).unwrap();
    if env.pg.is_none() {
        // The keyring without its database is no rekey either.
        std::fs::remove_file(env.data_dir().join("rekey.db")).unwrap();
        let _ = std::fs::remove_file(env.data_dir().join("rekey.db-wal"));
        let _ = std::fs::remove_file(env.data_dir().join("rekey.db-shm"));
        let out = env.run(&["audit", "verify", "--offline"], &[]).await;
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("no database (rekey.db) in"),
            "{}",
            stderr(&out)
        );
    }
}

/// `rekey connections import`: a CSV with a bad row (dry run, then for
/// real, then resumed with `--from-row`), a JSON inventory larger than one
/// request, the endpoint's limits; then `keys rotate` over more secrets
/// than one page, killed past the first page and resumed.
async fn inventory_import_then_kek_rotation_in_pages(db: Db) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let cli = |args: &[&str]| env.remote(&server.base, &key, args, Duration::from_secs(120));
    let secret = |i: usize| format!("sk-import-{i:05}-xxxxxxxxxxxxxxxxxxxx");
    let csv = env.dir.path().join("inventory.csv");
    std::fs::write(
        &csv,
        format!(
            "provider,kind,name,tags,custody,owner_email,credentials.key,credentials.placement,credentials.name\n\
             custom-rest,api_key,Billing,\"ci;prod\",salesforce,ada@example.com,{},header,X-Api-Key\n\
             no-such-provider,api_key,Bad,,,,{},header,X-Api-Key\n\
             custom-rest,api_key,Second,,,,{},header,X-Api-Key\n",
            secret(1),
            secret(2),
            secret(3)
        ),
    )
    .unwrap();
    let csv = csv.to_str().unwrap();
    let count = |v: &Value| v["items"].as_array().unwrap().len();

    // A dry run reports and creates nothing; a refused row fails the command.
    let out = cli(&["connections", "import", csv, "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("row 2: unknown_provider"), "{text}");
    assert!(
        text.contains("dry run: 2 rows would be created, 1 refused"),
        "{text}"
    );
    assert!(
        !text.contains("sk-import"),
        "no secret in the report: {text}"
    );
    assert_eq!(
        count(&api_get(&server.base, &key, "/api/v1/connections").await),
        0
    );

    // For real: the good rows are created with what the CSV said.
    let out = cli(&["connections", "import", csv]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("created 2, refused 1"),
        "{}",
        stdout(&out)
    );
    let list = api_get(&server.base, &key, "/api/v1/connections?q=Billing").await;
    let billing = &list["items"][0];
    assert_eq!(billing["tags"], json!(["ci", "prod"]));
    assert_eq!(billing["custody"], json!(["salesforce"]));
    assert_eq!(billing["owner"]["email"], "ada@example.com");
    let (st, c) = read_credentials(&server.base, &key, billing["id"].as_str().unwrap()).await;
    assert_eq!(st, 200);
    assert_eq!(c["credentials"]["key"], secret(1));

    // Resumed from row 3, as JSON: row numbers are the file's.
    let out = cli(&["connections", "import", csv, "--from-row", "3", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["created"], 1);
    assert_eq!(r["rows"][0]["index"], 3);
    assert_eq!(r["rows"][0]["outcome"], "created");
    assert!(r["rows"][0]["id"].as_str().unwrap().starts_with("con_"));

    // A JSON inventory of more rows than one request carries, with a row
    // whose material is malformed (its value must not come back).
    let n = 1234;
    let mut rows: Vec<Value> = (0..n)
        .map(|i| {
            json!({"provider": "custom-rest", "kind": "api_key", "display_name": format!("bulk {i}"),
                "credentials": {"key": secret(100 + i), "placement": "header", "name": "X-Api-Key"}})
        })
        .collect();
    rows.push(
        json!({"provider": "custom-rest", "kind": "api_key", "display_name": "bad",
        "credentials": "sk-should-never-echo"}),
    );
    let file = env.dir.path().join("inventory.json");
    std::fs::write(&file, serde_json::to_string(&rows).unwrap()).unwrap();
    let out = cli(&["connections", "import", file.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("created {n}, refused 1")), "{text}");
    assert!(text.contains(&format!("row {}: ", n + 1)), "{text}");
    assert!(!text.contains("sk-should-never-echo"), "{text}");
    let all = cli(&["connections", "list", "--all", "--json"]).await;
    let all: Value = serde_json::from_str(&stdout(&all)).unwrap();
    assert_eq!(all.as_array().unwrap().len(), n + 3);

    // The endpoint's own limits.
    let post = |body: Value| {
        let (base, key) = (server.base.clone(), key.clone());
        async move {
            api_request(
                reqwest::Method::POST,
                &base,
                &key,
                "/api/v1/connections/import",
                Some(&body),
            )
            .await
        }
    };
    let (st, v) = post(json!({"connections": []})).await;
    assert_eq!(
        (st.as_u16(), v["error"]["code"].as_str()),
        (400, Some("invalid_field")),
        "{v}"
    );
    let (st, v) = post(json!({"connections": vec![json!({}); 1001]})).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 1000"),
        "{v}"
    );
    let big = "x".repeat(1100 * 1024);
    let (st, v) = post(json!({"connections": [{"display_name": big}]})).await;
    assert_eq!(
        (st.as_u16(), v["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    let (st, v) = post(
        json!({"connections": [{"provider": "custom-rest", "kind": "oauth2_client_credentials",
        "display_name": "m2m", "credentials": {"integration": "int_x"}}]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["rows"][0]["error"]["code"], "kind_not_importable", "{v}");
    // Each created connection has its own audit entry; the chain holds.
    let out = cli(&["audit", "verify"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    server.stop().await;

    // KEK rotation over more secrets than one page (and one UPDATE
    // statement), killed past the first page, then resumed.
    let total = n + 3;
    let out = env
        .run(
            &["keys", "rotate"],
            &[("REKEY_FAULT_ABORT_AFTER_REWRAPS", "1100")],
        )
        .await;
    assert!(stderr(&out).contains("fault injection"), "{}", stderr(&out));
    let mid = keyring_ids(&env.data_dir());
    assert_eq!(mid.len(), 2);
    let status = stdout(&env.run(&["keys", "status"], &[]).await);
    assert!(
        status.contains(&format!("{} (primary)\t1100 secrets", mid[1])),
        "{status}"
    );
    let out = env.run(&["keys", "rotate"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(keyring_ids(&env.data_dir()), vec![mid[1].clone()]);
    let status = stdout(&env.run(&["keys", "status"], &[]).await);
    assert!(
        status.contains(&format!("{} (primary)\t", mid[1])),
        "{status}"
    );
    assert_eq!(
        status.lines().filter(|l| l.contains(" secrets")).count(),
        1,
        "{status}"
    );
    let server = env.serve().await;
    let all = api_get(&server.base, &key, "/api/v1/connections?q=bulk&limit=200").await;
    for c in all["items"].as_array().unwrap() {
        let name = c["display_name"].as_str().unwrap();
        let i: usize = name.trim_start_matches("bulk ").parse().unwrap();
        let (st, v) = read_credentials(&server.base, &key, c["id"].as_str().unwrap()).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["credentials"]["key"], secret(100 + i));
    }
    assert!(total > 1100);
    server.stop().await;
}

/// SIGKILL while an import of 1,000 rows is in flight, at a few moments:
/// after a restart either every row is there or none, never part of them
/// (all of them when the answer came back), and the audit chain holds.
async fn import_killed_midway_is_all_or_nothing(db: Db) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let rows: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"provider": "custom-rest", "kind": "api_key", "display_name": format!("k{i}"),
                "credentials": {"key": format!("sk-kill-{i:04}-xxxxxxxxxxxxxxxxxxxx"), "placement": "header", "name": "X-Api-Key"}})
        })
        .collect();
    let body = json!({ "connections": rows });
    let mut expected = 0;
    for delay_ms in [5, 40, 120, 400] {
        let mut server = env.serve().await;
        let (url, k, b) = (
            format!("{}/api/v1/connections/import", server.base),
            key.clone(),
            body.clone(),
        );
        let pending = tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(k)
                .json(&b)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        server.child.kill().await.unwrap();
        let answered = matches!(pending.await.unwrap(), Ok(200));

        let server = env.serve().await;
        let cli = |args: &[&str]| env.remote(&server.base, &key, args, Duration::from_secs(60));
        let out = cli(&["connections", "list", "--all", "--json"]).await;
        let n = serde_json::from_str::<Value>(&stdout(&out))
            .unwrap()
            .as_array()
            .unwrap()
            .len();
        assert!(
            n == expected || n == expected + 1000,
            "killed after {delay_ms} ms: {n} connections, expected {expected} or {}",
            expected + 1000
        );
        if answered {
            assert_eq!(n, expected + 1000, "an answered import must be complete");
        }
        expected = n;
        let out = cli(&["audit", "verify"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        server.stop().await;
    }
}
