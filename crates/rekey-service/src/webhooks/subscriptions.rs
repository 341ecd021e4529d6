//! Webhook subscriptions: create (at most `max_webhooks` per tenant), read,
//! list, update, delete, rotate the signing secret, send a test event.

use super::{
    aad, not_found, url_host, validate_description, validate_events, validate_url, OWNER_KIND,
};
use crate::audit::record_ok;
use crate::{Ctx, Delivery, NewWebhook, Rekey, WebhookPage};
use rekey_api::{CreateWebhook, UpdateWebhook, WebhookQuery};
use rekey_core::audit::AuditAction;
use rekey_core::events::EventType;
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::ErrorCode;
use rekey_core::{ids, Error, SecretString};
use rekey_store::webhooks::{self as store, EventRow, WebhookRow};
use rekey_store::{secrets, WriteTx};
use serde_json::json;

impl Rekey {
    async fn seal_webhook_secret(
        &self,
        tx: &mut WriteTx,
        tenant: &str,
        id: &str,
        secret: &SecretString,
    ) -> Result<(), Error> {
        let row = {
            let kr = self.keyring()?;
            crate::sealing::seal_row(&kr, &aad(tenant, id), secret)
        };
        secrets::delete_owner(tx.conn(), OWNER_KIND, id).await?;
        secrets::insert(tx.conn(), &row).await
    }

    pub async fn create_webhook(
        &self,
        ctx: &Ctx,
        req: &CreateWebhook,
    ) -> Result<NewWebhook, Error> {
        let url = validate_url(&self.outbound_policy(), &req.url)?;
        let events = validate_events(&req.events)?;
        validate_description(&req.description)?;
        let now = now_ms();
        let row = WebhookRow {
            id: ids::new_id(ids::WEBHOOK),
            tenant: ctx.tenant.clone(),
            url,
            events,
            description: req.description.clone(),
            disabled_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let secret = SecretString::new(rekey_crypto::generate_webhook_secret().to_string());
        let max = self.webhook_settings().max_webhooks;
        let mut tx = self.store().begin_write().await?;
        // Count and insert under a per-tenant lock (PostgreSQL; SQLite's
        // writes are serialised), so concurrent creates cannot pass the cap.
        let backend = tx.backend();
        store::lock_tenant(tx.conn(), backend, &ctx.tenant).await?;
        if store::count(tx.conn(), &ctx.tenant).await? >= max {
            return Err(Error::conflict(
                ErrorCode::WebhookLimit,
                format!("this tenant already has the maximum of {max} webhook subscriptions (--max-webhooks); delete one before creating another"),
            ));
        }
        store::insert(tx.conn(), &row).await?;
        self.seal_webhook_secret(&mut tx, &ctx.tenant, &row.id, &secret)
            .await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::WebhookCreated,
            &row.id,
            json!({"host": url_host(&row.url), "events": row.events}),
        )
        .await?;
        tx.commit().await?;
        Ok(NewWebhook {
            webhook: row,
            secret: secret.expose().to_string(),
        })
    }

