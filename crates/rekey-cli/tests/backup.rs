//! Backups: a copy of the database holds secrets only sealed, so it is
//! useless without the keyring (start-up refuses, naming the missing KEK),
//! and with the keyring restores every credential exactly. On SQLite the
//! copy is taken with `rekey admin backup` (VACUUM INTO) while the server
//! runs; on PostgreSQL with `pg_dump`, restored with `psql`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::{both_backends, Db};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod common;
use common::*;

both_backends!(backup_is_useless_without_the_keyring_and_complete_with_it);

/// Secrets unlikely to appear anywhere by chance.
fn secret(i: usize, field: &str) -> String {
    format!("bk-{field}-{i}-7f3a9c1e5d2b")
}

fn keyring_json(data_dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data_dir.join("keyring.json")).unwrap()).unwrap()
}

fn write_keyring(data_dir: &Path, v: &Value) {
    let p = data_dir.join("keyring.json");
    std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn assert_no_secret(what: &str, bytes: &[u8], n: usize) {
    let text = String::from_utf8_lossy(bytes);
    for i in 0..n {
        for f in ["a", "b"] {
            assert!(
                !text.contains(&secret(i, f)),
                "{what} holds a plaintext secret"
            );
        }
    }
}

async fn run_ok(program: &str, args: &[&str]) {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Back up the running server's database; returns the backup file.
async fn back_up(env: &Env, db: Db) -> PathBuf {
    match db {
        Db::Sqlite => {
            let to = env.dir.path().join("rekey-backup.db");
            let out = env
                .run(&["admin", "backup", "--to", to.to_str().unwrap()], &[])
                .await;
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(
                stdout(&out).contains("keyring is not in it"),
                "{}",
                stdout(&out)
            );
            let mode = std::fs::metadata(&to).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "backup file mode {mode:o}");
            // An existing file is never overwritten.
            let again = env
                .run(&["admin", "backup", "--to", to.to_str().unwrap()], &[])
                .await;
            assert!(!again.status.success());
            assert!(
                stderr(&again).contains("already exists"),
                "{}",
                stderr(&again)
            );
            to
        }
        Db::Postgres => {
            let to = env.dir.path().join("rekey-backup.sql");
            let url = env.pg.as_ref().unwrap().url();
            run_ok(
                "pg_dump",
                &[
                    "--no-owner",
                    "--no-privileges",
                    "--file",
                    to.to_str().unwrap(),
                    &url,
                ],
            )
            .await;
            // `rekey admin backup` is for SQLite and says what to use instead.
            let out = env
                .run(&["admin", "backup", "--to", "/nonexistent/x.db"], &[])
                .await;
            assert!(!out.status.success());
            assert!(stderr(&out).contains("pg_dump"), "{}", stderr(&out));
            to
        }
    }
}

/// A fresh data dir (and database) holding the backup, without any keyring.
async fn restore(db: Db, backup: &Path) -> Env {
    let fresh = Env::new(db).await;
    match db {
        Db::Sqlite => {
            std::fs::create_dir_all(fresh.data_dir()).unwrap();
            std::fs::set_permissions(fresh.data_dir(), std::fs::Permissions::from_mode(0o700))
                .unwrap();
            let to = fresh.data_dir().join("rekey.db");
            std::fs::copy(backup, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Db::Postgres => {
            let url = fresh.pg.as_ref().unwrap().url();
            run_ok(
                "psql",
                &[
                    "--quiet",
                    "--no-psqlrc",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "--file",
                    backup.to_str().unwrap(),
                    &url,
                ],
            )
            .await;
        }
    }
    assert!(!fresh.data_dir().join("keyring.json").exists());
    fresh
}

async fn backup_is_useless_without_the_keyring_and_complete_with_it(db: Db) {
    const N: usize = 3;
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let server = env.serve().await;
    let ids = create_conns(&server.base, &key, N, secret).await;
    let backup = back_up(&env, db).await;
    server.stop().await;
    let kek = keyring_json(&env.data_dir())["primary"]
        .as_str()
        .unwrap()
        .to_string();
    assert_no_secret("the backup", &std::fs::read(&backup).unwrap(), N);

    let fresh = restore(db, &backup).await;
    // Without the keyring: start-up refuses, naming the KEK it lacks; so do
    // offline commands. Nothing is printed that looks like a secret.
    let refused = |out: &std::process::Output, what: &str| {
        assert!(!out.status.success(), "{what} started without the keyring");
        let err = stderr(out);
        assert!(
            err.contains("key-encryption keys this keyring lacks") && err.contains(&kek),
            "{what}: {err}"
        );
        assert_no_secret(what, &out.stdout, N);
        assert_no_secret(what, &out.stderr, N);
    };
    let out = fresh.run(&["serve", "--listen", "127.0.0.1:0"], &[]).await;
    refused(&out, "serve without keyring.json");
    assert!(
        !fresh.data_dir().join("keyring.json").exists(),
        "a refused start must not leave a new keyring behind"
    );
    let out = fresh.run(&["keys", "status"], &[]).await;
    refused(&out, "keys status without keyring.json");
    let other_master_key = "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";
    let out = fresh
        .run(
            &["serve", "--listen", "127.0.0.1:0"],
            &[("REKEY_MASTER_KEY", other_master_key)],
        )
        .await;
    refused(&out, "serve with another master key");

    // A keyring that claims the right KEK id but holds other key bytes gets
    // past the check, and every read fails closed: an error, never bytes.
    let mut forged = keyring_json(&env.data_dir());
    forged["keys"][0]["key"] = json!("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    write_keyring(&fresh.data_dir(), &forged);
    let server = fresh.serve().await;
    for id in &ids {
        let (status, body) = read_credentials(&server.base, &key, id).await;
        assert!(status >= 500, "{id}: {status} {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
        assert!(body.get("credentials").is_none(), "{body}");
        assert_no_secret("a failed read", body.to_string().as_bytes(), N);
    }
    server.stop().await;

    // With the keyring: everything reads back identical, and the audit
    // chain came along intact.
    write_keyring(&fresh.data_dir(), &keyring_json(&env.data_dir()));
    let server = fresh.serve().await;
    for (i, id) in ids.iter().enumerate() {
        let (status, body) = read_credentials(&server.base, &key, id).await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(body["credentials"]["headers"]["X-A"], secret(i, "a"));
        assert_eq!(body["credentials"]["headers"]["X-B"], secret(i, "b"));
    }
    server.stop().await;
    let out = fresh.run(&["audit", "verify", "--offline"], &[]).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}
