//! The typed client against the real router on an ephemeral port, on SQLite
//! and PostgreSQL: every operation once, and API errors surfacing with their
//! code and status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_client::api::*;
use rekey_client::{Client, ClientError, ProviderFilter};
use rekey_testkit::webhook_receiver::WebhookReceiver;
use rekey_testkit::{assert_api_error, both_backends, Db, TestServer};
use serde_json::json;

both_backends!(
    connections_round_trip,
    integrations_and_connect_sessions,
    webhooks_and_deliveries,
    keys_audit_catalog_and_system,
    api_errors_carry_code_and_status,
);

fn api_key_conn(secret: &str, tags: &[&str]) -> CreateConnection {
    CreateConnection {
        provider: "custom-rest".into(),
        kind: "api_key".into(),
        display_name: "Client API".into(),
        owner: Some(OwnerView {
            subject: None,
            email: Some("ana@example.com".into()),
            name: None,
        }),
        scopes: vec![],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        custody: vec!["salesforce".into()],
        expires_at: None,
        params: Default::default(),
        probe_url: None,
        credentials: json!({"key": secret, "placement": "header", "name": "X-Api-Key"}),
    }
}

/// The API's error, or a panic naming what came instead (for the checks
/// that [`assert_api_error`] does not make: a range of statuses, a code's
/// suffix).
fn api_error<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => {
            assert!(!message.is_empty());
            (status, code)
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn connections_round_trip(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);

    let created = c
        .create_connection(&api_key_conn("sk-client-one", &["prod"]))
        .await
        .unwrap();
    assert_eq!(created.status, "pending");
    assert_eq!(created.version, 1);
    assert_eq!(created.custody, ["salesforce"]);
    let id = created.id.clone();
    let got = c.get_connection(&id).await.unwrap();
    assert_eq!(got.display_name, "Client API");
    assert_eq!(got.owner.email.as_deref(), Some("ana@example.com"));
    assert_eq!(got.credential["name"], "X-Api-Key");

    // Filters and pagination.
    let other = c
        .create_connection(&api_key_conn("sk-client-two", &["prod", "crm"]))
        .await
        .unwrap();
    c.create_connection(&api_key_conn("sk-client-three", &["dev"]))
        .await
        .unwrap();
    let q = ConnectionQuery {
        tag: Some("prod".into()),
        limit: Some(1),
        ..Default::default()
    };
    let page = c.list_connections(&q).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next_cursor.is_some());
    let all = c.list_all_connections(q).await.unwrap();
    let mut ids: Vec<&str> = all.iter().map(|v| v.id.as_str()).collect();
    ids.sort();
    let mut want = vec![id.as_str(), other.id.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let crm = c
        .list_connections(&ConnectionQuery {
            tag: Some("crm".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(crm.items.len(), 1);
    assert_eq!(crm.items[0].id, other.id);

    // PATCH with If-Match; a stale version is a conflict.
    let renamed = UpdateConnection {
        display_name: Some("Renamed".into()),
        ..Default::default()
    };
    let v = c.update_connection(&id, &renamed, Some(1)).await.unwrap();
    assert_eq!((v.display_name.as_str(), v.version), ("Renamed", 2));
    assert_api_error(
        c.update_connection(&id, &renamed, Some(1)).await,
        409,
        "version_conflict",
    );

    // Credentials: read (redacted Debug), replace, read again.
    let cr = c.read_credentials(&id).await.unwrap();
    assert_eq!(cr.credentials["key"], "sk-client-one");
    assert_eq!(
        cr.credentials["apply"]["headers"]["X-Api-Key"],
        "sk-client-one"
    );
    assert!(!format!("{cr:?}").contains("sk-client"));
    let replace = UpdateCredentials {
        credentials: json!({"key": "sk-client-new", "placement": "header", "name": "X-Api-Key"}),
        version: None,
        grace: None,
    };
    assert!(!format!("{replace:?}").contains("sk-client"));
    let v = c.replace_credentials(&id, &replace, Some(2)).await.unwrap();
    assert_eq!(v.version, 3);
    assert!(v.rotated_at.is_some());
    let cr = c.read_credentials(&id).await.unwrap();
    assert_eq!(cr.credentials["key"], "sk-client-new");

    // Disable / enable.
    let v = c
        .disable_connection(
            &id,
            &DisableConnection {
                reason: Some("breach response".into()),
                version: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(v.status, "disabled");
    assert_api_error(c.read_credentials(&id).await, 409, "connection_unusable");
    let v = c.enable_connection(&id, Some(v.version)).await.unwrap();
    assert_eq!(v.status, "pending");
    assert_api_error(c.enable_connection(&id, None).await, 409, "not_disabled");

    // Check: no probe for a plain custom API, so it is skipped.
    let r = c.check_connection(&id).await.unwrap();
    assert_eq!(r.connection_id, id);
    assert_eq!(r.outcome, "skipped");
    assert_eq!(r.status, "pending");
    let unchecked = r.connection.health.unchecked.clone().unwrap();
    assert_eq!(unchecked.message, UNCHECKED_MESSAGE);
    // So an operator confirms its data flows: pending → active, recorded.
    let v = c
        .confirm_working(
            &id,
            &ConfirmWorking {
                note: Some("rows arrived".into()),
                version: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(v.status, "active");
    let conf = v.health.confirmation.unwrap();
    assert_eq!(conf.note.as_deref(), Some("rows arrived"));

    // Reauthorizing a key-based connection is a key form for its owner;
    // there is no parked OAuth grant to accept.
    let r = c.reauthorize_connection(&id, false).await.unwrap();
    let sess = r.session.unwrap();
    assert_eq!(sess.reauthorize.as_deref(), Some(id.as_str()));
    assert_api_error(c.reauthorize_connection(&id, true).await, 422, "not_oauth");

    // Refresh is for OAuth connections only.
    let (status, _) = api_error(c.refresh_connection(&id).await);
    assert!((400..500).contains(&status));

    // A key-based connection has no revocation API: revoke_pending, then confirm.
    let r = c.revoke_connection(&id).await.unwrap();
    assert!(!r.revoked_at_provider);
    assert_eq!(r.connection.status, "revoke_pending");
    let v = c
        .confirm_revocation(&id, &Default::default())
        .await
        .unwrap();
    assert_eq!(v.status, "revoked");

    // Delete; afterwards it is gone.
    c.delete_connection(
        &other.id,
        &DeleteQuery {
            revoke: Some(false),
        },
        None,
    )
    .await
    .unwrap();
    assert_api_error(
        c.get_connection(&other.id).await,
        404,
        "connection_not_found",
    );
    let actions: Vec<String> = c
        .list_audit(&AuditQuery {
            target: Some(other.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"connection.delete".to_string()),
        "{actions:?}"
    );
    s.stop().await;
}

async fn integrations_and_connect_sessions(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let base = "http://127.0.0.1:9";
    let req: CreateIntegration = serde_json::from_value(json!({
        "provider": "custom-oauth2", "display_name": "Acme CRM", "client_id": "client-1",
        "client_secret": "integration-secret-canary", "scopes": ["read"],
        "endpoints": {"authorize_url": format!("{base}/authorize"), "token_url": format!("{base}/token"),
                      "revocation_url": format!("{base}/revoke"), "identity_url": format!("{base}/me")},
    }))
    .unwrap();
    assert!(!format!("{req:?}").contains("canary"));
    let integ = c.create_integration(&req).await.unwrap();
    assert_eq!(integ.client_id, "client-1");
    assert_eq!(integ.version, 1);
    let list = c.list_integrations(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let tagged = |tag: &str| IntegrationQuery {
        tag: Some(tag.into()),
        ..Default::default()
    };
    assert!(c
        .list_integrations(&tagged("crm"))
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(!serde_json::to_string(&list).unwrap().contains("canary"));
    assert_eq!(
        c.get_integration(&integ.id).await.unwrap().display_name,
        "Acme CRM"
    );
    let v = c
        .update_integration(
            &integ.id,
            &UpdateIntegration {
                display_name: Some("Acme".into()),
                tags: Some(vec!["crm".into()]),
                custody: Some(vec!["salesforce".into()]),
                ..Default::default()
            },
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!((v.display_name.as_str(), v.version), ("Acme", 2));
    assert_eq!(
        (v.tags.clone(), v.custody.clone()),
        (vec!["crm".to_string()], vec!["salesforce".to_string()])
    );
    let found = c.list_integrations(&tagged("crm")).await.unwrap();
    assert_eq!(found.items.len(), 1);

    // A connect link through the integration; the token stays out of Debug.
    let sess = c
        .create_connect_session(&CreateConnectSession {
            integration: Some(integ.id.clone()),
            owner_hint: Some("ana@example.com".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(sess.url.starts_with(&s.base) && sess.url.contains(&sess.token));
    assert_eq!(sess.integration.as_deref(), Some(integ.id.as_str()));
    assert!(!format!("{sess:?}").contains(&sess.token));
    // And one for a key form.
    let sess = c
        .create_connect_session(&CreateConnectSession {
            provider: Some("custom-rest".into()),
            kind: Some("api_key".into()),
            display_name: Some("Typed in".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sess.kind, "api_key");

    c.delete_integration(&integ.id).await.unwrap();
    let (status, code) = api_error(c.get_integration(&integ.id).await);
    assert_eq!(status, 404);
    assert!(code.ends_with("not_found"), "{code}");
    s.stop().await;
}

async fn webhooks_and_deliveries(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);
    let rx = WebhookReceiver::start(0).await;
    let created = c
        .create_webhook(&CreateWebhook {
            url: rx.url(),
            events: vec!["connection.*".into()],
            description: Some("client test".into()),
        })
        .await
        .unwrap();
    assert!(created.secret.starts_with("whsec_"));
    assert!(!format!("{created:?}").contains(&created.secret));
    let id = created.webhook.id.clone();
    let all = c.list_all_webhooks().await.unwrap();
    assert_eq!(all.len(), 1);
    let page = c
        .list_webhooks(&WebhookQuery {
            limit: Some(1),
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(page.items[0].id, id);
    assert_eq!(c.get_webhook(&id).await.unwrap().url, rx.url());
    let paused = c
        .update_webhook(
            &id,
            &UpdateWebhook {
                enabled: Some(false),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert!(!paused.enabled);
    let resumed = c
        .update_webhook(
            &id,
            &UpdateWebhook {
                enabled: Some(true),
                ..Default::default()
            },
            Some(paused.version),
        )
        .await
        .unwrap();
    assert!(resumed.enabled);

    let rotated = c.rotate_webhook_secret(&id).await.unwrap();
    assert_ne!(rotated.secret, created.secret);

    // A test event: queued, delivered by a worker pass, listed, replayed.
    let d = c.test_webhook(&id).await.unwrap();
    assert_eq!(
        (d.status.as_str(), d.event_type.as_str()),
        ("pending", "webhook.test")
    );
    s.rekey.deliver_due("client-test", 10).await.unwrap();
    let delivered = c.get_delivery(&id, &d.id).await.unwrap();
    assert_eq!(delivered.status, "delivered");
    assert_eq!(delivered.attempt_log.as_ref().map(Vec::len), Some(1));
    let l = c
        .list_deliveries(
            &id,
            &DeliveryQuery {
                status: Some("delivered".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    let again = c.replay_delivery(&id, &d.id).await.unwrap();
    assert_eq!(again.status, "pending");
    assert_eq!(again.event_id, d.event_id);
    let (status, code) = api_error(
        c.get_delivery(&id, "dlv_00000000000000000000000000000000")
            .await,
    );
    assert_eq!(status, 404, "{code}");

    c.delete_webhook(&id).await.unwrap();
    assert_api_error(c.get_webhook(&id).await, 404, "webhook_not_found");
    rx.stop().await;
    s.stop().await;
}

async fn keys_audit_catalog_and_system(db: Db) {
    let s = TestServer::start(db).await;
    let c = s.client(&s.admin_key);

    // API keys: the key is shown once, and stops working when revoked.
    let created = c
        .create_api_key(&CreateApiKey {
            name: "ci-reader".into(),
            scopes: vec!["connections:read".into()],
        })
        .await
        .unwrap();
    assert!(created.key.starts_with("rk_"));
    assert!(!format!("{created:?}").contains(&created.key));
    let reader = c.with_token(created.key.as_str());
    assert!(reader.list_connections(&Default::default()).await.is_ok());
    assert_api_error(reader.list_api_keys().await, 403, "missing_scope");
    let keys = c.list_api_keys().await.unwrap();
    assert_eq!(keys.items.len(), 2);
    let revoked = c.revoke_api_key(&created.api_key.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_api_error(
        c.revoke_api_key(&created.api_key.id).await,
        409,
        "already_revoked",
    );
    assert_api_error(
        reader.list_connections(&Default::default()).await,
        401,
        "unauthorized",
    );

    // Audit: filtered, paged, verified.
    let list = c
        .list_audit(&AuditQuery {
            action: Some("api_key.create".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!list.items.is_empty());
    assert!(list.items.iter().all(|e| e.action == "api_key.create"));
    let all = c
        .list_all_audit(AuditQuery {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.len() >= 3, "{}", all.len());
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    let report = c.verify_audit(false).await.unwrap();
    assert!(report.ok, "{}", report.message);
    assert_eq!(report.checked, all.len() as u64);

    // The catalog.
    let providers = c.list_providers(&ProviderFilter::default()).await.unwrap();
    assert!(providers.items.iter().any(|p| p.id == "custom-rest"));
    let oauth = c
        .list_providers(&ProviderFilter {
            auth_kind: Some("oauth2_authorization_code".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!oauth.items.is_empty() && oauth.items.len() < providers.items.len());
    assert!(oauth.items.iter().all(|p| p
        .auth_kinds
        .iter()
        .any(|k| k == "oauth2_authorization_code")));
    assert_eq!(
        c.get_provider("custom-rest").await.unwrap().id,
        "custom-rest"
    );
    assert_api_error(
        c.get_provider("no-such-provider").await,
        404,
        "provider_not_found",
    );

    // System endpoints.
    assert_eq!(c.healthz().await.unwrap().status, "ok");
    assert_eq!(c.readyz().await.unwrap().status, "ready");
    let metrics = c.metrics().await.unwrap();
    assert!(metrics.contains("rekey_http_requests_total"), "{metrics}");
    let doc = c.openapi().await.unwrap();
    assert!(doc["paths"]["/api/v1/connections"].is_object());
    s.stop().await;
}

async fn api_errors_carry_code_and_status(db: Db) {
    let s = TestServer::start(db).await;
    let err = s
        .client(&s.admin_key)
        .get_connection("con_00000000000000000000000000000000")
        .await
        .unwrap_err();
    // The same line the CLI prints after `error: `.
    assert_eq!(
        err.to_string(),
        "connection_not_found (404): connection con_00000000000000000000000000000000 not found"
    );
    assert_eq!(err.code(), Some("connection_not_found"));
    assert_eq!(err.status(), Some(404));

    assert_api_error(
        s.client(&s.admin_key).get_connection("not an id/..").await,
        400,
        "invalid_id",
    );

    // A wrong key: 401, and neither the key nor a credential shows in the error.
    let wrong = s.client("rk_wrong-key-canary");
    let err = wrong
        .create_connection(&api_key_conn("sk-error-canary", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(401), Some("unauthorized"))
    );
    for text in [format!("{err}"), format!("{err:?}"), format!("{wrong:?}")] {
        assert!(!text.contains("canary"), "{text}");
    }

    // Validation errors come back as such, with the server's code.
    let mut bad = api_key_conn("sk-error-canary", &[]);
    bad.kind = "no_such_kind".into();
    let err = s
        .client(&s.admin_key)
        .create_connection(&bad)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(!format!("{err} {err:?}").contains("canary"));
    s.stop().await;
}

/// Nothing listens: a transport error naming the server, no status or code.
#[tokio::test]
async fn unreachable_server_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let c = Client::new(&format!("{base}/"), "rk_unreachable-canary").unwrap();
    let err = c.healthz().await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot reach {base}"));
    assert_eq!((err.status(), err.code()), (None, None));
    assert!(!format!("{err:?}").contains("canary"));
}

/// Every JSON operation in the OpenAPI document has its method here (the
/// table names it; the tests above call each one). The HTML routes of the
/// Connect page and the OAuth callback are for browsers, not this client.
#[tokio::test]
async fn every_api_operation_has_a_client_method() {
    // "method path: the client methods that call it"
    let covered = [
        "get /healthz: healthz",
        "get /readyz: readyz",
        "get /metrics: metrics",
        "get /api/v1/providers: list_providers",
        "get /api/v1/providers/{id}: get_provider",
        "get /api/v1/connections: list_connections, list_all_connections",
        "post /api/v1/connections: create_connection",
        "post /api/v1/connections/import: import_connections",
        "get /api/v1/connections/{id}: get_connection",
        "patch /api/v1/connections/{id}: update_connection",
        "delete /api/v1/connections/{id}: delete_connection",
        "get /api/v1/connections/{id}/credentials: read_credentials, read_credentials_version",
        "put /api/v1/connections/{id}/credentials: replace_credentials",
        "post /api/v1/connections/{id}/disable: disable_connection",
        "post /api/v1/connections/{id}/enable: enable_connection",
        "post /api/v1/connections/{id}/revoke: revoke_connection",
        "post /api/v1/connections/{id}/revoke/confirm: confirm_revocation",
        "post /api/v1/connections/{id}/revoke/verify: verify_revocation",
        "get /api/v1/connections/{id}/revocations: list_revocations",
        "get /api/v1/connections/{id}/readers: list_readers",
        "post /api/v1/connections/{id}/reauthorize: reauthorize_connection",
        "post /api/v1/connections/{id}/refresh: refresh_connection",
        "post /api/v1/connections/{id}/check: check_connection",
        "post /api/v1/connections/{id}/confirm-working: confirm_working",
        "get /api/v1/connections/{id}/versions: list_versions",
        "post /api/v1/connections/{id}/rotate: start_rotation",
        "get /api/v1/rotations: list_rotations",
        "get /api/v1/rotations/{id}: get_rotation",
        "post /api/v1/rotations/{id}/confirm: confirm_rotation",
        "post /api/v1/rotations/{id}/cancel: cancel_rotation",
        "put /api/v1/connections/{id}/rotation-schedule: set_rotation_schedule",
        "get /api/v1/connections/{id}/rotation-schedule: get_rotation_schedule",
        "delete /api/v1/connections/{id}/rotation-schedule: delete_rotation_schedule",
        "get /api/v1/api-keys: list_api_keys",
        "post /api/v1/api-keys: create_api_key",
        "delete /api/v1/api-keys/{id}: revoke_api_key",
        "post /api/v1/api-keys/{id}/rotate: rotate_api_key",
        "get /api/v1/audit: list_audit, list_all_audit",
        "get /api/v1/audit/verify: verify_audit",
        "get /api/v1/evidence: export_evidence",
        "post /api/v1/campaigns: create_campaign",
        "get /api/v1/campaigns: list_campaigns",
        "get /api/v1/campaigns/{id}: get_campaign",
        "get /api/v1/campaigns/{id}/plan: campaign_plan",
        "post /api/v1/campaigns/{id}/start: campaign_control",
        "post /api/v1/campaigns/{id}/pause: campaign_control",
        "post /api/v1/campaigns/{id}/resume: campaign_control",
        "post /api/v1/campaigns/{id}/cancel: campaign_control",
        "post /api/v1/campaigns/{id}/refresh-plan: refresh_campaign_plan",
        "post /api/v1/campaigns/{id}/items/{connection_id}/confirm: confirm_campaign_item",
        "post /api/v1/campaigns/{id}/items/{connection_id}/skip: skip_campaign_item",
        "get /api/v1/campaigns/{id}/links: campaign_links",
        "post /api/v1/campaigns/{id}/links/{connection_id}: campaign_link",
        "delete /api/v1/campaigns/{id}/links/{connection_id}: campaign_link",
        "get /api/v1/evidence/{id}: get_evidence",
        "get /api/v1/integrations: list_integrations",
        "post /api/v1/integrations: create_integration",
        "get /api/v1/integrations/{id}: get_integration",
        "patch /api/v1/integrations/{id}: update_integration",
        "delete /api/v1/integrations/{id}: delete_integration",
        "post /api/v1/integrations/{id}/rotate-secret: rotate_client_secret",
        "delete /api/v1/integrations/{id}/rotate-secret: discard_client_secret",
        "get /api/v1/integrations/{id}/rotate-secret: pending_client_key",
        "post /api/v1/integrations/{id}/rotate-secret/confirm: confirm_client_secret",
        "post /api/v1/connect-sessions: create_connect_session",
        "get /api/v1/webhooks: list_webhooks, list_all_webhooks",
        "post /api/v1/webhooks: create_webhook",
        "get /api/v1/webhooks/{id}: get_webhook",
        "patch /api/v1/webhooks/{id}: update_webhook",
        "delete /api/v1/webhooks/{id}: delete_webhook",
        "post /api/v1/webhooks/{id}/rotate-secret: rotate_webhook_secret",
        "post /api/v1/webhooks/{id}/test: test_webhook",
        "get /api/v1/webhooks/{id}/deliveries: list_deliveries",
        "get /api/v1/webhooks/{id}/deliveries/{delivery_id}: get_delivery",
        "post /api/v1/webhooks/{id}/deliveries/{delivery_id}/replay: replay_delivery",
    ];
    let s = TestServer::start(Db::Sqlite).await;
    let doc = s.client(&s.admin_key).openapi().await.unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if path.starts_with("/connect/")
            || path == "/oauth/callback"
            || path.starts_with("/assets/")
        {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut have: Vec<(String, String)> = covered
        .iter()
        .map(|entry| {
            let (route, _methods) = entry.split_once(": ").unwrap();
            let (m, p) = route.split_once(' ').unwrap();
            (m.to_string(), p.to_string())
        })
        .collect();
    have.sort();
    assert_eq!(
        documented, have,
        "an API operation without a client method (or a stale entry)"
    );
    s.stop().await;
}
