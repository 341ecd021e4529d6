//! OAuth connections at run time: handing out fresh access tokens (refresh
//! on demand, single-flight), client-credentials tokens, revocation, and
//! reauthorization.

mod m2m;
mod reauthorize;
mod refresh;
mod revoke;

use rekey_core::connection::Status;
use rekey_core::credential_meta::OAuthMeta;
use rekey_core::Error;
use rekey_store::connections::ConnectionRow;

fn meta_of(row: &ConnectionRow) -> OAuthMeta {
    OAuthMeta::from_column(&row.credential_meta)
}

fn integration_of(row: &ConnectionRow) -> Result<String, Error> {
    meta_of(row)
        .integration_id
        .ok_or_else(|| Error::internal(format!("OAuth connection {} has no integration", row.id)))
}

/// Whether the access token should be renewed now.
fn needs_refresh(row: &ConnectionRow, window_ms: i64, now: i64) -> bool {
    match meta_of(row).access_expires_at {
        Some(exp) => exp - now <= window_ms,
        // No expiry given: tokens live until revoked.
        None => false,
    }
}

/// While a transient failure's backoff runs, don't call the provider again.
fn in_backoff(row: &ConnectionRow, now: i64) -> Option<i64> {
    if row.status != Status::Degraded {
        return None;
    }
    let err = row.error_context()?;
    // A probe's failure (an API rate limit, say) must not hold refreshes back.
    if err.source.as_deref() == Some("check") {
        return None;
    }
    let retry_at = err.retry_at?;
    (retry_at > now).then_some(retry_at)
}

/// What one pass of the refresh scheduler did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshRun {
    pub due: usize,
    pub refreshed: usize,
    pub failed: usize,
}

/// Keep idle grants alive at least this often (providers whose refresh
/// tokens die when unused).
const KEEPALIVE_MS: i64 = 24 * 3600 * 1000;

fn had_recent_refresh(row: &ConnectionRow, now: i64) -> bool {
    // A forced refresh that lands right after another one is the same refresh.
    meta_of(row)
        .last_refreshed_at
        .is_some_and(|t| now - t < 2_000)
}
