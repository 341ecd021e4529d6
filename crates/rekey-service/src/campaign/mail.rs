//! E-mail to owners: a campaign's reauthorization link and its reminder,
//! sent through the operator's SMTP server (`REKEY_SMTP_URL`).
//!
//! A message is queued (`campaign_mail`) in the transaction that makes the
//! link or records the reminder, and the mail worker sends it under a
//! lease, with retries. The queue holds no secret: the message is composed
//! at send time from the sealed link token, and a message whose link was
//! replaced, used or cancelled meanwhile is dropped instead of sent. A crash
//! between the server's acceptance and the row's update sends the message
//! again (at least once, never lost).

use super::links::{aad, OWNER_KIND};
use super::CampaignRow;
use crate::audit::record;
use crate::sealing::open_row;
use crate::Rekey;
use lettre::message::{Mailbox, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::campaign::ItemState;
use rekey_core::connection::ConnectSessionStatus;
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::{ids, Error, SecretString};
use rekey_store::campaigns::{self as store, ItemRow, MailRow};
use rekey_store::{connect_sessions, secrets, WriteTx};
use serde_json::json;
use std::time::Duration;

/// Attempts before a message is given up (`failed`, audited).
const MAX_ATTEMPTS: i64 = 8;
const LEASE_MS: i64 = 120_000;
/// One SMTP conversation at most.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The operator's SMTP settings.
#[derive(Clone)]
pub struct MailSettings {
    /// `smtps://user:password@host:465`, `smtp://host:587?tls=required`
    /// (STARTTLS) or `smtp://host:25` (no encryption: loopback relays).
    pub url: SecretString,
    /// The From address, `rekey <rekey@example.com>` or a bare address.
    pub from: String,
    /// First retry wait after a failed send; it doubles per attempt, up to
    /// an hour.
    pub retry_base_ms: i64,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("url", &"[redacted]")
            .field("from", &self.from)
            .finish()
    }
}

/// The SMTP transport and sender, built once from [`MailSettings`].
pub(crate) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    retry_base_ms: i64,
}

impl MailSettings {
    /// Whether the settings can be used, checked before the server starts:
    /// the reason when not (never the URL, which may hold a password).
    pub fn check(&self) -> Result<(), String> {
        Mailer::new(self)
            .map(|_| ())
            .map_err(|e| e.public_message())
    }
}

impl Mailer {
    /// Checked at start-up: a URL lettre cannot use or a From that is no
    /// address stops the server with the reason (never the URL itself,
    /// which may hold a password).
    pub(crate) fn new(s: &MailSettings) -> Result<Mailer, Error> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(s.url.expose())
            .map_err(|e| {
                Error::invalid(
                    rekey_core::ErrorCode::InvalidConfig,
                    format!(
                        "REKEY_SMTP_URL is not a usable SMTP URL (smtps://user:password@host:465, smtp://host:587?tls=required, smtp://host:25): {}",
                        scrub(&e.to_string())
                    ),
                )
            })?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let from = s.from.parse::<Mailbox>().map_err(|e| {
            Error::invalid(
                rekey_core::ErrorCode::InvalidConfig,
                format!(
                    "REKEY_SMTP_FROM is not an e-mail address ({e}): give `rekey <rekey@example.com>` or `rekey@example.com`"
                ),
            )
        })?;
        Ok(Mailer {
            transport,
            from,
            retry_base_ms: s.retry_base_ms.max(1),
        })
    }
}

