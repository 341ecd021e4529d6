//! OAuth 2.0 and OpenID Connect client mechanics for rekey.
//!
//! Hand-rolled on reqwest rather than the `oauth2` crate on purpose: rekey
//! must talk to providers whose token responses are not RFC 6749-shaped
//! (Slack's `ok`/`authed_user`), authenticate with `private_key_jwt`
//! (RFC 7523), classify failures by HTTP status (transient vs. needing
//! reauthorization) and cap response sizes. JWT work (ID token validation,
//! client assertions) uses `jsonwebtoken`.
//!
//! Invariants: no database, no persistence; tokens live in `SecretString`;
//! errors never carry token values.

mod client_auth;
mod error;
mod http;
mod id_token;
mod jwt;
pub mod outbound;
mod pkce;
mod token;

pub use client_auth::{ClientAuth, ClientAuthMethod};
pub use error::{OAuthError, Severity};
pub use http::Http;
pub use id_token::{validate_id_token, IdTokenCheck};
pub use jwt::{jwt_bearer, snowflake_keypair_jwt};
pub use outbound::{Outbound, Refused};
pub use pkce::{random_token, Pkce};
pub use token::{
    authorize_url, check_client_auth, client_credentials, denial_message, discover, exchange_code,
    fetch_identity, granted_scopes, refresh, revoke, revoke_bearer, revoke_with, AuthorizeRequest,
    CheckGrant, ClientAuthCheck, Discovery, RevokeStyle, TokenSet,
};

/// The parsers of provider answers, without the HTTP around them, for the
/// fuzz targets in `fuzz/` (feature `fuzzing`; not part of the API).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use crate::http::Response;
    use crate::{Discovery, OAuthError, TokenSet};

    /// A token endpoint's answer with this status and body.
    pub fn token_response(status: u16, body: &[u8]) -> Result<TokenSet, OAuthError> {
        crate::token::parse_token_response(Response {
            status,
            retry_after: None,
            body: body.to_vec(),
        })
    }

    /// An error answer (any endpoint) with this status and body.
    pub fn error_response(status: u16, body: &[u8]) -> OAuthError {
        crate::token::status_error(&Response {
            status,
            retry_after: None,
            body: body.to_vec(),
        })
    }

    /// A discovery document expected to name `issuer`.
    pub fn discovery(body: &[u8], issuer: &str) -> Result<Discovery, OAuthError> {
        crate::token::parse_discovery(body, issuer)
    }
}

/// Read a dotted path (`authed_user.id`) out of a JSON value.
pub fn json_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(v, |cur, part| cur.get(part))
}

/// A dotted path as a string (numbers are stringified; ids often are numbers).
pub fn json_path_str(v: &serde_json::Value, path: &str) -> Option<String> {
    match json_path(v, path)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
