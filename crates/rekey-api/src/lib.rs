//! Wire types of the REST API (`/api/v1`). The server, the CLI and the tests
//! all use these, so the contract lives in one place. Timestamps are RFC 3339
//! strings. No type here carries a secret except [`CredentialsView`] and
//! [`CreatedApiKey`], which are returned exactly once per explicit request.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

mod campaigns;
pub mod enums;
mod evidence;
mod versions;
pub use campaigns::*;
pub use evidence::*;
pub use versions::*;

/// Every error response: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `connection_not_found`.
    #[schema(value_type = enums::ErrorCode)]
    pub code: String,
    /// Human-readable explanation; never contains secret values.
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RunbookView {
    /// `api` (rekey can do it) or `manual` (an operator follows the steps).
    pub method: String,
    pub steps: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap: Option<bool>,
    /// Rotation: which rotator does or guides it (e.g. `postgres`, `aws_iam`, `manual`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotator: Option<String>,
    /// Rotation: creating the new credential kills the old one at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalidates_old_immediately: Option<bool>,
    /// Where in the provider's console this is done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
    /// Per-auth-kind replacements of this runbook.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub kinds: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    pub id: String,
    pub display_name: String,
    pub category: String,
    pub docs_url: String,
    #[schema(value_type = Vec<enums::ConnectionKind>)]
    pub auth_kinds: Vec<String>,
    /// Per-integration URL placeholders (e.g. `subdomain`).
    pub params: Vec<String>,
    /// OAuth endpoints and behaviour, for oauth2_* kinds.
    #[schema(value_type = Option<Object>)]
    pub oauth: Option<Value>,
    pub revoke: RunbookView,
    pub rotate: RunbookView,
    pub pitfalls: Vec<String>,
    pub aliases: Vec<String>,
    /// Provider documentation this entry was checked against.
    pub references: Vec<String>,
    /// Label, help and allowed values of each URL placeholder.
    #[schema(value_type = Object)]
    pub param_info: Value,
    /// Connect-page form fields per static auth kind.
    #[schema(value_type = Object)]
    pub key_forms: Value,
    /// Health probes.
    #[schema(value_type = Vec<Object>)]
    pub probes: Value,
    pub probe_unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderList {
    pub items: Vec<ProviderView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OwnerView {
    /// The provider's stable user id of who authorized the connection.
    pub subject: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// `POST /api/v1/connections`
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Provider id from the catalog.
    pub provider: String,
    /// One of the provider's `auth_kinds`.
    #[schema(value_type = enums::ConnectionKind)]
    pub kind: String,
    pub display_name: String,
    #[serde(default)]
    pub owner: Option<OwnerView>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Where copies of this secret are known to live (e.g. `salesforce`, `ci`).
    #[serde(default)]
    pub custody: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Values for the provider's URL placeholders (e.g. Jira's `site`), used by the health probe.
    /// Those the kind's probe needs are required (400 `invalid_field` naming `params.<name>`),
    /// unless `probe_url` replaces the catalog's URL.
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
    /// Probe this URL instead of the catalog's (https; http only for
    /// loopback). For custom APIs without a catalog probe.
    #[serde(default)]
    pub probe_url: Option<String>,
    /// Kind-specific material; see docs/credentials.md for each kind's fields. The
    /// catalog's key form for the kind applies (prefixes, lengths, required fields: 400
    /// `invalid_credentials` naming `credentials.<field>`), and its placement, header name,
    /// prefix and user name are filled in when left out.
    #[schema(value_type = Object)]
    pub credentials: Value,
}

/// `POST /api/v1/connections/import`: many connections in one request.
/// Each row is checked on its own; the rows that pass are created together
/// in one transaction (all of them or, if the database fails, none).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportConnections {
    /// At most [`IMPORT_MAX_ROWS`] rows, each the body of
    /// `POST /api/v1/connections` (static kinds; `oauth2_client_credentials`
    /// connections are created one at a time, as they need a token request).
    /// Any object is accepted here: a row that is not a valid create body
    /// is reported as `failed` in its place, not refused with the request.
    #[schema(value_type = Vec<Object>)]
    pub connections: Vec<Value>,
    /// Check every row and report, create nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Rows one `POST /api/v1/connections/import` may carry.
pub const IMPORT_MAX_ROWS: usize = 1000;

/// What an import did with each row, in the request's order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    /// Rows created (0 on a dry run).
    pub created: u64,
    /// Rows that passed the checks (on a dry run: would be created).
    pub valid: u64,
    /// Rows refused; each has its `error`.
    pub failed: u64,
    pub rows: Vec<ImportRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportRow {
    /// The row's position in `connections`, from 0.
    pub index: u64,
    /// `created`, `valid` (dry run: would be created) or `failed`.
    #[schema(value_type = enums::ImportOutcome)]
    pub outcome: String,
    /// The new connection's id (`created` rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why the row was refused (`failed` rows); never contains secret values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// `PATCH /api/v1/connections/{id}`: fields left out are unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    pub display_name: Option<String>,
    pub owner: Option<OwnerView>,
    pub scopes: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub custody: Option<Vec<String>>,
    /// RFC 3339, or an empty string to clear.
    pub expires_at: Option<String>,
    pub params: Option<std::collections::BTreeMap<String, String>>,
    /// An empty string clears the override.
    pub probe_url: Option<String>,
    /// Expected current version (alternative to `If-Match`).
    pub version: Option<i64>,
}

/// `PUT /api/v1/connections/{id}/credentials`
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCredentials {
    #[schema(value_type = Object)]
    pub credentials: Value,
    /// Expected current version (alternative to `If-Match`).
    #[serde(default)]
    pub version: Option<i64>,
    /// How long the replaced credential stays readable as the `previous`
    /// version (`GET …/credentials?version=previous`) before it is retired
    /// and its material deleted: seconds, or a number with `s`, `m`, `h` or
    /// `d` (`"90s"`, `"1h"`, `"7d"`); `0` retires it at once. Default one
    /// hour, at most 30 days. OAuth grants keep no previous material.
    #[serde(default)]
    pub grace: Option<Grace>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableConnection {
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionLinks {
    pub provider: String,
    pub revoke_runbook: String,
    pub rotate_runbook: String,
}

/// A connection as listed and shown: never contains secret material.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub tenant: String,
    pub provider: String,
    #[schema(value_type = enums::ConnectionKind)]
    pub kind: String,
    pub display_name: String,
    pub owner: OwnerView,
    pub scopes: Vec<String>,
    pub tags: Vec<String>,
    pub custody: Vec<String>,
    /// Non-secret facts about the credential (placement, username, access
    /// key id, public-key fingerprint…).
    #[schema(value_type = Object)]
    pub credential: Value,
    #[schema(value_type = enums::ConnectionStatus)]
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub last_error: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
    pub rotated_at: Option<String>,
    pub expires_at: Option<String>,
    pub version: i64,
    /// Health: last successful check or refresh, last check, start of the
    /// current failure run, and its length.
    pub health: HealthView,
    /// Values for the provider's URL placeholders.
    pub params: std::collections::BTreeMap<String, String>,
    /// Overrides the catalog probe's URL.
    pub probe_url: Option<String>,
    pub links: ConnectionLinks,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    pub last_ok_at: Option<String>,
    pub last_checked_at: Option<String>,
    pub first_failed_at: Option<String>,
    pub consecutive_failures: i64,
    /// Set when the last check found no probe for this connection: its
    /// health must be confirmed by an operator (`confirm-working`).
    #[serde(default)]
    pub unchecked: Option<UncheckedView>,
    /// The last operator confirmation that data flows, if any.
    #[serde(default)]
    pub confirmation: Option<ConfirmationView>,
}

/// Why a connection is not checked automatically.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UncheckedView {
    /// Always "cannot be checked automatically: confirm data flows".
    pub message: String,
    /// Why no probe exists (the catalog's `probe_unavailable`, or the kind).
    pub reason: String,
}

/// The message of [`UncheckedView`], one text for API, CLI and dashboard.
pub const UNCHECKED_MESSAGE: &str = "cannot be checked automatically: confirm data flows";

/// An operator's confirmation that a connection's data flows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfirmationView {
    /// RFC 3339.
    pub at: String,
    /// The actor: API key id or `user:<id>`.
    pub by: String,
    pub note: Option<String>,
}

