//! The owners' reauthorization links of a campaign: one Connect link per
//! connection, valid until the deadline. The link's token is kept sealed
//! (owner kind `campaign_link`, the item's id) so the links can be listed
//! and handed out again; every listing is audited.

use super::{wrong_state, CampaignRow, ItemRow};
use crate::audit::record_ok;
use crate::sealing::{open_row, seal_row};
use crate::webhooks::emit;
use crate::{Ctx, Rekey};
use rekey_core::audit::AuditAction;
use rekey_core::campaign::{CampaignState, ItemState};
use rekey_core::connection::ConnectSessionStatus;
use rekey_core::events::EventType;
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::{ids, Error, ErrorCode, SecretString};
use rekey_crypto::Aad;
use rekey_store::campaigns as store;
use rekey_store::{connect_sessions, secrets, WriteTx};
use serde_json::json;

pub(super) const OWNER_KIND: &str = "campaign_link";

pub(super) fn aad(tenant: &str, item_id: &str) -> Aad {
    Aad::new(tenant, OWNER_KIND, item_id, "token", 1)
}

/// When owners still holding an unused link are reminded: a day before
/// the deadline, or halfway from the start for a shorter campaign.
pub(super) fn remind_at(c: &CampaignRow) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    let start = c.started_at.unwrap_or(c.created_at);
    c.deadline - DAY_MS.min((c.deadline - start) / 2)
}

/// A campaign's link to one connection's owner.
#[derive(Clone)]
pub struct CampaignLink {
    pub item: ItemRow,
    pub url: String,
    pub expires_at: i64,
    pub status: ConnectSessionStatus,
}

impl std::fmt::Debug for CampaignLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampaignLink")
            .field("connection", &self.item.connection_id)
            .field("url", &"[redacted]")
            .field("status", &self.status)
            .finish()
    }
}

