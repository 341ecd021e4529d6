//! Sign-in throttling for dashboard users: the policy as a plain, bounded
//! data structure with the clock passed in, so it is unit-tested without a
//! server.
//!
//! - Per user name: after [`FREE_FAILURES`] consecutive failures the name is
//!   locked, first for a minute, doubling with each further failure up to an
//!   hour.
//! - Per source address: after [`SOURCE_FREE_FAILURES`] failures (any user
//!   names, within [`SOURCE_WINDOW_MS`]) the address may try once per
//!   [`SOURCE_SPACING_MS`], so one client cannot spray guesses over many
//!   names. It is spaced, not locked: behind a reverse proxy every client
//!   shares the proxy's address, and a lock there would lock everyone out.
//! - The trade-off: a lock on a *name* must not let anyone lock a real user
//!   out for good by typing bad passwords. A source that has not itself
//!   failed on that name gets a slow lane: one attempt per name every
//!   [`SLOW_LANE_MS`], made to wait [`SLOW_LANE_DELAY_MS`] first. The right
//!   password then gets through after a delay; guessing through the slow
//!   lane runs at one try per [`SLOW_LANE_MS`] per name at best, and each
//!   wrong try there counts against the source too.
//! - Memory is bounded: names longer than [`MAX_NAME`] bytes are refused
//!   before they are remembered, and each table keeps at most
//!   [`MAX_ENTRIES`] entries (expired ones first, then the oldest, go).
//!
//! State is per server instance: replicas each count on their own.

use std::collections::HashMap;

pub(crate) const FREE_FAILURES: u32 = 5;
pub(crate) const SOURCE_FREE_FAILURES: u32 = 20;
pub(crate) const SOURCE_WINDOW_MS: i64 = 15 * 60_000;
pub(crate) const SOURCE_SPACING_MS: i64 = 1_000;
const FIRST_LOCK_MS: i64 = 60_000;
const MAX_LOCK_MS: i64 = 3_600_000;
pub(crate) const SLOW_LANE_MS: i64 = 10_000;
pub(crate) const SLOW_LANE_DELAY_MS: u64 = 2_000;
pub(crate) const MAX_NAME: usize = 64;
pub(crate) const MAX_ENTRIES: usize = 10_000;
/// Sources remembered as having failed on one locked name.
const MAX_OFFENDERS: usize = 32;

/// What to do with a sign-in attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Check the password now.
    Allow,
    /// Check it after waiting this many ms (the slow lane of a locked name).
    AllowAfter(u64),
    /// Refuse without checking; retry after this many ms.
    Refuse(i64),
}

#[derive(Debug, Default, Clone)]
struct Entry {
    failures: u32,
    locked_until: i64,
    last_failure: i64,
    /// Sources that failed on this name while it was locked or on the way.
    offenders: Vec<String>,
    /// The slow lane's next free time.
    slow_next: i64,
}

fn lock_for(failures: u32, free: u32) -> i64 {
    let n = failures.saturating_sub(free).min(6);
    (FIRST_LOCK_MS << n).min(MAX_LOCK_MS)
}

#[derive(Debug, Default)]
pub(crate) struct Throttle {
    names: HashMap<String, Entry>,
    sources: HashMap<String, Entry>,
}

fn add_offender(e: &mut Entry, source: &str) {
    if !e.offenders.iter().any(|o| o == source) {
        if e.offenders.len() >= MAX_OFFENDERS {
            e.offenders.remove(0);
        }
        e.offenders.push(source.to_string());
    }
}

/// The entry for `key`, making room by dropping the one whose last failure
/// is oldest (preferring entries whose lock has run out). Never a mass
/// clear: flooding the table with junk names must not reset a target's
/// count.
fn bounded_insert<'a>(map: &'a mut HashMap<String, Entry>, key: &str, now: i64) -> &'a mut Entry {
    if !map.contains_key(key) && map.len() >= MAX_ENTRIES {
        let victim = map
            .iter()
            .min_by_key(|(_, e)| (e.locked_until > now, e.last_failure))
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            map.remove(&k);
        }
    }
    map.entry(key.to_string()).or_default()
}

impl Throttle {
    pub(crate) fn check(&mut self, name: &str, source: Option<&str>, now: i64) -> Decision {
        if let Some(e) = source.and_then(|s| self.sources.get_mut(s)) {
            if e.failures >= SOURCE_FREE_FAILURES && now - e.last_failure < SOURCE_WINDOW_MS {
                if e.slow_next > now {
                    return Decision::Refuse(e.slow_next - now);
                }
                e.slow_next = now + SOURCE_SPACING_MS;
            }
        }
        let Some(e) = self.names.get_mut(name) else {
            return Decision::Allow;
        };
        if e.locked_until <= now {
            return Decision::Allow;
        }
        // Locked. Sources that caused it (or unknown ones) wait it out.
        let offender = match source {
            None => true,
            Some(s) => e.offenders.iter().any(|o| o == s),
        };
        if offender {
            return Decision::Refuse(e.locked_until - now);
        }
        if e.slow_next > now {
            return Decision::Refuse(e.slow_next - now);
        }
        e.slow_next = now + SLOW_LANE_MS;
        // Counted as an offender now, not on failure: a client that takes
        // the slot and hangs up during the delay must not get another.
        // The right password clears the whole entry.
        if let Some(s) = source {
            add_offender(e, s);
        }
        Decision::AllowAfter(SLOW_LANE_DELAY_MS)
    }

