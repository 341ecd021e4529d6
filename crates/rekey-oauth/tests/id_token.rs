//! ID token validation against a JWKS served on loopback: the accepted case
//! and every rejection the OIDC spec requires.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rekey_oauth::{validate_id_token, Http, IdTokenCheck, OAuthError};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Serve `body` as JSON to every request.
async fn serve_json(body: String) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/jwks")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: Value, alg: Algorithm, kid: &str) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(b"client-secret"),
        _ => EncodingKey::from_rsa_pem(fixture("test-rsa-2048.pem").as_bytes()).unwrap(),
    };
    encode(&h, &claims, &key).unwrap()
}

fn good_claims() -> Value {
    json!({"iss": "https://idp.example", "aud": "client-1", "sub": "alice", "email": "alice@example.com",
           "nonce": "n-123", "iat": now(), "exp": now() + 300})
}

#[tokio::test]
async fn id_tokens_are_validated() {
    let jwk: Value = serde_json::from_str(&fixture("test-rsa-2048.jwk.json")).unwrap();
    let jwks_uri = serve_json(json!({"keys": [jwk]}).to_string()).await;
    let http = Http::new(Duration::from_secs(5)).unwrap();
    let check = IdTokenCheck {
        jwks_uri: &jwks_uri,
        issuer: "https://idp.example",
        client_id: "client-1",
        nonce: "n-123",
    };

    let ok = validate_id_token(
        &http,
        &check,
        &sign(good_claims(), Algorithm::RS256, "rekey-test-1"),
    )
    .await
    .unwrap();
    assert_eq!(ok["sub"], "alice");

    let with = |k: &str, v: Value| {
        let mut c = good_claims();
        c[k] = v;
        sign(c, Algorithm::RS256, "rekey-test-1")
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong issuer",
            with("iss", json!("https://evil.example")),
            "wrong issuer",
        ),
        (
            "wrong audience",
            with("aud", json!("someone-else")),
            "wrong audience",
        ),
        ("expired", with("exp", json!(now() - 3600)), "expired"),
        ("wrong nonce", with("nonce", json!("replayed")), "nonce"),
        (
            "no nonce",
            {
                let mut c = good_claims();
                c.as_object_mut().unwrap().remove("nonce");
                sign(c, Algorithm::RS256, "rekey-test-1")
            },
            "nonce",
        ),
        (
            "multi-aud without azp",
            with("aud", json!(["client-1", "other"])),
            "azp",
        ),
        (
            "HS256 signed with the client secret",
            sign(good_claims(), Algorithm::HS256, "rekey-test-1"),
            "algorithm",
        ),
        (
            "unknown key id",
            sign(good_claims(), Algorithm::RS256, "not-in-jwks"),
            "no matching key",
        ),
        (
            "alg none",
            {
                let t = sign(good_claims(), Algorithm::RS256, "rekey-test-1");
                let parts: Vec<&str> = t.split('.').collect();
                use base64::Engine;
                let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(br#"{"alg":"none","kid":"rekey-test-1"}"#);
                format!("{h}.{}.", parts[1])
            },
            "",
        ),
        (
            "tampered payload",
            {
                let t = sign(good_claims(), Algorithm::RS256, "rekey-test-1");
                let parts: Vec<&str> = t.split('.').collect();
                use base64::Engine;
                let mut c = good_claims();
                c["sub"] = json!("mallory");
                let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string());
                format!("{}.{p}.{}", parts[0], parts[2])
            },
            "signature",
        ),
    ];
    for (name, token, want) in cases {
        let e = validate_id_token(&http, &check, &token)
            .await
            .expect_err(name);
        assert!(matches!(e, OAuthError::IdToken(_)), "{name}: {e:?}");
        assert!(e.to_string().contains(want), "{name}: {e}");
    }
}
