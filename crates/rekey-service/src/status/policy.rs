//! The status policy, pure: how one observation (a probe's or a token
//! refresh's) changes a connection's status and error context. No I/O and
//! no clock: the writer passes `now` and stores the result.

use super::observation::{Observation, Outcome, MAX_RETRY_AFTER_SECS};
use rekey_core::connection::Status;
use rekey_core::last_error::LastError;
use rekey_core::time::ms_to_rfc3339;

/// The health fields of a connection, as the policy reads and writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthState {
    pub status: Status,
    pub last_ok_at: Option<i64>,
    /// Start of the current run of failures; None while healthy.
    pub first_failed_at: Option<i64>,
    pub consecutive_failures: i64,
    pub last_error: Option<LastError>,
}

/// What an observation does to a connection.
// One short-lived value per observation: boxing `Update` buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Out of service (disabled, revoked, revocation pending): health
    /// leaves it alone.
    Untouched,
    /// Store `next`.
    Update {
        next: HealthState,
        /// The status moved: audit it and emit `connection.status_changed`.
        status_changed: bool,
        /// The version guards edits (If-Match): health bookkeeping alone
        /// does not bump it; a status change, or the error context
        /// appearing or clearing, does.
        bump_version: bool,
    },
}

/// Apply `obs`, reported by `source` (`check`, `refresh`…), at `now` (ms).
///
/// - Success makes the connection `active` (from pending, degraded or
///   needs_reauth), records `last_ok_at` and clears the error context —
///   except that a working access token of a grant whose refresh failed
///   (`needs_reauth` set by a refresh) stays `needs_reauth`: only
///   `last_ok_at` moves, so the status does not flap until reauthorized.
/// - An auth failure makes it `needs_reauth`; a transient or unexpected
///   failure `degraded` (a `needs_reauth` connection stays there). Every
///   failure counts in `consecutive_failures`, keeps the start of the run
///   in `first_failed_at` and replaces `last_error`, with when to retry.
pub(crate) fn observe(
    state: &HealthState,
    obs: &Observation,
    source: &str,
    now: i64,
) -> Transition {
    let from = state.status;
    if from.is_out_of_service() {
        return Transition::Untouched;
    }
    let mut next = state.clone();
    if obs.outcome == Outcome::Ok && grant_dead(state, source) {
        next.last_ok_at = Some(now);
        return Transition::Update {
            next,
            status_changed: false,
            bump_version: false,
        };
    }
    let to = match obs.outcome {
        Outcome::Ok => Status::Active,
        Outcome::AuthFailure => Status::NeedsReauth,
        Outcome::Transient | Outcome::Unexpected => Status::Degraded,
    };
    if from != to && from.can_transition(to) {
        next.status = to;
    }
    if obs.outcome == Outcome::Ok {
        next.last_ok_at = Some(now);
        next.consecutive_failures = 0;
        next.first_failed_at = None;
        next.last_error = None;
    } else {
        next.consecutive_failures = state.consecutive_failures + 1;
        next.first_failed_at = state.first_failed_at.or(Some(now));
        next.last_error = Some(LastError {
            http_status: obs.http_status,
            provider_body: obs.body.clone(),
            at: Some(ms_to_rfc3339(now)),
            source: Some(source.to_string()),
            retry_after_secs: obs.retry_after_secs,
            retry_at: retry_at(obs, next.consecutive_failures, now),
            ..LastError::new(obs.code.clone(), obs.message.clone())
        });
    }
    let status_changed = next.status != from;
    let bump_version = status_changed || state.last_error.is_some() != next.last_error.is_some();
    Transition::Update {
        next,
        status_changed,
        bump_version,
    }
}

/// A check found the access token working, but the grant cannot be
/// refreshed (`needs_reauth` set by a refresh failure).
fn grant_dead(state: &HealthState, source: &str) -> bool {
    state.status == Status::NeedsReauth
        && source == "check"
        && state
            .last_error
            .as_ref()
            .is_some_and(|e| e.source.as_deref() == Some("refresh"))
}

