//! Running a campaign: workers claim due items of running campaigns
//! (leased, as rotations are) and advance each one action at a time.
//!
//! Each action first looks at what is already there (a revocation of the
//! credential, a rotation running, a link made) and adopts it, so an item
//! whose worker died after a side effect and before writing it does not
//! do it again. The reference (revocation, rotation, link) is written
//! before the item waits on it; waiting items are looked at again later
//! (sooner when their connection changes: see `nudge`).

use super::{CampaignRow, ItemRow};
use crate::audit::record;
use crate::rotation::fault;
use crate::{Ctx, Rekey};
use futures_util::StreamExt;
use rekey_api::DisableConnection;
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::campaign::{CampaignAction, CampaignState, ItemState};
use rekey_core::connection::Status;
use rekey_core::credential_meta::OAuthMeta;
use rekey_core::events::EventType;
use rekey_core::revocation::{RevocationMethod, RevocationState, Verdict};
use rekey_core::rotation::RotationState;
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::{Error, ErrorCode};
use rekey_store::campaigns as store;
use rekey_store::connections as conns;
use rekey_store::credential_versions as versions;
use rekey_store::revocations::{self, RevocationRow};
use rekey_store::rotations;
use serde_json::json;
use std::collections::BTreeMap;

/// Items one pass advances at once (each may wait on its provider).
const PARALLEL: usize = 16;

/// How hard campaigns may press each provider.
#[derive(Debug, Clone, Copy)]
pub struct CampaignSettings {
    /// Steps of one provider in flight at once, per replica.
    pub per_provider_concurrency: usize,
    /// Steps that call a provider started per second, per provider, across
    /// every replica sharing the database (0 = no limit).
    pub per_provider_rate: f64,
}

impl Default for CampaignSettings {
    fn default() -> Self {
        CampaignSettings {
            per_provider_concurrency: 4,
            per_provider_rate: 10.0,
        }
    }
}

/// One semaphore per provider, for a pass.
struct ProviderLimits {
    per_provider: usize,
    sems: std::sync::Mutex<BTreeMap<String, std::sync::Arc<tokio::sync::Semaphore>>>,
}

impl ProviderLimits {
    fn new(per_provider: usize) -> ProviderLimits {
        ProviderLimits {
            per_provider: per_provider.max(1),
            sems: Default::default(),
        }
    }

    fn of(&self, provider: &str) -> std::sync::Arc<tokio::sync::Semaphore> {
        let mut m = self.sems.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(provider.to_string())
            .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(self.per_provider)))
            .clone()
    }
}

/// How long a worker holds an item before another may take it over.
const LEASE_MS: i64 = 60_000;
/// A step that fails for a reason that may pass is tried this many times.
const MAX_ATTEMPTS: i64 = 6;
/// Waiting items are looked at again after this (doubling per look, up to
/// [`MAX_POLL_MS`]); a change to their connection makes them due at once.
const POLL_MS: i64 = 2_000;
const MAX_POLL_MS: i64 = 120_000;
/// How often a worker pass looks for campaigns to complete.
const SWEEP_MS: i64 = 60_000;

pub(crate) fn campaign_ctx(tenant: &str, campaign_id: &str) -> Ctx {
    Ctx {
        tenant: tenant.to_string(),
        actor: format!("campaign:{campaign_id}"),
        request_id: None,
        source: None,
    }
}

/// What a worker pass did.
#[derive(Debug, Clone, Copy, Default)]
pub struct CampaignRun {
    /// Items this pass claimed.
    pub claimed: usize,
    /// A full batch was claimed: more may be waiting.
    pub more: bool,
}

/// What an action left behind.
enum Act {
    /// Done: the next action runs now.
    Next,
    /// Look again later: the item's state and why.
    Wait(ItemState, String),
    /// A reference (revocation, rotation, link) was recorded: look at once.
    Recorded,
    /// Cannot go on: the item fails with this reason.
    Fail(String),
    /// The action wrote the item itself (with what belongs in the same
    /// transaction); only the lease is left to drop.
    Written,
}

