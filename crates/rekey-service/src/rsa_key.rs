//! Deriving the public half of an RSA private key: the fingerprint operators
//! compare with the provider (Snowflake's `RSA_PUBLIC_KEY_FP` format).

use base64::Engine;
use rekey_core::ErrorCode;
use rekey_core::{Error, SecretString};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256};

pub struct PublicKeyInfo {
    pub fingerprint: String,
    pub public_key_pem: String,
    pub bits: usize,
}

fn bad(msg: &str) -> Error {
    Error::invalid(ErrorCode::InvalidCredentials, msg.to_string())
}

/// Parse the private key (PKCS#8, encrypted PKCS#8 with `passphrase`, or PKCS#1).
fn load(pem: &SecretString, passphrase: Option<&SecretString>) -> Result<RsaPrivateKey, Error> {
    let text = pem.expose().trim();
    let key = if text.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        let pw = passphrase.ok_or_else(|| {
            bad("`credentials.private_key_pem` is encrypted; `credentials.passphrase` is required")
        })?;
        RsaPrivateKey::from_pkcs8_encrypted_pem(text, pw.expose().as_bytes()).map_err(|_| {
            bad("`credentials.private_key_pem` could not be decrypted with `credentials.passphrase`")
        })?
    } else if text.contains("BEGIN RSA PRIVATE KEY") {
        if text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(bad("legacy encrypted PKCS#1 keys are not supported; convert with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"));
        }
        RsaPrivateKey::from_pkcs1_pem(text)
            .map_err(|_| bad("`credentials.private_key_pem` is not a valid RSA private key"))?
    } else if text.contains("BEGIN PRIVATE KEY") {
        RsaPrivateKey::from_pkcs8_pem(text)
            .map_err(|_| bad("`credentials.private_key_pem` is not a valid RSA private key"))?
    } else {
        return Err(bad(
            "`credentials.private_key_pem` must be a PKCS#8 or PKCS#1 RSA private key in PEM",
        ));
    };
    Ok(key)
}

/// The key as PKCS#1 DER for signing (decrypted when it has a passphrase).
pub fn signing_der(
    pem: &SecretString,
    passphrase: Option<&SecretString>,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let key = load(pem, passphrase)?;
    let der = key
        .to_pkcs1_der()
        .map_err(|_| Error::internal("cannot encode the private key"))?;
    Ok(zeroize::Zeroizing::new(der.as_bytes().to_vec()))
}

pub fn derive(
    pem: &SecretString,
    passphrase: Option<&SecretString>,
) -> Result<PublicKeyInfo, Error> {
    let key = load(pem, passphrase)?;
    let bits = key.size() * 8;
    if bits < 2048 {
        return Err(bad("RSA keys must be at least 2048 bits"));
    }
    let public = key.to_public_key();
    let der = public
        .to_public_key_der()
        .map_err(|_| Error::internal("cannot encode public key"))?;
    let fingerprint = format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(der.as_bytes()))
    );
    let public_key_pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|_| Error::internal("cannot encode public key"))?;
    Ok(PublicKeyInfo {
        fingerprint,
        public_key_pem,
        bits,
    })
}

/// A new 2048-bit RSA private key, PKCS#8 PEM (unencrypted: it is sealed
/// like every secret rekey stores). Slow (about a second): call it off the
/// async threads.
pub fn generate() -> Result<SecretString, Error> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .map_err(|_| Error::internal("cannot generate an RSA key"))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| Error::internal("cannot encode the private key"))?;
    Ok(SecretString::new(pem.to_string()))
}

/// The public key as Snowflake's `RSA_PUBLIC_KEY` value: the PEM body
/// without its header, footer and line breaks.
pub fn public_key_body(public_key_pem: &str) -> String {
    public_key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect()
}

/// The public half as a JWK (RFC 7517) for a provider's client
/// registration, with `kid` (default: the RFC 7638 thumbprint).
pub fn public_jwk(pem: &SecretString, kid: Option<&str>) -> Result<serde_json::Value, Error> {
    let key = load(pem, None)?;
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let n = b64(key.n().to_bytes_be());
    let e = b64(key.e().to_bytes_be());
    // RFC 7638: the required members in lexicographic order, no spaces.
    let thumbprint =
        b64(Sha256::digest(format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#).as_bytes()).to_vec());
    Ok(serde_json::json!({
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid.map(str::to_string).unwrap_or(thumbprint),
        "n": n,
        "e": e,
    }))
}

#[cfg(test)]
mod jwk_tests {
    use super::*;

    /// The JWK of the fixture key is the one in tests/fixtures (n, e), and
    /// its default kid is the RFC 7638 thumbprint, stable across calls.
    #[test]
    fn public_jwk_matches_the_fixture() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/");
        let pem = std::fs::read_to_string(format!("{root}test-rsa-2048.pem")).unwrap();
        let want: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{root}test-rsa-2048.jwk.json")).unwrap(),
        )
        .unwrap();
        let jwk = public_jwk(&SecretString::new(pem.clone()), None).unwrap();
        assert_eq!(jwk["n"], want["n"]);
        assert_eq!(jwk["e"], want["e"]);
        let again = public_jwk(&SecretString::new(pem.clone()), None).unwrap();
        assert_eq!(jwk["kid"], again["kid"]);
        assert_eq!(jwk["kid"].as_str().unwrap().len(), 43);
        let named = public_jwk(&SecretString::new(pem), Some("k-2")).unwrap();
        assert_eq!(named["kid"], "k-2");
    }
}