impl Rekey {
    /// Make the item's link (a reauthorization session until the
    /// deadline) and, in one transaction, seal its token, point the item at
    /// it and announce it (`campaign.reauth_requested`). A crash before
    /// that commit leaves an unused session that the next link supersedes.
    pub(super) async fn make_link(
        &self,
        ctx: &Ctx,
        c: &CampaignRow,
        item: &mut ItemRow,
        owner: Option<&str>,
    ) -> Result<bool, Error> {
        if now_ms() >= c.deadline {
            return Err(Error::conflict(
                ErrorCode::CampaignState,
                format!(
                    "campaign {}'s deadline ({}) has passed: a link would be dead on arrival; confirm or skip the connection, or reconnect it outside the campaign",
                    c.id,
                    ms_to_rfc3339(c.deadline)
                ),
            ));
        }
        let r = self
            .reauthorize_until(ctx, &item.connection_id, false, Some(c.deadline))
            .await?;
        let Some(session) = r.session else {
            return Err(Error::internal("reauthorization made no link"));
        };
        crate::rotation::fault::after("campaign_link_made");
        let was = (item.step, item.state);
        item.session_id = Some(session.id.clone());
        item.link_expires_at = Some(session.expires_at);
        item.state = ItemState::WaitingForOwner;
        item.detail = Some(format!(
            "waiting for {} to reconnect through the link (until {})",
            item.owner.as_deref().unwrap_or("the owner"),
            ms_to_rfc3339(session.expires_at)
        ));
        item.updated_at = now_ms();
        // Looked at again soon (sooner when the owner reconnects).
        item.due_at = item.updated_at + 2_000;
        item.attempts = 0;
        let mut tx = self.store().begin_write().await?;
        secrets::delete_owner(tx.conn(), OWNER_KIND, &item.id).await?;
        let token = SecretString::new(session.token.clone());
        let sealed = seal_row(&*self.keyring()?, &aad(&item.tenant, &item.id), &token);
        secrets::insert(tx.conn(), &sealed).await?;
        if !store::update_item(tx.conn(), item, owner, was).await? {
            return Ok(false);
        }
        if !self.queue_mail(&mut tx, c, item, "link").await? && self.mails_owner(c) {
            // E-mail is on but this owner has no address: say so where the
            // operator looks, and keep the item as written.
            let note = format!(
                "{}; no e-mail was sent (the owner has no e-mail address): hand the link out from the links list",
                item.detail.as_deref().unwrap_or_default()
            );
            store::set_waiting_detail(tx.conn(), &item.tenant, &item.id, &session.id, &note)
                .await?;
            item.detail = Some(note);
        }
        // In the campaign's timeline like every other step (the URL is not).
        record_ok(
            &mut tx,
            ctx,
            AuditAction::CampaignStep,
            &c.id,
            json!({
                "connection": item.connection_id, "state": item.state.as_str(),
                "step": item.step, "detail": item.detail,
            }),
        )
        .await?;
        if super::notifies(c) {
            let mut data = super::item_data(c, item);
            if let Some(m) = data.as_object_mut() {
                m.insert("url".into(), json!(session.url));
                m.insert(
                    "expires_at".into(),
                    json!(ms_to_rfc3339(session.expires_at)),
                );
                m.insert("display_name".into(), json!(item.display_name));
            }
            emit(&mut tx, &c.tenant, EventType::CampaignReauthRequested, data).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Remind the owner of an unused link once, as the deadline nears (a
    /// day before it, or halfway from the start for a shorter campaign):
    /// a `campaign.reauth_reminder` event with the link, and an audit entry.
    pub(super) async fn remind_if_due(
        &self,
        ctx: &Ctx,
        c: &CampaignRow,
        item: &ItemRow,
    ) -> Result<(), Error> {
        let now = now_ms();
        let remind_at = remind_at(c);
        if item.reminded_at.is_some() || now < remind_at || now >= c.deadline {
            return Ok(());
        }
        let token = {
            let mut conn = self.store().read().await?;
            secrets::for_owner(&mut conn, OWNER_KIND, &item.id).await?
        };
        let Some(sealed) = token.first() else {
            return Ok(());
        };
        let token = open_row(&*self.keyring()?, &aad(&item.tenant, &item.id), sealed)
            .map_err(|e| Error::DecryptionFailed(format!("campaign link: {e}")))??;
        let mut tx = self.store().begin_write().await?;
        if !store::mark_reminded(tx.conn(), &item.tenant, &item.id, now).await? {
            return Ok(());
        }
        self.queue_mail(&mut tx, c, item, "reminder").await?;
        let expires = item.link_expires_at.map(ms_to_rfc3339);
        record_ok(
            &mut tx,
            ctx,
            AuditAction::CampaignReminder,
            &c.id,
            json!({"connection": item.connection_id, "owner": item.owner, "link_expires_at": expires}),
        )
        .await?;
        if super::notifies(c) {
            let mut data = super::item_data(c, item);
            if let Some(m) = data.as_object_mut() {
                m.insert(
                    "url".into(),
                    json!(format!("{}/connect/{}", self.public_url(), token.expose())),
                );
                m.insert("expires_at".into(), json!(expires));
                m.insert("display_name".into(), json!(item.display_name));
            }
            emit(&mut tx, &c.tenant, EventType::CampaignReauthReminder, data).await?;
        }
        tx.commit().await
    }

    /// `GET /campaigns/{id}/links`: the links made so far, in connection
    /// order, with their URLs (audited: a link is a way in).
    pub async fn campaign_links(
        &self,
        ctx: &Ctx,
        id: &str,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Vec<CampaignLink>, Option<String>), Error> {
        let c = self.campaign_row(&ctx.tenant, id).await?;
        let limit = crate::paging::limit(limit.or(Some(100)), 200)?;
        let mut after = crate::paging::after_id(cursor, ids::CONNECTION)?;
        let mut out = Vec::new();
        let mut next = None;
        let mut conn = self.store().read().await?;
        // Pages of items; only those with a link count toward `limit`.
        'pages: loop {
            let items =
                store::items(&mut conn, &c.tenant, &c.id, None, after.as_deref(), 500).await?;
            let Some(last) = items.last().map(|i| i.connection_id.clone()) else {
                break;
            };
            for item in items {
                let Some(sid) = item.session_id.clone() else {
                    continue;
                };
                if out.len() as i64 == limit {
                    next = out
                        .last()
                        .map(|l: &CampaignLink| crate::paging::cursor_of(&l.item.connection_id));
                    break 'pages;
                }
                let session = connect_sessions::get(&mut conn, &c.tenant, &sid).await?;
                let rows = secrets::for_owner(&mut conn, OWNER_KIND, &item.id).await?;
                let (Some(session), Some(sealed)) = (session, rows.first()) else {
                    continue;
                };
                let token = open_row(&*self.keyring()?, &aad(&c.tenant, &item.id), sealed)
                    .map_err(|e| Error::DecryptionFailed(format!("campaign link: {e}")))??;
                out.push(CampaignLink {
                    url: format!("{}/connect/{}", self.public_url(), token.expose()),
                    expires_at: session.expires_at,
                    status: session.status,
                    item,
                });
            }
            after = Some(last);
        }
        drop(conn);
        let mut tx = self.store().begin_write().await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::CampaignLinksRead,
            &c.id,
            json!({"links": out.len()}),
        )
        .await?;
        tx.commit().await?;
        Ok((out, next))
    }

    /// `POST /campaigns/{id}/links/{connection_id}` (resend: a new link,
    /// the old one stops working) or `DELETE` (cancel: the connection then
    /// waits for an operator).
    pub async fn campaign_link_change(
        &self,
        ctx: &Ctx,
        id: &str,
        connection_id: &str,
        resend: bool,
    ) -> Result<super::PlanItem, Error> {
        let c = self.campaign_row(&ctx.tenant, id).await?;
        let cid = ids::parse_id(ids::CONNECTION, connection_id)?;
        if !matches!(c.state, CampaignState::Running | CampaignState::Paused) {
            return Err(wrong_state(&c.id, c.state, "changed"));
        }
        let mut item = {
            let mut conn = self.store().read().await?;
            store::item(&mut conn, &c.tenant, &c.id, &cid).await?
        }
        .ok_or_else(|| {
            Error::not_found(
                ErrorCode::CampaignItemNotFound,
                format!("connection {cid} in campaign {}", c.id),
            )
        })?;
        // A link can be resent while the connection is unfinished and its
        // reauthorization has begun (the owner's turn, a cancelled link, a
        // new credential the provider refuses); cancelled while it waits.
        let reauth_at = serde_json::from_str::<Vec<String>>(&item.actions)
            .unwrap_or_default()
            .iter()
            .position(|a| a == "reauthorize");
        let may = match reauth_at {
            _ if item.finished_at.is_some() || item.session_id.is_none() => false,
            Some(at) if resend => item.step >= at as i64,
            Some(_) => item.state == ItemState::WaitingForOwner,
            None => false,
        };
        if !may {
            return Err(Error::conflict(
                ErrorCode::CampaignState,
                format!(
                    "connection {cid} is {} in campaign {}; {}",
                    item.state,
                    c.id,
                    if resend {
                        "a link is resent only once its reauthorization has begun and before it finishes"
                    } else {
                        "only a link its owner is waiting on can be cancelled"
                    }
                ),
            ));
        }
        if resend {
            // The owner's next credential must be newer than anything
            // there now (a refused one included); back to the link step.
            if let Some(at) = reauth_at {
                let cur = {
                    let mut conn = self.store().read().await?;
                    rekey_store::connections::get(&mut conn, &c.tenant, &cid).await?
                };
                let was = (item.step, item.state);
                if let Some(cur) = cur {
                    item.base_version = item.base_version.max(cur.credential_version);
                }
                item.step = at as i64;
                let mut tx = self.store().begin_write().await?;
                store::set_base_version(tx.conn(), &item.tenant, &item.id, item.base_version)
                    .await?;
                if !store::update_item(tx.conn(), &item, None, was).await? {
                    return Err(moved(&cid, &c.id));
                }
                tx.commit().await?;
            }
            // The new session supersedes the old one (one live link per connection).
            if !self.make_link(ctx, &c, &mut item, None).await? {
                return Err(moved(&cid, &c.id));
            }
        } else {
            let was = (item.step, item.state);
            let mut tx = self.store().begin_write().await?;
            let cancelled = match &item.session_id {
                Some(sid) => connect_sessions::cancel(tx.conn(), &c.tenant, sid).await?,
                None => false,
            };
            if !cancelled {
                return Err(Error::conflict(
                    ErrorCode::CampaignState,
                    format!(
                        "connection {cid}'s link was already used or retired; nothing to cancel"
                    ),
                ));
            }
            item.state = ItemState::WaitingForOperator;
            item.detail = Some(format!(
                "the link was cancelled by {}; resend it, or confirm or skip the connection",
                ctx.actor
            ));
            item.updated_at = now_ms();
            if !store::update_item(tx.conn(), &item, None, was).await? {
                return Err(moved(&cid, &c.id));
            }
            tx.commit().await?;
        }
        let mut tx = self.store().begin_write().await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::CampaignStep,
            &c.id,
            json!({"connection": cid, "link": if resend { "resent" } else { "cancelled" }}),
        )
        .await?;
        tx.commit().await?;
        Ok(self.planned(&c, item, now_ms()))
    }

    /// Retire every unused link of a campaign (it is being cancelled).
    pub(super) async fn cancel_links(
        &self,
        tx: &mut WriteTx,
        c: &CampaignRow,
    ) -> Result<u64, Error> {
        let mut n = 0;
        let mut after: Option<String> = None;
        loop {
            let items =
                store::items(tx.conn(), &c.tenant, &c.id, None, after.as_deref(), 500).await?;
            let Some(last) = items.last().map(|i| i.connection_id.clone()) else {
                break;
            };
            for i in &items {
                if let Some(sid) = &i.session_id {
                    if connect_sessions::cancel(tx.conn(), &c.tenant, sid).await? {
                        n += 1;
                    }
                }
            }
            after = Some(last);
        }
        Ok(n)
    }
}

fn moved(cid: &str, campaign: &str) -> Error {
    Error::conflict(
        ErrorCode::VersionConflict,
        format!("connection {cid} moved on in campaign {campaign} meanwhile; look again"),
    )
}