/// An SMTP error without anything that could be a credential: lettre's
/// messages quote the server's reply, never the URL; long replies are cut.
fn scrub(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// The owner's address, when the frozen owner is an e-mail address (it
/// may be an identity provider's subject instead).
fn recipient(item: &ItemRow) -> Option<String> {
    let o = item.owner.as_deref()?.trim();
    (o.contains('@') && o.parse::<lettre::Address>().is_ok()).then(|| o.to_string())
}

/// Whether the campaign e-mails owners (`notify.email`, on by default).
fn emails(c: &CampaignRow) -> bool {
    serde_json::from_str::<rekey_api::CampaignNotify>(&c.notify)
        .unwrap_or_default()
        .email
}

impl Rekey {
    /// Whether this campaign's owners are e-mailed (SMTP configured and
    /// `notify.email` on).
    pub(super) fn mails_owner(&self, c: &CampaignRow) -> bool {
        self.inner.mailer.is_some() && emails(c)
    }

    /// Queue the owner's message about the item's link (`link` or
    /// `reminder`) in `tx`, when SMTP is configured, the campaign e-mails
    /// and the owner has an address. Whether one was queued.
    pub(super) async fn queue_mail(
        &self,
        tx: &mut WriteTx,
        c: &CampaignRow,
        item: &ItemRow,
        kind: &str,
    ) -> Result<bool, Error> {
        let (Some(_), true, Some(to), Some(session)) = (
            self.inner.mailer.as_ref(),
            emails(c),
            recipient(item),
            item.session_id.clone(),
        ) else {
            return Ok(false);
        };
        let now = now_ms();
        store::insert_mail(
            tx.conn(),
            &MailRow {
                id: ids::new_id("mail"),
                tenant: c.tenant.clone(),
                campaign_id: c.id.clone(),
                item_id: item.id.clone(),
                session_id: session,
                kind: kind.into(),
                recipient: to,
                state: "pending".into(),
                attempts: 0,
                due_at: now,
                last_error: None,
                created_at: now,
                sent_at: None,
            },
        )
        .await?;
        Ok(true)
    }

    /// A mail worker pass: send the due messages (a few at a time);
    /// whether more may be due.
    pub async fn mail_due(&self, limit: i64) -> Result<bool, Error> {
        let Some(mailer) = self.inner.mailer.as_ref() else {
            return Ok(false);
        };
        let now = now_ms();
        let owner = self.replica_id().to_string();
        let claimed = self
            .store()
            .claim(
                &store::MAIL_DUE,
                store::claim_mail,
                &owner,
                now,
                now + LEASE_MS,
                limit,
            )
            .await?;
        for (tenant, id) in &claimed {
            // Sent one after another, each bounded by the SMTP timeout: the
            // lease starts again with each, so the last of a slow batch is
            // not taken over (and sent twice) while it goes out.
            let kept = self
                .store()
                .renew_lease(
                    rekey_store::Leased::CampaignMail,
                    tenant,
                    id,
                    &owner,
                    now_ms() + LEASE_MS,
                )
                .await?;
            if !kept {
                continue;
            }
            if let Err(e) = self.send_one(mailer, &owner, tenant, id).await {
                // Left leased: tried again once the lease ends.
                tracing::warn!(mail = %id, error = %e, "campaign mail failed to run");
            }
        }
        Ok(claimed.len() as i64 >= limit)
    }

    async fn send_one(
        &self,
        mailer: &Mailer,
        owner: &str,
        tenant: &str,
        id: &str,
    ) -> Result<(), Error> {
        let (mail, item, campaign, session, sealed) = {
            let mut c = self.store().read().await?;
            let Some(mail) = store::get_mail(&mut c, tenant, id).await? else {
                return Ok(());
            };
            let item = store::item_by_id(&mut c, tenant, &mail.item_id).await?;
            let campaign = store::get(&mut c, tenant, &mail.campaign_id).await?;
            let session = connect_sessions::get(&mut c, tenant, &mail.session_id).await?;
            let sealed = secrets::for_owner(&mut c, OWNER_KIND, &mail.item_id).await?;
            (mail, item, campaign, session, sealed)
        };
        let now = now_ms();
        // Still the item's live link, unused and unexpired?
        let live = match (&item, &session) {
            (Some(i), Some(s)) => {
                i.session_id.as_deref() == Some(mail.session_id.as_str())
                    && matches!(i.state, ItemState::WaitingForOwner)
                    && matches!(
                        s.status,
                        ConnectSessionStatus::Created | ConnectSessionStatus::Started
                    )
                    && s.expires_at > now
            }
            _ => false,
        };
        let (Some(item), Some(campaign), Some(session), Some(sealed), true) =
            (item, campaign, session, sealed.first(), live)
        else {
            let done = MailRow {
                state: "dropped".into(),
                last_error: Some("the link was replaced, used or cancelled before sending".into()),
                ..mail
            };
            let mut tx = self.store().begin_write().await?;
            store::settle_mail(tx.conn(), owner, &done).await?;
            return tx.commit().await;
        };
        let token = open_row(&*self.keyring()?, &aad(tenant, &item.id), sealed)
            .map_err(|e| Error::DecryptionFailed(format!("campaign link: {e}")))??;
        let url = SecretString::new(format!("{}/connect/{}", self.public_url(), token.expose()));
        let sent = match compose(mailer, &mail, &campaign, &item, &url, session.expires_at) {
            Ok(m) => mailer
                .transport
                .send(m)
                .await
                .map_err(|e| scrub(&e.to_string())),
            Err(e) => Err(e),
        };
        let mut next = mail.clone();
        next.attempts += 1;
        let outcome = match &sent {
            Ok(_) => {
                next.state = "sent".into();
                next.sent_at = Some(now_ms());
                next.last_error = None;
                Some(AuditOutcome::Ok)
            }
            Err(why) => {
                next.last_error = Some(why.clone());
                // Who it was for is in the audit entry; the log says which
                // message and why (an SMTP reply never holds the link).
                tracing::warn!(mail = %mail.id, connection = %item.connection_id,
                    attempt = next.attempts, error = %why, "campaign e-mail not sent");
                if next.attempts >= MAX_ATTEMPTS {
                    next.state = "failed".into();
                    Some(AuditOutcome::Error)
                } else {
                    next.due_at = now_ms()
                        + (mailer.retry_base_ms << (next.attempts - 1).clamp(0, 7)).min(3_600_000);
                    None
                }
            }
        };
        let mut tx = self.store().begin_write().await?;
        if !store::settle_mail(tx.conn(), owner, &next).await? {
            return Ok(());
        }
        // Given up: the connection's detail says so, so the operator hands
        // the link out another way (the links list) or resends it.
        if next.state == "failed" {
            let detail = format!(
                "the e-mail to {} with the link failed ({}); hand the link out from the links list, or resend it",
                mail.recipient,
                next.last_error.as_deref().unwrap_or("no answer")
            );
            store::set_waiting_detail(tx.conn(), tenant, &item.id, &mail.session_id, &detail)
                .await?;
        }
        // Each message that left (or was given up) is audited: it carried a
        // way to replace a credential.
        if let Some(outcome) = outcome {
            let ctx = super::worker::campaign_ctx(tenant, &campaign.id);
            record(
                &mut tx,
                &ctx,
                AuditAction::CampaignMail,
                Some(&campaign.id),
                outcome,
                json!({
                    "connection": item.connection_id, "to": mail.recipient, "kind": mail.kind,
                    "attempts": next.attempts, "error": next.last_error,
                }),
            )
            .await?;
        }
        tx.commit().await
    }
}

/// The message: who asks, what for, the link and until when. Plain text:
/// nothing to render, nothing remote to load.
fn compose(
    mailer: &Mailer,
    mail: &MailRow,
    c: &CampaignRow,
    item: &ItemRow,
    url: &SecretString,
    expires_at: i64,
) -> Result<Message, String> {
    let to: Mailbox = mail
        .recipient
        .parse()
        .map_err(|e| format!("the owner's address cannot be used: {e}"))?;
    let name: String = item
        .display_name
        .chars()
        .filter(|ch| !ch.is_control())
        .collect();
    let reminder = mail.kind == "reminder";
    let subject = if reminder {
        format!(
            "Reminder: reconnect {name} before {}",
            ms_to_rfc3339(expires_at)
        )
    } else {
        format!("Please reconnect {name}")
    };
    // Only what the plan does: a campaign that does not revoke says nothing
    // of revocation.
    let revokes = item.actions.contains("\"revoke\"");
    let body = format!(
        "Hello,\n\n\
         {first}\
         Your security team is replacing credentials after an incident ({campaign}).\n\
         You connected {name} ({provider}){old}.\n\
         Please connect it again through this link, which works once, until {expires}:\n\n\
         {url}\n\n\
         The link is for you alone: do not forward it. If you did not expect this\n\
         message, ask your security team before using the link.\n\n\
         -- rekey\n",
        first = if reminder {
            "This is a reminder: the link below has not been used yet.\n"
        } else {
            ""
        },
        old = if revokes {
            "; its old access is being revoked"
        } else {
            ""
        },
        campaign = c.name,
        provider = item.provider,
        expires = ms_to_rfc3339(expires_at),
        url = url.expose(),
    );
    // A Message-ID in the From address's domain (not this host's name),
    // the same for every attempt of this mail: a copy sent again after a
    // crash that came once the relay had taken it reads as the same one.
    let message_id = format!("<{}@{}>", mail.id, mailer.from.email.domain());
    Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id))
        .singlepart(SinglePart::plain(body))
        .map_err(|e| format!("the message could not be built: {e}"))
}
