//! The delivery worker's pass: fan pending outbox events out to
//! deliveries, then sign, post, retry with backoff and jitter, give up
//! after a limit.

use super::{
    aad, matches, retry_delay_ms, DeliveryRun, WebhookSettings, FAN_OUT_ROWS, OWNER_KIND, PARALLEL,
};
use crate::Rekey;
use rekey_core::time::now_ms;
use rekey_core::{ids, Error, SecretString};
use rekey_store::secrets;
use rekey_store::webhooks::{self as store, Claimed, WebhookRow};
use std::collections::HashMap;
use std::time::Instant;

enum Sent {
    Delivered,
    Retry,
    GaveUp,
}

impl Rekey {
    /// Fan out up to `limit` pending outbox events in one write transaction:
    /// claim them (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas take
    /// disjoint events), write one delivery per enabled subscription of the
    /// event's tenant whose filter matches *now*, and mark each event fanned
    /// out. A crash or error anywhere rolls all of it back, so an event ends
    /// up either unmarked with no deliveries (redone by the next pass) or
    /// marked with all of them. Returns (events fanned out, backlog left).
    pub async fn fan_out_events(&self, limit: i64) -> Result<(usize, bool), Error> {
        {
            // Most passes find nothing: don't take the write lock for that.
            let mut c = self.store().read().await?;
            if !store::has_pending_events(&mut c).await? {
                return Ok((0, false));
            }
        }
        let mut tx = self.store().begin_write().await?;
        let backend = tx.backend();
        let events = store::claim_pending_events(tx.conn(), backend, limit).await?;
        let now = now_ms();
        let mut hooks: HashMap<String, Vec<WebhookRow>> = HashMap::new();
        let mut done = Vec::with_capacity(events.len());
        let mut rows = 0;
        for e in &events {
            if rows >= FAN_OUT_ROWS {
                break;
            }
            if !hooks.contains_key(&e.tenant) {
                let enabled = store::enabled_for_fan_out(tx.conn(), backend, &e.tenant).await?;
                hooks.insert(e.tenant.clone(), enabled);
            }
            let targets: Vec<(String, String)> = hooks
                .get(&e.tenant)
                .map(|hs| {
                    hs.iter()
                        .filter(|w| matches(&w.events, &e.kind))
                        .map(|w| (ids::new_id(ids::DELIVERY), w.id.clone()))
                        .collect()
                })
                .unwrap_or_default();
            store::insert_deliveries(tx.conn(), &e.tenant, &e.id, &targets, now).await?;
            rows += targets.len();
            done.push(e.id.clone());
        }
        store::mark_fanned_out(tx.conn(), &done, now).await?;
        tx.commit().await?;
        let backlog = done.len() < events.len() || events.len() as i64 >= limit;
        Ok((done.len(), backlog))
    }

