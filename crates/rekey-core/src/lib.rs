//! rekey's domain: the types every other crate speaks, their validation, the
//! connection status machine and the one error enum with stable codes.
//!
//! Invariant: no I/O here. No database, no network, no files, no clock other
//! than what callers pass in (except `time::now_ms`, kept for convenience).

pub mod audit;
pub mod connection;
pub mod credentials;
pub mod error;
pub mod events;
pub mod ids;
pub mod outbound;
pub mod scope;
pub mod scrub;
pub mod secret;
pub mod time;

pub use error::{Error, ErrorClass, Result};
pub use secret::SecretString;
