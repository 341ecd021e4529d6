//! Envelope encryption for secrets at rest, the key-encryption-key (KEK)
//! keyring, and API key generation/hashing.
//!
//! Each secret is encrypted with its own random 256-bit data key (DEK) under
//! AES-256-GCM; the DEK is wrapped by a KEK from the [`Keyring`]. Both layers
//! authenticate an AAD that names the record the secret belongs to, so a
//! ciphertext copied onto another row does not decrypt.
//!
//! Invariant: no HTTP, no database. Plaintext only ever lives in
//! `Zeroizing` buffers.

mod apikey;
mod envelope;
mod fingerprint;
mod keyring;

pub mod sigv4;
pub mod webhook;
pub use apikey::{generate_api_key, hash_api_key, API_KEY_PREFIX};

/// Lower-case hex of `bytes`, without an allocation per byte (the API-key
/// hash is computed on every request).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}
pub use envelope::{Aad, Sealed};
pub use fingerprint::{generate_fingerprint_key, keyed_fingerprint};
pub use keyring::{Kek, Keyring, KeyringSource};
pub use webhook::{generate_webhook_secret, sign_webhook, WEBHOOK_SECRET_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: wrong key, tampered data, or a ciphertext that
    /// belongs to another record.
    #[error("ciphertext failed authentication (tampered, or copied from another record)")]
    Authentication,
    #[error("no key-encryption key `{0}` in the keyring")]
    UnknownKek(String),
    #[error("keyring: {0}")]
    Keyring(String),
}
