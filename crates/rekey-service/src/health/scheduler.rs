//! The health scheduler: which connections are due, one pass checking them
//! under each provider's concurrency and rate limits (the [`Throttle`]),
//! and the settings that drive it.

use crate::{Ctx, Rekey};
use rekey_core::connection::Status;
use rekey_core::last_error::LastError;
use rekey_core::time::now_ms;
use rekey_core::Error;
use rekey_store::connections::{self as conns, ConnectionRow};
use rekey_store::Backend;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Scheduler knobs. Defaults: every 15 min ±10 %, degraded connections
/// after 30 s doubling up to the interval, 4 checks in flight and 5 per
/// second per provider.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub interval: Duration,
    pub jitter: f64,
    pub degraded_base: Duration,
    pub per_provider_concurrency: usize,
    pub per_provider_rate: f64,
    /// Connections claimed per pass.
    pub batch: i64,
    /// Upper bound on any probe's own `timeout_secs`.
    pub max_probe_timeout: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_secs(900),
            jitter: 0.1,
            degraded_base: Duration::from_secs(30),
            per_provider_concurrency: 4,
            per_provider_rate: 5.0,
            batch: 200,
            max_probe_timeout: Duration::from_secs(30),
        }
    }
}

fn jittered(ms: i64, jitter: f64) -> i64 {
    use rand::Rng;
    let j = if jitter > 0.0 {
        rand::thread_rng().gen_range(-jitter..=jitter)
    } else {
        0.0
    };
    ((ms as f64) * (1.0 + j)).max(1000.0) as i64
}

/// When the next scheduled check of `row` is due.
pub(super) fn next_check(s: &HealthSettings, row: &ConnectionRow, now: i64) -> i64 {
    let at = now + jittered(base_wait(s, row.status, row.consecutive_failures), s.jitter);
    match retry_at_of(row.last_error.as_deref()) {
        Some(r) => at.max(r),
        None => at,
    }
}

/// The wait before the next check, before jitter: the interval, or for a
/// degraded connection the degraded base doubling per consecutive failure,
/// capped at the interval.
fn base_wait(s: &HealthSettings, status: Status, consecutive_failures: i64) -> i64 {
    let interval = s.interval.as_millis() as i64;
    if status == Status::Degraded {
        let n = (consecutive_failures - 1).clamp(0, 20) as u32;
        (s.degraded_base.as_millis() as i64)
            .saturating_mul(1i64 << n)
            .min(interval)
    } else {
        interval
    }
}

/// The `retry_at` the status policy stored in `last_error`, if any.
fn retry_at_of(last_error: Option<&str>) -> Option<i64> {
    LastError::from_column(last_error).and_then(|e| e.retry_at)
}

/// Per-provider concurrency and rate limits for scheduled checks.
#[derive(Default)]
pub(crate) struct Throttle {
    gates: std::sync::Mutex<HashMap<String, Arc<Gate>>>,
}

struct Gate {
    sem: tokio::sync::Semaphore,
    next: tokio::sync::Mutex<Instant>,
}

impl Throttle {
    fn gate(&self, provider: &str, s: &HealthSettings) -> Arc<Gate> {
        let mut g = match self.gates.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.entry(provider.to_string())
            .or_insert_with(|| {
                Arc::new(Gate {
                    sem: tokio::sync::Semaphore::new(s.per_provider_concurrency.max(1)),
                    next: tokio::sync::Mutex::new(Instant::now()),
                })
            })
            .clone()
    }
}

/// A claimed check's result; None when the pass ran out of time first.
type Attempted = Option<Result<crate::CheckReport, Error>>;

/// What one scheduler pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRun {
    pub claimed: usize,
    pub ok: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Claimed but not started in this pass's time window; due again now.
    pub deferred: usize,
}

impl Rekey {
    /// Tests only: new health settings (the server takes them from
    /// `RekeyConfig`).
    #[cfg(feature = "test-hooks")]
    pub fn set_health_settings(&self, s: HealthSettings) {
        if let Ok(mut w) = self.inner.health_settings.write() {
            *w = s;
        }
    }

    /// Connections claimed per scheduler pass.
    pub fn health_batch(&self) -> i64 {
        self.health_settings().batch
    }