/// `POST /api/v1/connections/{id}/revoke/confirm`: the manual revocation
/// steps are done.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRevocation {
    /// Evidence for the audit log (≤ 500 printable characters), e.g. a
    /// ticket number or "deleted in the Salesforce connected-apps page".
    #[serde(default)]
    pub note: Option<String>,
    /// The runbook step done (1-based, as listed in `manual_steps`);
    /// without it, every step left is confirmed at once.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub step: Option<u32>,
}

/// `POST /api/v1/connections/{id}/confirm-working`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmWorking {
    /// What was seen (≤ 500 printable characters), e.g. "sync of 12:00 arrived".
    #[serde(default)]
    pub note: Option<String>,
    /// Expected current version (alternative to `If-Match`).
    #[serde(default)]
    pub version: Option<i64>,
}

/// `POST /api/v1/connections/{id}/check`: what one probe found.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckResult {
    pub connection_id: String,
    /// `ok`, `auth_failure`, `transient`, `unexpected`, or `skipped` (no probe
    /// for this kind; see `message`).
    pub outcome: String,
    #[schema(value_type = enums::ConnectionStatus)]
    pub status_before: String,
    #[schema(value_type = enums::ConnectionStatus)]
    pub status: String,
    pub http_status: Option<u16>,
    pub duration_ms: u64,
    pub checked_at: String,
    /// Why it failed or was skipped.
    pub message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub last_error: Option<Value>,
    pub connection: ConnectionView,
}