/// What advancing an item came to: its campaign and whether it finished,
/// or None when it was not this worker's to run.
type Advanced = Option<(String, bool)>;

fn poll_delay(attempts: i64) -> i64 {
    (POLL_MS << attempts.clamp(0, 6)).min(MAX_POLL_MS)
}

impl Rekey {
    /// A worker pass: claim due items of running campaigns and advance
    /// each as far as it goes now.
    pub async fn campaign_due(&self, limit: i64) -> Result<CampaignRun, Error> {
        let now = now_ms();
        let owner = self.replica_id().to_string();
        let claimed = self
            .store()
            .claim(
                &store::DUE,
                store::claim_due,
                &owner,
                now,
                now + LEASE_MS,
                limit,
            )
            .await?;
        let limits = ProviderLimits::new(self.campaign_settings().per_provider_concurrency);
        let (owner_ref, limits_ref) = (&owner, &limits);
        let results: Vec<(String, String, Result<Advanced, Error>)> =
            futures_util::stream::iter(claimed.iter().cloned())
                .map(move |(tenant, id)| async move {
                    let r = self.advance_item(&tenant, &id, owner_ref, limits_ref).await;
                    (tenant, id, r)
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
        let mut touched: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (tenant, id, result) in results {
            match result {
                Ok(Some((campaign, finished))) => {
                    *touched.entry((tenant, campaign)).or_default() += finished as u64;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(item = %id, error = %e, "campaign step failed to run");
                    let mut tx = self.store().begin_write().await?;
                    store::release_item(tx.conn(), &owner, &id).await?;
                    tx.commit().await?;
                }
            }
        }
        for ((tenant, campaign), finished) in touched {
            let Ok(row) = self.campaign_row(&tenant, &campaign).await else {
                continue;
            };
            if self.finish_if_complete(&row).await? || finished == 0 {
                continue;
            }
            let p = self.progress(&row).await?;
            let mut tx = self.store().begin_write().await?;
            let counts: BTreeMap<&str, i64> =
                p.counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            super::announce(
                &mut tx,
                &row,
                EventType::CampaignProgress,
                json!({"total": p.total, "finished": p.finished(), "counts": counts}),
            )
            .await?;
            tx.commit().await?;
        }
        self.sweep_finished(now).await?;
        Ok(CampaignRun {
            claimed: claimed.len(),
            more: claimed.len() as i64 >= limit,
        })
    }

    /// At most once a minute (and on the first pass after a start):
    /// complete the campaigns whose items have all finished. A
    /// campaign is otherwise completed right after the pass that finished
    /// its last item, and a process that stopped in between (a crash, a
    /// failed write) would leave it running with nothing left to claim.
    async fn sweep_finished(&self, now: i64) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        let last = self.inner.campaigns_swept_at.load(Ordering::Relaxed);
        if last != 0 && now - last < SWEEP_MS {
            return Ok(());
        }
        self.inner.campaigns_swept_at.store(now, Ordering::Relaxed);
        let done = {
            let mut c = self.store().read().await?;
            store::all_finished(&mut c).await?
        };
        for (tenant, id) in done {
            if let Ok(row) = self.campaign_row(&tenant, &id).await {
                self.finish_if_complete(&row).await?;
            }
        }
        Ok(())
    }

    /// Advance one item while this worker holds it: the campaign's id and
    /// whether the item finished, or None when it was not this worker's
    /// to run (the campaign is not running, another worker took it).
    async fn advance_item(
        &self,
        tenant: &str,
        item_id: &str,
        owner: &str,
        limits: &ProviderLimits,
    ) -> Result<Advanced, Error> {
        let Some(mut item) = ({
            let mut c = self.store().read().await?;
            store::item_by_id(&mut c, tenant, item_id).await?
        }) else {
            return Ok(None);
        };
        if item.lease_owner.as_deref() != Some(owner) || item.finished_at.is_some() {
            return Ok(None);
        }
        let c = self.campaign_row(tenant, &item.campaign_id).await?;
        if c.state != CampaignState::Running {
            let mut tx = self.store().begin_write().await?;
            store::release_item(tx.conn(), owner, item_id).await?;
            tx.commit().await?;
            return Ok(None);
        }
        let ctx = campaign_ctx(tenant, &c.id);
        let slot = limits.of(&item.provider);
        let _permit = slot.acquire().await.map_err(Error::internal)?;
        let actions: Vec<CampaignAction> = serde_json::from_str::<Vec<String>>(&item.actions)
            .map_err(Error::internal)?
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?;
        // Bounded: each round either moves on or writes and returns.
        for _ in 0..16 {
            let was = (item.step, item.state);
            let step = usize::try_from(item.step).unwrap_or(usize::MAX);
            let act = match actions.get(step) {
                Some(a) => self.act(&ctx, &c, &mut item, *a).await?,
                None => self.verify_new(&ctx, &item, &actions).await?,
            };
            let now = now_ms();
            item.updated_at = now;
            let finished;
            match act {
                Act::Written => {
                    let mut tx = self.store().begin_write().await?;
                    store::release_item(tx.conn(), owner, &item.id).await?;
                    tx.commit().await?;
                    return Ok(Some((c.id.clone(), false)));
                }
                Act::Next if step >= actions.len() => {
                    item.state = ItemState::Done;
                    item.detail = Some(done_detail(&actions));
                    item.finished_at = Some(now);
                    finished = true;
                }
                Act::Next => {
                    item.step += 1;
                    item.started_at = None;
                    item.state = ItemState::InProgress;
                    item.attempts = 0;
                    item.detail = None;
                    finished = false;
                }
                Act::Recorded => {
                    item.state = ItemState::InProgress;
                    finished = false;
                }
                Act::Wait(state, why) => {
                    // The backoff starts again for each new kind of wait.
                    item.attempts = if state == was.1 { item.attempts + 1 } else { 1 };
                    item.due_at = now + poll_delay(item.attempts);
                    // An owner not yet reminded is looked at again in time for it.
                    let remind = super::links::remind_at(&c);
                    if state == ItemState::WaitingForOwner
                        && item.reminded_at.is_none()
                        && remind > now
                    {
                        item.due_at = item.due_at.min(remind);
                    }
                    item.state = state;
                    item.detail = Some(why);
                    finished = false;
                }
                Act::Fail(why) => {
                    item.state = ItemState::Failed;
                    item.detail = Some(why);
                    item.finished_at = Some(now);
                    finished = true;
                }
            }
            let waits = item.due_at > now;
            let mut tx = self.store().begin_write().await?;
            if !store::update_item(tx.conn(), &item, Some(owner), was).await? {
                // An operator decided meanwhile, or the lease was lost.
                return Ok(None);
            }
            if finished || waits {
                store::release_item(tx.conn(), owner, &item.id).await?;
            }
            if finished {
                // Its link, if still unused (a resent one), stops working.
                if let Some(sid) = &item.session_id {
                    rekey_store::connect_sessions::cancel(tx.conn(), &item.tenant, sid).await?;
                }
            }
            if was.1 != item.state || was.0 != item.step {
                record(
                    &mut tx,
                    &ctx,
                    AuditAction::CampaignStep,
                    Some(&c.id),
                    if item.state == ItemState::Failed {
                        AuditOutcome::Error
                    } else {
                        AuditOutcome::Ok
                    },
                    json!({
                        "connection": item.connection_id, "state": item.state.as_str(),
                        "step": item.step, "detail": item.detail,
                    }),
                )
                .await?;
            }
            tx.commit().await?;
            if finished || waits {
                return Ok(Some((c.id.clone(), finished)));
            }
        }
        Ok(Some((c.id.clone(), false)))
    }

    /// Wait for `provider`'s next step slot (see [`CampaignSettings`]): a
    /// reservation in the database, so replicas share the rate.
    async fn pace(&self, provider: &str) -> Result<(), Error> {
        let rate = self.campaign_settings().per_provider_rate;
        if rate.is_nan() || rate <= 0.0 {
            return Ok(());
        }
        let spacing = (1000.0 / rate).ceil() as i64;
        let now = now_ms();
        let slot = {
            let mut tx = self.store().begin_write().await?;
            let s = store::reserve_pace(tx.conn(), self.store().backend(), provider, now, spacing)
                .await?;
            tx.commit().await?;
            s
        };
        // Bounded well inside the item's lease (the rate is at least 0.5/s).
        let wait = (slot - now).clamp(0, LEASE_MS / 2);
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
        }
        Ok(())
    }

