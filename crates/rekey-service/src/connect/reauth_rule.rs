//! The reauthorization rule: a new grant replaces a connection's grant only
//! when the same person authorized it with at least the scopes the
//! connection holds. Anything else is parked beside the working grant for
//! an operator to accept or refuse. Pure, so every case is tested here.

use super::Identity;
use rekey_core::ErrorCode;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The same person, no scope lost: switch to the new grant.
    Switch,
    /// Park the new grant. `code` names the first reason (identity before
    /// scopes); `reasons` says every one; `missing_scopes` are held scopes
    /// the new grant lacks.
    Park {
        code: ErrorCode,
        reasons: Vec<String>,
        missing_scopes: Vec<String>,
    },
}

/// Judge a new grant by `got` for `granted` scopes against a connection
/// authorized by `original` that holds `held` scopes. Subjects decide when
/// both are known (emails can be reassigned); otherwise the emails must be
/// known and equal.
pub(crate) fn judge(
    original: &Identity,
    got: &Identity,
    held: &[String],
    granted: &[String],
) -> Verdict {
    let same_person = match (&original.subject, &got.subject) {
        (Some(a), Some(b)) => a == b,
        _ => original.email.is_some() && original.email == got.email,
    };
    let missing_scopes: Vec<String> = held
        .iter()
        .filter(|sc| !granted.contains(sc))
        .cloned()
        .collect();
    let mut reasons = Vec::new();
    if !same_person {
        reasons.push(format!(
            "identity_mismatch: authorized by {} but the connection belongs to {}",
            got.describe(),
            original.describe()
        ));
    }
    if !missing_scopes.is_empty() {
        reasons.push(format!(
            "scope_downgrade: missing scopes {}",
            missing_scopes.join(", ")
        ));
    }
    if reasons.is_empty() {
        return Verdict::Switch;
    }
    Verdict::Park {
        code: if same_person {
            ErrorCode::ScopeDowngrade
        } else {
            ErrorCode::IdentityMismatch
        },
        reasons,
        missing_scopes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(subject: Option<&str>, email: Option<&str>) -> Identity {
        Identity {
            subject: subject.map(str::to_string),
            email: email.map(str::to_string),
            name: None,
        }
    }
    fn scopes(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }
    fn code(v: &Verdict) -> Option<&'static str> {
        match v {
            Verdict::Switch => None,
            Verdict::Park { code, .. } => Some(code.as_str()),
        }
    }

    #[test]
    fn same_subject_same_scopes_switches() {
        let a = who(Some("u1"), Some("ada@example.com"));
        assert_eq!(
            judge(
                &a,
                &a,
                &scopes(&["read", "write"]),
                &scopes(&["write", "read"])
            ),
            Verdict::Switch
        );
    }

    #[test]
    fn more_scopes_than_held_switch() {
        let a = who(Some("u1"), None);
        assert_eq!(
            judge(&a, &a, &scopes(&["read"]), &scopes(&["read", "admin"])),
            Verdict::Switch
        );
    }

    #[test]
    fn subjects_decide_over_emails() {
        // Same subject, the email changed since: the same person.
        let v = judge(
            &who(Some("u1"), Some("old@example.com")),
            &who(Some("u1"), Some("new@example.com")),
            &[],
            &[],
        );
        assert_eq!(v, Verdict::Switch);
        // Another subject with the same email (a reassigned address): not.
        let v = judge(
            &who(Some("u1"), Some("ada@example.com")),
            &who(Some("u2"), Some("ada@example.com")),
            &[],
            &[],
        );
        assert_eq!(code(&v), Some("identity_mismatch"));
    }

    #[test]
    fn without_a_subject_the_email_must_match() {
        let held = who(None, Some("ada@example.com"));
        assert_eq!(
            judge(&held, &who(Some("u9"), Some("ada@example.com")), &[], &[]),
            Verdict::Switch
        );
        let v = judge(&held, &who(Some("u9"), Some("bob@example.com")), &[], &[]);
        assert_eq!(code(&v), Some("identity_mismatch"));
        let v = judge(&held, &who(Some("u9"), None), &[], &[]);
        assert_eq!(code(&v), Some("identity_mismatch"));
    }

    #[test]
    fn an_unknown_original_never_matches() {
        // Nothing to compare with: never switch silently.
        let v = judge(&who(None, None), &who(None, None), &[], &[]);
        assert_eq!(code(&v), Some("identity_mismatch"));
    }

    #[test]
    fn a_lost_scope_parks_with_the_missing_ones() {
        let a = who(Some("u1"), None);
        let v = judge(
            &a,
            &a,
            &scopes(&["read", "write", "admin"]),
            &scopes(&["read"]),
        );
        match v {
            Verdict::Park {
                code,
                reasons,
                missing_scopes,
            } => {
                assert_eq!(code, "scope_downgrade");
                assert_eq!(missing_scopes, scopes(&["write", "admin"]));
                assert_eq!(
                    reasons,
                    vec!["scope_downgrade: missing scopes write, admin".to_string()]
                );
            }
            Verdict::Switch => panic!("a downgrade must not switch"),
        }
    }

    #[test]
    fn both_faults_are_reported_identity_first() {
        let v = judge(
            &who(Some("u1"), None),
            &who(Some("u2"), None),
            &scopes(&["read"]),
            &[],
        );
        match v {
            Verdict::Park { code, reasons, .. } => {
                assert_eq!(code, "identity_mismatch");
                assert_eq!(reasons.len(), 2);
                assert!(reasons[0].starts_with(
                    "identity_mismatch: authorized by u2 but the connection belongs to u1"
                ));
                assert!(reasons[1].starts_with("scope_downgrade"));
            }
            Verdict::Switch => panic!("a mismatch must not switch"),
        }
    }
}
