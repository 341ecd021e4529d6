//! Scheduled rotation: a connection's credential is rotated every `period`,
//! started inside a daily window (UTC), with the options of a manual
//! rotation. The rotation worker starts due ones through
//! [`Rekey::start_rotation`], the same entry point the API and incident
//! campaigns use.

use super::{RotateRequest, RotationMethod};
use crate::audit::record_ok;
use crate::connection_rows::not_found;
use crate::{Ctx, Rekey};
use rekey_core::audit::AuditAction;
use rekey_core::rotation::{in_window, RotationStrategy};
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::{ids, Error, ErrorCode};
use rekey_store::connections as conn_store;
use rekey_store::rotation_schedules::{self as store, ScheduleRow};
use serde_json::json;
use std::time::Duration;

pub use rekey_store::rotation_schedules::ScheduleRow as RotationSchedule;

const DAY_MS: i64 = 86_400_000;
/// How long a due schedule is held by the replica that claimed it, until
/// it writes what became of it: a process that stops in between leaves
/// the slot to be taken again after this, not a period later.
const CLAIM_MS: i64 = 120_000;
/// Who scheduled rotations are requested by.
const SCHEDULE_ACTOR: &str = "system:schedule";

/// A schedule to set: every `period`, inside `window` (minutes after
/// midnight UTC, `(0, 0)` for any time), rotating with `rotate`.
#[derive(Debug, Clone)]
pub struct ScheduleRequest {
    pub period: Duration,
    pub window: (i64, i64),
    pub rotate: RotateRequest,
}

/// How a schedule keeps its rotation options (no secrets: names and ids).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Stored {
    #[serde(default)]
    grace_secs: Option<u64>,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    admin_connection_id: Option<String>,
    #[serde(default)]
    alternate_username: Option<String>,
    #[serde(default)]
    user_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iam_user: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    delete_inactive_key: bool,
}

impl Stored {
    fn of(r: &RotateRequest) -> Stored {
        Stored {
            grace_secs: r.grace.map(|g| g.as_secs()),
            strategy: r.strategy.map(|s| s.as_str().to_string()),
            admin_connection_id: r.admin_connection_id.clone(),
            alternate_username: r.alternate_username.clone(),
            user_host: r.user_host.clone(),
            endpoint: r.endpoint.clone(),
            iam_user: r.iam_user.clone(),
            delete_inactive_key: r.delete_inactive_key,
        }
    }

    fn request(&self) -> Result<RotateRequest, Error> {
        Ok(RotateRequest {
            grace: self.grace_secs.map(Duration::from_secs),
            strategy: self
                .strategy
                .as_deref()
                .map(str::parse::<RotationStrategy>)
                .transpose()?,
            admin_connection_id: self.admin_connection_id.clone(),
            alternate_username: self.alternate_username.clone(),
            user_host: self.user_host.clone(),
            endpoint: self.endpoint.clone(),
            iam_user: self.iam_user.clone(),
            delete_inactive_key: self.delete_inactive_key,
            // Nobody is there to confirm steps: rekey's own rotators only.
            method: Some(RotationMethod::Api),
            current_slot: None,
        })
    }
}

/// The schedule's rotation options as JSON (for views).
pub fn schedule_options(s: &RotationSchedule) -> serde_json::Value {
    serde_json::from_str(&s.options).unwrap_or_default()
}

/// The first moment at or after `now` inside the window.
fn next_window_open(now: i64, start: i64, end: i64) -> i64 {
    let minute = (now % DAY_MS) / 60_000;
    if in_window(minute, start, end) {
        return now;
    }
    let midnight = now - now % DAY_MS;
    let open = midnight + start * 60_000;
    if open > now {
        open
    } else {
        open + DAY_MS
    }
}

impl Rekey {
    /// Set (or replace) a connection's rotation schedule. The connection
    /// must have a rotator; the first rotation is due one period after its
    /// credential last changed (at once if that is past), in the window.
    pub async fn set_rotation_schedule(
        &self,
        ctx: &Ctx,
        id: &str,
        req: ScheduleRequest,
    ) -> Result<RotationSchedule, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let strategy = req.rotate.strategy.unwrap_or(RotationStrategy::SingleUser);
        super::validate_options(&req.rotate, strategy)?;
        let mut tx = self.store().begin_write().await?;
        let row = conn_store::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        self.rotator_for(&row, Some(RotationMethod::Api))?;
        let now = now_ms();
        let period_ms = req.period.as_millis() as i64;
        let last = row.rotated_at.unwrap_or(row.created_at);
        let s = ScheduleRow {
            connection_id: id.clone(),
            tenant: ctx.tenant.clone(),
            period_secs: req.period.as_secs() as i64,
            window_start: req.window.0,
            window_end: req.window.1,
            options: serde_json::to_string(&Stored::of(&req.rotate)).map_err(Error::internal)?,
            next_due_at: next_window_open((last + period_ms).max(now), req.window.0, req.window.1),
            last_rotation_id: None,
            last_error: None,
            created_by: ctx.actor.clone(),
            updated_at: now,
        };
        store::upsert(tx.conn(), &s).await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::RotationScheduleSet,
            &id,
            json!({
                "period_secs": s.period_secs,
                "window": rekey_core::rotation::window_text(s.window_start, s.window_end),
                "next_due_at": ms_to_rfc3339(s.next_due_at),
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(s)
    }

    pub async fn get_rotation_schedule(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<RotationSchedule, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let mut c = self.store().read().await?;
        store::get(&mut c, tenant, &id).await?.ok_or_else(|| {
            Error::not_found(
                ErrorCode::RotationScheduleNotFound,
                format!("connection {id} has no rotation schedule"),
            )
        })
    }

    pub async fn delete_rotation_schedule(&self, ctx: &Ctx, id: &str) -> Result<(), Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let mut tx = self.store().begin_write().await?;
        if !store::delete(tx.conn(), &ctx.tenant, &id).await? {
            return Err(Error::not_found(
                ErrorCode::RotationScheduleNotFound,
                format!("connection {id} has no rotation schedule"),
            ));
        }
        record_ok(
            &mut tx,
            ctx,
            AuditAction::RotationScheduleDelete,
            &id,
            json!({}),
        )
        .await?;
        tx.commit().await
    }

