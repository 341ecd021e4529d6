//! `rekey connections create` (the CLI, through the API) gets the catalog's
//! form rules and defaults at creation, as a Connect page does: a missing
//! required parameter or a badly shaped key is refused naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use rekey_testkit::Db;
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn cli_creation_follows_catalog_rules() {
    let env = Env::new(Db::Sqlite).await;
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.remote(&server.base, &key, &args, Duration::from_secs(60))
    };
    let file = |name: &str, body: &str| {
        let p = env.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let create = |provider: &str, creds: String, extra: &[&str]| {
        let mut a: Vec<String> = [
            "connections",
            "create",
            "--provider",
            provider,
            "--kind",
            "api_key",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend([
            "--name".into(),
            "cli".into(),
            "--credentials-file".into(),
            creds,
            "--json".into(),
        ]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // Intercom without its region: refused at creation, the field named.
    let tok = file("intercom.json", r#"{"key": "cli-intercom-token"}"#);
    let out = run(create("intercom", tok.clone(), &[])).await;
    assert!(!out.status.success());
    let e: Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(e["error"]["code"], "invalid_field", "{e}");
    let m = e["error"]["message"].as_str().unwrap();
    assert!(m.contains("`params.api_host` (Intercom region)"), "{m}");
    assert!(!stderr(&out).contains("cli-intercom-token"));
    // A 6sense token of the wrong length: the key and its label named.
    let short = file("sixsense.json", r#"{"key": "short-cli-token"}"#);
    let out = run(create("sixsense", short, &[])).await;
    let e: Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(e["error"]["code"], "invalid_credentials", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`credentials.key` (API token)"),
        "{e}"
    );
    // With the region: created, with the form's header and prefix as defaults.
    let out = run(create(
        "intercom",
        tok,
        &["--param", "api_host=api.eu.intercom.io"],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["params"]["api_host"], "api.eu.intercom.io", "{c}");
    assert_eq!(c["credential"]["prefix"], "Bearer ", "{c}");
    assert_eq!(c["credential"]["name"], "Authorization", "{c}");
    server.stop().await;
}
