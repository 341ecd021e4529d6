//! Rotation: the steps a credential rotation goes through, persisted before
//! each side effect so a crash resumes at the last one reached.
//!
//! `created` (the new secret generated and stored as the pending version) →
//! `set` (applied at the target) → `tested` (the new secret works there) →
//! `promoted` (pending → current, current → previous) → `retired` (the old
//! secret disabled at the target after the grace). Or `failed` (with the
//! error and what to do next), or `rolled_back` where undoing was safe.

use crate::ErrorCode;

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

#[cfg(test)]
mod tests {
    use super::*;

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
