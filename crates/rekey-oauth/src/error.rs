use std::time::Duration;

/// How a failure should affect a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Timeouts, connection errors, 5xx, 429: retry with backoff (`degraded`).
    Transient,
    /// The grant or client is dead (`invalid_grant`, revoked, 401): `needs_reauth`.
    Auth,
    /// The provider answered something we cannot use (malformed, oversized,
    /// failed validation): an error, and nothing stored changes.
    Invalid,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    #[error("provider unreachable: {0}")]
    Network(String),
    #[error("provider answered HTTP {status}{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// An OAuth error response (`{"error": …}`).
    #[error("provider error `{error}`{}", description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Provider {
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("invalid response from provider: {0}")]
    Malformed(String),
    #[error("ID token rejected: {0}")]
    IdToken(String),
    #[error("{0}")]
    Config(String),
    /// The outbound policy refused the destination (see `outbound`); no
    /// connection was made.
    #[error("{0}")]
    Refused(String),
}

impl OAuthError {
    pub fn severity(&self) -> Severity {
        match self {
            OAuthError::Network(_) | OAuthError::Unavailable { .. } => Severity::Transient,
            OAuthError::Provider { error, status, .. } => {
                match error.as_str() {
                    // RFC 6749 §5.2 and common provider spellings of a dead grant.
                    "invalid_grant"
                    | "invalid_client"
                    | "unauthorized_client"
                    | "invalid_refresh_token"
                    | "token_revoked"
                    | "token_expired"
                    | "invalid_auth"
                    | "account_inactive" => Severity::Auth,
                    "temporarily_unavailable" | "server_error" | "slow_down" | "ratelimited" => {
                        Severity::Transient
                    }
                    _ if *status == 401 => Severity::Auth,
                    _ if *status >= 500 || *status == 429 => Severity::Transient,
                    _ => Severity::Invalid,
                }
            }
            OAuthError::Malformed(_)
            | OAuthError::IdToken(_)
            | OAuthError::Config(_)
            | OAuthError::Refused(_) => Severity::Invalid,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OAuthError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Short stable code for error context and audit details.
    pub fn code(&self) -> String {
        match self {
            OAuthError::Network(_) => "network_error".into(),
            OAuthError::Unavailable { status, .. } => format!("http_{status}"),
            OAuthError::Provider { error, .. } => error.clone(),
            OAuthError::Malformed(_) => "malformed_response".into(),
            OAuthError::IdToken(_) => "invalid_id_token".into(),
            OAuthError::Config(_) => "oauth_config".into(),
            OAuthError::Refused(_) => "outbound_refused".into(),
        }
    }
}