    pub(crate) fn health_settings(&self) -> HealthSettings {
        self.inner
            .health_settings
            .read()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// One scheduler pass: claim due connections (a lease, so replicas on one
    /// PostgreSQL never check the same connection), check them in parallel
    /// under each provider's concurrency and rate limits.
    pub async fn check_due(&self, owner: &str) -> Result<CheckRun, Error> {
        use futures_util::StreamExt;
        let s = self.health_settings();
        let started = Instant::now();
        let now = now_ms();
        // Checks start only within `window`; any started check ends within
        // twice the probe timeout (a refresh, then the probe) plus slack. The
        // lease covers both, so a live replica never loses its claims and a
        // crashed one's come free soon after.
        let window =
            (s.max_probe_timeout * 2).clamp(Duration::from_secs(10), Duration::from_secs(60));
        let lease = window + s.max_probe_timeout * 2 + Duration::from_secs(15);
        let lease_until = now + lease.as_millis() as i64;
        let claimed = self
            .store()
            .claim(
                &conns::CHECKS_DUE,
                conns::claim_checks,
                owner,
                now,
                lease_until,
                s.batch,
            )
            .await?;
        let mut run = CheckRun {
            claimed: claimed.len(),
            ..Default::default()
        };
        // Checks in flight at once, all providers: a PostgreSQL refresh holds
        // one pooled connection while it reads with another, so stay under
        // half the pool there.
        let in_flight = match self.store().backend() {
            Backend::Postgres => (self.store().pool_size() / 2).max(1) as usize,
            Backend::Sqlite => 64,
        };
        let global = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let n = claimed.len().max(1);
        let results: Vec<(String, String, Attempted)> = futures_util::stream::iter(claimed)
            .map(|(tenant, id, provider)| {
                let s = s.clone();
                let global = global.clone();
                async move {
                    let gate = self.inner.throttle.gate(&provider, &s);
                    let _permit = gate.sem.acquire().await;
                    if s.per_provider_rate > 0.0 {
                        let spacing = Duration::from_secs_f64(1.0 / s.per_provider_rate);
                        let wait = {
                            let mut next = gate.next.lock().await;
                            let now = Instant::now();
                            let slot = (*next).max(now);
                            *next = slot + spacing;
                            slot - now
                        };
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.stopping() => return (tenant, id, None),
                        }
                    }
                    let _slot = global.acquire().await;
                    if started.elapsed() > window || *self.inner.stopping.borrow() {
                        // Out of time for this pass, or stopping: hand it
                        // back, due now.
                        return (tenant, id, None);
                    }
                    let ctx = Ctx {
                        tenant: tenant.clone(),
                        actor: "system:health".into(),
                        request_id: None,
                        source: None,
                    };
                    let r = self.check_inner(&ctx, &id, false, Some(owner)).await;
                    (tenant, id, Some(r))
                }
            })
            // Waiting on a provider's limits holds no slot: every claimed
            // check may wait at once, so one slow provider can't stall the rest.
            .buffer_unordered(n)
            .collect()
            .await;
        for (tenant, id, r) in results {
            let retry_at = match r {
                Some(Ok(c)) => {
                    match c.outcome.as_str() {
                        "ok" => run.ok += 1,
                        "skipped" => run.skipped += 1,
                        _ => run.failed += 1,
                    }
                    continue;
                }
                None => {
                    run.deferred += 1;
                    now_ms()
                }
                Some(Err(e)) => {
                    run.failed += 1;
                    tracing::warn!(connection = %id, error = %e, "scheduled check failed");
                    now_ms() + s.interval.as_millis() as i64
                }
            };
            // Don't leave it claimed until the lease lapses.
            let mut tx = self.store().begin_write().await?;
            conns::schedule_check(tx.conn(), &tenant, &id, retry_at, Some(owner)).await?;
            tx.commit().await?;
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_connections_wait_the_interval() {
        let s = HealthSettings::default();
        for status in [Status::Active, Status::Pending, Status::NeedsReauth] {
            assert_eq!(base_wait(&s, status, 3), 900_000, "{status}");
        }
    }

    #[test]
    fn degraded_connections_back_off_doubling_up_to_the_interval() {
        let s = HealthSettings::default();
        assert_eq!(base_wait(&s, Status::Degraded, 0), 30_000);
        assert_eq!(base_wait(&s, Status::Degraded, 1), 30_000);
        assert_eq!(base_wait(&s, Status::Degraded, 2), 60_000);
        assert_eq!(base_wait(&s, Status::Degraded, 4), 240_000);
        assert_eq!(base_wait(&s, Status::Degraded, 6), 900_000);
        assert_eq!(base_wait(&s, Status::Degraded, i64::MAX), 900_000);
    }

    #[test]
    fn jitter_stays_within_bounds_and_never_below_a_second() {
        assert_eq!(jittered(60_000, 0.0), 60_000);
        assert_eq!(jittered(10, 0.0), 1000);
        for _ in 0..100 {
            let j = jittered(100_000, 0.1);
            assert!((89_999..=110_001).contains(&j), "{j}");
        }
    }

    #[test]
    fn a_stored_retry_at_is_read_back() {
        assert_eq!(
            retry_at_of(Some(r#"{"code":"x","retry_at":1234}"#)),
            Some(1234)
        );
        assert_eq!(retry_at_of(Some(r#"{"code":"x","retry_at":null}"#)), None);
        assert_eq!(retry_at_of(Some("not json")), None);
        assert_eq!(retry_at_of(None), None);
    }
}