    /// Run (or look at) one action of an item.
    async fn act(
        &self,
        ctx: &Ctx,
        c: &CampaignRow,
        item: &mut ItemRow,
        action: CampaignAction,
    ) -> Result<Act, Error> {
        let Some(conn) = ({
            let mut db = self.store().read().await?;
            conns::get(&mut db, &item.tenant, &item.connection_id).await?
        }) else {
            return Ok(Act::Fail("the connection was deleted".into()));
        };
        match action {
            CampaignAction::Revoke => self.act_revoke(ctx, item, &conn).await,
            CampaignAction::Rotate => self.act_rotate(ctx, c, item).await,
            CampaignAction::Reauthorize => self.act_reauthorize(ctx, c, item, &conn).await,
            CampaignAction::Disable => {
                if conn.status == Status::Disabled {
                    return Ok(Act::Next);
                }
                let req = DisableConnection {
                    reason: Some(format!("campaign {}", c.id)),
                    version: None,
                };
                match self
                    .set_status(ctx, &item.connection_id, Status::Disabled, req, None)
                    .await
                {
                    Ok(_) => {
                        fault::after("campaign_disabled");
                        Ok(Act::Next)
                    }
                    Err(e) => Ok(retry_or_fail(item, &e)),
                }
            }
        }
    }

