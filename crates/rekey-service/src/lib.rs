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
mod campaign;
mod connect;
mod connection_rows;
mod connections;
mod evidence;
mod health;
mod hot;
mod integrations;
mod keys;
mod model;
mod oauth_conn;
mod open;
mod paging;
mod revocation;
mod rotation;
mod rsa_key;
mod sealing;
mod signin_throttle;
mod status;
mod users;
mod versions;
mod webhooks;

pub use api_keys::{CachedPrincipal, IssuedApiKey, Principal, RotatedApiKey};
pub use audit::{AuditPage, ChainReport, Reader, Walk};
pub use campaign::{
    Breakdown as CampaignBreakdown, Campaign, CampaignItem, CampaignLink, CampaignRecord,
    CampaignRun, CampaignSettings, MailSettings, PlanItem, PlannedStep,
    Progress as CampaignProgress,
};
pub use connect::{CallbackOutcome, CallbackParams, ConnectField, ConnectForm, ConnectPage};
pub use connections::{authorize_probe_target, ConnectionSummary, ImportOutcome, IntegrationUse};
pub use evidence::{
    outcome_counts, EvidenceFilter, EvidenceItem, EvidenceRecord, Outcome as EvidenceOutcome,
    EVIDENCE_PAGE,
};
pub use health::{CheckRun, HealthSettings};
pub use integrations::{ClientSecretRotation, NewClientSecret};
pub use keys::{KekRotationReport, KeyStatus};
pub use model::{
    ApiKeyRow, AttemptRow, CheckReport, Connection, ConnectionPage, ConnectionRow, Credentials,
    Delivery, DeliveryPage, DeliveryRow, Endpoints, HealthNotes, Integration, IntegrationRow,
    NewConnectSession, NewWebhook, Reauthorization, Revocation, WebhookPage, WebhookRow,
};
pub use oauth_conn::RefreshRun;
pub use open::{LockMode, OpenOptions, OpenedDataDir};
pub use rekey_store::credential_versions::VersionRow as CredentialVersion;
pub use rekey_store::revocations::RevocationRow;
pub use rekey_store::AuditCommit;
pub use revocation::{
    Check as RevocationCheck, RevocationRecord, Step as RevocationStep, VERIFY_BATCH,
};
pub use rotation::{
    schedule_options, ConfirmRequest, Confirmation as RotationConfirmation,
    Instructions as RotationInstructions, Options as RotationOptions, RotateRequest, Rotation,
    RotationMethod, RotationSchedule, ScheduleRequest, IMPLEMENTED as IMPLEMENTED_ROTATORS,
};
pub use users::{Role, SessionUser};
pub use versions::VersionHistory;
pub use webhooks::{DeliveryRun, WebhookSettings, DEFAULT_MAX_WEBHOOKS};

use rekey_core::outbound::OutboundPolicy;
use rekey_core::Error;
use rekey_core::ErrorCode;
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

    /// A background worker acting on its own (`system:<name>`).
    pub fn worker(tenant: &str, name: &str) -> Ctx {
        Ctx {
            tenant: tenant.to_string(),
            actor: format!("system:{name}"),
            request_id: None,
            source: None,
        }
    }
}

/// How a service is set up, fixed at construction: the operator's options.
#[derive(Debug, Clone)]
pub struct RekeyConfig {
    /// Base URL users reach this server at (Connect pages, the OAuth
    /// callback), without a trailing slash.
    pub public_url: String,
    /// The outbound allow-list (`--allow-outbound`) for every connection
    /// rekey makes.
    pub outbound: OutboundPolicy,
    pub health: HealthSettings,
    pub webhooks: WebhookSettings,
    /// SMTP for e-mailing owners their campaign links (none: no e-mail).
    pub mail: Option<MailSettings>,
    pub campaigns: CampaignSettings,
    /// How a credential read's audit entry is committed: with the other
    /// reads waiting (group commit, the default) or in a transaction of
    /// its own (for comparison).
    pub audit_commit: AuditCommit,
    /// The database pool's maximum size (None: the store's default).
    pub database_pool_size: Option<u32>,
    /// SQLite: the write-ahead log's size limit in bytes
    /// ([`rekey_store::Store::set_wal_limit`]).
    pub sqlite_wal_limit: u64,
}

