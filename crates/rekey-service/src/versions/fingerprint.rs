//! Fingerprints: a short name for a credential that identifies it without
//! revealing it. Provider-native where the provider has one (the AWS access
//! key id, the RSA public key's `SHA256:` fingerprint), else a keyed hash:
//! HMAC-SHA256 under a random key that is itself sealed under the keyring,
//! so a copy of the database alone cannot test guesses against it.

use crate::Rekey;
use rekey_core::connection::ConnectionKind;
use rekey_core::{Error, SecretString};
use rekey_crypto::Aad;
use rekey_store::{secrets, WriteTx};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Where the fingerprint key is kept in `secrets`.
const KEY_OWNER_KIND: &str = "system";
const KEY_OWNER_ID: &str = "fingerprint_key";
const KEY_FIELD: &str = "key";

fn key_aad() -> Aad {
    Aad::new("", KEY_OWNER_KIND, KEY_OWNER_ID, KEY_FIELD, 1)
}

/// A fingerprint and how it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub value: String,
    pub kind: &'static str,
}

/// The provider's own name for the credential, when it has one.
pub(crate) fn native(kind: ConnectionKind, meta: &Map<String, Value>) -> Option<Fingerprint> {
    let field = match kind {
        ConnectionKind::AwsAccessKey => ("access_key_id", "aws_access_key_id"),
        ConnectionKind::RsaKeyPair => ("public_key_fingerprint", "rsa_sha256"),
        _ => return None,
    };
    meta.get(field.0)
        .and_then(Value::as_str)
        .map(|v| Fingerprint {
            value: v.to_string(),
            kind: field.1,
        })
}

/// The fields a keyed fingerprint covers: for OAuth grants the long-lived
/// token (the refresh token, else the access token), else every secret field.
fn keyed_input(
    kind: ConnectionKind,
    secrets: &BTreeMap<String, SecretString>,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    let mut add = |name: &str, v: &SecretString| {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(v.expose().as_bytes());
        out.push(0);
    };
    if !kind.is_static() {
        if let Some((n, v)) = ["refresh_token", "access_token"]
            .iter()
            .find_map(|n| secrets.get(*n).map(|v| (*n, v)))
        {
            add(n, v);
            return out;
        }
    }
    for (n, v) in secrets {
        add(n, v);
    }
    out
}

impl Rekey {
    /// The fingerprint of a credential of `kind` with this material.
    pub(crate) async fn fingerprint(
        &self,
        tx: &mut WriteTx,
        kind: ConnectionKind,
        meta: &Map<String, Value>,
        secrets: &BTreeMap<String, SecretString>,
    ) -> Result<Fingerprint, Error> {
        if let Some(f) = native(kind, meta) {
            return Ok(f);
        }
        if secrets.is_empty() {
            // Not made yet (an AWS key is created by AWS at the rotation's
            // `set`): nothing to name.
            return Ok(Fingerprint {
                value: "none".into(),
                kind: "none",
            });
        }
        let key = self.fingerprint_key(tx).await?;
        Ok(Fingerprint {
            value: rekey_crypto::keyed_fingerprint(&key, &keyed_input(kind, secrets)),
            kind: "keyed_hash",
        })
    }

    /// The fingerprint key, made on first use inside the caller's write
    /// (a concurrent writer's key wins; ours is then not inserted). Cached
    /// only once read back as stored, so a rolled-back write leaves no
    /// key in memory that the database does not have.
    async fn fingerprint_key(&self, tx: &mut WriteTx) -> Result<Zeroizing<Vec<u8>>, Error> {
        if let Some(k) = self.inner.fingerprint_key.get() {
            return Ok(k.clone());
        }
        let mut rows = secrets::for_owner(tx.conn(), KEY_OWNER_KIND, KEY_OWNER_ID).await?;
        let stored = !rows.is_empty();
        if !stored {
            let fresh = rekey_crypto::generate_fingerprint_key();
            let hex = rekey_crypto::hex(&fresh);
            let row = {
                let kr = self.keyring()?;
                crate::sealing::seal_row(&kr, &key_aad(), &SecretString::new(hex))
            };
            secrets::insert_if_absent(tx.conn(), &row).await?;
            rows = secrets::for_owner(tx.conn(), KEY_OWNER_KIND, KEY_OWNER_ID).await?;
        }
        let row = rows
            .first()
            .ok_or_else(|| Error::internal("fingerprint key missing after insert"))?;
        let text = {
            let kr = self.keyring()?;
            crate::sealing::open_row(&kr, &key_aad(), row)
                .map_err(|e| Error::DecryptionFailed(format!("fingerprint key: {e}")))??
        };
        let key = Zeroizing::new(text.expose().as_bytes().to_vec());
        if stored {
            let _ = self.inner.fingerprint_key.set(key.clone());
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretString::new(v.to_string())))
            .collect()
    }

    #[test]
    fn native_fingerprints_name_the_provider_key() {
        let m = json!({"access_key_id": "AKIAEXAMPLE1234"});
        let f = native(ConnectionKind::AwsAccessKey, m.as_object().unwrap()).unwrap();
        assert_eq!(
            (f.value.as_str(), f.kind),
            ("AKIAEXAMPLE1234", "aws_access_key_id")
        );
        let m = json!({"public_key_fingerprint": "SHA256:abc"});
        let f = native(ConnectionKind::RsaKeyPair, m.as_object().unwrap()).unwrap();
        assert_eq!(f.kind, "rsa_sha256");
        assert!(native(ConnectionKind::ApiKey, m.as_object().unwrap()).is_none());
    }

    #[test]
    fn keyed_input_separates_fields_and_picks_the_grant_token() {
        let a = keyed_input(
            ConnectionKind::Basic,
            &secrets(&[("password", "ab"), ("x", "c")]),
        );
        let b = keyed_input(
            ConnectionKind::Basic,
            &secrets(&[("password", "a"), ("x", "bc")]),
        );
        assert_ne!(*a, *b);
        let o = keyed_input(
            ConnectionKind::OAuth2AuthorizationCode,
            &secrets(&[("access_token", "at1"), ("refresh_token", "rt")]),
        );
        let o2 = keyed_input(
            ConnectionKind::OAuth2AuthorizationCode,
            &secrets(&[("access_token", "at2"), ("refresh_token", "rt")]),
        );
        // A refresh changes the access token, not the grant.
        assert_eq!(*o, *o2);
    }
}