    async fn act_revoke(
        &self,
        ctx: &Ctx,
        item: &mut ItemRow,
        conn: &conns::ConnectionRow,
    ) -> Result<Act, Error> {
        if let Some(rid) = item.revocation_id.clone() {
            let r = {
                let mut db = self.store().read().await?;
                revocations::get(&mut db, &item.tenant, &rid).await?
            };
            return Ok(match r {
                Some(r) => judge(&r, &item.connection_id),
                None => Act::Fail(format!("revocation {rid} is gone")),
            });
        }
        // Already revoked (by an earlier run of this step, or by hand):
        // adopt that revocation rather than revoke again.
        if let Some(r) = self
            .revocation_of(&item.tenant, &item.connection_id, item.base_version, None)
            .await?
        {
            item.revocation_id = Some(r.id);
            return Ok(Act::Recorded);
        }
        if conn.credential_version != item.base_version {
            return Ok(Act::Wait(
                ItemState::WaitingForOperator,
                format!(
                    "the credential changed since the plan was frozen (version {} → {}) and rekey has no record of the old one's revocation; check it was revoked at the provider, then confirm this connection",
                    item.base_version, conn.credential_version
                ),
            ));
        }
        self.pace(&item.provider).await?;
        // The provider call is not repeated after a restart if it took
        // effect: a call begun before (`started_at`) whose credential the
        // provider now refuses is recorded without calling again.
        let already_dead = match item.started_at {
            Some(_) => {
                let (row, s) = self
                    .load_with_secrets(&item.tenant, &item.connection_id)
                    .await?;
                self.current_accepted(&row, s).await == Some(false)
            }
            None => {
                item.started_at = Some(now_ms());
                let mut tx = self.store().begin_write().await?;
                let was = (item.step, item.state);
                let mine =
                    store::update_item(tx.conn(), item, item.lease_owner.as_deref(), was).await?;
                tx.commit().await?;
                if !mine {
                    return Ok(Act::Written);
                }
                false
            }
        };
        match self
            .revoke_connection_with(ctx, &item.connection_id, already_dead)
            .await
        {
            Ok(r) => {
                fault::after("campaign_revoked");
                item.started_at = None;
                match r.revocation {
                    Some(rec) => {
                        item.revocation_id = Some(rec.row.id);
                        Ok(Act::Recorded)
                    }
                    None => Ok(Act::Fail(
                        "the revocation left no record to verify; revoke by hand and confirm"
                            .into(),
                    )),
                }
            }
            Err(e) if e.code() == ErrorCode::AlreadyRevoked => Ok(Act::Wait(
                ItemState::WaitingForOperator,
                "the connection was already revoked before rekey kept revocation records; confirm the old credential is dead".into(),
            )),
            Err(e) => Ok(retry_or_fail(item, &e)),
        }
    }