    /// A worker pass: start the rotations whose schedule is due and whose
    /// window is open; push the others to their window's next opening.
    /// True when a full batch was due.
    pub async fn start_scheduled_rotations(&self, limit: i64) -> Result<bool, Error> {
        let now = now_ms();
        let mut c = self.store().read().await?;
        let due = store::due(&mut c, now, limit).await?;
        drop(c);
        let full = due.len() as i64 >= limit;
        for s in due {
            let was = s.next_due_at;
            let mut next = s.clone();
            next.updated_at = now;
            let open = next_window_open(now, s.window_start, s.window_end);
            if open > now {
                next.next_due_at = open;
                // Not a claim: `updated_at` stays the claim's, so that a
                // rotation started under a claim that lapsed meanwhile is
                // still recognised as unrecorded when the window opens.
                next.updated_at = s.updated_at;
            } else {
                let ctx = Ctx {
                    tenant: s.tenant.clone(),
                    actor: SCHEDULE_ACTOR.into(),
                    request_id: None,
                    source: None,
                };
                // Claim the slot first, so two replicas never both start it.
                let mut claim = next.clone();
                // From now, not from the pass's start: a slow pass must not
                // write a claim that has already lapsed.
                claim.updated_at = now_ms();
                claim.next_due_at = claim.updated_at + CLAIM_MS;
                let mut tx = self.store().begin_write().await?;
                let mine = store::advance(tx.conn(), &claim, was).await?;
                tx.commit().await?;
                if !mine {
                    continue;
                }
                super::fault::after("schedule_claimed");
                // A rotation this schedule started after its row was last
                // written is one a process started and stopped before
                // writing down: it is this slot's, not a reason for another.
                let unrecorded = {
                    let mut c = self.store().read().await?;
                    rekey_store::rotations::latest_requested_by(
                        &mut c,
                        &s.tenant,
                        &s.connection_id,
                        SCHEDULE_ACTOR,
                    )
                    .await?
                }
                .filter(|r| {
                    r.created_at >= s.updated_at && s.last_rotation_id.as_deref() != Some(&r.id)
                });
                let started = match unrecorded {
                    Some(r) => Ok(r.id),
                    None => match serde_json::from_str::<Stored>(&s.options)
                        .map_err(Error::internal)
                        .and_then(|o| o.request())
                    {
                        Ok(req) => self
                            .start_rotation(&ctx, &s.connection_id, req)
                            .await
                            .map(|r| r.id),
                        Err(e) => Err(e),
                    },
                };
                next = claim.clone();
                next.next_due_at = now + s.period_secs * 1000;
                match started {
                    Ok(id) => {
                        super::fault::after("schedule_started");
                        next.last_rotation_id = Some(id);
                        next.last_error = None;
                    }
                    // Someone is rotating it now: look again in ten minutes.
                    Err(e) if e.code() == ErrorCode::RotationInProgress => {
                        next.next_due_at = now + 600_000;
                    }
                    Err(e) => {
                        tracing::warn!(connection = %s.connection_id, error = %e, "scheduled rotation not started");
                        next.last_error = Some(
                            json!({"code": e.code().as_str(), "message": e.to_string(), "at": ms_to_rfc3339(now)})
                                .to_string(),
                        );
                    }
                }
                let mut tx = self.store().begin_write().await?;
                store::advance(tx.conn(), &next, claim.next_due_at).await?;
                tx.commit().await?;
                continue;
            }
            let mut tx = self.store().begin_write().await?;
            store::advance(tx.conn(), &next, was).await?;
            tx.commit().await?;
        }
        Ok(full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_opens_today_or_tomorrow() {
        let day = 20_000 * DAY_MS;
        let at = |h: i64, m: i64| day + (h * 60 + m) * 60_000;
        // 02:00-04:00: at 01:00 it opens at 02:00; at 03:00 now; at 05:00 tomorrow.
        assert_eq!(next_window_open(at(1, 0), 120, 240), at(2, 0));
        assert_eq!(next_window_open(at(3, 0), 120, 240), at(3, 0));
        assert_eq!(next_window_open(at(5, 0), 120, 240), at(2, 0) + DAY_MS);
        // Any time.
        assert_eq!(next_window_open(at(5, 0), 0, 0), at(5, 0));
        // 23:00-01:00 wraps midnight.
        assert_eq!(next_window_open(at(0, 30), 1380, 60), at(0, 30));
        assert_eq!(next_window_open(at(12, 0), 1380, 60), at(23, 0));
    }
}
