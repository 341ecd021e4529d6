//! A stand-in for Snowflake's key-pair authentication (Snowflake cannot run
//! here): users with two public-key slots (`RSA_PUBLIC_KEY`,
//! `RSA_PUBLIC_KEY_2`), changed by running the same `ALTER USER … SET|UNSET`
//! statements an operator runs in Snowflake, and the SQL API endpoint
//! `POST /api/v2/statements`, which accepts a key-pair JWT as Snowflake
//! documents it: `iss` = `ACCOUNT.USER.SHA256:<fingerprint of a public key
//! set on the user>`, `sub` = `ACCOUNT.USER`, RS256-signed with that key;
//! 401 `{"code":"390144","message":"JWT token is invalid."}` otherwise.

use crate::provider_fixture::{bind_loopback, serve_until, stop_serving};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A public key set in a slot: its `SHA256:` fingerprint and PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotKey {
    pub fingerprint: String,
    pem: String,
}

type Users = HashMap<String, [Option<SlotKey>; 2]>;

pub struct SnowflakeFixture {
    pub base: String,
    /// The account identifier the JWTs must name (upper-cased in claims).
    pub account: String,
    users: Arc<Mutex<Users>>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A public key from the body of an `RSA_PUBLIC_KEY` value (base64 DER,
/// SubjectPublicKeyInfo) or a whole PEM.
fn slot_key(body_or_pem: &str) -> SlotKey {
    let body: String = body_or_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .expect("a base64 public key");
    let fingerprint = format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&der))
    );
    let wrapped: Vec<String> = body
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        wrapped.join("\n")
    );
    SlotKey { fingerprint, pem }
}

impl SnowflakeFixture {
    pub async fn start(account: &str) -> SnowflakeFixture {
        let users: Arc<Mutex<Users>> = Arc::default();
        let (shutdown, rx) = watch::channel(false);
        let listener = bind_loopback();
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let app = Router::new()
            .route("/api/v2/statements", post(statements))
            .with_state((users.clone(), account.to_ascii_uppercase()));
        let task = serve_until(listener, app, rx);
        SnowflakeFixture {
            base,
            account: account.to_string(),
            users,
            shutdown,
            task,
        }
    }

    /// The probe URL for connections of this fixture.
    pub fn statements_url(&self) -> String {
        format!("{}/api/v2/statements", self.base)
    }

    /// Run an `ALTER USER <u> SET RSA_PUBLIC_KEY[_2] = '<key>'` or
    /// `ALTER USER <u> UNSET RSA_PUBLIC_KEY[_2]` statement, as written
    /// (trailing `;` allowed). Panics on anything else: the statements a
    /// rotation shows must be exactly these.
    pub fn exec(&self, statement: &str) {
        let s = statement.trim().trim_end_matches(';').trim();
        let words: Vec<&str> = s.splitn(6, ' ').collect();
        assert!(
            words.len() >= 5 && words[0] == "ALTER" && words[1] == "USER",
            "not an ALTER USER statement: {statement}"
        );
        let user = words[2].to_ascii_uppercase();
        let slot = match words[4] {
            "RSA_PUBLIC_KEY" => 0,
            "RSA_PUBLIC_KEY_2" => 1,
            other => panic!("unknown property {other} in {statement}"),
        };
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let slots = users.entry(user).or_default();
        match words[3] {
            "UNSET" => {
                assert_eq!(words.len(), 5, "{statement}");
                slots[slot] = None;
            }
            "SET" => {
                let rest = words.get(5).expect("SET needs a value");
                let value = rest
                    .strip_prefix("= '")
                    .and_then(|r| r.strip_suffix('\''))
                    .unwrap_or_else(|| panic!("SET {} = '<key>' expected: {statement}", words[4]));
                slots[slot] = Some(slot_key(value));
            }
            other => panic!("SET or UNSET expected, not {other}: {statement}"),
        }
    }

    /// Set a user's slot (1 or 2) directly from a public key PEM.
    pub fn set_key(&self, user: &str, slot: usize, public_key_pem: &str) {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users.entry(user.to_ascii_uppercase()).or_default()[slot - 1] =
            Some(slot_key(public_key_pem));
    }

    /// The fingerprints in a user's two slots (`DESC USER`'s `*_FP`).
    pub fn slots(&self, user: &str) -> [Option<String>; 2] {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let s = users
            .get(&user.to_ascii_uppercase())
            .cloned()
            .unwrap_or_default();
        [
            s[0].as_ref().map(|k| k.fingerprint.clone()),
            s[1].as_ref().map(|k| k.fingerprint.clone()),
        ]
    }

    pub async fn stop(self) {
        stop_serving(&self.shutdown, self.task).await;
    }
}

fn refused() -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"code": "390144", "message": "JWT token is invalid."})),
    )
}

/// The JWT's claims, unverified (to find the key it names).
fn claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn statements(
    State((users, account)): State<(Arc<Mutex<Users>>, String)>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    let typed = headers
        .get("x-snowflake-authorization-token-type")
        .and_then(|h| h.to_str().ok())
        == Some("KEYPAIR_JWT");
    let Some(jwt) = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return refused();
    };
    let Some(iss) = claims(jwt).and_then(|c| c["iss"].as_str().map(str::to_string)) else {
        return refused();
    };
    // ACCOUNT.USER.SHA256:fp
    let mut parts = iss.splitn(3, '.');
    let (Some(acct), Some(user), Some(fp)) = (parts.next(), parts.next(), parts.next()) else {
        return refused();
    };
    if !typed || acct != account {
        return refused();
    }
    let key = {
        let users = users.lock().unwrap_or_else(PoisonError::into_inner);
        users
            .get(user)
            .and_then(|s| s.iter().flatten().find(|k| k.fingerprint == fp).cloned())
    };
    let Some(key) = key else { return refused() };
    let Ok(dk) = DecodingKey::from_rsa_pem(key.pem.as_bytes()) else {
        return refused();
    };
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[iss.as_str()]);
    v.sub = Some(format!("{acct}.{user}"));
    v.validate_aud = false;
    if decode::<Value>(jwt, &dk, &v).is_ok() {
        (
            StatusCode::OK,
            Json(json!({"code": "090001", "statementHandle": "01-fixture"})),
        )
    } else {
        refused()
    }
}