/// `POST /api/v1/webhooks`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// https (http only for loopback receivers).
    pub url: String,
    /// Event types (`connection.status_changed`), a family (`connection.*`) or `*`.
    #[schema(value_type = Vec<enums::WebhookEventFilter>)]
    pub events: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `PATCH /api/v1/webhooks/{id}`: fields left out are unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    #[schema(value_type = Option<Vec<enums::WebhookEventFilter>>)]
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub version: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    #[schema(value_type = Vec<enums::WebhookEventFilter>)]
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /api/v1/webhooks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WebhookQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Returned once, on create and on secret rotation: the signing secret.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    pub webhook: WebhookView,
    /// `whsec_…`: verify `webhook-signature` with it (Standard Webhooks).
    /// Shown only now.
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttemptView {
    pub id: String,
    pub at: String,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The receiver's answer, truncated and scrubbed.
    pub response_body: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub webhook_id: String,
    /// The `webhook-id` header: stable across retries and replays.
    pub event_id: String,
    #[schema(value_type = enums::WebhookEventType)]
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_http_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    /// Present on the single-delivery endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<DeliveryAttemptView>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `failed`.
    pub status: Option<String>,
    pub cursor: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    pub items: Vec<ConnectionView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/connections/{id}/credentials`: the decrypted material.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialsView {
    pub connection_id: String,
    #[schema(value_type = enums::ConnectionKind)]
    pub kind: String,
    pub version: i64,
    /// Kind-specific fields including secrets, plus `apply` (ready-to-send
    /// headers or query parameters) where it applies.
    #[schema(value_type = Object)]
    pub credentials: Value,
}

/// `POST /api/v1/api-keys`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    #[schema(value_type = Vec<enums::Scope>)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub tenant: String,
    pub name: String,
    #[schema(value_type = Vec<enums::Scope>)]
    pub scopes: Vec<String>,
    pub created_at: String,
    pub created_by: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// After a rotation with a grace: when this key stops working.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// The key this one replaced.
    #[serde(default)]
    pub rotated_from: Option<String>,
    /// The key that replaced this one.
    #[serde(default)]
    pub rotated_to: Option<String>,
}

/// `POST /api/v1/api-keys/{id}/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKey {
    /// How long the old key keeps working: seconds, or `90s`/`15m`/`1h`/`7d`
    /// (default 1h, at most 30d); `0` revokes it at once.
    #[serde(default)]
    pub grace: Option<Grace>,
}

/// Returned once, at rotation: the new key (shown only now) and the old
/// key as it is now (expiring, or revoked).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct RotatedApiKey {
    pub key: String,
    pub api_key: ApiKeyView,
    pub previous: ApiKeyView,
}

