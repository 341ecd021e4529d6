//! Integrations (OAuth app registrations) carry tags and custody places like
//! connections: validated alike, set on create and update, shown in views,
//! filtered in the list with the connection list's query parameters, audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::{both_backends, items, Db, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

both_backends!(integrations_carry_tags_and_custody);

fn body(name: &str, extra: Value) -> Value {
    let base = "http://127.0.0.1:9";
    let mut b = json!({"provider": "custom-oauth2", "display_name": name, "client_id": format!("{name}-client"),
        "client_secret": "integration-secret-0123456789",
        "endpoints": {"authorize_url": format!("{base}/authorize"), "token_url": format!("{base}/token"),
                      "revocation_url": format!("{base}/revoke"), "identity_url": format!("{base}/me")}});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn ids(list: &Value) -> Vec<String> {
    items(list)
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

async fn integrations_carry_tags_and_custody(db: Db) {
    let s = TestServer::start(db).await;
    let k = &s.admin_key;
    let r = s
        .post(
            "/api/v1/integrations",
            k,
            body(
                "crm",
                json!({"tags": ["prod", "crm", "prod"], "custody": ["salesforce"]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let crm = r.json();
    // Normalised as a connection's: sorted, unique.
    assert_eq!(crm["tags"], json!(["crm", "prod"]));
    assert_eq!(crm["custody"], json!(["salesforce"]));
    let crm_id = crm["id"].as_str().unwrap().to_string();
    let r = s
        .post("/api/v1/integrations", k, body("erp", json!({})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let erp = r.json();
    assert_eq!(
        (erp["tags"].clone(), erp["custody"].clone()),
        (json!([]), json!([]))
    );
    let erp_id = erp["id"].as_str().unwrap().to_string();

    // Bad values are refused with the JSON error, nothing stored.
    for bad in [
        json!({"tags": ["Not A Slug"]}),
        json!({"custody": ["stored in salesforce!"]}),
        json!({"tags": [""]}),
        json!({"custody": (0..65).map(|i| format!("p{i}")).collect::<Vec<_>>()}),
    ] {
        s.post("/api/v1/integrations", k, body("bad", bad.clone()))
            .await
            .assert_error(400, "invalid_field");
        s.patch(&format!("/api/v1/integrations/{erp_id}"), k, bad)
            .await
            .assert_error(400, "invalid_field");
    }
    s.post(
        "/api/v1/integrations",
        k,
        body("bad", json!({"tags": "crm"})),
    )
    .await
    .assert_error(400, "invalid_body");
    assert_eq!(ids(&s.get("/api/v1/integrations", k).await.json()).len(), 2);

    // Update: lists replace, left out stay.
    let r = s
        .patch(
            &format!("/api/v1/integrations/{erp_id}"),
            k,
            json!({"custody": ["vault", "salesforce"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["custody"], json!(["salesforce", "vault"]));
    let r = s
        .patch(
            &format!("/api/v1/integrations/{crm_id}"),
            k,
            json!({"display_name": "CRM app"}),
        )
        .await
        .json();
    assert_eq!(r["tags"], json!(["crm", "prod"]), "{r}");
    assert_eq!(
        s.get(&format!("/api/v1/integrations/{crm_id}"), k)
            .await
            .json()["custody"],
        json!(["salesforce"])
    );

    // Filters, as on /connections: a breach at Salesforce finds both secrets.
    let q = |query: &str| {
        let s = &s;
        let query = query.to_string();
        async move { s.get_admin(&format!("/api/v1/integrations?{query}")).await }
    };
    let mut both = vec![crm_id.clone(), erp_id.clone()];
    both.sort();
    assert_eq!(ids(&q("custody=salesforce").await.json()), both);
    assert_eq!(ids(&q("custody=vault").await.json()), vec![erp_id.clone()]);
    assert_eq!(ids(&q("tag=crm").await.json()), vec![crm_id.clone()]);
    assert_eq!(
        ids(&q("tag=crm&custody=vault").await.json()),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&q("provider=custom-oauth2&tag=prod").await.json()),
        vec![crm_id.clone()]
    );
    q("tag=Not%20A%20Slug")
        .await
        .assert_error(400, "invalid_field");
    q("custody=").await.assert_error(400, "invalid_field");
    q("owner=x").await.assert_error(400, "invalid_query");

    // Audited with the labels.
    let a = s
        .get(
            &format!("/api/v1/audit?target={erp_id}&action=integration.update"),
            k,
        )
        .await
        .json();
    assert_eq!(
        a["items"][0]["details"]["custody"],
        json!(["salesforce", "vault"]),
        "{a}"
    );
    s.stop().await;
}