    pub(super) async fn webhook_row(&self, tenant: &str, id: &str) -> Result<WebhookRow, Error> {
        let id = ids::parse_id(ids::WEBHOOK, id)?;
        let mut c = self.store().read().await?;
        store::get(&mut c, tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))
    }

    pub async fn get_webhook(&self, tenant: &str, id: &str) -> Result<WebhookRow, Error> {
        self.webhook_row(tenant, id).await
    }

    /// One page of subscriptions in id order (`limit` 1–200, default 50);
    /// `next_cursor` only when another page exists.
    pub async fn list_webhooks(
        &self,
        tenant: &str,
        q: &WebhookQuery,
    ) -> Result<WebhookPage, Error> {
        let limit = crate::paging::limit(q.limit, 200)?;
        let after_id = crate::paging::after_id(q.cursor.as_deref(), ids::WEBHOOK)?;
        let mut c = self.store().read().await?;
        // One more than asked: a cursor only when another page exists.
        let mut rows = store::list(&mut c, tenant, after_id.as_deref(), limit + 1).await?;
        let next_cursor = crate::paging::next_cursor(&mut rows, limit, |r| r.id.as_str());
        Ok(WebhookPage {
            items: rows,
            next_cursor,
        })
    }

    pub async fn update_webhook(
        &self,
        ctx: &Ctx,
        id: &str,
        req: &UpdateWebhook,
        if_match: Option<i64>,
    ) -> Result<WebhookRow, Error> {
        let id = ids::parse_id(ids::WEBHOOK, id)?;
        let policy = self.outbound_policy();
        let url = req
            .url
            .as_deref()
            .map(|u| validate_url(&policy, u))
            .transpose()?;
        let events = req
            .events
            .as_ref()
            .map(|e| validate_events(e))
            .transpose()?;
        if req.description.is_some() {
            validate_description(&req.description)?;
        }
        let mut tx = self.store().begin_write().await?;
        // Locked, so an update without a version applies to the latest one.
        rekey_store::lock_row(&mut tx, rekey_store::Locked::Webhook, &ctx.tenant, &id).await?;
        let cur = store::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        if let Some(v) = if_match.or(req.version) {
            if v != cur.version {
                return Err(Error::conflict(
                    ErrorCode::VersionConflict,
                    format!("webhook {} is at version {}, not {v}", cur.id, cur.version),
                ));
            }
        }
        let mut w = cur.clone();
        if let Some(u) = url {
            w.url = u;
        }
        if let Some(e) = events {
            w.events = e;
        }
        if req.description.is_some() {
            w.description = req.description.clone().filter(|d| !d.is_empty());
        }
        let now = now_ms();
        match req.enabled {
            Some(true) => w.disabled_at = None,
            Some(false) => w.disabled_at = w.disabled_at.or(Some(now)),
            None => {}
        }
        w.updated_at = now;
        w.version += 1;
        if !store::update(tx.conn(), &w, cur.version).await? {
            return Err(Error::conflict(
                ErrorCode::VersionConflict,
                format!("webhook {} changed concurrently; retry", cur.id),
            ));
        }
        record_ok(
            &mut tx,
            ctx,
            AuditAction::WebhookUpdated,
            &w.id,
            json!({"host": url_host(&w.url), "events": w.events, "enabled": w.disabled_at.is_none()}),
        )
        .await?;
        tx.commit().await?;
        Ok(w)
    }

    pub async fn delete_webhook(&self, ctx: &Ctx, id: &str) -> Result<(), Error> {
        let w = self.webhook_row(&ctx.tenant, id).await?;
        let mut tx = self.store().begin_write().await?;
        secrets::delete_owner(tx.conn(), OWNER_KIND, &w.id).await?;
        if !store::delete(tx.conn(), &ctx.tenant, &w.id).await? {
            return Err(not_found(&w.id));
        }
        record_ok(
            &mut tx,
            ctx,
            AuditAction::WebhookDeleted,
            &w.id,
            json!({"host": url_host(&w.url)}),
        )
        .await?;
        tx.commit().await
    }

    /// A new signing secret, shown once; the old one stops signing at once.
    pub async fn rotate_webhook_secret(&self, ctx: &Ctx, id: &str) -> Result<NewWebhook, Error> {
        let w = self.webhook_row(&ctx.tenant, id).await?;
        let secret = SecretString::new(rekey_crypto::generate_webhook_secret().to_string());
        let mut tx = self.store().begin_write().await?;
        self.seal_webhook_secret(&mut tx, &ctx.tenant, &w.id, &secret)
            .await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::WebhookSecretRotated,
            &w.id,
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(NewWebhook {
            webhook: w,
            secret: secret.expose().to_string(),
        })
    }

    /// Queue a `webhook.test` event for this subscription only.
    pub async fn test_webhook(&self, ctx: &Ctx, id: &str) -> Result<Delivery, Error> {
        let w = self.webhook_row(&ctx.tenant, id).await?;
        let now = now_ms();
        let event = EventRow {
            id: ids::new_id(ids::EVENT),
            tenant: ctx.tenant.clone(),
            kind: EventType::WebhookTest.as_str().into(),
            payload: json!({"type": EventType::WebhookTest, "timestamp": ms_to_rfc3339(now), "data": {"webhook_id": w.id}}).to_string(),
            created_at: now,
            // For this subscription only: its one delivery is written here.
            fanned_out_at: Some(now),
        };
        let did = ids::new_id(ids::DELIVERY);
        let mut tx = self.store().begin_write().await?;
        store::insert_event(tx.conn(), &event).await?;
        store::insert_delivery(tx.conn(), &did, &ctx.tenant, &w.id, &event.id, now).await?;
        super::commit_delivery(tx, &ctx.tenant, &did).await
    }
}
