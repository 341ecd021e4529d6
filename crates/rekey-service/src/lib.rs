//! rekey's use cases. Each public method is one operation an interface (HTTP
//! API, CLI) can invoke: it validates input, applies domain rules, encrypts
//! and decrypts secrets, writes the store and the audit chain in one
//! transaction.
//!
//! Invariants: no HTTP types here; every secret read and every change is
//! audited in the same transaction as the change (reads: committed before the
//! secret is returned); plaintext lives only in zeroizing types.

mod api_keys;
mod audit;
mod connect;
mod connections;
mod db_probe;
mod health;
mod integrations;
mod keys;
mod oauth_conn;
mod open;
mod rsa_key;
mod sealing;
mod signin_throttle;
mod users;
mod views;
mod webhooks;

pub use api_keys::Principal;
pub use connect::{CallbackOutcome, CallbackParams, ConnectField, ConnectForm, ConnectPage};
pub use connections::authorize_probe_target;
pub use health::{CheckRun, HealthSettings};
pub use keys::{KekRotationReport, KeyStatus};
pub use oauth_conn::RefreshRun;
pub use open::{LockMode, OpenOptions, OpenedDataDir};
pub use users::{Role, SessionUser};
pub use webhooks::{DeliveryRun, WebhookSettings, DEFAULT_MAX_WEBHOOKS, EVENT_TYPES};

use rekey_core::Error;
use rekey_crypto::Keyring;
use rekey_providers::Catalog;
use rekey_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// Who is acting, for the audit log.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub tenant: String,
    /// `api_key:<id>`, `cli`, or `system`.
    pub actor: String,
    pub request_id: Option<String>,
    /// Client address, when known.
    pub source: Option<String>,
}

impl Ctx {
    pub fn cli(tenant: &str) -> Ctx {
        Ctx {
            tenant: tenant.to_string(),
            actor: "cli".into(),
            request_id: None,
            source: None,
        }
    }
}

/// The service: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Rekey {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    keyring: RwLock<Keyring>,
    catalog: Catalog,
    /// When each API key's `last_used_at` was last written (ms), so we write
    /// it at most once a minute per key instead of on every request.
    touched: Mutex<HashMap<String, i64>>,
    /// Outbound HTTP to providers (timeouts, no redirects, capped bodies).
    http: rekey_oauth::Http,
    /// Base URL users reach this server at (Connect page, OAuth callback).
    public_url: RwLock<String>,
    /// One refresh at a time per connection within this process.
    refresh_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    health_settings: RwLock<health::HealthSettings>,
    throttle: health::Throttle,
    /// Dashboard sign-in failures per user name and client address.
    signin: Mutex<signin_throttle::Throttle>,
    webhook_settings: RwLock<webhooks::WebhookSettings>,
    /// Webhook posts: own client so a slow receiver never shares limits with providers.
    webhook_http: rekey_oauth::Http,
}

impl Rekey {
    pub fn new(store: Store, keyring: Keyring, catalog: Catalog) -> Rekey {
        Rekey {
            inner: Arc::new(Inner {
                store,
                keyring: RwLock::new(keyring),
                catalog,
                touched: Mutex::new(HashMap::new()),
                http: rekey_oauth::Http::new(std::time::Duration::from_secs(15))
                    .unwrap_or_else(|_| unreachable_http()),
                public_url: RwLock::new("http://127.0.0.1:8080".into()),
                refresh_locks: Mutex::new(HashMap::new()),
                health_settings: RwLock::new(health::HealthSettings::default()),
                throttle: health::Throttle::default(),
                signin: Mutex::new(signin_throttle::Throttle::default()),
                webhook_settings: RwLock::new(webhooks::WebhookSettings::default()),
                webhook_http: rekey_oauth::Http::new(std::time::Duration::from_secs(30))
                    .unwrap_or_else(|_| unreachable_http()),
            }),
        }
    }

    /// Set the externally reachable base URL (no trailing slash).
    pub fn set_public_url(&self, url: &str) {
        if let Ok(mut u) = self.inner.public_url.write() {
            *u = url.trim_end_matches('/').to_string();
        }
    }

    pub fn public_url(&self) -> String {
        self.inner
            .public_url
            .read()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    fn keyring(&self) -> Result<std::sync::RwLockReadGuard<'_, Keyring>, Error> {
        self.inner
            .keyring
            .read()
            .map_err(|_| Error::internal("keyring lock poisoned"))
    }

    fn signin_throttle(&self) -> std::sync::MutexGuard<'_, signin_throttle::Throttle> {
        self.inner.signin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Readiness: the database answers.
    pub async fn ready(&self) -> Result<(), Error> {
        self.inner.store.ping().await
    }

    /// Connection counts by status, all tenants (metrics).
    pub async fn connection_status_counts(&self) -> Result<Vec<(String, i64)>, Error> {
        let mut c = self.inner.store.read().await?;
        rekey_store::connections::count_by_status(&mut c).await
    }
}

/// A URL rekey will call (webhook receivers, probe overrides): https
/// anywhere; plain http only to loopback (a local relay, tests).
pub(crate) fn check_outbound_url(field: &str, s: &str) -> Result<String, Error> {
    let bad = |m: &str| Error::invalid("invalid_url", format!("`{field}` {m}"));
    if s.len() > 2048 {
        return Err(bad("must be at most 2048 characters"));
    }
    let u = url::Url::parse(s).map_err(|_| bad("is not a valid URL"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("must not contain user info"));
    }
    if u.fragment().is_some() {
        return Err(bad("must not contain a #fragment"));
    }
    let loopback = match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(bad("must be https (http only for loopback)")),
    }
    Ok(u.to_string())
}

/// reqwest's builder only fails when the TLS backend cannot initialise,
/// which would fail every outbound call anyway; fall back to defaults.
fn unreachable_http() -> rekey_oauth::Http {
    rekey_oauth::Http::fallback()
}
