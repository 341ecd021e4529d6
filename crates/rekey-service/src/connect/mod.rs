//! Connect sessions and the OAuth authorization-code flow.
//!
//! A session is a capability: whoever holds its token (in the Connect URL)
//! may complete it once, before it expires. `state` binds the provider's
//! redirect back to the session; PKCE S256 and (for OIDC) a nonce bind the
//! code and ID token to it.

mod callback;
mod form;
mod grant;
mod reauth_rule;
mod session;

use crate::Ctx;
use rekey_core::credential_meta::OAuthMeta;
use rekey_core::ErrorCode;
use rekey_core::{Error, SecretString};
use rekey_crypto::{hash_api_key, Aad};
use rekey_oauth::TokenSet;
use rekey_store::connect_sessions::ConnectSessionRow;
use std::collections::BTreeMap;

const SESSION_KIND: &str = "connect_session";

/// What the Connect page shows for a token.
#[derive(Debug, Clone)]
pub struct ConnectPage {
    /// What is being connected: the connection's name on a
    /// reauthorization, else the link's display name, else the
    /// integration's (OAuth) or the provider's (key-based) name.
    pub title: String,
    pub provider_name: String,
    pub integration_name: String,
    pub owner_hint: Option<String>,
    pub reauthorize: bool,
    /// RFC 3339, for `<time datetime>`.
    pub expires_at: String,
    /// The same instant for people: "2 Dec 2026, 13:25 UTC".
    pub expires_at_readable: String,
    /// Key-based kinds: the form to fill in (None for OAuth).
    pub form: Option<ConnectForm>,
}

#[derive(Debug, Clone)]
pub struct ConnectForm {
    pub kind: String,
    pub help: Option<String>,
    pub fields: Vec<ConnectField>,
}

#[derive(Debug, Clone)]
pub struct ConnectField {
    /// Credential field (`key`, `username`, `headers.X-Api-Key`), setting
    /// (`placement`, `name`, `prefix`) or URL parameter (`params.api_host`).
    pub name: String,
    pub label: String,
    pub secret: bool,
    pub required: bool,
    pub multiline: bool,
    pub help: Option<String>,
    /// Prefilled value: never set for a secret field.
    pub value: Option<String>,
    /// Allowed values (a select instead of a text input).
    pub options: Vec<String>,
}

/// The result of a completed callback.
#[derive(Debug, Clone)]
pub enum CallbackOutcome {
    Connected {
        connection_id: String,
        display_name: String,
        reauthorized: bool,
    },
    /// A reauthorization whose identity or scopes differ: the new grant is parked.
    Parked {
        connection_id: String,
        reasons: Vec<String>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

fn session_err(code: ErrorCode, msg: &str) -> Error {
    Error::invalid(code, msg.to_string())
}

fn token_hash(t: &str) -> String {
    // Same construction as API keys: tokens carry 256 bits, a plain hash suffices.
    hash_api_key(t)
}

fn pkce_aad(s: &ConnectSessionRow) -> Aad {
    Aad::new(&s.tenant, SESSION_KIND, &s.id, "pkce_verifier", 1)
}

/// Identity facts about who authorized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    pub subject: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

impl Identity {
    fn describe(&self) -> String {
        match (&self.subject, &self.email) {
            (Some(s), Some(e)) => format!("{e} ({s})"),
            (Some(s), None) => s.clone(),
            (None, Some(e)) => e.clone(),
            (None, None) => "unknown".into(),
        }
    }
}

/// Split a token response into the non-secret meta and the secret fields.
/// What `prev` knew beyond the token response (last refresh, a parked
/// grant, unknown keys) is kept.
pub(crate) fn token_material(
    integration_id: &str,
    t: &TokenSet,
    now: i64,
    prev: OAuthMeta,
) -> (OAuthMeta, BTreeMap<String, SecretString>) {
    let mut secrets_map = BTreeMap::new();
    secrets_map.insert("access_token".to_string(), t.access_token.clone());
    if let Some(r) = &t.refresh_token {
        secrets_map.insert("refresh_token".to_string(), r.clone());
    }
    let meta = OAuthMeta {
        integration_id: Some(integration_id.to_string()),
        token_type: Some(t.token_type.clone()),
        access_expires_at: t.expires_in.map(|s| now + s * 1000),
        obtained_at: Some(now),
        has_refresh_token: Some(t.refresh_token.is_some()),
        ..prev
    };
    (meta, secrets_map)
}

pub(crate) fn access_expiry(t: &TokenSet, now: i64) -> Option<i64> {
    t.expires_in.map(|s| now + s * 1000)
}

fn session_ctx(s: &ConnectSessionRow) -> Ctx {
    Ctx {
        tenant: s.tenant.clone(),
        actor: format!("connect_session:{}", s.id),
        request_id: None,
        source: None,
    }
}

/// The tokens of a grant being replaced, with their RFC 7009 type hints
/// (refresh token first: revoking it usually kills the access token too).
pub(crate) fn revocable(
    secrets_map: &BTreeMap<String, SecretString>,
    prefix: &str,
) -> Vec<(&'static str, SecretString)> {
    let mut out = Vec::new();
    if let Some(t) = secrets_map.get(&format!("{prefix}refresh_token")) {
        out.push(("refresh_token", t.clone()));
    }
    if let Some(t) = secrets_map.get(&format!("{prefix}access_token")) {
        out.push(("access_token", t.clone()));
    }
    out
}
