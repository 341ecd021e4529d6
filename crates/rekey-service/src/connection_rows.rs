//! A stored connection and its secrets, read and opened: the helpers that
//! connections, health, the connect flow and OAuth at run time all use, kept
//! here so none of them imports another's internals.

use crate::Rekey;
use rekey_core::ErrorCode;
use rekey_core::{Error, SecretString};
use rekey_crypto::Aad;
use rekey_store::connections::{self as store, ConnectionRow};
use rekey_store::secrets::{self, SecretRow};
use std::collections::BTreeMap;

/// The `owner_kind` of a connection's secret rows.
pub(crate) const OWNER_KIND: &str = "connection";

pub(crate) fn not_found(id: &str) -> Error {
    Error::not_found(ErrorCode::ConnectionNotFound, format!("connection {id}"))
}

/// The AAD a connection's secret field is sealed under.
pub(crate) fn aad(tenant: &str, id: &str, field: &str, version: i64) -> Aad {
    Aad::new(tenant, OWNER_KIND, id, field, version)
}

impl Rekey {
    /// A connection and its sealed secret rows, as one consistent pair.
    /// They are read by two statements; a credential change (refresh, new
    /// material) committing in between would pair a row with secrets sealed
    /// for another `credential_version`, which the AAD check rightly
    /// refuses. Secret rows carry the version they were sealed for, so a
    /// torn pair is seen and read again, and after a few tries both are read
    /// in one snapshot.
    pub(crate) async fn load_secret_rows(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(ConnectionRow, Vec<SecretRow>), Error> {
        const OPTIMISTIC_TRIES: usize = 3;
        {
            let mut c = self.store().read().await?;
            for _ in 0..OPTIMISTIC_TRIES {
                let row = store::get(&mut c, tenant, id)
                    .await?
                    .ok_or_else(|| not_found(id))?;
                let rows = secrets::for_owner(&mut c, OWNER_KIND, id).await?;
                if rows.iter().all(|s| s.version == row.credential_version) {
                    return Ok((row, rows));
                }
            }
        }
        let mut tx = self.store().begin_snapshot().await?;
        let row = store::get(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let rows = secrets::for_owner(&mut tx, OWNER_KIND, id).await?;
        tx.commit().await?;
        Ok((row, rows))
    }

    /// [`Self::load_secret_rows`], opened.
    pub(crate) async fn load_with_secrets(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(ConnectionRow, BTreeMap<String, SecretString>), Error> {
        let (row, rows) = self.load_secret_rows(tenant, id).await?;
        let s = self.open_secrets(&row, &rows)?;
        Ok((row, s))
    }

    pub(crate) fn open_secrets(
        &self,
        row: &ConnectionRow,
        rows: &[SecretRow],
    ) -> Result<BTreeMap<String, SecretString>, Error> {
        crate::sealing::open_all(
            &*self.keyring()?,
            rows,
            &format_args!("connection {}", row.id),
            |f| aad(&row.tenant, &row.id, f, row.credential_version),
        )
    }
}