    /// The revocation of the connection's credential `version` (of
    /// `method`, when given), newest first.
    async fn revocation_of(
        &self,
        tenant: &str,
        connection_id: &str,
        version: i64,
        method: Option<RevocationMethod>,
    ) -> Result<Option<RevocationRow>, Error> {
        let mut db = self.store().read().await?;
        Ok(revocations::for_connection(&mut db, tenant, connection_id)
            .await?
            .into_iter()
            .find(|r| r.credential_version == version && method.is_none_or(|m| r.method == m)))
    }

    async fn act_rotate(
        &self,
        ctx: &Ctx,
        c: &CampaignRow,
        item: &mut ItemRow,
    ) -> Result<Act, Error> {
        let Some(rid) = item.rotation_id.clone() else {
            // A crash between starting the rotation and writing its id
            // down leaves it unrecorded, and by the time the item's lease
            // lapses it may have finished: the one this campaign asked for
            // (a plan holds a connection once) is adopted whatever its
            // state; else a rotation someone else runs is waited on.
            let adopt = {
                let mut db = self.store().read().await?;
                match rotations::latest_requested_by(
                    &mut db,
                    &item.tenant,
                    &item.connection_id,
                    &ctx.actor,
                )
                .await?
                {
                    Some(r) => Some(r),
                    None => {
                        rotations::running_for(&mut db, &item.tenant, &item.connection_id).await?
                    }
                }
            };
            if let Some(r) = adopt {
                item.rotation_id = Some(r.id);
                return Ok(Act::Recorded);
            }
            // A breach: the old credential is retired as soon as the new
            // one works, with no grace (unless the campaign says otherwise).
            let req = match super::plan::rotate_request(c, &item.connection_id, &item.kind) {
                Ok(r) => r,
                Err(e) => return Ok(Act::Fail(e.public_message())),
            };
            self.pace(&item.provider).await?;
            return match self.start_rotation(ctx, &item.connection_id, req).await {
                Ok(r) => {
                    fault::after("campaign_rotation_started");
                    item.rotation_id = Some(r.id.clone());
                    let (rk, tenant, id) = (self.clone(), r.tenant.clone(), r.id.clone());
                    tokio::spawn(async move {
                        if let Err(e) = rk.drive_rotation(&tenant, &id).await {
                            tracing::warn!(rotation = %id, error = %e, "rotation could not run now; the worker resumes it");
                        }
                    });
                    Ok(Act::Recorded)
                }
                Err(e) if e.code() == ErrorCode::RotationInProgress => Ok(Act::Wait(
                    ItemState::InProgress,
                    "another rotation of the connection is starting".into(),
                )),
                Err(e) => Ok(retry_or_fail(item, &e)),
            };
        };
        let r = {
            let mut db = self.store().read().await?;
            rotations::get(&mut db, &item.tenant, &rid).await?
        };
        let Some(r) = r else {
            return Ok(Act::Fail(format!("rotation {rid} is gone")));
        };
        match r.state {
            RotationState::Retired => {
                // The retirement revoked the old credential: its verdict decides.
                let seq = match &r.old_version_id {
                    Some(v) => {
                        let mut db = self.store().read().await?;
                        versions::for_connection(&mut db, &item.tenant, &item.connection_id)
                            .await?
                            .into_iter()
                            .find(|x| &x.id == v)
                            .map(|x| x.seq)
                    }
                    None => None,
                };
                let rev = match seq {
                    Some(seq) => {
                        self.revocation_of(
                            &item.tenant,
                            &item.connection_id,
                            seq,
                            Some(RevocationMethod::Rotation),
                        )
                        .await?
                    }
                    None => None,
                };
                Ok(match rev {
                    Some(rev) => judge(&rev, &item.connection_id),
                    None => Act::Wait(
                        ItemState::WaitingForOperator,
                        format!("rotation {rid} finished but rekey has no record of the old credential's revocation; check it is dead and confirm"),
                    ),
                })
            }
            RotationState::Failed | RotationState::RolledBack => {
                let why = r
                    .last_error
                    .as_deref()
                    .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
                    .and_then(|e| e.get("message").and_then(|m| m.as_str()).map(str::to_string))
                    .unwrap_or_else(|| r.state.to_string());
                Ok(Act::Fail(format!("rotation {rid} ended {}: {why}", r.state)))
            }
            _ if r.awaiting.is_some() => Ok(Act::Wait(
                ItemState::WaitingForOperator,
                format!(
                    "rotation {rid} waits for an operator to confirm its `{}` step (GET /api/v1/rotations/{rid} shows what to do)",
                    r.awaiting.as_deref().unwrap_or_default()
                ),
            )),
            state => Ok(Act::Wait(
                ItemState::InProgress,
                format!("rotation {rid} is at `{state}`"),
            )),
        }
    }

