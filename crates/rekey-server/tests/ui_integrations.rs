//! The integrations (OAuth apps) page over real HTTP: tags, custody and the
//! provider's URL parameters on the register form and the cards, the tag
//! and custody filters, and refusals that lead back to this page.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ui_support;
use ui_support::*;

use rekey_service::Role;
use rekey_testkit::{both_backends, Db, TestServer};
use reqwest::StatusCode;

both_backends!(salesforce_app_registers_with_params_tags_and_custody);

async fn salesforce_app_registers_with_params_tags_and_custody(db: Db) {
    let s = TestServer::start(db).await;
    let (ada, csrf) = user(&s, "ada", Role::Admin).await;
    let form = |params: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("provider", "salesforce".into()),
            ("display_name", "Sales app".into()),
            ("client_id", "sf-client".into()),
            ("client_secret", "sf-secret".into()),
            ("params", params.to_string()),
            ("tags", "finance, crm".into()),
            ("custody", "vault".into()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| {
        let (s, ada) = (&s, ada.clone());
        async move {
            let r = browser()
                .post(format!("{}/ui/integrations", s.base))
                .header("cookie", ada)
                .form(&f)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    // A pair without `=` is refused; the page leads back to integrations.
    let (st, html) = send(form("login.salesforce.com")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{html}");
    assert!(
        html.contains("name=value") && html.contains("Back to integrations"),
        "{html}"
    );
    assert!(!html.contains("Back to connections"), "{html}");
    // A service refusal (host outside the provider's) too, and no secret.
    let (st, html) = send(form("login_host=evil.example.com")).await;
    assert!(st.is_client_error(), "{st}: {html}");
    assert!(
        html.contains("Back to integrations") && !html.contains("sf-secret"),
        "{html}"
    );
    let (st, html) = send(form("login_host=login.salesforce.com")).await;
    assert_eq!(st, StatusCode::CREATED, "{html}");
    let i =
        rekey_server::views::integration(&s.rekey.list_integrations("default").await.unwrap()[0]);
    assert_eq!(i.params["login_host"], "login.salesforce.com");
    let mut tags = i.tags.clone();
    tags.sort();
    assert_eq!(tags, ["crm", "finance"]);
    assert_eq!(i.custody, ["vault"]);

    // The card shows tags, custody and the parameters; the filters select.
    let (st, html) = get(&s, "/ui/integrations", &ada).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains("href=\"/ui/integrations?tag=finance\">finance</a>")
            && html.contains("<code>login_host=login.salesforce.com</code>")
            && html.contains("<dd>vault</dd>"),
        "{html}"
    );
    let (_, html) = get(&s, "/ui/integrations?tag=finance&custody=vault", &ada).await;
    assert!(html.contains("Sales app"), "{html}");
    let (_, html) = get(&s, "/ui/integrations?tag=hr", &ada).await;
    assert!(
        !html.contains("Sales app") && html.contains("value=\"hr\""),
        "{html}"
    );
    // A filter the service refuses is an error page leading back here.
    let (st, html) = get(&s, "/ui/integrations?custody=%3Cb%3E", &ada).await;
    assert!(st.is_client_error(), "{st}: {html}");
    assert!(html.contains("Back to integrations"), "{html}");
    s.stop().await;
}
