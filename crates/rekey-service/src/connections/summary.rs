//! A tenant's connections at a glance, for the dashboard: counts by status,
//! the tags and custody places in use, and which connections each OAuth
//! integration serves. Read-only, non-secret columns only.

use crate::Rekey;
use rekey_core::Error;
use rekey_store::connections as store;
use std::collections::BTreeMap;

/// Counts by status and the filter values in use, of one tenant.
#[derive(Debug, Clone, Default)]
pub struct ConnectionSummary {
    /// (status, count), statuses with no connection left out.
    pub counts: Vec<(String, i64)>,
    pub tags: Vec<String>,
    pub custody: Vec<String>,
}

/// A connection made through an OAuth integration.
#[derive(Debug, Clone)]
pub struct IntegrationUse {
    pub id: String,
    pub display_name: String,
    pub status: String,
}

impl Rekey {
    pub async fn connection_summary(&self, tenant: &str) -> Result<ConnectionSummary, Error> {
        let mut c = self.store().read().await?;
        let (counts, tags, custody) = store::tenant_summary(&mut c, tenant).await?;
        Ok(ConnectionSummary {
            counts,
            tags,
            custody,
        })
    }

    /// The tenant's connections by the integration they came from.
    pub async fn connections_by_integration(
        &self,
        tenant: &str,
    ) -> Result<BTreeMap<String, Vec<IntegrationUse>>, Error> {
        let mut c = self.store().read().await?;
        let mut out: BTreeMap<String, Vec<IntegrationUse>> = BTreeMap::new();
        for (integration, id, display_name, status) in store::by_integration(&mut c, tenant).await?
        {
            out.entry(integration).or_default().push(IntegrationUse {
                id,
                display_name,
                status,
            });
        }
        Ok(out)
    }
}
