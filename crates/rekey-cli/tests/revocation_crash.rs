//! A crash between a revocation and its verification loses neither: the
//! real binary is started with `REKEY_FAULT_AFTER=revoked` (debug builds
//! abort once the revocation is committed, before rekey tries the old
//! credential), then started again without it. The worker then tries the
//! old key at the provider (the fixture API, which refuses it) and records
//! the verdict. On SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Env;
use rekey_client::api::ConfirmRevocation;
use rekey_client::Client;
use rekey_testkit::provider_fixture::ProviderFixture;
use rekey_testkit::Db;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn verification_happens_after_a_crash_on_sqlite() {
    crash_then_verify(Db::Sqlite).await;
}

#[tokio::test]
async fn verification_happens_after_a_crash_on_postgres() {
    crash_then_verify(Db::Postgres).await;
}

async fn crash_then_verify(db: Db) {
    let env = Env::new(db).await;
    let key = env.admin_key("default", "admin").await;
    let fx = ProviderFixture::start().await;
    // The provider already refuses the old key: the operator did revoke it.
    fx.set_valid_credential(Some("Bearer the-new-key"));

    let mut cmd = env.serve_command(&["--worker-tick-ms", "100"], None);
    cmd.env("REKEY_FAULT_AFTER", "revoked");
    let mut server = common::start_server(cmd).await;
    let c = Client::new(&server.base, key.clone()).unwrap();
    let conn = json!({"provider": "custom-rest", "kind": "api_key", "display_name": "crash key",
        "probe_url": fx.rest_url(),
        "credentials": {"key": "old-key-1", "placement": "header", "name": "Authorization", "prefix": "Bearer "}});
    let id = c
        .create_connection(&serde_json::from_value(conn).unwrap())
        .await
        .unwrap()
        .id;
    let r = c.revoke_connection(&id).await.unwrap();
    assert_eq!(r.connection.status, "revoke_pending");
    // Confirming the last step commits the revocation, then the fault hits.
    let _ = c
        .confirm_revocation(
            &id,
            &ConfirmRevocation {
                note: Some("INC-1".into()),
                step: Some(1),
            },
        )
        .await;
    server.aborted(Duration::from_secs(30), "revoked").await;
    for _ in 0..50 {
        if server.logs().contains("REKEY_FAULT_AFTER=revoked") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(
        server.logs().contains("REKEY_FAULT_AFTER=revoked"),
        "{}",
        server.logs()
    );

    let server = env.serve_with(&["--worker-tick-ms", "100"], None).await;
    let c = Client::new(&server.base, key).unwrap();
    let mut rev = None;
    // The worker steps in 5 s after the revocation; on PostgreSQL a lease
    // the crashed server's worker may have taken lapses after 2 minutes.
    for _ in 0..1500 {
        let list = c.list_revocations(&id).await.unwrap();
        assert_eq!(list.items.len(), 1, "one revocation, not lost: {list:?}");
        if list.items[0].verdict.is_some() {
            rev = Some(list.items[0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rev = rev.unwrap_or_else(|| {
        panic!(
            "the worker did not verify the revocation after the restart: {}",
            server.logs()
        )
    });
    assert_eq!(rev.state, "revoked");
    assert_eq!(rev.verdict.as_deref(), Some("verified_rejected"), "{rev:?}");
    assert_eq!(rev.steps[0].note.as_deref(), Some("INC-1"));
    assert_eq!(rev.checks[0].http_status, Some(401));
    assert!(rev.next_verification_at.is_none());
    let conn = c.get_connection(&id).await.unwrap();
    assert_eq!(conn.status, "revoked");
    // The worker, not the crashed request, recorded it.
    let audit = c
        .list_audit(&rekey_client::api::AuditQuery {
            action: Some("revocation.verified".into()),
            target: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.items.len(), 1);
    assert_eq!(audit.items[0].actor, "system:revocation");
    server.stop().await;
    fx.stop().await;
}
