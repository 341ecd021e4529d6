//! Reading integrations: one, or the tenant's list filtered like the
//! connection list (provider, tag, custody place).

use super::{not_found, INTEGRATION_PREFIX};
use crate::model::Integration;
use crate::Rekey;
use rekey_api::IntegrationQuery;
use rekey_core::{ids, Error};
use rekey_store::integrations::{self as store, IntegrationFilter, IntegrationRow};

impl Rekey {
    pub async fn get_integration(&self, tenant: &str, id: &str) -> Result<Integration, Error> {
        let row = self.integration_row(tenant, id).await?;
        Ok(Integration::new(row, &self.default_redirect_uri()))
    }

    pub(crate) async fn integration_row(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<IntegrationRow, Error> {
        let id = ids::parse_id(INTEGRATION_PREFIX, id)?;
        let mut c = self.store().read().await?;
        store::get(&mut c, tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))
    }

    /// Every integration of the tenant.
    pub async fn list_integrations(&self, tenant: &str) -> Result<Vec<Integration>, Error> {
        self.list_integrations_filtered(tenant, &IntegrationQuery::default())
            .await
    }

    /// `GET /api/v1/integrations`: the filters are validated as the
    /// connection list's (slugs of at most 64 characters).
    pub async fn list_integrations_filtered(
        &self,
        tenant: &str,
        q: &IntegrationQuery,
    ) -> Result<Vec<Integration>, Error> {
        let slug = |field: &str, v: &Option<String>| -> Result<Option<String>, Error> {
            if let Some(s) = v {
                ids::validate_slug(field, s, 64)?;
            }
            Ok(v.clone())
        };
        let f = IntegrationFilter {
            provider: slug("provider", &q.provider)?,
            tag: slug("tag", &q.tag)?,
            custody: slug("custody", &q.custody)?,
        };
        let mut c = self.store().read().await?;
        let rows = store::list_filtered(&mut c, tenant, &f).await?;
        let d = self.default_redirect_uri();
        Ok(rows.into_iter().map(|r| Integration::new(r, &d)).collect())
    }
}