/// Returned once, at creation: the only time the key itself is shown.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    pub key: String,
    pub api_key: ApiKeyView,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryView {
    pub seq: i64,
    pub id: String,
    pub at: String,
    pub tenant: String,
    /// `api_key:<id>` or `cli`.
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub request_id: Option<String>,
    pub source: Option<String>,
    pub outcome: String,
    #[schema(value_type = Object)]
    pub details: Value,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEntryView>,
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/audit/verify`: the whole chain (every tenant's entries) is
/// verified, since tampering anywhere breaks it, but the figures are the
/// caller's tenant's only. Every entry is read from the first, unless
/// `?incremental=true`: then the walk starts after the last entry an
/// earlier walk verified (a checkpoint) and reads only what was appended
/// since (entries before it are not read again, so an edit there is only
/// found by a full walk).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditVerifyReport {
    /// The verdict on the whole chain.
    pub ok: bool,
    /// Entries of `tenant` checked before the first break (or all of
    /// them); all entries in the offline report.
    pub checked: u64,
    /// Sequence number of the first broken entry, when it is one of
    /// `tenant`'s (always, in the offline report).
    pub first_broken_seq: Option<i64>,
    pub message: String,
    /// The tenant whose entries `checked` counts; absent in the offline
    /// report (`rekey audit verify --offline`), which covers all tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// This walk read every entry from the first (no checkpoint used).
    #[serde(default)]
    pub full: bool,
    /// Entries this walk read (all tenants).
    #[serde(default)]
    pub walked: u64,
    /// The walk started after this entry, verified by an earlier walk
    /// (`checked` counts the entries up to it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_before: Option<i64>,
    /// When a full walk last found the chain intact (RFC 3339), if one did
    /// since the checkpoint was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_full_walk: Option<String>,
}

/// Query of `GET /api/v1/audit/verify`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditVerifyQuery {
    /// Read only the entries after the last verified one.
    pub incremental: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Query of `GET /api/v1/connections`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConnectionQuery {
    pub provider: Option<String>,
    #[param(value_type = Option<enums::ConnectionKind>)]
    pub kind: Option<String>,
    #[param(value_type = Option<enums::ConnectionStatus>)]
    pub status: Option<String>,
    pub tag: Option<String>,
    pub custody: Option<String>,
    /// Owner subject id or email (exact match).
    pub owner: Option<String>,
    /// Case-insensitive substring of the display name, owner email or id (≤ 100 chars).
    pub q: Option<String>,
    /// RFC 3339: created strictly before.
    pub created_before: Option<String>,
    /// RFC 3339: not rotated since (never-rotated connections count from creation).
    pub rotated_before: Option<String>,
    /// OAuth grants made through this integration (`int_…`): "rotate the
    /// app's secret, then reauthorize every connection using it".
    pub integration: Option<String>,
    /// RFC 3339: the credential was read (successfully) at or after this
    /// time, by anyone (see `GET …/readers`).
    pub last_read_after: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub target: Option<String>,
    pub actor: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    pub cursor: Option<String>,
    /// 1–500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Types that can carry secret material print `[redacted]` in its place.
macro_rules! redacted_debug {
    ($t:ty, $secret:ident, [$($f:ident),*]) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    $(.field(stringify!($f), &self.$f))*
                    .field(stringify!($secret), &"[redacted]")
                    .finish()
            }
        }
    };
}

mod oauth;
pub use oauth::*;

redacted_debug!(
    CreateConnection,
    credentials,
    [
        provider,
        kind,
        display_name,
        owner,
        scopes,
        tags,
        custody,
        expires_at
    ]
);
redacted_debug!(UpdateCredentials, credentials, [version, grace]);
redacted_debug!(CredentialsView, credentials, [connection_id, kind, version]);
redacted_debug!(CreatedApiKey, key, [api_key]);
redacted_debug!(CreatedWebhook, secret, [webhook]);
// The connect token is a capability; the URL carries it too.
redacted_debug!(
    ConnectSessionView,
    token,
    [id, expires_at, integration, provider, kind, reauthorize]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_carrying_types_redact_debug() {
        let c: CreateConnection = serde_json::from_value(serde_json::json!({
            "provider": "p", "kind": "api_key", "display_name": "d", "credentials": {"key": "sk-debug-canary"}
        }))
        .unwrap();
        let u = UpdateCredentials {
            credentials: serde_json::json!({"key": "sk-debug-canary"}),
            version: None,
            grace: None,
        };
        let v = CredentialsView {
            connection_id: "c".into(),
            kind: "api_key".into(),
            version: 1,
            credentials: serde_json::json!({"key": "sk-debug-canary"}),
        };
        let k = CreatedApiKey {
            key: "rk_debug-canary".into(),
            api_key: ApiKeyView {
                id: "key_x".into(),
                tenant: "t".into(),
                name: "n".into(),
                scopes: vec![],
                created_at: "".into(),
                created_by: "".into(),
                last_used_at: None,
                revoked_at: None,
                expires_at: None,
                rotated_from: None,
                rotated_to: None,
            },
        };
        let cs = ConnectSessionView {
            id: "cs_x".into(),
            token: "tok-debug-canary".into(),
            url: "https://rekey.example/connect/tok-debug-canary".into(),
            expires_at: "".into(),
            integration: None,
            provider: "p".into(),
            kind: "api_key".into(),
            reauthorize: None,
        };
        assert!(!format!("{cs:?}").contains("debug-canary"));
        let confirm = ConfirmRotation {
            step: "set".into(),
            note: None,
            credentials: Some(serde_json::json!({"key": "sk-debug-canary"})),
        };
        assert!(!format!("{confirm:?}").contains("debug-canary"));
        for text in [
            format!("{c:?}"),
            format!("{u:?}"),
            format!("{v:?}"),
            format!("{k:?}"),
        ] {
            assert!(!text.contains("debug-canary"), "{text}");
            assert!(text.contains("[redacted]"));
        }
    }
}
