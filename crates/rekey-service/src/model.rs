//! What the use cases return: domain and store types, which the server
//! turns into rekey-api's wire views (`rekey-server/src/views.rs`).

use rekey_core::connection::{ConnectionKind, Status};
use rekey_core::last_error::LastError;
pub use rekey_store::api_keys::ApiKeyRow;
pub use rekey_store::connections::ConnectionRow;
pub use rekey_store::health_notes::HealthNotes;
pub use rekey_store::integrations::IntegrationRow;
pub use rekey_store::webhooks::{AttemptRow, DeliveryRow, WebhookRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A connection: its row, and what health knows beside it (no probe can
/// check it, the last operator confirmation) where the use case read that.
#[derive(Debug, Clone)]
pub struct Connection {
    pub row: ConnectionRow,
    pub notes: Option<HealthNotes>,
}

impl From<ConnectionRow> for Connection {
    fn from(row: ConnectionRow) -> Connection {
        Connection { row, notes: None }
    }
}

/// One page of a connection listing.
#[derive(Debug, Clone, Default)]
pub struct ConnectionPage {
    pub items: Vec<Connection>,
    pub next_cursor: Option<String>,
}

/// What one health check found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub connection_id: String,
    /// `ok`, `auth_failure`, `transient`, `unexpected`, `skipped`, …
    pub outcome: String,
    pub status_before: Status,
    pub status: Status,
    pub http_status: Option<u16>,
    pub duration_ms: u64,
    /// Epoch milliseconds.
    pub checked_at: i64,
    pub message: Option<String>,
    pub last_error: Option<LastError>,
    pub connection: Connection,
}

/// A revocation: at the provider, or waiting for its manual steps.
#[derive(Debug, Clone)]
pub struct Revocation {
    pub connection: Connection,
    pub revoked_at_provider: bool,
    pub manual_steps: Vec<String>,
    /// The record of the credential revoked (or whose runbook is open).
    pub revocation: Option<crate::RevocationRecord>,
}

/// A reauthorization: a Connect link for the owner, or the switch to a
/// parked grant.
#[derive(Debug, Clone)]
pub struct Reauthorization {
    pub connection: Connection,
    pub session: Option<NewConnectSession>,
    pub accepted_pending_grant: bool,
}

/// A new connect link. The token (and the URL that holds it) is shown once
/// and never printed.
#[derive(Clone)]
pub struct NewConnectSession {
    pub id: String,
    pub token: String,
    pub url: String,
    /// Epoch milliseconds.
    pub expires_at: i64,
    pub integration: Option<String>,
    pub provider: String,
    pub kind: ConnectionKind,
    pub reauthorize: Option<String>,
}

impl std::fmt::Debug for NewConnectSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewConnectSession")
            .field("id", &self.id)
            .field("token", &"[redacted]")
            .field("url", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("integration", &self.integration)
            .field("provider", &self.provider)
            .field("kind", &self.kind)
            .field("reauthorize", &self.reauthorize)
            .finish()
    }
}

/// A webhook subscription with its signing secret, shown once (at creation
/// and rotation). No `Debug`: the secret is in it.
pub struct NewWebhook {
    pub webhook: WebhookRow,
    pub secret: String,
}

/// One page of webhook subscriptions.
#[derive(Debug, Clone, Default)]
pub struct WebhookPage {
    pub items: Vec<WebhookRow>,
    pub next_cursor: Option<String>,
}

/// A delivery, with its attempts where the use case read them.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub row: DeliveryRow,
    pub attempts: Option<Vec<AttemptRow>>,
}

/// One page of a subscription's deliveries (without attempts).
#[derive(Debug, Clone, Default)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryRow>,
    pub next_cursor: Option<String>,
}

/// Decrypted credential material as a reader gets it. No `Debug`: it holds
/// secrets.
pub struct Credentials {
    pub connection_id: String,
    pub kind: ConnectionKind,
    /// The credential version read.
    pub version: i64,
    /// Kind-specific fields including secrets, plus `apply` where it applies.
    pub material: Value,
}

/// An integration's endpoint overrides, as stored (JSON text in its row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub revocation_url: Option<String>,
    pub issuer: Option<String>,
    pub identity_url: Option<String>,
}

impl Endpoints {
    /// The stored JSON text; unreadable text means no overrides (as written
    /// by rekey it is always readable).
    pub fn parse(stored: &str) -> Endpoints {
        serde_json::from_str(stored).unwrap_or_default()
    }
}

/// An OAuth app registration: its row, the stored JSON read, and the
/// redirect URI in effect (the row's, else rekey's default).
#[derive(Debug, Clone)]
pub struct Integration {
    pub row: IntegrationRow,
    pub extra_authorize_params: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
    pub endpoints: Endpoints,
    pub redirect_uri: String,
}

impl Integration {
    pub fn new(row: IntegrationRow, default_redirect: &str) -> Integration {
        Integration {
            extra_authorize_params: serde_json::from_str(&row.extra_params).unwrap_or_default(),
            params: serde_json::from_str(&row.params).unwrap_or_default(),
            endpoints: Endpoints::parse(&row.endpoints),
            redirect_uri: row
                .redirect_uri
                .clone()
                .unwrap_or_else(|| default_redirect.to_string()),
            row,
        }
    }
}