impl Default for RekeyConfig {
    fn default() -> Self {
        RekeyConfig {
            public_url: "http://127.0.0.1:8080".into(),
            outbound: OutboundPolicy::default(),
            health: HealthSettings::default(),
            webhooks: WebhookSettings::default(),
            mail: None,
            campaigns: CampaignSettings::default(),
            audit_commit: AuditCommit::default(),
            database_pool_size: None,
            sqlite_wal_limit: rekey_store::DEFAULT_WAL_LIMIT,
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
    /// The credential fetch's caches, checked at commit ([`hot`]).
    hot: hot::HotCache,
    /// Single creates waiting to be written together.
    create_group: connections::CreateGroup,
    /// The outbound policy, shared by both HTTP clients and the database
    /// probes: every outbound connection passes it after DNS resolution.
    outbound: Arc<rekey_oauth::Outbound>,
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
    /// The key of keyed credential fingerprints, once read or made.
    fingerprint_key: tokio::sync::OnceCell<zeroize::Zeroizing<Vec<u8>>>,
    /// This process's name on the leases it takes (rotations, checks, deliveries).
    replica: String,
    /// The SMTP transport, when configured.
    mailer: Option<campaign::Mailer>,
    campaign_settings: RwLock<CampaignSettings>,
    /// How long a rotation lease lasts (renewed while a step runs).
    rotation_lease_ms: std::sync::atomic::AtomicI64,
    /// When an idle campaign pass last looked for campaigns left running
    /// with every item finished (ms; 0: not yet).
    campaigns_swept_at: std::sync::atomic::AtomicI64,
    /// Set once the process is stopping: background passes start no new
    /// work (a health pass's queued checks go back, due now).
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Rekey {
    /// The process is stopping: background passes start nothing new, so
    /// a shutdown waits only for work already under way.
    pub fn begin_shutdown(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// Resolves once [`Rekey::begin_shutdown`] is called.
    pub(crate) async fn stopping(&self) {
        let mut rx = self.inner.stopping.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// With the default configuration (a local server on port 8080, no
    /// outbound allow-list). Fails only when the HTTP client cannot be
    /// built (no TLS backend).
    pub fn new(store: Store, keyring: Keyring, catalog: Catalog) -> Result<Rekey, Error> {
        Rekey::with_config(store, keyring, catalog, RekeyConfig::default())
    }

    /// The service with the operator's configuration, which does not change
    /// while it runs (tests alone may change it, through `test-hooks`).
    pub fn with_config(
        store: Store,
        keyring: Keyring,
        catalog: Catalog,
        config: RekeyConfig,
    ) -> Result<Rekey, Error> {
        let outbound = rekey_oauth::Outbound::new(config.outbound);
        let client = |secs: u64| {
            rekey_oauth::Http::with_outbound(std::time::Duration::from_secs(secs), outbound.clone())
                .map_err(Error::internal)
        };
        Ok(Rekey {
            inner: Arc::new(Inner {
                store,
                keyring: RwLock::new(keyring),
                catalog,
                touched: Mutex::new(HashMap::new()),
                hot: hot::HotCache::default(),
                create_group: Default::default(),
                stopping: tokio::sync::watch::Sender::new(false),
                http: client(15)?,
                public_url: RwLock::new(config.public_url.trim_end_matches('/').to_string()),
                refresh_locks: Mutex::new(HashMap::new()),
                health_settings: RwLock::new(config.health),
                throttle: health::Throttle::default(),
                signin: Mutex::new(signin_throttle::Throttle::default()),
                webhook_settings: RwLock::new(config.webhooks),
                webhook_http: client(30)?,
                fingerprint_key: tokio::sync::OnceCell::new(),
                replica: rekey_core::ids::new_id("replica"),
                mailer: config
                    .mail
                    .as_ref()
                    .map(campaign::Mailer::new)
                    .transpose()?,
                campaign_settings: RwLock::new(config.campaigns),
                rotation_lease_ms: std::sync::atomic::AtomicI64::new(rotation::LEASE_MS),
                campaigns_swept_at: std::sync::atomic::AtomicI64::new(0),
                outbound,
            }),
        })
    }

    /// Tests only: a shorter rotation lease, to see a step outlast it.
    #[cfg(feature = "test-hooks")]
    pub fn set_rotation_lease_ms(&self, ms: i64) {
        self.inner
            .rotation_lease_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn rotation_lease_ms(&self) -> i64 {
        self.inner
            .rotation_lease_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tests only: a new outbound allow-list for every outbound connection
    /// from now on (the server takes it from [`RekeyConfig`]).
    #[cfg(feature = "test-hooks")]
    pub fn set_outbound_policy(&self, p: OutboundPolicy) {
        self.inner.outbound.set_policy(p);
    }

    pub fn outbound_policy(&self) -> Arc<OutboundPolicy> {
        self.inner.outbound.policy()
    }

    /// Tests only: answer `host` with `ips` instead of DNS, so a test can
    /// name an address the policy refuses without any traffic leaving the
    /// machine.
    #[cfg(feature = "test-hooks")]
    pub fn set_test_host(&self, host: &str, ips: &[std::net::IpAddr]) {
        self.inner.outbound.set_static_host(host, ips);
    }

    /// [`check_outbound_url`] under this service's policy.
    pub(crate) fn check_url(&self, field: &str, s: &str) -> Result<String, Error> {
        check_outbound_url(&self.outbound_policy(), field, s)
    }

    /// Tests only: the base URL once the test server's port is known (the
    /// server takes it from [`RekeyConfig`]).
    #[cfg(feature = "test-hooks")]
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

    /// How hard campaigns may press each provider.
    pub fn campaign_settings(&self) -> CampaignSettings {
        self.inner
            .campaign_settings
            .read()
            .map(|s| *s)
            .unwrap_or_default()
    }

    /// Tests only: other campaign limits (the server takes them from
    /// [`RekeyConfig`]).
    #[cfg(feature = "test-hooks")]
    pub fn set_campaign_settings(&self, s: CampaignSettings) {
        if let Ok(mut c) = self.inner.campaign_settings.write() {
            *c = s;
        }
    }

    /// Owners can be e-mailed (an SMTP server is configured).
    pub fn sends_mail(&self) -> bool {
        self.inner.mailer.is_some()
    }

    /// This process's name on the leases it takes.
    pub fn replica_id(&self) -> &str {
        &self.inner.replica
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
        if *self.inner.stopping.borrow() {
            return Err(Error::Unavailable("shutting down".into()));
        }
        // Readiness is yes or no: any database failure is "not ready"
        // (503), never a 500 a load balancer might read differently.
        self.inner.store.ping().await.map_err(|e| match e {
            Error::Unavailable(_) => e,
            other => {
                tracing::warn!(error = %other, "readiness: the database did not answer");
                Error::Unavailable("database not ready".into())
            }
        })
    }

    /// Connection counts by status, all tenants (metrics).
    pub async fn connection_status_counts(&self) -> Result<Vec<(String, i64)>, Error> {
        let mut c = self.inner.store.read().await?;
        rekey_store::connections::count_by_status(&mut c).await
    }
}

/// A URL rekey will call (webhook receivers, probe overrides, key files'
/// `token_uri`): https anywhere; plain http only to loopback (a local
/// relay, tests); an IP-literal host must pass the outbound policy. Host
/// names are checked after DNS, at connection time.
pub(crate) fn check_outbound_url(
    policy: &OutboundPolicy,
    field: &str,
    s: &str,
) -> Result<String, Error> {
    let bad = |m: &str| Error::invalid(ErrorCode::InvalidUrl, format!("`{field}` {m}"));
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
    if let Some(reason) = refused_host(policy, u.host()) {
        return Err(bad(&refused_message(reason)));
    }
    Ok(u.to_string())
}

/// The refusal of an IP-literal host, if the policy refuses it.
pub(crate) fn refused_host<S>(
    policy: &OutboundPolicy,
    host: Option<url::Host<S>>,
) -> Option<rekey_core::outbound::Refusal> {
    let ip = match host? {
        url::Host::Ipv4(a) => std::net::IpAddr::V4(a),
        url::Host::Ipv6(a) => std::net::IpAddr::V6(a),
        url::Host::Domain(_) => return None,
    };
    policy.check_ip(ip).err()
}

/// The words after the field name when the policy refuses an address.
pub(crate) fn refused_message(reason: rekey_core::outbound::Refusal) -> String {
    format!(
        "points to {reason}, which rekey does not connect to (an operator can allow it with --allow-outbound)"
    )
}

/// A refusal by the outbound policy keeps its own code; other provider
/// failures become `other`.
pub(crate) fn oauth_error(
    e: rekey_oauth::OAuthError,
    other: impl FnOnce(rekey_oauth::OAuthError) -> Error,
) -> Error {
    match e {
        rekey_oauth::OAuthError::Refused(m) => Error::unprocessable(ErrorCode::OutboundRefused, m),
        e => other(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_urls_with_refused_ip_literals_are_rejected() {
        let p = OutboundPolicy::default();
        for u in [
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.5/hook",
            "https://172.16.0.1/",
            "https://192.168.1.1:8443/",
            "https://100.64.0.1/",
            "https://0.0.0.0:9/",
            "https://[::ffff:169.254.169.254]/",
            "https://[fd00:ec2::254]/",
            "https://[fe80::1]/",
            "https://0xa9fea9fe/",
            "https://2852039166/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
        ] {
            let e = check_outbound_url(&p, "probe_url", u).unwrap_err();
            assert_eq!(e.code(), "invalid_url", "{u}");
            let m = e.public_message();
            assert!(m.starts_with("`probe_url` points to "), "{u}: {m}");
            assert!(m.contains("--allow-outbound"), "{m}");
            assert!(!m.contains("meta-data") && !m.contains("hook"), "{m}");
        }
        for u in [
            "https://172.15.255.255/",
            "https://172.32.0.0/",
            "https://api.example.com/",
            "https://metadata.google.internal/",
            "http://127.0.0.1:9/x",
            "http://[::1]:9/x",
            "http://localhost:9/x",
            "https://8.8.8.8/",
        ] {
            assert!(check_outbound_url(&p, "url", u).is_ok(), "{u}");
        }
        let allowed = OutboundPolicy::parse("10.0.0.0/8,169.254.169.254").unwrap();
        assert!(check_outbound_url(&allowed, "url", "https://10.0.0.5/").is_ok());
        assert!(check_outbound_url(&allowed, "url", "https://169.254.169.254/").is_ok());
        assert!(check_outbound_url(&allowed, "url", "https://192.168.0.1/").is_err());
    }
}
