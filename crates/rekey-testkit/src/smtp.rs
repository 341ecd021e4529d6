//! A real SMTP server on loopback: `aiosmtpd` (PyPI) running
//! tests/fixtures/smtp_receiver.py, which reports every message it accepts
//! (and every one it was told to refuse) as a JSON line, collected here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One message as the server accepted it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt: Vec<String>,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub mime_version: String,
    pub body: String,
}

pub struct SmtpReceiver {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    /// The Message-IDs of the messages answered with a failure.
    refused: Arc<Mutex<Vec<String>>>,
    _child: tokio::process::Child,
}

impl SmtpReceiver {
    pub async fn start() -> SmtpReceiver {
        SmtpReceiver::start_failing(0).await
    }

    /// A server that answers the first `n` messages with 451 (try later).
    pub async fn start_failing(n: usize) -> SmtpReceiver {
        for _ in 0..5 {
            if let Some(s) = SmtpReceiver::try_start(n).await {
                return s;
            }
        }
        panic!("the SMTP receiver did not start (five ports tried)");
    }

    async fn try_start(fail_first: usize) -> Option<SmtpReceiver> {
        use tokio::io::AsyncBufReadExt;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let script = format!(
            "{}/../../tests/fixtures/smtp_receiver.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut child = tokio::process::Command::new("python3")
            .args([
                script.as_str(),
                "--port",
                &port.to_string(),
                "--fail-first",
                &fail_first.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("python3 not found ({e})"));
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .ok()
            .and_then(|l| l.ok().flatten());
        match ready {
            Some(l) if l == format!("listening {port}") => {}
            // The port was taken meanwhile, or aiosmtpd is missing (the
            // traceback went to stderr): try again, then give up.
            _ => return None,
        }
        let mails = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (m, r) = (mails.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if v.get("refused").is_some() {
                    let id = v["message_id"].as_str().unwrap_or_default().to_string();
                    r.lock().unwrap().push(id);
                } else {
                    m.lock().unwrap().push(serde_json::from_value(v).unwrap());
                }
            }
        });
        Some(SmtpReceiver {
            port,
            mails,
            refused,
            _child: child,
        })
    }

    /// `smtp://127.0.0.1:<port>`: plain SMTP, as a loopback relay takes it.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Messages answered with a temporary failure.
    pub fn refused(&self) -> usize {
        self.refused.lock().unwrap().len()
    }

    /// The Message-IDs of the messages answered with a temporary failure.
    pub fn refused_ids(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }

    /// Wait up to `secs` for `n` messages; all received so far.
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.mails().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.mails()
    }
}
