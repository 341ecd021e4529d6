//! The non-secret half of a connection's credential, stored as JSON text in
//! the `credential_meta` column and shown as the API's `credential` object.
//! The field names are the stored and wire format; keys rekey does not know
//! are kept in `extra`, so a read-modify-write never drops them.

use crate::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An OAuth grant's facts: where it came from and when its access token
/// expires. Written by the token exchange, refresh and reauthorization.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OAuthMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Epoch milliseconds; written as `null` when the provider gave no
    /// expiry (the token lives until revoked).
    #[serde(default)]
    pub access_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obtained_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_refresh_token: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refreshed_at: Option<i64>,
    /// A reauthorization's grant parked beside the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_grant: Option<Box<PendingGrant>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A grant that a reauthorization brought but that did not match the
/// connection (another identity, fewer scopes): kept until accepted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingGrant {
    #[serde(default)]
    pub meta: OAuthMeta,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// RFC 3339.
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub connect_session: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl OAuthMeta {
    /// The stored column's text; text that does not parse reads as empty
    /// (no integration, no expiry) rather than failing the row.
    pub fn from_column(text: &str) -> OAuthMeta {
        serde_json::from_str(text).unwrap_or_default()
    }

    pub fn to_column(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The non-secret fields of a static credential (API key, basic, headers,
/// AWS key, service-account file, RSA key pair), as `credentials::parse`
/// and the service write them; which ones are set depends on the kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StaticMeta {
    /// API keys: `header`, `query` or `basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// API keys: the header or query parameter name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Basic, API keys in `basic` placement, RSA key pairs (the login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_bits: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl StaticMeta {
    /// The stored column's text. Material without its meta cannot be
    /// assembled, so unlike OAuth's this is an error.
    pub fn from_column(text: &str) -> Result<StaticMeta, Error> {
        serde_json::from_str(text).map_err(Error::internal)
    }

    /// As the object `credentials::assemble` and `check_stored_headers` read.
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

impl From<&Map<String, Value>> for StaticMeta {
    fn from(m: &Map<String, Value>) -> StaticMeta {
        serde_json::from_value(Value::Object(m.clone())).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn oauth_meta_keeps_the_stored_shape_and_unknown_keys() {
        let stored = json!({"integration_id": "int_1", "token_type": "Bearer",
            "access_expires_at": null, "obtained_at": 5, "has_refresh_token": true,
            "last_refreshed_at": 7, "x": 1,
            "pending_grant": {"meta": {"integration_id": "int_1", "token_type": "Bearer",
                "access_expires_at": 9, "obtained_at": 8, "has_refresh_token": false},
                "subject": null, "email": "a@b", "name": null, "scopes": ["r"],
                "at": "2026-01-01T00:00:00Z", "connect_session": "cs_1"}});
        let m = OAuthMeta::from_column(&stored.to_string());
        assert_eq!(m.integration_id.as_deref(), Some("int_1"));
        assert_eq!(
            m.pending_grant.as_ref().unwrap().meta.access_expires_at,
            Some(9)
        );
        let back: Value = serde_json::from_str(&m.to_column()).unwrap();
        assert_eq!(back, stored);
        assert_eq!(OAuthMeta::from_column("not json"), OAuthMeta::default());
    }

    #[test]
    fn static_meta_round_trips() {
        let stored = json!({"placement": "header", "name": "X-Key", "prefix": "T ",
            "public_key_fingerprint": "SHA256:x", "key_bits": 2048, "header_names": ["A"],
            "later": {"a": 1}});
        let m = StaticMeta::from_column(&stored.to_string()).unwrap();
        assert_eq!(m.name.as_deref(), Some("X-Key"));
        assert_eq!(Value::Object(m.to_map()), stored);
        assert!(StaticMeta::from_column("[").is_err());
    }
}
