//! Deliveries as the API shows them (list, get, replay), and the leases
//! the delivery worker holds.

use crate::audit::record_ok;
use crate::{Ctx, Delivery, DeliveryPage, Rekey};
use rekey_api::DeliveryQuery;
use rekey_core::audit::AuditAction;
use rekey_core::time::now_ms;
use rekey_core::ErrorCode;
use rekey_core::{ids, Error};
use rekey_store::webhooks::{self as store};
use serde_json::json;

impl Rekey {
    pub async fn list_deliveries(
        &self,
        tenant: &str,
        webhook_id: &str,
        q: &DeliveryQuery,
    ) -> Result<DeliveryPage, Error> {
        let w = self.webhook_row(tenant, webhook_id).await?;
        if let Some(s) = &q.status {
            if !["pending", "delivered", "failed"].contains(&s.as_str()) {
                return Err(Error::invalid(
                    ErrorCode::InvalidStatus,
                    "`status` must be pending, delivered or failed",
                ));
            }
        }
        let limit = crate::paging::limit(q.limit, 200)?;
        let cursor = q
            .cursor
            .as_deref()
            .map(|c| ids::parse_id(ids::DELIVERY, c))
            .transpose()
            .map_err(|_| crate::paging::bad_cursor())?;
        let mut c = self.store().read().await?;
        let rows = store::list_deliveries(
            &mut c,
            tenant,
            &w.id,
            q.status.as_deref(),
            cursor.as_deref(),
            limit + 1,
        )
        .await?;
        let more = rows.len() as i64 > limit;
        let items: Vec<_> = rows.into_iter().take(limit as usize).collect();
        Ok(DeliveryPage {
            next_cursor: if more {
                items.last().map(|d| d.id.clone())
            } else {
                None
            },
            items,
        })
    }

    pub async fn get_delivery(
        &self,
        tenant: &str,
        webhook_id: &str,
        id: &str,
    ) -> Result<Delivery, Error> {
        let w = self.webhook_row(tenant, webhook_id).await?;
        let id = ids::parse_id(ids::DELIVERY, id)?;
        let mut c = self.store().read().await?;
        let d = store::get_delivery(&mut c, tenant, &id)
            .await?
            .filter(|d| d.webhook_id == w.id)
            .ok_or_else(|| {
                Error::not_found(
                    ErrorCode::DeliveryNotFound,
                    format!("delivery {id} of webhook {}", w.id),
                )
            })?;
        let attempts = store::attempts(&mut c, &d.id).await?;
        Ok(Delivery {
            row: d,
            attempts: Some(attempts),
        })
    }

    /// Send a delivery again (same `webhook-id`), whatever its state.
    pub async fn replay_delivery(
        &self,
        ctx: &Ctx,
        webhook_id: &str,
        id: &str,
    ) -> Result<Delivery, Error> {
        let before = self.get_delivery(&ctx.tenant, webhook_id, id).await?.row;
        let mut tx = self.store().begin_write().await?;
        if !store::replay(tx.conn(), &ctx.tenant, &before.id, now_ms()).await? {
            return Err(Error::conflict(
                ErrorCode::DeliveryInFlight,
                format!(
                    "delivery {} is being sent right now; try again in a moment",
                    before.id
                ),
            ));
        }
        record_ok(&mut tx, ctx, AuditAction::WebhookDeliveryReplayed, &before.id, json!({"webhook_id": before.webhook_id, "event_id": before.event_id, "previous_status": before.status})).await?;
        super::commit_delivery(tx, &ctx.tenant, &before.id).await
    }

    /// Forget leases at start-up: `None` drops all (single-process SQLite),
    /// `Some(owner)` only this replica's.
    pub async fn release_leases(&self, owner: Option<&str>) -> Result<(), Error> {
        let mut tx = self.store().begin_write().await?;
        store::release_leases(tx.conn(), owner).await?;
        rekey_store::connections::release_check_leases(tx.conn(), owner).await?;
        rekey_store::rotations::release(tx.conn(), owner, None).await?;
        rekey_store::revocations::release(tx.conn(), owner).await?;
        rekey_store::campaigns::release(tx.conn(), owner).await?;
        tx.commit().await
    }

    /// Deliveries per status, all tenants (metrics).
    pub async fn webhook_delivery_counts(&self) -> Result<Vec<(String, i64)>, Error> {
        let mut c = self.store().read().await?;
        store::count_by_status(&mut c).await
    }

    /// At start-up on SQLite (one serving process, by the data-directory
    /// lock) every lease was left by a crash: free them so work resumes at
    /// once. On PostgreSQL other replicas' leases are live; they lapse.
    pub async fn release_stale_leases(&self) -> Result<(), Error> {
        match self.store().backend() {
            rekey_store::Backend::Sqlite => self.release_leases(None).await,
            rekey_store::Backend::Postgres => Ok(()),
        }
    }
}
