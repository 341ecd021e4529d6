//! The provider fixture and the webhook receiver behave as documented, with
//! no rekey code involved: every mode on both paths, credential checking,
//! concurrency accounting, shutdown, fail-first delivery and the Standard
//! Webhooks signature check against the spec's test vector.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_testkit::provider_fixture::{refused_url, Mode, ProviderFixture, LEAKED_API_KEY};
use rekey_testkit::webhook_receiver::{verify_signature, Received, WebhookReceiver};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Got {
    status: u16,
    headers: HeaderMap,
    json: Value,
}

async fn send(method: Method, url: &str, headers: &[(&str, &str)]) -> Got {
    send_with(&reqwest::Client::new(), method, url, headers).await
}

async fn send_with(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut req = http.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    Got {
        status,
        headers,
        json,
    }
}

fn header<'a>(g: &'a Got, name: &str) -> Option<&'a str> {
    g.headers.get(name).map(|v| v.to_str().unwrap())
}

const BEARER: (&str, &str) = ("authorization", "Bearer xoxb-1");

fn slack_healthy() -> Value {
    json!({"ok":true,"url":"https://fixture.slack.com/","team":"Fixture","user":"bot","team_id":"T0001","user_id":"U0001"})
}

#[tokio::test]
async fn slack_path_checks_credentials_in_ok_mode() {
    let p = ProviderFixture::start().await;
    let url = p.slack_url();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/api/auth.test"));

    // Any non-empty credential by default; GET and POST alike.
    for m in [Method::GET, Method::POST] {
        let g = send(m, &url, &[BEARER]).await;
        assert_eq!((g.status, &g.json), (200, &slack_healthy()));
        assert!(header(&g, "content-type")
            .unwrap()
            .starts_with("application/json"));
    }
    assert_eq!(p.last_authorization().as_deref(), Some("Bearer xoxb-1"));

    let g = send(Method::POST, &url, &[]).await;
    assert_eq!(
        (g.status, &g.json),
        (200, &json!({"ok":false,"error":"not_authed"}))
    );
    assert_eq!(p.last_authorization(), None);
    let g = send(Method::POST, &url, &[("authorization", "Bearer ")]).await;
    assert_eq!(g.json["error"], "not_authed");

    p.set_valid_credential(Some("Bearer xoxb-1"));
    let g = send(Method::POST, &url, &[BEARER]).await;
    assert_eq!(g.json, slack_healthy());
    let g = send(Method::POST, &url, &[("authorization", "Bearer xoxb-2")]).await;
    assert_eq!(
        (g.status, &g.json),
        (200, &json!({"ok":false,"error":"invalid_auth"}))
    );
    assert_eq!(p.last_authorization().as_deref(), Some("Bearer xoxb-2"));

    assert_eq!(p.hits(), 6);
    p.stop().await;
}

