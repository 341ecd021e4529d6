//! A connection's error context: why it is not healthy, what the provider
//! said (scrubbed), when, and when the next attempt is due. Stored as JSON
//! text on the connection row and shown as `last_error` in the API; the
//! field names are the wire format.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// A probe outcome code (`auth_failure`, `transient`, …), a token
    /// endpoint's error, or a parked reauthorization's reason.
    pub code: String,
    #[serde(default)]
    pub message: String,
    /// The provider's HTTP status, when there was an answer.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// The provider's answer, scrubbed and truncated.
    #[serde(default)]
    pub provider_body: Option<String>,
    /// RFC 3339 time of the observation.
    #[serde(default)]
    pub at: Option<String>,
    /// Who observed it: `check`, `refresh`, `connect`, …
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// Epoch milliseconds before which a transient failure is not retried.
    #[serde(default)]
    pub retry_at: Option<i64>,
    /// Case-specific facts (e.g. the expected and presented identities of
    /// a parked reauthorization). Never secret values.
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

impl LastError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> LastError {
        LastError {
            code: code.into(),
            message: message.into(),
            http_status: None,
            provider_body: None,
            at: None,
            source: None,
            retry_after_secs: None,
            retry_at: None,
            detail: Map::new(),
        }
    }

    /// The stored column's text; text that is not a `LastError` (written by
    /// a much older version) reads as none rather than failing the row.
    pub fn from_column(text: Option<&str>) -> Option<LastError> {
        text.and_then(|t| serde_json::from_str(t).ok())
    }

    pub fn to_column(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The API's `last_error` object.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::LastError;
    use serde_json::json;

    #[test]
    fn round_trips_the_stored_shape_with_details() {
        let text = json!({"code": "identity_mismatch", "message": "other user",
            "expected_identity": "ada", "missing_scopes": ["write"], "at": "2026-01-01T00:00:00Z"})
        .to_string();
        let e = LastError::from_column(Some(&text)).unwrap();
        assert_eq!(e.code, "identity_mismatch");
        assert_eq!(e.detail["expected_identity"], "ada");
        let v = e.to_value();
        assert_eq!(v["missing_scopes"], json!(["write"]));
        assert_eq!(v["http_status"], serde_json::Value::Null);
        assert_eq!(LastError::from_column(Some("not json")), None);
        assert_eq!(LastError::from_column(None), None);
    }
}
