//! Incident campaigns: one tracked run that revokes, rotates or has the
//! owners reauthorize every credential a filter selects, and counts a
//! connection done only once the old credential is proved dead and the new
//! one proved working (or an operator confirmed it by hand).
//!
//! Pure rules here: the states, the actions and which sequences of them
//! make sense. The service runs them.

use crate::connection::ConnectionKind;
use crate::{Error, ErrorCode};

string_enum!(
    /// Where a campaign is. `draft`: planned, nothing done; `running`:
    /// workers take its steps; `paused`: no new step starts; `completed`:
    /// every connection finished (done, failed or skipped); `cancelled`.
    CampaignState, ErrorCode::InvalidState, {
        Draft => "draft",
        Running => "running",
        Paused => "paused",
        Completed => "completed",
        Cancelled => "cancelled",
    }
);

impl CampaignState {
    pub fn is_finished(self) -> bool {
        matches!(self, CampaignState::Completed | CampaignState::Cancelled)
    }
}

string_enum!(
    /// Where one connection of a campaign is. `overdue` is never stored: a
    /// connection not finished by the deadline shows as overdue.
    ItemState, ErrorCode::InvalidState, {
        Pending => "pending",
        InProgress => "in_progress",
        WaitingForOwner => "waiting_for_owner",
        WaitingForOperator => "waiting_for_operator",
        Done => "done",
        Failed => "failed",
        Skipped => "skipped",
        Overdue => "overdue",
    }
);

impl ItemState {
    /// Nothing more happens to the connection in this campaign.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ItemState::Done | ItemState::Failed | ItemState::Skipped
        )
    }

    /// What a reader sees: an unfinished connection past the deadline is
    /// `overdue`.
    pub fn effective(self, deadline_ms: i64, now_ms: i64) -> ItemState {
        if !self.is_finished() && now_ms > deadline_ms {
            ItemState::Overdue
        } else {
            self
        }
    }
}

string_enum!(
    /// What a campaign does to a connection. `revoke`: at the provider
    /// where rekey can, else by the catalog's runbook (an operator);
    /// `rotate`: the rotation engine (its retirement revokes and verifies
    /// the old credential); `reauthorize`: a Connect link to the owner,
    /// valid until the deadline; `disable`: the connection stops being
    /// handed out.
    CampaignAction, ErrorCode::InvalidField, {
        Revoke => "revoke",
        Rotate => "rotate",
        Reauthorize => "reauthorize",
        Disable => "disable",
    }
);

string_enum!(
    /// Who carries a planned step out.
    Actor, ErrorCode::InvalidField, {
        Automatic => "automatic",
        Operator => "operator",
        Owner => "owner",
    }
);

/// The actions rekey plans for a connection when the campaign names none
/// for it: an OAuth grant is revoked and its owner asked to authorize
/// again; a client-credentials token is revoked (the app's client secret
/// is the integration's to rotate); every key-based credential is rotated
/// (by rekey's rotator where the catalog has one, else guided step by step).
pub fn default_actions(kind: ConnectionKind) -> Vec<CampaignAction> {
    match kind {
        ConnectionKind::OAuth2AuthorizationCode => {
            vec![CampaignAction::Revoke, CampaignAction::Reauthorize]
        }
        ConnectionKind::OAuth2ClientCredentials => vec![CampaignAction::Revoke],
        _ => vec![CampaignAction::Rotate],
    }
}

/// Check a list of actions and put it in the order it runs. Allowed:
/// `revoke`, `revoke`+`reauthorize`, `revoke`+`disable`, `reauthorize`,
/// `rotate`, `disable`. A rotation retires (revokes) the old credential
/// itself, so it stands alone.
pub fn normalize_actions(actions: &[CampaignAction]) -> Result<Vec<CampaignAction>, Error> {
    use CampaignAction::*;
    let mut out: Vec<CampaignAction> = Vec::new();
    for a in [Revoke, Rotate, Reauthorize, Disable] {
        match actions.iter().filter(|x| **x == a).count() {
            0 => {}
            1 => out.push(a),
            _ => {
                return Err(Error::invalid(
                    ErrorCode::InvalidField,
                    format!("`actions` names `{a}` twice"),
                ))
            }
        }
    }
    let ok = matches!(
        out.as_slice(),
        [Revoke] | [Revoke, Reauthorize] | [Revoke, Disable] | [Reauthorize] | [Rotate] | [Disable]
    );
    if !ok {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            "`actions` must be one of: [revoke], [revoke, reauthorize], [revoke, disable], [reauthorize], [rotate], [disable] (a rotation revokes the old credential itself)",
        ));
    }
    Ok(out)
}

/// Whether `action` can apply to a connection of `kind` at all.
pub fn applies_to(action: CampaignAction, kind: ConnectionKind) -> Result<(), String> {
    match action {
        CampaignAction::Rotate if !kind.is_static() => Err(format!(
            "`{kind}` connections are not rotated: revoke and reauthorize the grant"
        )),
        CampaignAction::Reauthorize if kind == ConnectionKind::OAuth2ClientCredentials => {
            Err("client-credentials connections have no person to reauthorize them".to_string())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CampaignAction::*;

    #[test]
    fn sequences_are_put_in_order_and_nonsense_refused() {
        assert_eq!(
            normalize_actions(&[Reauthorize, Revoke]).unwrap(),
            vec![Revoke, Reauthorize]
        );
        assert_eq!(normalize_actions(&[Rotate]).unwrap(), vec![Rotate]);
        assert_eq!(
            normalize_actions(&[Disable, Revoke]).unwrap(),
            vec![Revoke, Disable]
        );
        for bad in [
            vec![],
            vec![Rotate, Revoke],
            vec![Reauthorize, Disable],
            vec![Revoke, Revoke],
            vec![Rotate, Reauthorize],
        ] {
            assert!(normalize_actions(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_default_applies_to_its_kind() {
        for k in ConnectionKind::ALL {
            let d = default_actions(*k);
            assert_eq!(normalize_actions(&d).unwrap(), d);
            for a in d {
                assert!(applies_to(a, *k).is_ok(), "{a} on {k}");
            }
        }
        assert!(applies_to(Rotate, ConnectionKind::OAuth2AuthorizationCode).is_err());
    }

    #[test]
    fn unfinished_past_the_deadline_is_overdue() {
        assert_eq!(ItemState::Pending.effective(10, 11), ItemState::Overdue);
        assert_eq!(ItemState::Done.effective(10, 11), ItemState::Done);
        assert_eq!(
            ItemState::WaitingForOwner.effective(10, 9),
            ItemState::WaitingForOwner
        );
    }
}