    async fn act_reauthorize(
        &self,
        ctx: &Ctx,
        c: &CampaignRow,
        item: &mut ItemRow,
        conn: &conns::ConnectionRow,
    ) -> Result<Act, Error> {
        if item.session_id.is_none() {
            return match self
                .make_link(ctx, c, item, item.lease_owner.clone().as_deref())
                .await
            {
                // make_link wrote the item itself (with its sealed token).
                Ok(true) => Ok(Act::Written),
                // Another hand moved the item meanwhile (the lease was lost).
                Ok(false) => Ok(Act::Written),
                Err(e) => Ok(retry_or_fail(item, &e)),
            };
        }
        if OAuthMeta::from_column(&conn.credential_meta)
            .pending_grant
            .is_some()
        {
            return Ok(Act::Wait(
                ItemState::WaitingForOperator,
                format!(
                    "the owner reconnected as another identity or with fewer scopes; the grant is parked. Accept it (POST /api/v1/connections/{}/reauthorize with accept_mismatch) or resend the link",
                    conn.id
                ),
            ));
        }
        if conn.credential_version > item.base_version && !conn.status.is_out_of_service() {
            // The same secret again (the leaked one typed back in) is no
            // new credential: same fingerprint as the one the plan froze.
            let vs = {
                let mut db = self.store().read().await?;
                versions::for_connection(&mut db, &item.tenant, &item.connection_id).await?
            };
            let fp = |seq: i64| {
                vs.iter()
                    .find(|v| v.seq == seq)
                    .map(|v| v.fingerprint.clone())
            };
            let (now_fp, then_fp) = (fp(conn.credential_version), fp(item.base_version));
            if now_fp.is_some() && now_fp == then_fp {
                return Ok(Act::Wait(
                    ItemState::WaitingForOperator,
                    "the credential given back is the same as before (same fingerprint): it is not a new one; resend the link to the owner".into(),
                ));
            }
            return Ok(Act::Next);
        }
        // A link an operator cancelled waits for the operator, not the owner.
        let session = match &item.session_id {
            Some(sid) => {
                let mut db = self.store().read().await?;
                rekey_store::connect_sessions::get(&mut db, &item.tenant, sid).await?
            }
            None => None,
        };
        if session
            .is_some_and(|s| s.status == rekey_core::connection::ConnectSessionStatus::Superseded)
        {
            return Ok(Act::Wait(
                ItemState::WaitingForOperator,
                "the link was cancelled or replaced outside this campaign; resend it, or confirm or skip the connection".into(),
            ));
        }
        self.remind_if_due(ctx, c, item).await?;
        let until = item.link_expires_at.map(ms_to_rfc3339).unwrap_or_default();
        Ok(Act::Wait(
            ItemState::WaitingForOwner,
            format!(
                "waiting for {} to reconnect through the link (until {until})",
                item.owner.as_deref().unwrap_or("the owner")
            ),
        ))
    }