    pub(crate) fn failure(&mut self, name: &str, source: Option<&str>, now: i64) {
        let e = bounded_insert(&mut self.names, name, now);
        e.failures += 1;
        e.last_failure = now;
        if let Some(s) = source {
            add_offender(e, s);
        }
        if e.failures >= FREE_FAILURES {
            e.locked_until = e
                .locked_until
                .max(now + lock_for(e.failures, FREE_FAILURES));
        }
        if let Some(s) = source {
            let e = bounded_insert(&mut self.sources, s, now);
            if now - e.last_failure >= SOURCE_WINDOW_MS {
                e.failures = 0;
            }
            e.failures += 1;
            e.last_failure = now;
            // Kept while spaced, so eviction prefers sources that are not.
            e.locked_until = now + SOURCE_WINDOW_MS;
        }
    }

    pub(crate) fn success(&mut self, name: &str, source: Option<&str>) {
        self.names.remove(name);
        if let Some(s) = source {
            self.sources.remove(s);
        }
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.names.len(), self.sources.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Option<&str> = Some("10.0.0.1");
    const B: Option<&str> = Some("10.0.0.2");

    #[test]
    fn a_name_locks_after_free_failures_and_doubles() {
        let mut t = Throttle::default();
        for _ in 0..FREE_FAILURES - 1 {
            t.failure("ana", A, 0);
            assert_eq!(t.check("ana", A, 0), Decision::Allow);
        }
        t.failure("ana", A, 0);
        assert_eq!(t.check("ana", A, 1), Decision::Refuse(FIRST_LOCK_MS - 1));
        t.failure("ana", A, 1);
        assert_eq!(
            t.check("ana", A, 1),
            Decision::Refuse(2 * FIRST_LOCK_MS),
            "doubles"
        );
        // Capped at an hour.
        for _ in 0..20 {
            t.failure("ana", A, 1);
        }
        assert_eq!(t.check("ana", A, 1), Decision::Refuse(MAX_LOCK_MS));
        assert_eq!(t.check("ana", A, 1 + MAX_LOCK_MS), Decision::Allow);
    }

    #[test]
    fn another_source_gets_a_slow_lane_not_a_lock_out() {
        let mut t = Throttle::default();
        for _ in 0..FREE_FAILURES {
            t.failure("ana", A, 0);
        }
        // The attacker's source waits; the real user's gets through after a delay,
        // once per slow-lane interval.
        assert!(matches!(t.check("ana", A, 10), Decision::Refuse(_)));
        assert_eq!(
            t.check("ana", B, 10),
            Decision::AllowAfter(SLOW_LANE_DELAY_MS)
        );
        // The slot is taken for everyone else until the interval is over.
        assert_eq!(
            t.check("ana", Some("10.0.0.9"), 11),
            Decision::Refuse(SLOW_LANE_MS - 1)
        );
        // B used its slow-lane try (even had it hung up): it waits now,
        // while a third address gets the next slot.
        assert!(matches!(
            t.check("ana", B, 10 + SLOW_LANE_MS),
            Decision::Refuse(_)
        ));
        let c = Some("10.0.0.3");
        assert_eq!(
            t.check("ana", c, 10 + SLOW_LANE_MS),
            Decision::AllowAfter(SLOW_LANE_DELAY_MS)
        );
        // No source known: no slow lane.
        assert!(matches!(t.check("ana", None, 10), Decision::Refuse(_)));
        // Success clears the name.
        t.success("ana", B);
        assert_eq!(t.check("ana", A, 10), Decision::Allow);
    }

    #[test]
    fn a_source_spraying_many_names_is_spaced() {
        let mut t = Throttle::default();
        for i in 0..SOURCE_FREE_FAILURES {
            assert_eq!(t.check(&format!("u{i}"), A, 0), Decision::Allow);
            t.failure(&format!("u{i}"), A, 0);
        }
        // One attempt per spacing interval from A; B is not affected.
        assert_eq!(t.check("someone-else", A, 1), Decision::Allow);
        assert_eq!(
            t.check("someone-else", A, 2),
            Decision::Refuse(SOURCE_SPACING_MS - 1)
        );
        assert_eq!(t.check("someone-else", B, 2), Decision::Allow);
        assert_eq!(
            t.check("someone-else", A, 1 + SOURCE_SPACING_MS),
            Decision::Allow
        );
        // The count is forgotten after the window.
        assert_eq!(
            t.check("someone-else", A, SOURCE_WINDOW_MS),
            Decision::Allow
        );
        assert_eq!(
            t.check("someone-else", A, SOURCE_WINDOW_MS + 1),
            Decision::Allow
        );
    }

    #[test]
    fn tables_stay_bounded() {
        let mut t = Throttle::default();
        for i in 0..(MAX_ENTRIES * 2) {
            let src = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            t.failure(&format!("user{i}"), Some(&src), i as i64);
        }
        let (names, sources) = t.len();
        assert!(names <= MAX_ENTRIES, "{names}");
        assert!(sources <= MAX_ENTRIES, "{sources}");
        // The newest entries are kept.
        let last = MAX_ENTRIES * 2 - 1;
        assert!(t.names.contains_key(&format!("user{last}")));
    }

    #[test]
    fn flooding_the_table_does_not_reset_a_locked_name() {
        let mut t = Throttle::default();
        for _ in 0..FREE_FAILURES {
            t.failure("ana", A, 0);
        }
        for i in 0..(MAX_ENTRIES * 2) {
            t.failure(&format!("junk{i}"), B, 1);
        }
        assert!(matches!(t.check("ana", A, 2), Decision::Refuse(_)));
    }
}
