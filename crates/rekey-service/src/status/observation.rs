//! What one probe or token refresh observed, in terms the status policy
//! understands.

use rekey_oauth::OAuthError;

/// A provider's `Retry-After` is honoured up to this (a hostile or broken
/// value must not stop checks for good).
pub(crate) const MAX_RETRY_AFTER_SECS: u64 = 6 * 3600;

/// What one probe or refresh found.
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    pub outcome: Outcome,
    /// Stable error code (`auth_rejected`, `rate_limited`, `timeout`…).
    pub code: String,
    pub message: String,
    pub http_status: Option<u16>,
    /// The provider's answer, truncated and scrubbed.
    pub body: Option<String>,
    pub retry_after_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    AuthFailure,
    Transient,
    Unexpected,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::AuthFailure => "auth_failure",
            Outcome::Transient => "transient",
            Outcome::Unexpected => "unexpected",
        }
    }
}

impl Observation {
    pub(crate) fn ok() -> Observation {
        Observation {
            outcome: Outcome::Ok,
            code: "ok".into(),
            message: String::new(),
            http_status: None,
            body: None,
            retry_after_secs: None,
        }
    }

    /// A failure with no HTTP answer attached.
    pub(crate) fn failed(outcome: Outcome, code: &str, message: String) -> Observation {
        Observation {
            outcome,
            code: code.into(),
            message,
            http_status: None,
            body: None,
            retry_after_secs: None,
        }
    }

    /// The probe cannot be made as configured: nothing was sent. Reported
    /// as `probe_misconfigured`, never as the provider failing.
    pub(crate) fn misconfigured(message: String) -> Observation {
        Observation::failed(Outcome::Unexpected, "probe_misconfigured", message)
    }

    /// A failed token refresh, in the same terms as a failed probe. `known`
    /// are secret values to scrub from the provider's text.
    pub(crate) fn from_oauth(e: &OAuthError, known: &[&str]) -> Observation {
        let outcome = match e.severity() {
            rekey_oauth::Severity::Auth => Outcome::AuthFailure,
            rekey_oauth::Severity::Transient => Outcome::Transient,
            rekey_oauth::Severity::Invalid => Outcome::Unexpected,
        };
        let http_status = match e {
            OAuthError::Unavailable { status, .. } | OAuthError::Provider { status, .. } => {
                Some(*status)
            }
            _ => None,
        };
        Observation {
            outcome,
            code: e.code().to_string(),
            // The provider's error_description is its own text: scrub it.
            message: rekey_core::scrub::scrub_text(&e.to_string(), known),
            http_status,
            body: None,
            retry_after_secs: e
                .retry_after()
                .map(|d| d.as_secs().min(MAX_RETRY_AFTER_SECS)),
        }
    }

    /// The code to record with a status change: none for a success.
    pub(crate) fn error_code(&self) -> Option<&str> {
        (self.outcome != Outcome::Ok).then_some(self.code.as_str())
    }
}
