//! A real `moto` server (AWS service mocks, PyPI `moto[server]`) on
//! loopback, with request authentication switched on after the set-up
//! calls: STS then checks SigV4 signatures and access keys as AWS does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

pub struct Moto {
    pub url: String,
    child: tokio::process::Child,
}

/// Requests moto serves before it starts checking signatures: the IAM
/// calls that create a user and its access key.
const UNAUTHENTICATED_SETUP_CALLS: usize = 2;

impl Moto {
    pub async fn start() -> Moto {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env(
                "INITIAL_NO_AUTH_ACTION_COUNT",
                UNAUTHENTICATED_SETUP_CALLS.to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("moto_server not found ({e}): pip install 'moto[server]' (.ci/run does it)")
            });
        // Wait for the port; no HTTP request, which would count as a set-up call.
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Moto {
                    url: format!("http://127.0.0.1:{port}"),
                    child,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not start on port {port}");
    }

    async fn iam(&self, body: &str) -> String {
        let u = url::Url::parse(&self.url).unwrap();
        let host = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap());
        let ct = vec![(
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        )];
        let amz_date = "20260101T000000Z";
        let headers = rekey_crypto::sigv4::sign_v4(
            &rekey_crypto::sigv4::SigV4Request {
                method: "POST",
                host: &host,
                path: "/",
                query: &[],
                headers: &ct,
                body: body.as_bytes(),
                service: "iam",
                region: "us-east-1",
                amz_date,
            },
            "AKIASETUPSETUPSETUP0",
            "setup-secret",
            None,
        );
        let mut req = reqwest::Client::new()
            .post(format!("{}/", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "moto IAM: {status} {text}");
        text
    }

    /// Create an IAM user with one access key: (access key id, secret).
    /// Call once per server: afterwards moto checks every signature.
    pub async fn create_access_key(&self, user: &str) -> (String, String) {
        self.iam(&format!(
            "Action=CreateUser&UserName={user}&Version=2010-05-08"
        ))
        .await;
        let xml = self
            .iam(&format!(
                "Action=CreateAccessKey&UserName={user}&Version=2010-05-08"
            ))
            .await;
        let field = |name: &str| {
            let open = format!("<{name}>");
            let start = xml.find(&open).unwrap() + open.len();
            let end = start + xml[start..].find('<').unwrap();
            xml[start..end].to_string()
        };
        (field("AccessKeyId"), field("SecretAccessKey"))
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
