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
        Moto::start_with_setup_calls(UNAUTHENTICATED_SETUP_CALLS).await
    }

    /// A moto that serves `n` requests before it checks signatures (see
    /// [`Moto::create_iam_user`]: three).
    pub async fn start_with_setup_calls(n: usize) -> Moto {
        // The port is free when picked but may be taken before moto binds
        // it (another test's server): then moto exits, and a connect alone
        // would reach that other server. moto says on stderr where it
        // runs; without that line, try another port.
        for _ in 0..5 {
            if let Some(m) = Moto::try_start(n).await {
                return m;
            }
        }
        panic!("moto_server did not start (five ports tried)");
    }

    async fn try_start(n: usize) -> Option<Moto> {
        use tokio::io::AsyncBufReadExt;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = tokio::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("moto_server not found ({e}): pip install 'moto[server]' (.ci/run does it)")
            });
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let running = format!("127.0.0.1:{port}");
        let started = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Running on") && line.contains(&running) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !started {
            return None;
        }
        // Keep reading (moto logs every request there) so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // Wait for the port; no HTTP request, which would count as a set-up call.
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(Moto {
                    url: format!("http://127.0.0.1:{port}"),
                    child,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// POST the form `body` to moto's query API for `service`, signed with
    /// `key` (id, secret) at `amz_date`: the HTTP status and the body.
    async fn signed_post(
        &self,
        service: &str,
        key: (&str, &str),
        body: String,
        amz_date: &str,
    ) -> (u16, String) {
        let u = url::Url::parse(&self.url).unwrap();
        let host = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap());
        let ct = vec![(
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        )];
        let headers = rekey_crypto::sigv4::sign_v4(
            &rekey_crypto::sigv4::SigV4Request {
                method: "POST",
                host: &host,
                path: "/",
                query: &[],
                headers: &ct,
                body: body.as_bytes(),
                service,
                region: "us-east-1",
                amz_date,
            },
            key.0,
            key.1,
            None,
        );
        let mut req = reqwest::Client::new()
            .post(format!("{}/", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// A set-up IAM call (before moto checks signatures: any key, a fixed
    /// date) that must succeed: the body.
    async fn iam(&self, body: &str) -> String {
        let setup_key = ("AKIASETUPSETUPSETUP0", "setup-secret");
        let (status, text) = self
            .signed_post("iam", setup_key, body.to_string(), "20260101T000000Z")
            .await;
        assert!((200..300).contains(&status), "moto IAM: {status} {text}");
        text
    }

    /// Create an IAM user with one access key: (access key id, secret).
    /// Call once per server: afterwards moto checks every signature.
    pub async fn create_access_key(&self, user: &str) -> (String, String) {
        self.setup_user(user).await;
        self.setup_access_key(user).await
    }

    /// Set-up call: create the IAM user `user`.
    async fn setup_user(&self, user: &str) {
        self.iam(&format!(
            "Action=CreateUser&UserName={user}&Version=2010-05-08"
        ))
        .await;
    }

    /// Set-up call: a new access key of `user`, (id, secret).
    async fn setup_access_key(&self, user: &str) -> (String, String) {
        let xml = self
            .iam(&format!(
                "Action=CreateAccessKey&UserName={user}&Version=2010-05-08"
            ))
            .await;
        (
            xml_values(&xml, "AccessKeyId").remove(0),
            xml_values(&xml, "SecretAccessKey").remove(0),
        )
    }

    /// Create an IAM user allowed every action (an inline policy), with
    /// one access key: (access key id, secret). Three set-up calls: start
    /// moto with [`Moto::start_with_setup_calls`]`(3)` for one such user.
    pub async fn create_iam_user(&self, user: &str) -> (String, String) {
        self.setup_user(user).await;
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("Action", "PutUserPolicy"),
                ("UserName", user),
                ("PolicyName", "all"),
                ("PolicyDocument", policy),
                ("Version", "2010-05-08"),
            ])
            .finish();
        self.iam(&body).await;
        self.setup_access_key(user).await
    }

    /// A signed query-API call (`service` `iam` or `sts`) with `key` (id,
    /// secret): the HTTP status and the body.
    pub async fn call_as(
        &self,
        service: &str,
        key: &(String, String),
        params: &[(&str, &str)],
    ) -> (u16, String) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let amz_date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap();
        self.signed_post(service, (&key.0, &key.1), body, &amz_date)
            .await
    }

    /// A signed IAM call that must succeed: the body.
    pub async fn iam_as(&self, key: &(String, String), params: &[(&str, &str)]) -> String {
        let mut all = vec![("Version", "2010-05-08")];
        all.extend_from_slice(params);
        let (status, body) = self.call_as("iam", key, &all).await;
        assert!((200..300).contains(&status), "moto IAM: {status} {body}");
        body
    }

    /// The user's access keys: (id, status), as `key` sees them.
    pub async fn access_keys(&self, key: &(String, String), user: &str) -> Vec<(String, String)> {
        let xml = self
            .iam_as(key, &[("Action", "ListAccessKeys"), ("UserName", user)])
            .await;
        xml_values(&xml, "AccessKeyId")
            .into_iter()
            .zip(xml_values(&xml, "Status"))
            .collect()
    }

    /// Whether STS `GetCallerIdentity` accepts `key`.
    pub async fn key_works(&self, key: &(String, String)) -> bool {
        let (status, body) = self
            .call_as(
                "sts",
                key,
                &[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
            )
            .await;
        match status {
            200 => true,
            403 => false,
            other => panic!("moto STS: {other} {body}"),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The text of every `<tag>…</tag>` in `xml`.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|p| p.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}