    /// After the last action: a credential the owner made is probed.
    async fn verify_new(
        &self,
        ctx: &Ctx,
        item: &ItemRow,
        actions: &[CampaignAction],
    ) -> Result<Act, Error> {
        if !actions.contains(&CampaignAction::Reauthorize) {
            return Ok(Act::Next);
        }
        self.pace(&item.provider).await?;
        match self.check_connection(ctx, &item.connection_id).await {
            Ok(r) if r.outcome == "ok" => Ok(Act::Next),
            // Refused outright: the owner gave a wrong key; retrying will
            // not help, a new link will.
            Ok(r) if r.outcome == "auth_failure" => Ok(Act::Wait(
                ItemState::WaitingForOperator,
                format!(
                    "the provider refuses the new credential ({}); resend the link to the owner, or confirm or skip the connection",
                    r.message.unwrap_or_default()
                ),
            )),
            Ok(r) if r.outcome == "skipped" => Ok(Act::Wait(
                ItemState::WaitingForOperator,
                format!(
                    "rekey has no probe for this connection ({}); check the new credential works and confirm",
                    r.message.unwrap_or_default()
                ),
            )),
            Ok(r) if item.attempts + 1 >= MAX_ATTEMPTS => Ok(Act::Wait(
                ItemState::WaitingForOperator,
                format!(
                    "the new credential keeps failing its check ({}: {}); look at the connection, then confirm",
                    r.outcome,
                    r.message.unwrap_or_default()
                ),
            )),
            Ok(r) => Ok(Act::Wait(
                ItemState::InProgress,
                format!(
                    "the new credential failed its check ({}); trying again",
                    r.outcome
                ),
            )),
            Err(e) => Ok(Act::Wait(
                ItemState::InProgress,
                format!("the new credential could not be checked: {}", e.public_message()),
            )),
        }
    }
}

/// What a revocation's record says for the campaign.
fn judge(r: &RevocationRow, connection_id: &str) -> Act {
    if r.state == RevocationState::Open {
        return Act::Wait(
            ItemState::WaitingForOperator,
            format!(
                "revoke the credential at the provider by the runbook, then confirm the steps (POST /api/v1/connections/{connection_id}/revoke/confirm); rekey then tries the old credential"
            ),
        );
    }
    match r.verdict() {
        Some(Verdict::VerifiedRejected) => Act::Next,
        Some(Verdict::StillAccepted) => Act::Wait(
            ItemState::WaitingForOperator,
            "the provider still accepts the old credential (rekey keeps trying it): revoke it at the provider by hand".into(),
        ),
        Some(Verdict::Unverifiable) => Act::Wait(
            ItemState::WaitingForOperator,
            "rekey cannot try the old credential at the provider; check by hand that it is dead, then confirm this connection".into(),
        ),
        None => Act::Wait(
            ItemState::InProgress,
            "revoked; waiting for rekey to try the old credential".into(),
        ),
    }
}

/// A failed call: tried again later while it may pass, else the item fails.
fn retry_or_fail(item: &ItemRow, e: &Error) -> Act {
    let transient = matches!(
        e.code(),
        ErrorCode::VersionConflict | ErrorCode::Internal | ErrorCode::RotationInProgress
    );
    if transient && item.attempts + 1 < MAX_ATTEMPTS {
        Act::Wait(ItemState::InProgress, e.public_message())
    } else {
        Act::Fail(e.public_message())
    }
}

fn done_detail(actions: &[CampaignAction]) -> String {
    let mut parts = Vec::new();
    if actions == [CampaignAction::Reauthorize] {
        return "reconnected by the owner and the new credential probed; the old credential was not revoked by this campaign".into();
    }
    for a in actions {
        parts.push(match a {
            CampaignAction::Revoke => "old credential revoked and refused by the provider",
            CampaignAction::Rotate => {
                "rotated: the new credential tested, the old one retired and refused"
            }
            CampaignAction::Reauthorize => "reconnected by the owner and the new credential probed",
            CampaignAction::Disable => "disabled",
        });
    }
    parts.join("; ")
}
