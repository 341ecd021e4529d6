//! Integrations (OAuth app registrations), connect sessions,
//! reauthorization and revocation.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{enums, ConnectionView};

/// Endpoint overrides for an integration (tests, private deployments).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EndpointOverrides {
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub revocation_url: Option<String>,
    pub issuer: Option<String>,
    pub identity_url: Option<String>,
}

/// `POST /api/v1/integrations`: an OAuth app registration.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    pub provider: String,
    pub display_name: String,
    pub client_id: String,
    /// For `client_secret_basic` / `client_secret_post`.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// For `private_key_jwt`: RSA or EC private key (PEM).
    #[serde(default)]
    pub private_key_pem: Option<String>,
    /// `kid` sent in client assertions.
    #[serde(default)]
    pub key_id: Option<String>,
    /// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
    #[serde(default)]
    pub auth_method: Option<String>,
    /// Defaults to the catalog's `default_scopes`.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub extra_authorize_params: std::collections::BTreeMap<String, String>,
    /// Values for the provider's URL placeholders (e.g. `subdomain`).
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub endpoints: EndpointOverrides,
    /// Defaults to `<public URL>/oauth/callback`.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Slugs, as for connections.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Where copies of the client secret live (slugs, e.g. `salesforce`).
    #[serde(default)]
    pub custody: Vec<String>,
}

/// `POST /api/v1/integrations/{id}/rotate-secret`: the new client secret
/// (or, for `private_key_jwt`, the new private key and its `kid`), made in
/// the provider's console. No `Debug`: it holds the secret.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateClientSecret {
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub private_key_pem: Option<String>,
    #[serde(default)]
    pub key_id: Option<String>,
    /// `private_key_jwt`: rekey generates the key pair and answers its
    /// public JWK (202) to register at the provider; then
    /// `POST …/rotate-secret/confirm`.
    #[serde(default)]
    pub generate_key: bool,
}

/// The integration after its client secret was tested and switched
/// (`rotated`), or with a generated key waiting to be registered at the
/// provider (`awaiting_registration`, with `public_jwk`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientSecretRotationView {
    pub integration: IntegrationView,
    /// `rotated` or `awaiting_registration`.
    pub state: String,
    /// How the new secret was tested at the token endpoint:
    /// `client_credentials` (a token was issued) or `authorization_code`
    /// (an unknown code was refused as `invalid_grant`, after the client
    /// authenticated). None before the test.
    pub tested_with: Option<String>,
    /// A generated key's public half (RFC 7517), to register at the provider.
    #[schema(value_type = Option<Object>)]
    pub public_jwk: Option<serde_json::Value>,
    pub old_fingerprint: String,
    pub new_fingerprint: String,
    /// Connections of the integration, which use the new secret from now on.
    pub connections: i64,
}