#[tokio::test]
async fn rest_path_checks_credentials_in_ok_mode() {
    let p = ProviderFixture::start().await;
    let url = p.rest_url();
    assert_eq!(url, format!("{}/v1/me", p.base_url()));
    let healthy = json!({"id":"u_1","email":"bot@example.com"});

    let g = send(Method::GET, &url, &[BEARER]).await;
    assert_eq!((g.status, &g.json), (200, &healthy));

    let g = send(Method::GET, &url, &[]).await;
    assert_eq!(g.status, 401);
    assert!(header(&g, "www-authenticate")
        .unwrap()
        .starts_with("Bearer"));

    // Whole Authorization value is compared; X-Api-Key wins when present.
    p.set_valid_credential(Some("k-1"));
    let g = send(Method::GET, &url, &[("x-api-key", "k-1")]).await;
    assert_eq!((g.status, &g.json), (200, &healthy));
    let g = send(
        Method::GET,
        &url,
        &[("x-api-key", "k-1"), ("authorization", "Bearer zz")],
    )
    .await;
    assert_eq!(g.status, 200);
    assert_eq!(p.last_authorization().as_deref(), Some("k-1"));
    let g = send(Method::GET, &url, &[("authorization", "k-1")]).await;
    assert_eq!(g.status, 200);
    let g = send(Method::GET, &url, &[("authorization", "Bearer k-1")]).await;
    assert_eq!(g.status, 401);
    assert_eq!(
        g.json,
        json!({"error":"invalid_token","error_description":"The access token is invalid"})
    );
    assert_eq!(
        header(&g, "www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );

    // GET only.
    let r = reqwest::Client::new().post(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    p.stop().await;
}

#[tokio::test]
async fn every_mode_on_both_paths() {
    let p = ProviderFixture::start().await;
    p.set_valid_credential(Some("Bearer xoxb-1"));
    // (mode, slack status, slack body, rest status, rest body)
    let cases = [
        (
            Mode::Unauthorized,
            200,
            json!({"ok":false,"error":"invalid_auth"}),
            401,
            json!({"error":"invalid_token","error_description":"The access token is invalid"}),
        ),
        (
            Mode::Forbidden,
            200,
            json!({"ok":false,"error":"missing_scope","needed":"users:read"}),
            403,
            json!({"error":"insufficient_scope"}),
        ),
        (
            Mode::SlackError("account_inactive".into()),
            200,
            json!({"ok":false,"error":"account_inactive"}),
            400,
            json!({"error":"account_inactive"}),
        ),
        (
            Mode::ServerError,
            500,
            json!({"error":"internal"}),
            500,
            json!({"error":"internal"}),
        ),
        (
            Mode::RateLimited {
                retry_after_secs: 7,
            },
            429,
            json!({"ok":false,"error":"ratelimited"}),
            429,
            json!({"error":"rate_limited"}),
        ),
    ];
    for (mode, s_status, s_body, r_status, r_body) in cases {
        p.set_mode(mode.clone());
        // The valid credential does not matter in these modes.
        let s = send(Method::POST, &p.slack_url(), &[BEARER]).await;
        assert_eq!((s.status, &s.json), (s_status, &s_body), "{mode:?} slack");
        let r = send(Method::GET, &p.rest_url(), &[BEARER]).await;
        assert_eq!((r.status, &r.json), (r_status, &r_body), "{mode:?} rest");
        let retry = matches!(mode, Mode::RateLimited { .. }).then_some("7");
        assert_eq!(header(&s, "retry-after"), retry, "{mode:?}");
        assert_eq!(header(&r, "retry-after"), retry, "{mode:?}");
        if mode == Mode::Unauthorized {
            assert_eq!(
                header(&r, "www-authenticate"),
                Some(r#"Bearer error="invalid_token""#)
            );
        }
    }

    p.set_mode(Mode::EchoSecretInBody);
    for url in [p.slack_url(), p.rest_url()] {
        let g = send(
            Method::GET,
            &url,
            &[("authorization", "Bearer xoxb-secret-9")],
        )
        .await;
        assert_eq!(g.status, 401);
        assert_eq!(g.json["authorization"], "Bearer xoxb-secret-9");
        assert_eq!(g.json["api_key"], LEAKED_API_KEY);
        assert!(LEAKED_API_KEY.starts_with("sk_live_"));
        assert!(g.json["error_description"]
            .as_str()
            .unwrap()
            .contains("xoxb-secret-9"));
    }
    let g = send(Method::GET, &p.rest_url(), &[("x-api-key", "key-echo")]).await;
    assert_eq!(g.json["authorization"], "key-echo");

    // Slow answers like Ok, credential check included.
    p.set_mode(Mode::Slow(Duration::from_millis(200)));
    let t = Instant::now();
    let g = send(Method::POST, &p.slack_url(), &[BEARER]).await;
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(g.json, slack_healthy());
    let g = send(
        Method::GET,
        &p.rest_url(),
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(g.status, 401);

    p.set_mode(Mode::Ok);
    assert_eq!(
        send(Method::GET, &p.rest_url(), &[BEARER]).await.status,
        200
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_concurrent_counts_parallel_slow_requests() {
    let p = ProviderFixture::start().await;
    p.set_mode(Mode::Slow(Duration::from_millis(400)));
    let http = reqwest::Client::new();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (http, url) = (http.clone(), p.rest_url());
        set.spawn(async move {
            send_with(&http, Method::GET, &url, &[("x-api-key", &format!("k{i}"))])
                .await
                .status
        });
    }
    while let Some(s) = set.join_next().await {
        assert_eq!(s.unwrap(), 200);
    }
    // All eight were in flight at once (counted by the fixture, not timed).
    assert_eq!(p.max_concurrent(), 8);
    assert_eq!(p.hits(), 8);

    p.reset_stats();
    assert_eq!(
        (p.hits(), p.max_concurrent(), p.last_authorization()),
        (0, 0, None)
    );
    p.set_mode(Mode::Ok);
    send_with(&http, Method::GET, &p.rest_url(), &[BEARER]).await;
    assert_eq!((p.hits(), p.max_concurrent()), (1, 1));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handles_a_burst_of_requests() {
    let p = ProviderFixture::start().await;
    let http = reqwest::Client::new();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (http, url) = (http.clone(), p.slack_url());
        set.spawn(async move {
            for _ in 0..10 {
                let r = http.post(&url).bearer_auth("xoxb-1").send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
                r.bytes().await.unwrap();
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert_eq!(p.hits(), 2000);
    assert!(p.max_concurrent() >= 1);
    p.stop().await;
}

#[tokio::test]
async fn refused_url_refuses_and_stop_refuses_later_requests() {
    let http = reqwest::Client::new();
    let e = http.get(refused_url()).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");

    // Same client, so a pooled keep-alive connection exists at stop time.
    let p = ProviderFixture::start().await;
    let url = p.rest_url();
    assert_eq!(
        send_with(&http, Method::GET, &url, &[BEARER]).await.status,
        200
    );
    p.stop().await;
    let e = http.get(&url).bearer_auth("x").send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
}

#[tokio::test]
async fn stop_does_not_wait_for_slow_requests() {
    let p = ProviderFixture::start().await;
    p.set_mode(Mode::Slow(Duration::from_secs(60)));
    let url = p.slack_url();
    let pending = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth("xoxb-1")
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    while p.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Stopping does not wait for the held request: it is answered 503.
    p.stop().await;
    assert_eq!(pending.await.unwrap().unwrap(), 503);
}

async fn post_hook(url: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

fn hook_headers(id: &str) -> [(&'static str, &str); 3] {
    [
        ("webhook-id", id),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", "v1,AAAA"),
    ]
}

#[tokio::test]
async fn receiver_fails_first_n_then_answers_204() {
    let w = WebhookReceiver::start(2).await;
    let url = w.url();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/hooks"));

    assert_eq!(post_hook(&url, &hook_headers("m1"), "{}").await, 500);
    // A malformed delivery gets 400, is recorded, and uses up no failure.
    assert_eq!(post_hook(&url, &[("webhook-id", "bad")], "x").await, 400);
    assert_eq!(post_hook(&url, &hook_headers("m1"), "{}").await, 500);
    assert_eq!(
        post_hook(&url, &hook_headers("m1"), r#"{"a":1}"#).await,
        204
    );

    let all = w.received();
    let answered: Vec<u16> = all.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [500, 400, 500, 204]);
    assert_eq!(
        (
            all[1].id.as_str(),
            all[1].timestamp.as_str(),
            all[1].signature.as_str()
        ),
        ("bad", "", "")
    );
    assert!(all.windows(2).all(|p| p[0].at <= p[1].at));
    let d = w.delivered();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (
            d[0].id.as_str(),
            d[0].timestamp.as_str(),
            d[0].signature.as_str()
        ),
        ("m1", "1614265330", "v1,AAAA")
    );
    assert_eq!(d[0].body, br#"{"a":1}"#);

    w.set_fail_next(1);
    assert_eq!(post_hook(&url, &hook_headers("m2"), "{}").await, 500);
    assert_eq!(post_hook(&url, &hook_headers("m2"), "{}").await, 204);

    // wait_until sees a delivery that arrives later, and gives up on timeout.
    let u2 = url.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        post_hook(&u2, &hook_headers("m3"), "{}").await;
    });
    let d = w
        .wait_until(Duration::from_secs(5), |d| d.iter().any(|r| r.id == "m3"))
        .await;
    assert_eq!(d.len(), 3);
    let t = Instant::now();
    let d = w
        .wait_until(Duration::from_millis(120), |d| d.len() > 10)
        .await;
    assert_eq!(d.len(), 3);
    assert!(t.elapsed() >= Duration::from_millis(120));

    w.stop().await;
    let e = reqwest::Client::new().post(&url).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
}

// The Standard Webhooks spec's test vector.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TS: &str = "1614265330";
const BODY: &str = r#"{"test": 2432232314}"#;
const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

#[tokio::test]
async fn verify_signature_matches_the_spec_test_vector() {
    let w = WebhookReceiver::start(0).await;
    let headers = [
        ("webhook-id", MSG_ID),
        ("webhook-timestamp", TS),
        ("webhook-signature", SIG),
    ];
    assert_eq!(post_hook(&w.url(), &headers, BODY).await, 204);
    let r: Received = w.delivered().remove(0);
    assert!(verify_signature(SECRET, &r));

    // Any v1 entry may match (key rotation sends several); others are skipped.
    let with = |sig: &str| Received {
        signature: sig.into(),
        ..r.clone()
    };
    assert!(verify_signature(
        SECRET,
        &with(&format!("v1,AAAA v1a,xyz {SIG}"))
    ));
    assert!(!verify_signature(SECRET, &with("v1,AAAA")));
    assert!(!verify_signature(SECRET, &with(&SIG.replace("v1,", "v2,"))));
    assert!(!verify_signature(SECRET, &with("")));
    assert!(!verify_signature(SECRET, &with("v1,not base64!")));

    let tampered = Received {
        body: br#"{"test": 2432232315}"#.to_vec(),
        ..r.clone()
    };
    assert!(!verify_signature(SECRET, &tampered));
    let other_id = Received {
        id: "msg_other".into(),
        ..r.clone()
    };
    assert!(!verify_signature(SECRET, &other_id));
    let other_ts = Received {
        timestamp: "1614265331".into(),
        ..r.clone()
    };
    assert!(!verify_signature(SECRET, &other_ts));
    assert!(!verify_signature("whsec_bm90IHRoZSBrZXk=", &r));
    assert!(!verify_signature("whsec_%%%", &r));
    w.stop().await;
}
