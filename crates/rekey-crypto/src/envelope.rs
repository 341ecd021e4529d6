use crate::{CryptoError, Keyring};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

/// What a ciphertext is bound to. Changing any part makes decryption fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad {
    pub tenant: String,
    pub record_kind: String,
    pub record_id: String,
    pub field: String,
    pub version: i64,
}

impl Aad {
    /// The field `field` of the record `record_kind`/`record_id` of
    /// `tenant`, sealed for `version`.
    pub fn new(tenant: &str, record_kind: &str, record_id: &str, field: &str, version: i64) -> Aad {
        Aad {
            tenant: tenant.to_string(),
            record_kind: record_kind.to_string(),
            record_id: record_id.to_string(),
            field: field.to_string(),
            version,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        // Length-prefixed so no two distinct tuples encode the same.
        let mut out = b"rekey-secret-v1".to_vec();
        for part in [
            self.tenant.as_bytes(),
            self.record_kind.as_bytes(),
            self.record_id.as_bytes(),
            self.field.as_bytes(),
            &self.version.to_be_bytes(),
        ] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }
}

/// An encrypted secret as stored: ciphertext under a DEK, and the DEK wrapped
/// under the KEK `kek_id`. Nonces are prepended to their ciphertexts.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub kek_id: String,
    pub wrapped_dek: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("kek_id", &self.kek_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

const NONCE: usize = 12;

fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    let mut nonce = [0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    // AES-GCM encryption only fails for plaintexts beyond 64 GiB.
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE + 16 {
        return Err(CryptoError::Authentication);
    }
    let (nonce, ct) = sealed.split_at(NONCE);
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Authentication)
}

fn wrap_aad(kek_id: &str, aad: &[u8]) -> Vec<u8> {
    let mut v = b"rekey-dek-v1".to_vec();
    v.extend_from_slice(&(kek_id.len() as u32).to_be_bytes());
    v.extend_from_slice(kek_id.as_bytes());
    v.extend_from_slice(aad);
    v
}

impl Keyring {
    /// Encrypt `plaintext` under a fresh DEK wrapped by the primary KEK.
    pub fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Sealed {
        let aad = aad.bytes();
        let mut dek = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(dek.as_mut());
        let kek = self.primary();
        let ciphertext = seal_with(&dek, &aad, plaintext);
        let wrapped_dek = seal_with(kek.key(), &wrap_aad(kek.id(), &aad), dek.as_ref());
        Sealed {
            kek_id: kek.id().to_string(),
            wrapped_dek,
            ciphertext,
        }
    }

    fn unwrap_dek(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let kek = self
            .get(&sealed.kek_id)
            .ok_or_else(|| CryptoError::UnknownKek(sealed.kek_id.clone()))?;
        let dek = open_with(kek.key(), &wrap_aad(kek.id(), aad), &sealed.wrapped_dek)?;
        let mut out = Zeroizing::new([0u8; 32]);
        if dek.len() != 32 {
            return Err(CryptoError::Authentication);
        }
        out.copy_from_slice(&dek);
        Ok(out)
    }

    pub fn open(&self, aad: &Aad, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let aad = aad.bytes();
        let dek = self.unwrap_dek(sealed, &aad)?;
        open_with(&dek, &aad, &sealed.ciphertext)
    }

    /// Re-wrap the DEK under the primary KEK; the ciphertext is untouched.
    pub fn rewrap(&self, aad: &Aad, sealed: &Sealed) -> Result<Sealed, CryptoError> {
        let aad = aad.bytes();
        let dek = self.unwrap_dek(sealed, &aad)?;
        let kek = self.primary();
        Ok(Sealed {
            kek_id: kek.id().to_string(),
            wrapped_dek: seal_with(kek.key(), &wrap_aad(kek.id(), &aad), dek.as_ref()),
            ciphertext: sealed.ciphertext.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad(id: &str) -> Aad {
        Aad {
            tenant: "t".into(),
            record_kind: "connection".into(),
            record_id: id.into(),
            field: "key".into(),
            version: 1,
        }
    }

    #[test]
    fn seal_open_roundtrip() {
        let kr = Keyring::generate();
        let s = kr.seal(&aad("a"), b"hello");
        assert_eq!(kr.open(&aad("a"), &s).unwrap().as_slice(), b"hello");
        assert!(!s.ciphertext.windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn moved_ciphertext_fails() {
        let kr = Keyring::generate();
        let s = kr.seal(&aad("a"), b"hello");
        assert!(matches!(
            kr.open(&aad("b"), &s),
            Err(CryptoError::Authentication)
        ));
        let mut other = aad("a");
        other.version = 2;
        assert!(kr.open(&other, &s).is_err());
        other = aad("a");
        other.field = "password".into();
        assert!(kr.open(&other, &s).is_err());
    }

    #[test]
    fn rewrap_keeps_ciphertext_and_plaintext() {
        let mut kr = Keyring::generate();
        let s = kr.seal(&aad("a"), b"hello");
        kr.add_generated();
        let r = kr.rewrap(&aad("a"), &s).unwrap();
        assert_eq!(r.ciphertext, s.ciphertext);
        assert_ne!(r.kek_id, s.kek_id);
        assert_eq!(kr.open(&aad("a"), &r).unwrap().as_slice(), b"hello");
        assert_eq!(kr.open(&aad("a"), &s).unwrap().as_slice(), b"hello");
        kr.retain(|id| id == r.kek_id);
        assert!(matches!(
            kr.open(&aad("a"), &s),
            Err(CryptoError::UnknownKek(_))
        ));
    }

    #[test]
    fn debug_hides_bytes() {
        let kr = Keyring::generate();
        let s = kr.seal(&aad("a"), b"hello");
        assert!(!format!("{s:?}").contains("wrapped"));
        assert!(!format!("{kr:?}").contains('['));
    }
}
