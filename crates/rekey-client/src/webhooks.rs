//! `/api/v1/webhooks`: subscriptions, their deliveries and replays.

use crate::{seg, Client, Result, NO_QUERY};
use rekey_api::*;
use reqwest::Method;

fn hook(id: &str) -> String {
    format!("/api/v1/webhooks/{}", seg(id))
}

fn delivery(webhook: &str, delivery: &str) -> String {
    format!("{}/deliveries/{}", hook(webhook), seg(delivery))
}

impl Client {
    /// `GET /api/v1/webhooks`: one page, in id order.
    pub async fn list_webhooks(&self, query: &WebhookQuery) -> Result<WebhookList> {
        self.get("/api/v1/webhooks", query).await
    }

    /// Every subscription, 200 a page.
    pub async fn list_all_webhooks(&self) -> Result<Vec<WebhookView>> {
        let mut query = WebhookQuery {
            cursor: None,
            limit: Some(200),
        };
        let mut items = Vec::new();
        loop {
            let page = self.list_webhooks(&query).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(items),
            }
        }
    }

    /// `POST /api/v1/webhooks`: the answer holds the signing secret, once.
    pub async fn create_webhook(&self, req: &CreateWebhook) -> Result<CreatedWebhook> {
        self.post("/api/v1/webhooks", NO_QUERY, Some(req), None)
            .await
    }

    /// `GET /api/v1/webhooks/{id}`.
    pub async fn get_webhook(&self, id: &str) -> Result<WebhookView> {
        self.get(&hook(id), NO_QUERY).await
    }

    /// `PATCH /api/v1/webhooks/{id}`: URL, events, description, pause.
    pub async fn update_webhook(
        &self,
        id: &str,
        req: &UpdateWebhook,
        if_match: Option<i64>,
    ) -> Result<WebhookView> {
        self.write(Method::PATCH, &hook(id), req, if_match).await
    }

    /// `DELETE /api/v1/webhooks/{id}` with its delivery history.
    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        self.delete(&hook(id), NO_QUERY, None).await
    }

    /// `POST /api/v1/webhooks/{id}/rotate-secret`: the new secret, once.
    pub async fn rotate_webhook_secret(&self, id: &str) -> Result<CreatedWebhook> {
        self.post::<_, _, ()>(&format!("{}/rotate-secret", hook(id)), NO_QUERY, None, None)
            .await
    }

    /// `POST /api/v1/webhooks/{id}/test`: queue a `webhook.test` event.
    pub async fn test_webhook(&self, id: &str) -> Result<DeliveryView> {
        self.post::<_, _, ()>(&format!("{}/test", hook(id)), NO_QUERY, None, None)
            .await
    }

    /// `GET /api/v1/webhooks/{id}/deliveries`, newest first.
    pub async fn list_deliveries(&self, id: &str, query: &DeliveryQuery) -> Result<DeliveryList> {
        self.get(&format!("{}/deliveries", hook(id)), query).await
    }

    /// `GET /api/v1/webhooks/{id}/deliveries/{delivery_id}` with its attempts.
    pub async fn get_delivery(&self, webhook: &str, delivery_id: &str) -> Result<DeliveryView> {
        self.get(&delivery(webhook, delivery_id), NO_QUERY).await
    }

    /// `POST …/deliveries/{delivery_id}/replay`: send again, same `webhook-id`.
    pub async fn replay_delivery(&self, webhook: &str, delivery_id: &str) -> Result<DeliveryView> {
        self.post::<_, _, ()>(
            &format!("{}/replay", delivery(webhook, delivery_id)),
            NO_QUERY,
            None,
            None,
        )
        .await
    }
}
