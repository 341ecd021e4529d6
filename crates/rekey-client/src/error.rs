//! [`ClientError`]: what a call can fail with. No variant carries request or
//! response bodies, so no secret sent or received can end up in a message.

use std::fmt;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The API refused the request with its `{"error": {"code", "message"}}`
    /// body. `code` is stable (`connection_not_found`, `version_conflict`…);
    /// the server promises that `message` never holds a secret.
    #[error("{code} ({status}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// A non-success status without the API's error body (a proxy in
    /// between, say).
    #[error("HTTP {}", status_text(*status))]
    Status { status: u16 },
    /// The request could not be sent or no answer came (connection refused,
    /// TLS, timeout).
    #[error("cannot reach {base}")]
    Connect {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    /// Any other transport failure (reading the body, building the client).
    #[error(transparent)]
    Transport(reqwest::Error),
    /// A success status whose body is not the expected JSON.
    #[error("unexpected response from server")]
    Decode(#[source] DecodeError),
    /// A success status without the body the operation returns.
    #[error("empty response")]
    EmptyResponse,
    /// Writing a download (an evidence export) where the caller asked failed.
    #[error("writing the download")]
    Write(#[source] std::io::Error),
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Status { status } => Some(*status),
            _ => None,
        }
    }

    /// The API's stable error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A failed answer: the API's error body, or just the status.
    pub(crate) fn from_response(status: u16, body: &[u8]) -> ClientError {
        match serde_json::from_slice::<rekey_api::ErrorBody>(body) {
            Ok(e) => ClientError::Api {
                status,
                code: e.error.code,
                message: e.error.message,
            },
            Err(_) => ClientError::Status { status },
        }
    }
}

fn status_text(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| status.to_string())
}

/// Why a body could not be decoded: the kind of fault and where, never the
/// text of serde's message (which can quote the values it read, and a
/// credential response is all secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    what: &'static str,
    line: usize,
    column: usize,
}

impl From<&serde_json::Error> for DecodeError {
    fn from(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Io => "I/O error",
            Category::Syntax => "not valid JSON",
            Category::Data => "JSON of another shape than expected",
            Category::Eof => "JSON cut short",
        };
        DecodeError {
            what,
            line: e.line(),
            column: e.column(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.what, self.line, self.column
        )
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_like_the_cli_always_printed_them() {
        let e = ClientError::from_response(
            404,
            br#"{"error":{"code":"connection_not_found","message":"connection con_x not found"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "connection_not_found (404): connection con_x not found"
        );
        assert_eq!(e.code(), Some("connection_not_found"));
        assert_eq!(e.status(), Some(404));
        let e = ClientError::from_response(502, b"<html>bad gateway</html>");
        assert_eq!(e.to_string(), "HTTP 502 Bad Gateway");
        assert_eq!(e.code(), None);
        assert_eq!(e.status(), Some(502));
    }

    #[test]
    fn decode_errors_never_quote_the_body() {
        let err = serde_json::from_str::<u64>(r#""sk-decode-canary""#).unwrap_err();
        assert!(
            err.to_string().contains("sk-decode-canary"),
            "serde quotes it"
        );
        let e = ClientError::Decode(DecodeError::from(&err));
        for text in [
            format!("{e}"),
            format!("{e:?}"),
            format!("{}", DecodeError::from(&err)),
        ] {
            assert!(!text.contains("canary"), "{text}");
        }
        assert_eq!(
            DecodeError::from(&err).to_string(),
            "JSON of another shape than expected at line 1 column 18"
        );
    }
}
