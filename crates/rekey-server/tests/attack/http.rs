//! Requests hyper itself refuses (unparseable, too many or too large
//! headers) were answered with an empty, non-JSON body; every error is now
//! JSON in rekey's shape. Ordinary, pipelined, HTTP/1.0 and
//! `Expect: 100-continue` requests are untouched.

use rekey_testkit::{Db, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn exchange(s: &TestServer, raw: &[u8]) -> String {
    let mut c = TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap();
    c.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(15), c.read_to_end(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    String::from_utf8_lossy(&buf).to_string()
}

fn assert_json_error(resp: &str, status: &str, code: &str) {
    assert!(resp.starts_with(&format!("HTTP/1.1 {status}")), "{resp}");
    assert!(resp.contains("content-type: application/json"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], code, "{resp}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_refusals_are_json() {
    let s = TestServer::start(Db::Sqlite).await;
    let r = exchange(&s, b"GARBAGE\r\n\r\n").await;
    assert_json_error(&r, "400", "malformed_request");

    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..120 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let r = exchange(&s, many.as_bytes()).await;
    assert_json_error(&r, "431", "headers_too_large");

    // A request head larger than the 32 KiB read buffer (hyper would
    // otherwise buffer ~400 KiB per connection).
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(40_000));
    let r = exchange(&s, long.as_bytes()).await;
    assert_json_error(&r, "431", "headers_too_large");

    // An HTTP/1.0 request, then garbage on the same connection.
    let r = exchange(
        &s,
        b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGARBAGE\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.0 200"), "{r}");
    assert!(r.contains(r#""code":"malformed_request""#), "{r}");

    // Two pipelined requests, then one that closes: three plain answers.
    let r = exchange(
        &s,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.matches("HTTP/1.1 200").count(), 2, "{r}");
    assert_eq!(r.matches("HTTP/1.1 404").count(), 1, "{r}");
    assert!(r.contains(r#""code":"route_not_found""#), "{r}");

    // Expect: 100-continue, then the body: 100, then the real answer.
    let body = r#"{"name":"x","scopes":["admin"]}"#;
    let req = format!(
        "POST /api/v1/api-keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n{body}",
        s.admin_key,
        body.len()
    );
    let mut c = TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap();
    c.write_all(req.as_bytes()).await.unwrap();
    // Read the answer to the first request before sending garbage.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("rk_") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(15), c.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("HTTP/1.1 201"));
    // The same connection, kept alive: a refusal is still JSON.
    c.write_all(b"GARBAGE\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(15), c.read_to_end(&mut rest))
        .await
        .expect("no answer")
        .unwrap();
    assert_json_error(&String::from_utf8_lossy(&rest), "400", "malformed_request");
    s.stop().await;
}
