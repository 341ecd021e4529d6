mod create;
mod group;
mod import;
mod read;
pub mod rules;
mod summary;

pub(crate) use group::CreateGroup;
pub use import::ImportOutcome;
pub(crate) use read::connection_filter;
pub use summary::{ConnectionSummary, IntegrationUse};
mod update;

use crate::Principal;
use rekey_api::OwnerView;
use rekey_core::connection::{self, Owner};
use rekey_core::scope::Scope;
use rekey_core::ErrorCode;
use rekey_core::{ids, Error};
use rekey_store::connections::ConnectionRow;
use std::collections::BTreeMap;

/// Values for a provider's URL placeholders: declared names only, each
/// value host-name safe and matching the catalog's `param_info`.
pub(crate) fn check_params(
    provider: &rekey_providers::Provider,
    params: &BTreeMap<String, String>,
) -> Result<String, Error> {
    for (k, v) in params {
        if !provider.params.contains(k) {
            return Err(Error::invalid(
                ErrorCode::InvalidField,
                format!(
                    "`params.{}` is not a placeholder of provider `{}`{}",
                    ids::truncate_for_message(k),
                    provider.id,
                    if provider.params.is_empty() {
                        String::new()
                    } else {
                        format!(" (it has: {})", provider.params.join(", "))
                    }
                ),
            ));
        }
        rekey_providers::check_param_value(k, v, provider.param_info.get(k))
            .map_err(|e| Error::invalid(ErrorCode::InvalidField, format!("`params`: {e}")))?;
    }
    Ok(serde_json::to_string(params).unwrap_or_else(|_| "{}".into()))
}

/// `probe_url` and `params` decide where a probe sends the connection's
/// credential (an API URL, a database host), so only a caller who may read
/// the credential anyway (`credentials:read`) may set them.
pub fn authorize_probe_target(
    p: &Principal,
    probe_url: Option<&str>,
    params_set: bool,
) -> Result<(), Error> {
    if params_set || probe_url.is_some_and(|u| !u.is_empty()) {
        p.require(Scope::CredentialsRead)?;
    }
    Ok(())
}

fn owner_from(o: Option<&OwnerView>) -> Result<Owner, Error> {
    let o = o.cloned().unwrap_or_default();
    let owner = Owner {
        subject: o.subject,
        email: o.email,
        name: o.name,
    };
    connection::validate_owner(&owner)?;
    Ok(owner)
}

fn check_version(expected: Option<i64>, row: &ConnectionRow) -> Result<(), Error> {
    match expected {
        Some(v) if v != row.version => Err(Error::conflict(
            ErrorCode::VersionConflict,
            format!(
                "connection {} is at version {}, not {v}; reload and retry",
                row.id, row.version
            ),
        )),
        _ => Ok(()),
    }
}

fn lost_race(id: &str) -> Error {
    Error::conflict(
        ErrorCode::VersionConflict,
        format!("connection {id} was changed concurrently; reload and retry"),
    )
}
