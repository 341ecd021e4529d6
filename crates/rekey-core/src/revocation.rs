//! Revocation of one credential: how it was done, and what rekey found
//! when it tried the old credential at the provider afterwards.
//!
//! `open` (an operator has runbook steps left, or a rotation has not
//! retired the credential yet) → `revoked` (done at the provider, every
//! step confirmed, or retired by the rotation). Then a verdict: `verified_rejected`
//! (the provider refused the old credential: proof), `still_accepted` (an
//! alarm; re-tried on a schedule) or `unverifiable` (no way to try it for
//! this kind: why is in the evidence).

use crate::ErrorCode;

string_enum!(
    /// Where a revocation stands.
    RevocationState, ErrorCode::InvalidState, {
        Open => "open",
        Revoked => "revoked",
    }
);

string_enum!(
    /// How the credential was revoked: through the provider's API, by an
    /// operator's runbook, or by a rotation's retire step.
    RevocationMethod, ErrorCode::InvalidState, {
        Provider => "provider",
        Manual => "manual",
        Rotation => "rotation",
    }
);

string_enum!(
    /// What trying the old credential at the provider showed.
    Verdict, ErrorCode::InvalidState, {
        VerifiedRejected => "verified_rejected",
        StillAccepted => "still_accepted",
        Unverifiable => "unverifiable",
    }
);

impl Verdict {
    /// No further check will change this verdict.
    pub fn is_final(self) -> bool {
        !matches!(self, Verdict::StillAccepted)
    }
}

/// Re-verification of a credential still accepted: after 1, 5, 15 and 60
/// minutes, then every 6 hours, until `MAX_VERIFY_ATTEMPTS`.
pub fn next_verify_delay_ms(attempts: i64) -> i64 {
    const MIN: i64 = 60_000;
    match attempts {
        ..=1 => MIN,
        2 => 5 * MIN,
        3 => 15 * MIN,
        4 => 60 * MIN,
        _ => 6 * 60 * MIN,
    }
}

/// After this many tries the verdict stands as it is and rekey stops asking.
pub const MAX_VERIFY_ATTEMPTS: i64 = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_stays() {
        let d: Vec<i64> = (1..=7).map(next_verify_delay_ms).collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
        assert_eq!(next_verify_delay_ms(6), next_verify_delay_ms(20));
    }

    #[test]
    fn only_still_accepted_is_retried() {
        assert!(Verdict::VerifiedRejected.is_final());
        assert!(Verdict::Unverifiable.is_final());
        assert!(!Verdict::StillAccepted.is_final());
    }
}
