//! Sealing secrets into store rows and opening them again: the one place
//! that turns plaintext into `SecretRow`s and back.

use rekey_core::{Error, SecretString};
use rekey_crypto::{Aad, CryptoError, Keyring, Sealed};
use rekey_store::secrets::SecretRow;

/// Seal `plaintext` for `aad`; the row is addressed by the AAD's record and field.
pub(crate) fn seal_row(kr: &Keyring, aad: &Aad, plaintext: &SecretString) -> SecretRow {
    let s = kr.seal(aad, plaintext.expose().as_bytes());
    SecretRow {
        owner_kind: aad.record_kind.clone(),
        owner_id: aad.record_id.clone(),
        field: aad.field.clone(),
        tenant: aad.tenant.clone(),
        version: aad.version,
        kek_id: s.kek_id,
        wrapped_dek: s.wrapped_dek,
        ciphertext: s.ciphertext,
    }
}

pub(crate) fn sealed_of(row: &SecretRow) -> Sealed {
    Sealed {
        kek_id: row.kek_id.clone(),
        wrapped_dek: row.wrapped_dek.clone(),
        ciphertext: row.ciphertext.clone(),
    }
}

/// Open `row` under `aad`. Callers build the AAD from the owning record, not
/// from the secret row, so a row copied under another record fails here.
pub(crate) fn open_row(
    kr: &Keyring,
    aad: &Aad,
    row: &SecretRow,
) -> Result<Result<SecretString, Error>, CryptoError> {
    let plain = kr.open(aad, &sealed_of(row))?;
    Ok(String::from_utf8(plain.to_vec())
        .map(SecretString::new)
        .map_err(|_| Error::internal("stored secret is not UTF-8")))
}

/// Open every secret row of one owner. `aad_of` builds each field's AAD
/// from the owning record (never from the row, so a row copied under
/// another record fails); `owner` names the record in the error.
pub(crate) fn open_all(
    kr: &Keyring,
    rows: &[SecretRow],
    owner: &dyn std::fmt::Display,
    aad_of: impl Fn(&str) -> Aad,
) -> Result<std::collections::BTreeMap<String, SecretString>, Error> {
    let mut out = std::collections::BTreeMap::new();
    for s in rows {
        let value = open_row(kr, &aad_of(&s.field), s).map_err(|e| {
            tracing::error!(%owner, field = %s.field, error = %e, "secret failed to decrypt");
            Error::DecryptionFailed(format!(
                "secret `{}` of {owner} failed to decrypt: {e}",
                s.field
            ))
        })??;
        out.insert(s.field.clone(), value);
    }
    Ok(out)
}
