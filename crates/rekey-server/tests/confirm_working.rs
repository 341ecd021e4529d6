//! Connections no probe can check: the check says so ("cannot be checked
//! automatically: confirm data flows") instead of leaving them pending
//! without a word, and an operator confirms that data flows
//! (`POST /connections/{id}/confirm-working`): pending → active, audited,
//! emitted as a status change; refused where it would contradict a probe.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ui_support;

use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

both_backends!(
    unprobed_connection_says_so_and_is_confirmed,
    confirmation_is_refused_where_it_would_contradict,
    dashboard_connection_page_confirms,
    dashboard_confirms_a_manual_revocation
);

async fn audit_of(s: &TestServer, id: &str, action: &str) -> Vec<Value> {
    let r = s
        .get_admin(&format!("/api/v1/audit?target={id}&action={action}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["items"].as_array().unwrap().clone()
}

async fn unprobed_connection_says_so_and_is_confirmed(db: Db) {
    let s = TestServer::start(db).await;
    // custom-rest has no probe (`probe_unavailable` in the catalog).
    let id = s
        .create_api_key_conn(&s.admin_key, "k-unprobed", json!({}))
        .await;
    let v = s
        .get_admin(&format!("/api/v1/connections/{id}"))
        .await
        .json();
    assert_eq!(v["status"], "pending");
    assert_eq!(
        v["health"]["unchecked"],
        Value::Null,
        "nothing known before a check"
    );

    let r = s
        .act(&format!("/api/v1/connections/{id}/check"))
        .await
        .json();
    assert_eq!(r["outcome"], "skipped", "{r}");
    let u = &r["connection"]["health"]["unchecked"];
    assert_eq!(
        u["message"], "cannot be checked automatically: confirm data flows",
        "{r}"
    );
    assert!(
        u["reason"].as_str().unwrap().contains("no known endpoint"),
        "{r}"
    );
    // Shown on reads and lists too.
    let v = s
        .get_admin(&format!("/api/v1/connections/{id}"))
        .await
        .json();
    assert_eq!(v["health"]["unchecked"], *u);
    let l = s.get_admin("/api/v1/connections").await.json();
    assert_eq!(l["items"][0]["health"]["unchecked"], *u, "{l}");

    // Read-only keys may not confirm; bad notes are refused with the JSON error.
    let reader = s.key("default", &["connections:read"]).await;
    s.post(
        &format!("/api/v1/connections/{id}/confirm-working"),
        &reader,
        json!({}),
    )
    .await
    .assert_error(403, "missing_scope");
    s.post_admin(
        &format!("/api/v1/connections/{id}/confirm-working"),
        json!({"note": "line\nbreak"}),
    )
    .await
    .assert_error(400, "invalid_field");
    s.post_admin(
        &format!("/api/v1/connections/{id}/confirm-working"),
        json!({"nope": 1}),
    )
    .await
    .assert_error(400, "invalid_body");
    s.post_admin(
        &format!("/api/v1/connections/{id}/confirm-working"),
        json!({"version": 99}),
    )
    .await
    .assert_error(409, "version_conflict");

    // An operator confirms: pending → active, with who, when and the note.
    let r = s
        .post_admin(
            &format!("/api/v1/connections/{id}/confirm-working"),
            json!({"note": "rows of the 12:00 sync arrived"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["status"], "active");
    let c = &v["health"]["confirmation"];
    assert_eq!(c["note"], "rows of the 12:00 sync arrived", "{v}");
    assert!(c["by"].as_str().unwrap().starts_with("api_key:"), "{v}");
    assert!(c["at"].as_str().is_some(), "{v}");
    assert_eq!(
        v["health"]["last_ok_at"],
        Value::Null,
        "a confirmation is not a probe result"
    );
    assert_eq!(r.headers["etag"], format!("\"{}\"", v["version"]));
    // Audited: the confirmation and the status change it made.
    let a = audit_of(&s, &id, "connection.confirm_working").await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["details"]["from"], "pending");
    assert_eq!(a[0]["details"]["to"], "active");
    assert_eq!(a[0]["details"]["note"], "rows of the 12:00 sync arrived");
    let sc = audit_of(&s, &id, "connection.status_changed").await;
    assert_eq!(sc.len(), 1, "{sc:?}");
    assert_eq!(sc[0]["details"]["source"], "operator_confirmation");

    // Confirming again keeps `active` and records the newer confirmation only.
    let v = s
        .act(&format!("/api/v1/connections/{id}/confirm-working"))
        .await
        .json();
    assert_eq!(v["status"], "active");
    assert_eq!(v["health"]["confirmation"]["note"], Value::Null);
    assert_eq!(
        audit_of(&s, &id, "connection.status_changed").await.len(),
        1
    );
    assert_eq!(
        audit_of(&s, &id, "connection.confirm_working").await.len(),
        2
    );
    // A later scheduled or manual check (still no probe) leaves it active.
    let r = s
        .act(&format!("/api/v1/connections/{id}/check"))
        .await
        .json();
    assert_eq!(
        (r["outcome"].as_str(), r["status"].as_str()),
        (Some("skipped"), Some("active"))
    );
    assert!(
        r["connection"]["health"]["confirmation"]["at"].is_string(),
        "{r}"
    );
    s.stop().await;
}

async fn confirmation_is_refused_where_it_would_contradict(db: Db) {
    let s = TestServer::start(db).await;
    let confirm = |id: String| {
        let s = &s;
        async move {
            s.act(&format!("/api/v1/connections/{id}/confirm-working"))
                .await
        }
    };
    // A connection a probe checks (a probe URL) is checked, not confirmed.
    let probed = s
        .create_api_key_conn(
            &s.admin_key,
            "k-probed",
            json!({"probe_url": "http://127.0.0.1:9/me"}),
        )
        .await;
    confirm(probed).await.assert_error(409, "probe_available");
    // Out of service, or failing: refused.
    let id = s
        .create_api_key_conn(&s.admin_key, "k-off", json!({}))
        .await;
    let r = s
        .call(
            Method::POST,
            &format!("/api/v1/connections/{id}/disable"),
            &s.admin_key,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    confirm(id.clone())
        .await
        .assert_error(409, "connection_unusable");
    let id = s
        .create_api_key_conn(&s.admin_key, "k-failing", json!({}))
        .await;
    s.sql(&[&format!(
        "UPDATE connections SET status = 'degraded' WHERE id = '{id}'"
    )])
    .await;
    confirm(id).await.assert_error(409, "confirmation_refused");
    confirm(format!("con_{}", "0".repeat(32)))
        .await
        .assert_error(404, "connection_not_found");
    confirm("con_nope".into())
        .await
        .assert_error(400, "invalid_id");
    s.stop().await;
}

async fn page(s: &TestServer, path: &str, cookie: &str) -> String {
    let (status, html) = ui_support::get(s, path, cookie).await;
    assert_eq!(status, StatusCode::OK);
    html
}

/// The connection page says why it cannot be checked and has a button to
/// confirm (operators), which records the confirmation as the API does.
async fn dashboard_connection_page_confirms(db: Db) {
    let s = TestServer::start(db).await;
    let id = s.create_api_key_conn(&s.admin_key, "k-ui", json!({})).await;
    s.act(&format!("/api/v1/connections/{id}/check")).await;
    let (olga, csrf) = ui_support::user(&s, "olga", rekey_service::Role::Operator).await;
    let html = page(&s, &format!("/ui/connections/{id}"), &olga).await;
    assert!(
        html.contains("Cannot be checked automatically: confirm data flows"),
        "{html}"
    );
    assert!(html.contains("Confirm data flows</button>"), "{html}");
    // The tile says so too, instead of "Pending verification".
    let grid = page(&s, "/ui/connections", &olga).await;
    assert!(
        grid.contains("Cannot be checked automatically: confirm data flows")
            && !grid.contains("Pending verification"),
        "{grid}"
    );
    let (vic, vic_csrf) = ui_support::user(&s, "vic", rekey_service::Role::Viewer).await;
    let html = page(&s, &format!("/ui/connections/{id}"), &vic).await;
    assert!(
        !html.contains("Confirm data flows</button>"),
        "viewers have no button"
    );
    let post = |cookie: String, csrf: String| {
        let s = &s;
        let id = id.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{}/ui/connections/{id}/confirm-working", s.base))
                .header("cookie", cookie)
                .header("origin", s.base.clone())
                .form(&[("csrf", csrf.as_str()), ("note", "dashboard saw rows")])
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(vic, vic_csrf).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(olga.clone(), csrf).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = s
        .get_admin(&format!("/api/v1/connections/{id}"))
        .await
        .json();
    assert_eq!(v["status"], "active");
    assert_eq!(v["health"]["confirmation"]["note"], "dashboard saw rows");
    assert!(
        v["health"]["confirmation"]["by"]
            .as_str()
            .unwrap()
            .starts_with("user:"),
        "{v}"
    );
    let html = page(&s, &format!("/ui/connections/{id}"), &olga).await;
    // By name and readable time (id and instant on hover); the note is in
    // the history too.
    assert!(
        html.contains("Confirmed working by <span class=\"actor\" title=\"user:")
            && html.contains(">olga (user)</span> <time datetime="),
        "{html}"
    );
    assert!(
        html.contains("pending → active; note: “dashboard saw rows”"),
        "{html}"
    );
    s.stop().await;
}

/// A connection waiting for manual revocation steps (`revoke_pending`) has
/// "Confirm revocation" (operators) and no Check now / Confirm data flows,
/// which could only fail; the note reaches the audit entry.
async fn dashboard_confirms_a_manual_revocation(db: Db) {
    let s = TestServer::start(db).await;
    let id = s
        .create_api_key_conn(&s.admin_key, "k-rev", json!({}))
        .await;
    s.sql(&[&format!(
        "UPDATE connections SET status = 'revoke_pending' WHERE id = '{id}'"
    )])
    .await;
    let (olga, csrf) = ui_support::user(&s, "olga", rekey_service::Role::Operator).await;
    let html = page(&s, &format!("/ui/connections/{id}"), &olga).await;
    assert!(html.contains("Confirm revocation</button>"), "{html}");
    assert!(
        !html.contains("Confirm data flows</button>") && !html.contains("Check now</button>"),
        "{html}"
    );
    let grid = page(&s, "/ui/connections", &olga).await;
    assert!(
        grid.contains("#manual-revoke\">Confirm revocation</a>")
            && !grid.contains("aria-label=\"Check k-rev now\""),
        "{grid}"
    );
    let (vic, vic_csrf) = ui_support::user(&s, "vic", rekey_service::Role::Viewer).await;
    let html = page(&s, &format!("/ui/connections/{id}"), &vic).await;
    assert!(!html.contains("Confirm revocation</button>"), "{html}");
    let post = |cookie: String, form: Vec<(&'static str, String)>| {
        let s = &s;
        let id = id.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{}/ui/connections/{id}/confirm-revocation", s.base))
                .header("cookie", cookie)
                .header("origin", s.base.clone())
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let note = ("note", "TICKET-42 app deleted".to_string());
    assert_eq!(
        post(vic, vec![("csrf", vic_csrf), note.clone()]).await,
        StatusCode::FORBIDDEN
    );
    assert_ne!(
        post(olga.clone(), vec![note.clone()]).await,
        StatusCode::OK,
        "no CSRF token"
    );
    assert_ne!(
        post(olga.clone(), vec![("csrf", "x".into()), note.clone()]).await,
        StatusCode::OK,
        "wrong CSRF token"
    );
    let v = s
        .get_admin(&format!("/api/v1/connections/{id}"))
        .await
        .json();
    assert_eq!(v["status"], "revoke_pending");
    assert_eq!(
        post(olga.clone(), vec![("csrf", csrf), note]).await,
        StatusCode::OK
    );
    let v = s
        .get_admin(&format!("/api/v1/connections/{id}"))
        .await
        .json();
    assert_eq!(v["status"], "revoked");
    let a = audit_of(&s, &id, "connection.revoked").await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["details"]["note"], "TICKET-42 app deleted");
    assert!(
        a[0]["actor"].as_str().unwrap().starts_with("user:"),
        "{a:?}"
    );
    let html = page(&s, &format!("/ui/connections/{id}"), &olga).await;
    assert!(
        !html.contains("Confirm revocation</button>") && !html.contains("Check now</button>"),
        "{html}"
    );
    // The evidence is shown: on the connection's history and the audit page.
    assert!(
        html.contains("revoke_pending → revoked; note: “TICKET-42 app deleted”"),
        "{html}"
    );
    let (ada, _) = ui_support::user(&s, "ada", rekey_service::Role::Admin).await;
    let html = page(&s, "/ui/audit?action=connection.revoked", &ada).await;
    assert!(
        html.contains("revoke_pending → revoked; note: “TICKET-42 app deleted”"),
        "{html}"
    );
    s.stop().await;
}
