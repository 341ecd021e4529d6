//! The identity probe: an OAuth grant of a provider whose catalog entry has
//! no probe (`custom-oidc`, `custom-oauth2`) is checked at the provider's
//! userinfo / identity endpoint — the integration's `identity_url`
//! override, the catalog's, or OIDC discovery's `userinfo_endpoint` — with
//! the access token (refreshed first when due, as for every OAuth probe).

use crate::status::{Observation, Outcome};
use crate::Rekey;
use rekey_core::connection::ConnectionKind;
use rekey_providers::probe::Probe;
use rekey_store::connections::ConnectionRow;
use serde_json::json;

impl Rekey {
    /// Whether the connection's provider may have an identity endpoint
    /// (a catalog identity URL or an issuer to discover it from). Decided
    /// without I/O; [`Rekey::identity_probe`] resolves it.
    pub(in crate::health) fn may_have_identity(&self, row: &ConnectionRow) -> bool {
        self.catalog()
            .get(&row.provider)
            .and_then(|p| p.oauth.as_ref())
            .is_some_and(|o| o.identity_url.is_some() || o.issuer.is_some())
    }

    /// The identity probe of an authorization-code grant: None when the
    /// connection has no integration or its provider no identity endpoint;
    /// `Err` (the finding) when the endpoints cannot be resolved now.
    pub(in crate::health) async fn identity_probe(
        &self,
        row: &ConnectionRow,
    ) -> Option<Result<Probe, Observation>> {
        if row.kind != ConnectionKind::OAuth2AuthorizationCode {
            return None;
        }
        let iid = row.integration_id()?;
        let integ = match self.integration_row(&row.tenant, &iid).await {
            Ok(i) => i,
            Err(e) => {
                return Some(Err(Observation::misconfigured(format!(
                    "the connection's integration cannot be read: {}",
                    e.public_message()
                ))))
            }
        };
        let resolved = match self.resolve(&integ).await {
            Ok(r) => r,
            // Discovery failing is the provider's trouble, retried later.
            Err(e) => {
                return Some(Err(Observation::failed(
                    Outcome::Transient,
                    "discovery_failed",
                    e.public_message(),
                )))
            }
        };
        let url = resolved.identity_url?;
        let mut p: Probe = match serde_json::from_value(json!({ "url": url })) {
            Ok(p) => p,
            Err(e) => return Some(Err(Observation::misconfigured(format!("probe: {e}")))),
        };
        // RFC 6750: an invalid or revoked token is 401 (403: too few scopes).
        p.auth_failure_statuses = vec![401, 403];
        p.success_statuses = vec![200];
        Some(Ok(p))
    }
}
