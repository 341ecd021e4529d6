//! Background workers. Each runs until the shutdown signal; several
//! replicas may run them at once (per-connection row locks serialise work).

use rekey_service::Rekey;
use std::time::Duration;
use tokio::sync::watch;

/// Refresh OAuth tokens ahead of expiry every `interval` (with jitter so
/// replicas don't stampede the providers in lockstep).
pub fn spawn_refresh_worker(
    rekey: Rekey,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let jitter = Duration::from_millis(
                u64::from(rand_jitter()) % (interval.as_millis() as u64 / 5 + 1),
            );
            tokio::select! {
                _ = tokio::time::sleep(interval + jitter) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            match rekey.refresh_due(500).await {
                Ok(run) if run.due > 0 => tracing::info!(
                    due = run.due,
                    refreshed = run.refreshed,
                    failed = run.failed,
                    "refresh pass"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "refresh pass failed"),
            }
        }
    })
}

fn rand_jitter() -> u32 {
    // Cheap per-process jitter source; cryptographic quality is not needed.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id()
}

/// Run `pass` every `tick` until shutdown; when a pass says more work is
/// waiting (a full batch), the next one starts at once.
fn spawn_pass_loop<F, Fut>(
    what: &'static str,
    tick: Duration,
    mut stop: watch::Receiver<bool>,
    pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<bool, rekey_core::Error>> + Send,
{
    tokio::spawn(async move {
        let mut immediate = false;
        loop {
            if !immediate {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = stop.changed() => break,
                }
            }
            if *stop.borrow() {
                break;
            }
            immediate = match pass().await {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!(error = %e, "{what} pass failed");
                    false
                }
            };
        }
    })
}

/// Run the health scheduler: every `tick`, claim the connections whose
/// check is due and check them (see `Rekey::check_due`).
pub fn spawn_health_worker(
    rekey: Rekey,
    owner: String,
    tick: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_pass_loop("health", tick, stop, move || {
        let (rekey, owner) = (rekey.clone(), owner.clone());
        async move {
            let run = rekey.check_due(&owner).await?;
            if run.claimed > 0 {
                tracing::info!(
                    claimed = run.claimed,
                    ok = run.ok,
                    failed = run.failed,
                    skipped = run.skipped,
                    "health pass"
                );
            }
            Ok(run.claimed > 0 && run.claimed as i64 >= rekey.health_batch())
        }
    })
}

/// Run the webhook delivery worker: every `tick`, fan pending outbox events
/// out to deliveries, then post due deliveries.
pub fn spawn_delivery_worker(
    rekey: Rekey,
    owner: String,
    tick: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    const BATCH: i64 = 100;
    spawn_pass_loop("webhook", tick, stop, move || {
        let (rekey, owner) = (rekey.clone(), owner.clone());
        async move {
            let run = rekey.deliver_due(&owner, BATCH).await?;
            if run.claimed > 0 || run.fanned_out > 0 {
                tracing::info!(
                    fanned_out = run.fanned_out,
                    claimed = run.claimed,
                    delivered = run.delivered,
                    retrying = run.retrying,
                    gave_up = run.gave_up,
                    "webhook pass"
                );
            }
            Ok(run.claimed as i64 >= BATCH || run.fan_out_backlog)
        }
    })
}

/// Retire previous credential versions whose grace has ended (their
/// material is deleted; fingerprints and history stay).
pub fn spawn_version_worker(
    rekey: Rekey,
    tick: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    const BATCH: i64 = 100;
    spawn_pass_loop("versions", tick, stop, move || {
        let rekey = rekey.clone();
        async move { rekey.retire_expired_versions(BATCH).await }
    })
}

/// Drive credential rotations: start scheduled ones, resume those another
/// process left (a crash, a lapsed lease) and retire old credentials once
/// their grace ends.
pub fn spawn_rotation_worker(
    rekey: Rekey,
    tick: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    const BATCH: i64 = 20;
    spawn_pass_loop("rotation", tick, stop, move || {
        let rekey = rekey.clone();
        async move {
            let more_scheduled = rekey.start_scheduled_rotations(BATCH).await?;
            Ok(rekey.rotate_due(BATCH).await? || more_scheduled)
        }
    })
}

/// Try revoked credentials at their provider until each has a verdict
/// (and again while one is still accepted): see `Rekey::verify_due_revocations`.
pub fn spawn_revocation_worker(
    rekey: Rekey,
    owner: String,
    tick: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_pass_loop("revocation", tick, stop, move || {
        let (rekey, owner) = (rekey.clone(), owner.clone());
        async move {
            let (verified, failed) = rekey.verify_due_revocations(&owner).await?;
            if verified + failed > 0 {
                tracing::info!(verified, failed, "revocation verification pass");
            }
            Ok(verified + failed >= rekey_service::VERIFY_BATCH)
        }
    })
}

/// Sends owners their campaign e-mail (links, reminders) when an SMTP
/// server is configured; a few messages per pass.
pub fn spawn_mail_worker(
    rekey: Rekey,
    tick: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    const BATCH: i64 = 10;
    spawn_pass_loop("mail", tick, stop, move || {
        let rekey = rekey.clone();
        async move { rekey.mail_due(BATCH).await }
    })
}

/// Run incident campaigns: claim due items of running campaigns and
/// advance each (see `Rekey::campaign_due`).
pub fn spawn_campaign_worker(
    rekey: Rekey,
    tick: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    const BATCH: i64 = 50;
    spawn_pass_loop("campaign", tick, stop, move || {
        let rekey = rekey.clone();
        async move { Ok(rekey.campaign_due(BATCH).await?.more) }
    })
}