/// Backoff for transient failures: `Retry-After` when given (capped), else
/// 5 s doubling per consecutive failure, capped at 10 min. None for an
/// auth failure: retrying will not help.
pub(crate) fn retry_at(obs: &Observation, failures: i64, now: i64) -> Option<i64> {
    if obs.outcome == Outcome::AuthFailure {
        return None;
    }
    let ms = match obs.retry_after_secs {
        Some(s) => (s.min(MAX_RETRY_AFTER_SECS) as i64) * 1000,
        None => (5_000i64 << (failures - 1).clamp(0, 10)).min(600_000),
    };
    Some(now.saturating_add(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const NOW: i64 = 1_800_000_000_000;

    fn state(status: Status) -> HealthState {
        HealthState {
            status,
            last_ok_at: None,
            first_failed_at: None,
            consecutive_failures: 0,
            last_error: None,
        }
    }

    fn failing(status: Status, failures: i64, source: &str) -> HealthState {
        HealthState {
            status,
            last_ok_at: Some(NOW - 100_000),
            first_failed_at: Some(NOW - 50_000),
            consecutive_failures: failures,
            last_error: Some(LastError {
                source: Some(source.to_string()),
                ..LastError::new("earlier", "")
            }),
        }
    }

    fn obs(outcome: Outcome, code: &str) -> Observation {
        Observation::failed(outcome, code, format!("{code} happened"))
    }

    /// The update, or a failed test.
    fn update(t: Transition) -> (HealthState, bool, bool) {
        match t {
            Transition::Update {
                next,
                status_changed,
                bump_version,
            } => (next, status_changed, bump_version),
            Transition::Untouched => panic!("expected an update"),
        }
    }

    fn error_of(s: &HealthState) -> Value {
        s.last_error
            .as_ref()
            .map(LastError::to_value)
            .unwrap_or(Value::Null)
    }

    #[test]
    fn pending_becomes_active_on_success() {
        let (next, changed, bump) = update(observe(
            &state(Status::Pending),
            &Observation::ok(),
            "check",
            NOW,
        ));
        assert_eq!(next.status, Status::Active);
        assert_eq!(next.last_ok_at, Some(NOW));
        assert_eq!(next.consecutive_failures, 0);
        assert!(next.last_error.is_none());
        assert!(changed && bump);
    }

    #[test]
    fn pending_becomes_needs_reauth_on_auth_failure() {
        let (next, changed, _) = update(observe(
            &state(Status::Pending),
            &obs(Outcome::AuthFailure, "auth_rejected"),
            "check",
            NOW,
        ));
        assert_eq!(next.status, Status::NeedsReauth);
        assert!(changed);
    }

    #[test]
    fn pending_becomes_degraded_on_transient_failure() {
        let (next, changed, _) = update(observe(
            &state(Status::Pending),
            &obs(Outcome::Transient, "timeout"),
            "check",
            NOW,
        ));
        assert_eq!(next.status, Status::Degraded);
        assert!(changed);
    }

    #[test]
    fn active_stays_active_on_success_without_a_version_bump() {
        let mut s = state(Status::Active);
        s.last_ok_at = Some(NOW - 1000);
        let (next, changed, bump) = update(observe(&s, &Observation::ok(), "check", NOW));
        assert_eq!(next.status, Status::Active);
        assert_eq!(next.last_ok_at, Some(NOW));
        assert!(!changed);
        assert!(!bump, "health bookkeeping alone does not bump the version");
    }

    #[test]
    fn active_degrades_on_transient_failure_with_error_context() {
        let o = Observation {
            http_status: Some(503),
            body: Some("down".into()),
            ..obs(Outcome::Transient, "provider_unavailable")
        };
        let (next, changed, bump) = update(observe(&state(Status::Active), &o, "check", NOW));
        assert_eq!(next.status, Status::Degraded);
        assert!(changed && bump);
        assert_eq!(next.consecutive_failures, 1);
        assert_eq!(next.first_failed_at, Some(NOW));
        let e = error_of(&next);
        assert_eq!(e["code"], "provider_unavailable");
        assert_eq!(e["message"], "provider_unavailable happened");
        assert_eq!(e["http_status"], 503);
        assert_eq!(e["provider_body"], "down");
        assert_eq!(e["source"], "check");
        assert_eq!(e["at"], ms_to_rfc3339(NOW));
        assert_eq!(e["retry_after_secs"], Value::Null);
        assert_eq!(e["retry_at"], NOW + 5_000);
    }

    #[test]
    fn active_degrades_on_unexpected_answer() {
        let (next, changed, _) = update(observe(
            &state(Status::Active),
            &obs(Outcome::Unexpected, "unexpected_response"),
            "check",
            NOW,
        ));
        assert_eq!(next.status, Status::Degraded);
        assert!(changed);
        assert_eq!(error_of(&next)["code"], "unexpected_response");
    }

    #[test]
    fn active_needs_reauth_on_auth_failure_with_no_retry() {
        let (next, changed, bump) = update(observe(
            &state(Status::Active),
            &obs(Outcome::AuthFailure, "auth_rejected"),
            "refresh",
            NOW,
        ));
        assert_eq!(next.status, Status::NeedsReauth);
        assert!(changed && bump);
        let e = error_of(&next);
        assert_eq!(e["source"], "refresh");
        assert_eq!(e["retry_at"], Value::Null);
    }

    #[test]
    fn degraded_counts_failures_and_keeps_the_run_start() {
        let s = failing(Status::Degraded, 2, "check");
        let (next, changed, bump) = update(observe(
            &s,
            &obs(Outcome::Transient, "timeout"),
            "check",
            NOW,
        ));
        assert_eq!(next.status, Status::Degraded);
        assert!(!changed);
        assert!(!bump, "the error context was there already");
        assert_eq!(next.consecutive_failures, 3);
        assert_eq!(next.first_failed_at, Some(NOW - 50_000));
        assert_eq!(next.last_ok_at, Some(NOW - 100_000));
        assert_eq!(error_of(&next)["code"], "timeout");
        assert_eq!(error_of(&next)["retry_at"], NOW + 20_000);
    }

    #[test]
    fn degraded_breaks_to_needs_reauth_on_auth_failure() {
        let s = failing(Status::Degraded, 4, "check");
        let (next, changed, _) = update(observe(
            &s,
            &obs(Outcome::AuthFailure, "invalid_grant"),
            "refresh",
            NOW,
        ));
        assert_eq!(next.status, Status::NeedsReauth);
        assert!(changed);
        assert_eq!(next.consecutive_failures, 5);
    }

    #[test]
    fn degraded_recovers_on_success() {
        let s = failing(Status::Degraded, 3, "check");
        let (next, changed, bump) = update(observe(&s, &Observation::ok(), "check", NOW));
        assert_eq!(next.status, Status::Active);
        assert!(changed && bump);
        assert_eq!(next.consecutive_failures, 0);
        assert_eq!(next.first_failed_at, None);
        assert_eq!(next.last_error, None);
        assert_eq!(next.last_ok_at, Some(NOW));
    }

    #[test]
    fn needs_reauth_stays_on_transient_failure() {
        let s = failing(Status::NeedsReauth, 1, "check");
        let (next, changed, _) = update(observe(
            &s,
            &obs(Outcome::Transient, "timeout"),
            "check",
            NOW,
        ));
        assert_eq!(
            next.status,
            Status::NeedsReauth,
            "no legal move to degraded"
        );
        assert!(!changed);
        assert_eq!(next.consecutive_failures, 2);
        assert_eq!(error_of(&next)["code"], "timeout");
    }

    #[test]
    fn needs_reauth_from_a_check_recovers_on_success() {
        let s = failing(Status::NeedsReauth, 1, "check");
        let (next, changed, bump) = update(observe(&s, &Observation::ok(), "check", NOW));
        assert_eq!(next.status, Status::Active);
        assert!(changed && bump);
        assert_eq!(next.last_error, None);
    }

    #[test]
    fn a_dead_grant_stays_needs_reauth_when_its_token_still_works() {
        let s = failing(Status::NeedsReauth, 2, "refresh");
        let (next, changed, bump) = update(observe(&s, &Observation::ok(), "check", NOW));
        assert_eq!(next.status, Status::NeedsReauth);
        assert!(!changed && !bump);
        assert_eq!(next.last_ok_at, Some(NOW));
        assert_eq!(next.consecutive_failures, 2);
        assert_eq!(next.first_failed_at, s.first_failed_at);
        assert_eq!(next.last_error, s.last_error);
    }

    #[test]
    fn a_dead_grant_recovers_on_a_successful_refresh() {
        let s = failing(Status::NeedsReauth, 2, "refresh");
        let (next, changed, _) = update(observe(&s, &Observation::ok(), "refresh", NOW));
        assert_eq!(next.status, Status::Active);
        assert!(changed);
        assert_eq!(next.consecutive_failures, 0);
    }

    #[test]
    fn out_of_service_connections_are_untouched() {
        for status in [Status::Disabled, Status::Revoked, Status::RevokePending] {
            for o in [
                Observation::ok(),
                obs(Outcome::AuthFailure, "auth_rejected"),
            ] {
                assert_eq!(
                    observe(&state(status), &o, "check", NOW),
                    Transition::Untouched,
                    "{status}"
                );
            }
        }
    }

    #[test]
    fn a_success_clearing_stale_error_context_bumps_the_version() {
        let mut s = failing(Status::Active, 0, "check");
        s.first_failed_at = None;
        let (next, changed, bump) = update(observe(&s, &Observation::ok(), "check", NOW));
        assert!(!changed);
        assert!(bump);
        assert_eq!(next.last_error, None);
    }

    #[test]
    fn retry_after_sets_when_to_retry() {
        let o = Observation {
            retry_after_secs: Some(120),
            ..obs(Outcome::Transient, "rate_limited")
        };
        let (next, _, _) = update(observe(&state(Status::Active), &o, "check", NOW));
        let e = error_of(&next);
        assert_eq!(e["retry_after_secs"], 120);
        assert_eq!(e["retry_at"], NOW + 120_000);
    }

    #[test]
    fn transient_backoff_honours_retry_after_and_doubles() {
        let mut o = Observation::ok();
        o.outcome = Outcome::Transient;
        assert_eq!(retry_at(&o, 1, 0), Some(5_000));
        assert_eq!(retry_at(&o, 3, 0), Some(20_000));
        assert_eq!(retry_at(&o, 30, 0), Some(600_000));
        o.retry_after_secs = Some(120);
        assert_eq!(retry_at(&o, 1, 0), Some(120_000));
        // A hostile Retry-After is capped, and never overflows.
        o.retry_after_secs = Some(u64::MAX);
        assert_eq!(retry_at(&o, 1, 0), Some(MAX_RETRY_AFTER_SECS as i64 * 1000));
        assert!(retry_at(&o, 1, i64::MAX - 5).is_some());
        o.outcome = Outcome::AuthFailure;
        assert_eq!(retry_at(&o, 1, 0), None);
    }
}
