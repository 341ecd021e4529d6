//! The one error type of rekey. Every variant has a stable string code that
//! clients may rely on; messages never contain secret material.

pub use crate::error_code::ErrorCode;
use std::fmt;

/// How an error should be surfaced; the server maps this to an HTTP status,
/// the CLI to an exit code. Kept here so the domain does not know HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    Unprocessable,
    Unavailable,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed input: syntax, types, unknown fields, bad formats.
    #[error("{message}")]
    InvalidInput { code: ErrorCode, message: String },
    /// Well-formed input that the domain rejects (e.g. wrong kind for provider).
    #[error("{message}")]
    Unprocessable { code: ErrorCode, message: String },
    #[error("{what} not found")]
    NotFound { code: ErrorCode, what: String },
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("this API key lacks the `{0}` scope")]
    MissingScope(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// A ciphertext failed authentication: tampered, or moved to another record.
    #[error("{0}")]
    DecryptionFailed(String),
    #[error("{0}")]
    Unavailable(String),
    /// Anything else. The message is for logs; clients get a generic text.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            code,
            message: message.into(),
        }
    }
    pub fn unprocessable(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Unprocessable {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(code: ErrorCode, what: impl Into<String>) -> Self {
        Error::NotFound {
            code,
            what: what.into(),
        }
    }
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }
    pub fn internal(message: impl fmt::Display) -> Self {
        Error::Internal(message.to_string())
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidInput { code, .. }
            | Error::Unprocessable { code, .. }
            | Error::NotFound { code, .. }
            | Error::Conflict { code, .. } => *code,
            Error::Unauthorized => ErrorCode::Unauthorized,
            Error::MissingScope(_) => ErrorCode::MissingScope,
            Error::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Error::DecryptionFailed(_) => ErrorCode::DecryptionFailed,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidInput { .. } => ErrorClass::BadRequest,
            Error::Unprocessable { .. } => ErrorClass::Unprocessable,
            Error::NotFound { .. } => ErrorClass::NotFound,
            Error::Conflict { .. } => ErrorClass::Conflict,
            Error::Unauthorized => ErrorClass::Unauthorized,
            Error::MissingScope(_) => ErrorClass::Forbidden,
            Error::PayloadTooLarge(_) => ErrorClass::PayloadTooLarge,
            Error::Unavailable(_) => ErrorClass::Unavailable,
            Error::DecryptionFailed(_) | Error::Internal(_) => ErrorClass::Internal,
        }
    }

    /// The message a client may see. Internal details stay in the logs.
    pub fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "internal error; see server logs".to_string(),
            other => other.to_string(),
        }
    }
}

/// A database error as the domain error (behind the `sqlx` feature, which
/// rekey-store enables): a unique violation is `already_exists`, a pool
/// timeout or I/O failure `unavailable`, anything else `internal` with the
/// detail for the log only.
#[cfg(feature = "sqlx")]
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e {
            if d.is_unique_violation() {
                return Error::conflict(
                    ErrorCode::AlreadyExists,
                    "a record with this identity already exists",
                );
            }
        }
        if matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) {
            return Error::Unavailable("database unavailable".into());
        }
        Error::internal(format!("database: {e}"))
    }
}