/// `PATCH /api/v1/integrations/{id}`: fields left out are unchanged.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIntegration {
    pub display_name: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub private_key_pem: Option<String>,
    pub key_id: Option<String>,
    pub auth_method: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub extra_authorize_params: Option<std::collections::BTreeMap<String, String>>,
    pub params: Option<std::collections::BTreeMap<String, String>>,
    pub endpoints: Option<EndpointOverrides>,
    pub redirect_uri: Option<String>,
    /// Replaces the tags.
    pub tags: Option<Vec<String>>,
    /// Replaces the custody places.
    pub custody: Option<Vec<String>>,
    pub version: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IntegrationView {
    pub id: String,
    pub tenant: String,
    pub provider: String,
    pub display_name: String,
    pub client_id: String,
    pub auth_method: String,
    pub key_id: Option<String>,
    pub scopes: Vec<String>,
    pub extra_authorize_params: std::collections::BTreeMap<String, String>,
    pub params: std::collections::BTreeMap<String, String>,
    pub endpoints: EndpointOverrides,
    pub redirect_uri: String,
    pub tags: Vec<String>,
    /// Where copies of the client secret live.
    pub custody: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

/// Query of `GET /api/v1/integrations`: every given filter must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IntegrationQuery {
    pub provider: Option<String>,
    pub tag: Option<String>,
    pub custody: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IntegrationList {
    pub items: Vec<IntegrationView>,
}

/// `POST /api/v1/connect-sessions`
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnectSession {
    /// OAuth: the integration whose app the user authorizes.
    #[serde(default)]
    pub integration: Option<String>,
    /// Key-based kinds: the provider and kind whose form the Connect page shows.
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<enums::ConnectionKind>)]
    pub kind: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Who is expected to authorize (email), shown on the Connect page.
    #[serde(default)]
    pub owner_hint: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub custody: Vec<String>,
    /// Reauthorize this connection instead of creating a new one.
    #[serde(default)]
    pub reauthorize: Option<String>,
    /// Lifetime in seconds: 60–3600, default 900.
    #[serde(default)]
    pub expires_in: Option<i64>,
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectSessionView {
    pub id: String,
    /// Single-use token; part of `url`. Shown once.
    pub token: String,
    pub url: String,
    pub expires_at: String,
    pub integration: Option<String>,
    pub provider: String,
    #[schema(value_type = enums::ConnectionKind)]
    pub kind: String,
    pub reauthorize: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReauthorizeQuery {
    /// Accept a parked grant whose identity or scopes differ from the original (audited).
    pub accept_mismatch: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReauthorizeResult {
    pub connection: ConnectionView,
    /// The connect session to send to the original authorizer (absent when a parked grant was accepted).
    pub session: Option<ConnectSessionView>,
    pub accepted_pending_grant: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevokeResult {
    pub connection: ConnectionView,
    /// True when the provider confirmed revocation (RFC 7009).
    pub revoked_at_provider: bool,
    /// Manual runbook steps when the provider has no revocation endpoint.
    pub manual_steps: Vec<String>,
    /// The record of the revoked credential: its fingerprint, the steps
    /// left, and what the provider answered when rekey tried it.
    pub revocation: Option<RevocationView>,
}

/// One runbook step of a manual revocation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevocationStepView {
    /// 1-based, as `POST …/revoke/confirm` takes it.
    pub step: u32,
    pub text: String,
    pub done_at: Option<String>,
    pub done_by: Option<String>,
    pub note: Option<String>,
}

/// One try of the revoked credential at the provider.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevocationCheckView {
    pub at: String,
    /// `refresh_token`, `access_token` or `credential`.
    pub tried: String,
    /// `rejected`, `accepted`, `no_answer` or `not_tried`.
    pub result: String,
    /// The provider's error code, or rekey's.
    pub code: String,
    pub message: String,
    pub http_status: Option<u16>,
    /// The provider's answer, truncated and scrubbed of the credential.
    pub body: Option<String>,
    /// An access token the provider keeps accepting until this time.
    pub expires_at: Option<String>,
}

/// The revocation of one credential of a connection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevocationView {
    pub id: String,
    pub connection_id: String,
    /// The connection's credential version that was revoked.
    pub credential_version: i64,
    #[schema(value_type = enums::ConnectionKind)]
    pub kind: String,
    pub fingerprint: Option<String>,
    /// `provider` (rekey revoked it there), `manual` (an operator's runbook) or `rotation` (a rotation retired it).
    pub method: String,
    /// `open` (runbook steps left) or `revoked`.
    pub state: String,
    pub steps: Vec<RevocationStepView>,
    pub requested_at: String,
    pub requested_by: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    /// `verified_rejected`, `still_accepted` or `unverifiable`; absent
    /// until rekey has an answer.
    #[schema(value_type = Option<crate::enums::Verdict>)]
    pub verdict: Option<String>,
    pub verified_at: Option<String>,
    /// When rekey tries the old credential again, if it will.
    pub next_verification_at: Option<String>,
    pub verification_attempts: i64,
    /// The last round of tries.
    pub checks: Vec<RevocationCheckView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevocationList {
    pub items: Vec<RevocationView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Revoke at the provider first (default true for OAuth connections).
    pub revoke: Option<bool>,
}

redacted_debug!(
    CreateIntegration,
    client_secret,
    [
        provider,
        display_name,
        client_id,
        key_id,
        auth_method,
        scopes,
        params,
        endpoints,
        redirect_uri,
        tags,
        custody
    ]
);
redacted_debug!(
    UpdateIntegration,
    client_secret,
    [
        display_name,
        client_id,
        key_id,
        auth_method,
        scopes,
        endpoints,
        redirect_uri,
        tags,
        custody,
        version
    ]
);

/// `GET /api/v1/connections/{id}/readers?since=`
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadersQuery {
    /// Only reads at or after this time (RFC 3339).
    pub since: Option<String>,
}

/// Who read a connection's credential, from the audit log: one row per
/// actor, client address and outcome.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReaderView {
    /// `api_key:<id>`, `user:<name>` or `cli`.
    pub actor: String,
    /// The API key's name, when the actor is a key of this tenant.
    pub api_key_name: Option<String>,
    /// The client address the reads came from.
    pub source: Option<String>,
    /// `ok`, or `denied` / `error` for reads that were refused or failed.
    pub outcome: String,
    pub reads: i64,
    pub first_read_at: String,
    pub last_read_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReaderList {
    /// Most recent first; at most 1,000 rows.
    pub items: Vec<ReaderView>,
}
