//! Keyed fingerprints: HMAC-SHA256 of a credential under a secret key, cut
//! to 128 bits and written `kh:<hex>`. Without the key (sealed under the
//! keyring, never in the database in the clear) a fingerprint cannot be
//! used to test guesses of the credential offline.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// A new random fingerprint key (32 bytes).
pub fn generate_fingerprint_key() -> Zeroizing<Vec<u8>> {
    let mut k = Zeroizing::new(vec![0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

/// `kh:` and the first 16 bytes of HMAC-SHA256(`key`, `input`) in hex.
pub fn keyed_fingerprint(key: &[u8], input: &[u8]) -> String {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    mac.update(input);
    let digest = mac.finalize().into_bytes();
    let hex = crate::hex(&digest[..16]);
    format!("kh:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_by_the_key() {
        let a = keyed_fingerprint(b"k1", b"secret");
        assert_eq!(a, keyed_fingerprint(b"k1", b"secret"));
        assert_ne!(a, keyed_fingerprint(b"k2", b"secret"));
        assert_ne!(a, keyed_fingerprint(b"k1", b"secret2"));
        assert!(a.starts_with("kh:") && a.len() == 35, "{a}");
        assert!(!a.contains("secret"));
        assert_ne!(*generate_fingerprint_key(), *generate_fingerprint_key());
    }
}
