//! `rekey rotate --wait`, `rekey rotations list|show|confirm|cancel` (a
//! guided rotation of an API key), `rekey connections
//! versions`, `replace-credentials --grace` and `credentials --version
//! previous`, through the real binary against a real PostgreSQL role.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rekey_client::Client;
use rekey_testkit::dbtarget::DbTarget;
use rekey_testkit::{both_backends, Db};
use serde_json::{json, Value};
use std::time::Duration;

both_backends!(rotate_and_versions_from_the_cli);

async fn rotate_and_versions_from_the_cli(db: Db) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let c = Client::new(&server.base, key.clone()).unwrap();
    let cli = |args: &[&str]| env.remote(&server.base, &key, args, Duration::from_secs(60));
    let role = DbTarget::Postgres
        .create_user("rkcli", "cli-first-pw-1")
        .await;
    let conn = c
        .create_connection(
            &serde_json::from_value(DbTarget::Postgres.connection(&role, "cli-first-pw-1"))
                .unwrap(),
        )
        .await
        .unwrap();
    let id = conn.id;

    // rotate --wait: ends with the rotation promoted or retired, as JSON.
    let out = cli(&["rotate", &id, "--wait", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        matches!(r["state"].as_str(), Some("promoted" | "retired")),
        "{r}"
    );
    let rid = r["id"].as_str().unwrap().to_string();
    let new_pw = c.read_credentials(&id).await.unwrap().credentials["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!stdout(&out).contains(&new_pw) && !stderr(&out).contains(&new_pw));

    let out = cli(&["rotations", "list", "--connection", &id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&rid), "{}", stdout(&out));
    let out = cli(&["rotations", "show", &rid, "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&out)).unwrap()["connection_id"],
        id.as_str()
    );

    // versions: the table has both, never a value.
    let out = cli(&["connections", "versions", &id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("current") && table.contains("rotation"),
        "{table}"
    );
    assert!(!table.contains(&new_pw) && !table.contains("cli-first-pw-1"));

    // A kind without a rotator: a clear refusal, exit status 1 (422).
    let key_conn = c
        .create_connection(
            &serde_json::from_value(json!({"provider": "custom-rest", "kind": "api_key",
                "display_name": "k", "credentials": {"key": "sk-cli-1", "placement": "header", "name": "X-Api-Key"}}))
            .unwrap(),
        )
        .await
        .unwrap()
        .id;
    let out = cli(&["rotate", &key_conn, "--method", "api"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no API rotator"), "{}", stderr(&out));

    // Its guided rotation: --wait stops at the operator's step and says
    // what to do; confirm with the new key (from a file), then the
    // revocation of the old one.
    let out = cli(&["rotate", &key_conn, "--wait"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("waiting for you (set)"), "{shown}");
    let rid = shown
        .split_whitespace()
        .find(|w| w.starts_with("rot_"))
        .unwrap()
        .to_string();
    assert!(
        shown.contains(&format!(
            "rekey rotations confirm {rid} --step set --credentials-file"
        )),
        "{shown}"
    );
    let guided = env.dir.path().join("guided.json");
    std::fs::write(
        &guided,
        r#"{"key": "sk-cli-guided", "placement": "header", "name": "X-Api-Key"}"#,
    )
    .unwrap();
    // The wrong step: a clear refusal.
    let out = cli(&["rotations", "confirm", &rid, "--step", "retired"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("waits for `set`"), "{}", stderr(&out));
    let out = cli(&[
        "rotations",
        "confirm",
        &rid,
        "--step",
        "set",
        "--credentials-file",
        guided.to_str().unwrap(),
        "--note",
        "CHG-7",
        "--wait",
        "--json",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // Grace 1h (the default): promoted, the old key readable as previous.
    assert_eq!(r["state"], "promoted", "{r}");
    assert!(!stdout(&out).contains("sk-cli-guided"));
    assert_eq!(
        c.read_credentials(&key_conn).await.unwrap().credentials["key"],
        "sk-cli-guided"
    );
    let out = cli(&["rotations", "cancel", &rid]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("promoted"), "{}", stderr(&out));
    let out = cli(&["rotations", "show", &rid, "--json"]).await;
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["confirmations"][0]["note"], "CHG-7", "{shown}");

    // Replacement with a grace keeps the old key readable as previous.
    let file = env.dir.path().join("new.json");
    std::fs::write(
        &file,
        r#"{"key": "sk-cli-2", "placement": "header", "name": "X-Api-Key"}"#,
    )
    .unwrap();
    // Replace the key from `file`, with this grace.
    let replace = |grace: &str| {
        let file = file.to_str().unwrap();
        cli(&[
            "connections",
            "replace-credentials",
            &key_conn,
            "--credentials-file",
            file,
            "--grace",
            grace,
        ])
    };
    let out = replace("10m").await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&[
        "connections",
        "credentials",
        &key_conn,
        "--version",
        "previous",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["credentials"]["key"], "sk-cli-guided");
    let out = replace("soon").await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("grace"), "{}", stderr(&out));

    server.stop().await;
    DbTarget::Postgres.drop_user(&role).await;
}
