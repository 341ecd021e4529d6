use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const API_KEY_PREFIX: &str = "rk_";

/// A new API key: `rk_` + 43 base64url characters (256 bits of entropy).
pub fn generate_api_key() -> Zeroizing<String> {
    use base64::Engine;
    let mut raw = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    Zeroizing::new(format!(
        "{API_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref())
    ))
}

/// Keys carry 256 bits of entropy, so a plain SHA-256 is a sound verifier
/// (no dictionary to slow down) and keeps authentication cheap per request.
pub fn hash_api_key(key: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"rekey-api-key-v1\n");
    h.update(key.as_bytes());
    crate::hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn keys_are_unique_and_hash_stably() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert_ne!(*a, *b);
        assert!(a.starts_with("rk_") && a.len() == 46);
        assert_eq!(hash_api_key(&a), hash_api_key(&a));
        assert_ne!(hash_api_key(&a), hash_api_key(&b));
    }
}
