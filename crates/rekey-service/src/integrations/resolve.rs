//! Resolving an integration's effective endpoints: catalog templates filled
//! with its placeholder values, its overrides, and OIDC discovery.

use crate::model::Endpoints;
use crate::Rekey;
use rekey_core::Error;
use rekey_core::ErrorCode;
use rekey_providers::OAuthSpec;
use rekey_store::integrations::IntegrationRow;
use std::collections::BTreeMap;

/// Endpoints after catalog, overrides, placeholders and discovery.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub authorize_url: Option<String>,
    pub token_url: String,
    pub revocation_url: Option<String>,
    pub issuer: Option<String>,
    pub jwks_uri: Option<String>,
    pub identity_url: Option<String>,
    pub spec: OAuthSpec,
}

impl Rekey {
    /// Effective endpoints of an integration.
    pub(crate) async fn resolve(&self, row: &IntegrationRow) -> Result<Resolved, Error> {
        let provider = self.oauth_provider(&row.provider)?;
        let spec = provider
            .oauth
            .clone()
            .ok_or_else(|| Error::internal("checked above"))?;
        let params: BTreeMap<String, String> =
            serde_json::from_str(&row.params).unwrap_or_default();
        let o = Endpoints::parse(&row.endpoints);
        // Catalog templates are filled through render_url, which enforces
        // each placeholder's allowed values / host suffixes.
        let render = |t: &str| {
            provider.render_url(t, &params).map_err(|e| {
                Error::invalid(
                    ErrorCode::InvalidIntegration,
                    format!("integration {}: {e}", row.id),
                )
            })
        };
        let pick = |ov: &Option<String>, cat: &Option<String>| -> Result<Option<String>, Error> {
            match (ov, cat) {
                (Some(o), _) => Ok(Some(o.clone())),
                (None, Some(t)) => render(t).map(Some),
                (None, None) => Ok(None),
            }
        };
        let issuer = pick(&o.issuer, &spec.issuer)?;
        let mut authorize_url = pick(&o.authorize_url, &spec.authorize_url)?;
        let mut token_url = pick(&o.token_url, &spec.token_url)?;
        let mut revocation_url = pick(&o.revocation_url, &spec.revocation_url)?;
        let mut identity_url = pick(&o.identity_url, &spec.identity_url)?;
        let mut jwks_uri = None;
        if let Some(iss) = &issuer {
            let d = rekey_oauth::discover(&self.inner.http, iss)
                .await
                .map_err(|e| {
                    crate::oauth_error(e, |e| {
                        Error::Unavailable(format!("OIDC discovery for {iss} failed: {e}"))
                    })
                })?;
            // Explicit overrides win; discovery fills the gaps.
            if o.authorize_url.is_none() {
                authorize_url = d.authorization_endpoint.or(authorize_url);
            }
            if o.token_url.is_none() {
                token_url = d.token_endpoint.or(token_url);
            }
            if o.revocation_url.is_none() {
                revocation_url = d.revocation_endpoint.or(revocation_url);
            }
            if o.identity_url.is_none() && identity_url.is_none() {
                identity_url = d.userinfo_endpoint;
            }
            jwks_uri = d.jwks_uri;
        }
        Ok(Resolved {
            authorize_url,
            token_url: token_url.ok_or_else(|| {
                Error::unprocessable(
                    ErrorCode::OauthConfig,
                    "no token endpoint for this integration",
                )
            })?,
            revocation_url,
            issuer,
            jwks_uri,
            identity_url,
            spec,
        })
    }
}