    /// One pass of the delivery worker: fan out pending events (see
    /// [`Rekey::fan_out_events`]), then claim due deliveries (lease long
    /// enough for one attempt), post them in parallel, record each attempt.
    /// A crash after the post and before the record re-sends after the lease
    /// lapses: at-least-once, de-duplicated by receivers on `webhook-id`.
    pub async fn deliver_due(&self, owner: &str, limit: i64) -> Result<DeliveryRun, Error> {
        use futures_util::StreamExt;
        // A failed fan-out is rolled back and retried next pass; it must not
        // hold up deliveries already queued.
        let (fanned_out, fan_out_backlog) = match self.fan_out_events(limit).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "webhook fan-out failed; retried next pass");
                (0, false)
            }
        };
        let s = self.webhook_settings();
        let now = now_ms();
        // PARALLEL posts at a time, each at most `timeout`: the lease covers
        // the whole batch, so a live worker never loses a claim.
        let rounds = (limit + PARALLEL - 1) / PARALLEL;
        let lease_ms = s.timeout.as_millis() as i64 * (rounds + 1);
        let claimed = self
            .store()
            .claim(
                &store::DUE,
                store::claim_due,
                owner,
                now,
                now + lease_ms,
                limit,
            )
            .await?;
        let mut run = DeliveryRun {
            fanned_out,
            fan_out_backlog,
            claimed: claimed.len(),
            ..Default::default()
        };
        let results: Vec<Result<Sent, Error>> = futures_util::stream::iter(claimed)
            .map(|d| {
                let s = s.clone();
                async move { self.deliver_one(&s, d, owner).await }
            })
            .buffer_unordered(PARALLEL as usize)
            .collect()
            .await;
        for r in results {
            match r {
                Ok(Sent::Delivered) => run.delivered += 1,
                Ok(Sent::Retry) => run.retrying += 1,
                Ok(Sent::GaveUp) => run.gave_up += 1,
                Err(e) => tracing::warn!(error = %e, "webhook delivery bookkeeping failed"),
            }
        }
        Ok(run)
    }

    async fn webhook_secret(&self, tenant: &str, id: &str) -> Result<SecretString, Error> {
        let rows = {
            let mut c = self.store().read().await?;
            secrets::for_owner(&mut c, OWNER_KIND, id).await?
        };
        let row = rows
            .iter()
            .find(|r| r.field == "secret")
            .ok_or_else(|| Error::internal(format!("webhook {id} has no signing secret")))?;
        let kr = self.keyring()?;
        crate::sealing::open_row(&kr, &aad(tenant, id), row)
            .map_err(|e| Error::DecryptionFailed(format!("signing secret of webhook {id}: {e}")))?
    }

    /// Sign with the subscription's secret. A failure here is recorded as
    /// an attempt, so it counts towards the limit instead of looping.
    /// Returns the signature and the secret (to scrub from the answer).
    async fn sign(&self, d: &Claimed, ts: i64) -> Result<(String, SecretString), String> {
        let secret = self
            .webhook_secret(&d.tenant, &d.webhook_id)
            .await
            .map_err(|e| format!("cannot sign: {}", e.code()))?;
        let sig =
            rekey_crypto::sign_webhook(secret.expose(), &d.event_id, ts, d.payload.as_bytes())
                .map_err(|_| "cannot sign: the stored secret is malformed".to_string())?;
        Ok((sig, secret))
    }

    async fn deliver_one(
        &self,
        s: &WebhookSettings,
        d: Claimed,
        owner: &str,
    ) -> Result<Sent, Error> {
        // The timestamp is the attempt's (receivers reject stale ones); the
        // id and body stay the same across attempts.
        let ts = now_ms() / 1000;
        let started = Instant::now();
        let (http_status, error, body, ok) = match self.sign(&d, ts).await {
            Ok((sig, secret)) => self.post(s, &d, ts, sig, &secret).await,
            Err(e) => {
                tracing::error!(delivery = %d.delivery_id, webhook = %d.webhook_id, error = %e, "webhook not signed");
                (None, Some(e), None, false)
            }
        };
        let duration_ms = started.elapsed().as_millis() as i64;
        let at = now_ms();
        let attempts = d.attempts + 1;
        let (status, next, sent) = if ok {
            ("delivered", at, Sent::Delivered)
        } else if attempts >= s.max_attempts {
            ("failed", at, Sent::GaveUp)
        } else {
            ("pending", at + retry_delay_ms(s, attempts), Sent::Retry)
        };
        let mut tx = self.store().begin_write().await?;
        let kept = store::finish_attempt(
            tx.conn(),
            &ids::new_id(ids::ATTEMPT),
            &d,
            at,
            http_status,
            error.as_deref(),
            duration_ms,
            body.as_deref(),
            status,
            next,
            owner,
        )
        .await?;
        tx.commit().await?;
        if !kept {
            tracing::warn!(delivery = %d.delivery_id, "webhook lease lost; attempt recorded, state left to its new holder");
            return Ok(Sent::Retry);
        }
        if let Sent::GaveUp = sent {
            tracing::warn!(delivery = %d.delivery_id, webhook = %d.webhook_id, attempts, "webhook delivery failed for good");
        }
        Ok(sent)
    }

    /// Post one signed delivery: (HTTP status, error, scrubbed answer,
    /// success). Success is any 2xx, whatever the answer's size.
    async fn post(
        &self,
        s: &WebhookSettings,
        d: &Claimed,
        ts: i64,
        sig: String,
        secret: &SecretString,
    ) -> (Option<i64>, Option<String>, Option<String>, bool) {
        // A receiver's answer may quote its own copy of the signing secret
        // (`whsec_…`, or the base64 key after the prefix).
        let whole = secret.expose();
        let known = [whole, whole.strip_prefix("whsec_").unwrap_or(whole)];
        let req = self
            .inner
            .webhook_http
            .inner()
            .post(&d.url)
            .timeout(s.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(d.payload.clone());
        match self.inner.webhook_http.execute(req).await {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let ok = (200..300).contains(&status);
                // Keep at most 1 KiB of the answer, best effort.
                let mut head = Vec::new();
                while head.len() < 1024 {
                    match resp.chunk().await {
                        Ok(Some(c)) => {
                            let take = c.len().min(1024 - head.len());
                            head.extend_from_slice(&c[..take]);
                        }
                        _ => break,
                    }
                }
                let body =
                    (!head.is_empty()).then(|| rekey_core::scrub::scrub_body(&head, &known, 512));
                let err = (!ok).then(|| format!("receiver answered HTTP {status}"));
                (Some(i64::from(status)), err, body, ok)
            }
            // The policy's refusal names host, address and range; network
            // errors name scheme, host and port (never the path or query,
            // which may carry the receiver's token).
            Err(e @ rekey_oauth::OAuthError::Refused(_)) => {
                (None, Some(e.to_string()), None, false)
            }
            Err(e) => {
                let m = e.to_string();
                let what = if m.contains("timed out") {
                    "timed out"
                } else if m.contains("connection failed") {
                    "connection failed"
                } else {
                    "request failed"
                };
                (None, Some(what.to_string()), None, false)
            }
        }
    }
}
