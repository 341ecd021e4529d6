//! Rotation: the steps a credential rotation goes through, persisted before
//! each side effect so a crash resumes at the last one reached.
//!
//! `created` (the new secret generated and stored as the pending version) →
//! `set` (applied at the target) → `tested` (the new secret works there) →
//! `promoted` (pending → current, current → previous) → `retired` (the old
//! secret disabled at the target after the grace). Or `failed` (with the
//! error and what to do next), or `rolled_back` where undoing was safe.

use crate::{Error, ErrorCode};
use std::time::Duration;

string_enum!(
    /// The last step a rotation reached.
    RotationState, ErrorCode::InvalidState, {
        Created => "created",
        Set => "set",
        Tested => "tested",
        Promoted => "promoted",
        Retired => "retired",
        Failed => "failed",
        RolledBack => "rolled_back",
    }
);

impl RotationState {
    /// Nothing more will happen to a rotation in this state.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RotationState::Retired | RotationState::Failed | RotationState::RolledBack
        )
    }

    /// The step that follows, for a rotation still running.
    pub fn next(self) -> Option<RotationState> {
        use RotationState::*;
        match self {
            Created => Some(Set),
            Set => Some(Tested),
            Tested => Some(Promoted),
            Promoted => Some(Retired),
            Retired | Failed | RolledBack => None,
        }
    }
}

string_enum!(
    /// How a database password is rotated. `single_user`: the role's own
    /// password changes (the old one stops working at once). `alternate_users`:
    /// two roles with the same grants take turns; the idle one gets the new
    /// password, becomes current, and the other is locked out at retirement.
    RotationStrategy, ErrorCode::InvalidStrategy, {
        SingleUser => "single_user",
        AlternateUsers => "alternate_users",
    }
);

string_enum!(
    /// Who carries out a rotation's steps at the target. `api`: rekey's
    /// rotator for the kind, by itself. `manual`: a guided rotation; rekey
    /// shows what to do, waits for an operator to confirm each step done at
    /// the provider, and tests the new credential with the probe.
    RotationMethod, ErrorCode::InvalidField, {
        Api => "api",
        Manual => "manual",
    }
);

/// The shortest and longest period of scheduled rotation.
pub const MIN_PERIOD: Duration = Duration::from_secs(3600);
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 86_400);

/// A rotation period: `"90d"`, `"12h"`, seconds; from one hour to 366 days.
pub fn parse_period(s: &str) -> Result<Duration, Error> {
    match crate::versions::parse_duration_text(s) {
        Some(d) if (MIN_PERIOD..=MAX_PERIOD).contains(&d) => Ok(d),
        _ => Err(Error::invalid(
            ErrorCode::InvalidField,
            format!(
                "`period` must be a number with h or d (e.g. 12h, 30d, 90d) from 1h to 366d; got `{}`",
                crate::ids::truncate_for_message(s)
            ),
        )),
    }
}

/// A daily window in UTC, `"HH:MM-HH:MM"` (wrapping midnight when the end
/// comes first), as minutes after midnight `[start, end)`. Absent or
/// `"any"`: any time (`(0, 0)`).
pub fn parse_window(s: Option<&str>) -> Result<(i64, i64), Error> {
    let bad = |s: &str| {
        Error::invalid(
            ErrorCode::InvalidField,
            format!(
                "`window` must be `HH:MM-HH:MM` in UTC (e.g. 02:00-04:00) or `any`; got `{}`",
                crate::ids::truncate_for_message(s)
            ),
        )
    };
    let Some(s) = s.map(str::trim).filter(|s| !s.is_empty() && *s != "any") else {
        return Ok((0, 0));
    };
    let minute = |t: &str| -> Option<i64> {
        let (h, m) = t.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
    };
    let (a, b) = s.split_once('-').ok_or_else(|| bad(s))?;
    match (minute(a.trim()), minute(b.trim())) {
        (Some(a), Some(b)) if a != b => Ok((a, b)),
        _ => Err(bad(s)),
    }
}

/// Whether `minute` (after midnight UTC) is inside the window.
pub fn in_window(minute: i64, start: i64, end: i64) -> bool {
    match start.cmp(&end) {
        std::cmp::Ordering::Equal => true,
        std::cmp::Ordering::Less => (start..end).contains(&minute),
        std::cmp::Ordering::Greater => minute >= start || minute < end,
    }
}

/// The window as written, `"HH:MM-HH:MM"`, or `"any"`.
pub fn window_text(start: i64, end: i64) -> String {
    if start == end {
        return "any".into();
    }
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        start / 60,
        start % 60,
        end / 60,
        end % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_windows() {
        assert_eq!(
            parse_period("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_period("1h").unwrap(), MIN_PERIOD);
        for bad in ["59m", "367d", "soon", "", "-1d"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_window(None).unwrap(), (0, 0));
        assert_eq!(parse_window(Some("any")).unwrap(), (0, 0));
        assert_eq!(parse_window(Some("02:00-04:30")).unwrap(), (120, 270));
        assert_eq!(parse_window(Some("23:00-01:00")).unwrap(), (1380, 60));
        for bad in [
            "2:00-4:00",
            "02:00",
            "24:00-01:00",
            "02:00-02:00",
            "02:60-03:00",
        ] {
            assert!(parse_window(Some(bad)).is_err(), "{bad}");
        }
        assert!(in_window(130, 120, 270) && !in_window(270, 120, 270));
        assert!(in_window(1400, 1380, 60) && in_window(30, 1380, 60) && !in_window(600, 1380, 60));
        assert!(in_window(999, 0, 0));
        assert_eq!(window_text(1380, 60), "23:00-01:00");
        assert_eq!(window_text(5, 5), "any");
    }

    #[test]
    fn steps_run_in_order_and_end() {
        let mut s = RotationState::Created;
        let mut seen = vec![s];
        while let Some(n) = s.next() {
            s = n;
            seen.push(s);
        }
        assert_eq!(
            seen,
            [
                RotationState::Created,
                RotationState::Set,
                RotationState::Tested,
                RotationState::Promoted,
                RotationState::Retired
            ]
        );
        assert!(s.is_finished());
        assert!(RotationState::Failed.is_finished() && RotationState::Failed.next().is_none());
        assert!(!RotationState::Promoted.is_finished());
    }
}
