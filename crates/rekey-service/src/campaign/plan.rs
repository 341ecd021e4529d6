//! Which actions a campaign plans for a connection, and who carries out
//! each: rekey, an operator following the catalog's runbook, or the owner.

use crate::Rekey;
use rekey_core::campaign::{self, Actor, CampaignAction, ItemState};
use rekey_core::connection::ConnectionKind;
use rekey_core::time::now_ms;
use rekey_core::{ids, Error, ErrorCode};
use rekey_providers::RunbookMethod;
use rekey_store::campaigns::{CampaignRow, ItemRow};
use rekey_store::connections::ConnectionRow;
use std::collections::BTreeMap;

/// One step planned for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub action: CampaignAction,
    pub by: Actor,
    pub note: String,
}

/// A connection in a campaign's plan: its item (stored from the start,
/// else as it would be), its steps, and its state as a reader sees it.
#[derive(Debug, Clone)]
pub struct PlanItem {
    pub item: ItemRow,
    pub steps: Vec<PlannedStep>,
    pub state: ItemState,
}

impl PlanItem {
    /// The action running, if any is left.
    pub fn current(&self) -> Option<CampaignAction> {
        usize::try_from(self.item.step)
            .ok()
            .and_then(|i| self.steps.get(i))
            .map(|s| s.action)
    }
}

/// The campaign's action overrides: by connection kind and by connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    kinds: BTreeMap<ConnectionKind, Vec<CampaignAction>>,
    connections: BTreeMap<String, Vec<CampaignAction>>,
}

impl Overrides {
    /// Check a request's `actions`: keys are kinds or connection ids, each
    /// value a sequence [`campaign::normalize_actions`] accepts (and, for
    /// a kind, one that applies to it).
    pub fn parse(wire: &BTreeMap<String, Vec<String>>) -> Result<Overrides, Error> {
        if wire.len() > 1000 {
            return Err(Error::invalid(
                ErrorCode::InvalidField,
                "`actions` has at most 1,000 entries",
            ));
        }
        let mut out = Overrides::default();
        for (key, names) in wire {
            let acts: Vec<CampaignAction> =
                names.iter().map(|n| n.parse()).collect::<Result<_, _>>()?;
            let acts = campaign::normalize_actions(&acts).map_err(|e| {
                Error::invalid(
                    ErrorCode::InvalidField,
                    format!(
                        "`actions.{}`: {}",
                        ids::truncate_for_message(key),
                        e.public_message()
                    ),
                )
            })?;
            if key.starts_with("con_") {
                let id = ids::parse_id(ids::CONNECTION, key)?;
                out.connections.insert(id, acts);
            } else {
                let kind: ConnectionKind = key.parse().map_err(|_| {
                    Error::invalid(
                        ErrorCode::InvalidField,
                        format!(
                            "`actions` keys are connection kinds or connection ids (`con_…`), not `{}`",
                            ids::truncate_for_message(key)
                        ),
                    )
                })?;
                for a in &acts {
                    campaign::applies_to(*a, kind).map_err(|m| {
                        Error::invalid(ErrorCode::InvalidField, format!("`actions.{kind}`: {m}"))
                    })?;
                }
                out.kinds.insert(kind, acts);
            }
        }
        Ok(out)
    }

    pub fn from_column(text: &str) -> Result<Overrides, Error> {
        let wire: BTreeMap<String, Vec<String>> =
            serde_json::from_str(text).map_err(Error::internal)?;
        Overrides::parse(&wire)
    }

    pub fn to_wire(&self) -> BTreeMap<String, Vec<String>> {
        let names = |v: &Vec<CampaignAction>| v.iter().map(|a| a.as_str().to_string()).collect();
        let mut out: BTreeMap<String, Vec<String>> = self
            .kinds
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), names(v)))
            .collect();
        out.extend(self.connections.iter().map(|(k, v)| (k.clone(), names(v))));
        out
    }

    /// The connection's actions, or why none apply.
    fn for_connection(&self, row: &ConnectionRow) -> Result<Vec<CampaignAction>, String> {
        let acts = self
            .connections
            .get(&row.id)
            .or_else(|| self.kinds.get(&row.kind))
            .cloned()
            .unwrap_or_else(|| campaign::default_actions(row.kind));
        for a in &acts {
            campaign::applies_to(*a, row.kind)?;
        }
        Ok(acts)
    }
}

/// A key of a per-kind or per-connection map: a connection id, or a kind.
fn check_key(field: &str, key: &str) -> Result<(), Error> {
    if key.starts_with("con_") {
        ids::parse_id(ids::CONNECTION, key).map(|_| ())
    } else {
        key.parse::<ConnectionKind>().map(|_| ()).map_err(|_| {
            Error::invalid(
                ErrorCode::InvalidField,
                format!(
                    "`{field}` keys are connection kinds or connection ids (`con_…`), not `{}`",
                    ids::truncate_for_message(key)
                ),
            )
        })
    }
}

/// Check a campaign's rotation options: known keys, options a rotation
/// would accept.
pub(crate) fn check_rotation_keys(
    m: &BTreeMap<String, rekey_api::StartRotation>,
) -> Result<(), Error> {
    if m.len() > 1000 {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            "`rotation` has at most 1,000 entries",
        ));
    }
    for (k, v) in m {
        check_key("rotation", k)?;
        crate::RotateRequest::from_wire(v.clone())?;
    }
    Ok(())
}

/// The rotation a campaign starts for a connection: its options (by
/// connection, else by kind), with no grace unless they say otherwise.
pub(crate) fn rotate_request(
    c: &CampaignRow,
    connection_id: &str,
    kind: &str,
) -> Result<crate::RotateRequest, Error> {
    let m: BTreeMap<String, rekey_api::StartRotation> =
        serde_json::from_str(&c.rotation).unwrap_or_default();
    let wire = m
        .get(connection_id)
        .or_else(|| m.get(kind))
        .cloned()
        .unwrap_or_default();
    let mut req = crate::RotateRequest::from_wire(wire)?;
    req.grace.get_or_insert(std::time::Duration::ZERO);
    Ok(req)
}

fn parse_actions(text: &str) -> Vec<CampaignAction> {
    serde_json::from_str::<Vec<String>>(text)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

impl Rekey {
    /// The item a connection gets when the plan is frozen now.
    pub(super) fn plan_item(
        &self,
        c: &CampaignRow,
        row: &ConnectionRow,
        overrides: &Overrides,
    ) -> PlanItem {
        let now = now_ms();
        let (actions, state, detail, finished_at) = match overrides.for_connection(row) {
            Ok(a) => (a, ItemState::Pending, None, None),
            Err(why) => (vec![], ItemState::Skipped, Some(why), Some(now)),
        };
        let names: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
        let item = ItemRow {
            id: ids::new_id("cit"),
            tenant: c.tenant.clone(),
            campaign_id: c.id.clone(),
            connection_id: row.id.clone(),
            display_name: row.display_name.clone(),
            provider: row.provider.clone(),
            kind: row.kind.as_str().to_string(),
            owner: row.owner.email.clone().or(row.owner.subject.clone()),
            base_version: row.credential_version,
            actions: serde_json::to_string(&names).unwrap_or_else(|_| "[]".into()),
            step: 0,
            state,
            detail,
            revocation_id: None,
            rotation_id: None,
            session_id: None,
            link_expires_at: None,
            reminded_at: None,
            started_at: None,
            attempts: 0,
            due_at: now,
            lease_owner: None,
            lease_until: None,
            confirmed_by: None,
            comment: None,
            updated_at: now,
            finished_at,
        };
        let steps = self.steps_for(row.kind, &row.provider, Some(row), &actions);
        PlanItem {
            state: item.state.effective(c.deadline, now),
            item,
            steps,
        }
    }

    /// A stored item with its steps.
    pub(super) fn planned(&self, c: &CampaignRow, item: ItemRow, now: i64) -> PlanItem {
        let actions = parse_actions(&item.actions);
        let kind = item.kind.parse().unwrap_or(ConnectionKind::ApiKey);
        let steps = self.steps_for(kind, &item.provider, None, &actions);
        PlanItem {
            state: item.state.effective(c.deadline, now),
            item,
            steps,
        }
    }

    /// Who does each action, by the catalog: revocation at the provider or
    /// by its runbook; rotation by rekey's rotator or guided.
    fn steps_for(
        &self,
        kind: ConnectionKind,
        provider: &str,
        row: Option<&ConnectionRow>,
        actions: &[CampaignAction],
    ) -> Vec<PlannedStep> {
        let p = self.catalog().get(provider);
        actions
            .iter()
            .map(|a| {
                let (by, note) = match a {
                    CampaignAction::Revoke => match p.map(|p| p.revoke_for(kind.as_str())) {
                        _ if !kind.is_static() => (
                            Actor::Automatic,
                            "revoked at the OAuth app's revocation endpoint by rekey (an app without one: by an operator following the runbook), then tried to prove it dead".to_string(),
                        ),
                        Some(r) if r.method == RunbookMethod::Api => {
                            (Actor::Automatic, "revoked at the provider by rekey, then tried to prove it dead".to_string())
                        }
                        _ => (Actor::Operator, "revoked by an operator following the provider's runbook; rekey then tries the old credential".to_string()),
                    },
                    CampaignAction::Rotate => {
                        let rotator = row
                            .and_then(|r| self.default_rotator(r).ok())
                            .or_else(|| {
                                p.and_then(|p| p.rotate_for(kind.as_str()).rotator)
                                    .map(|r| r.as_str())
                            })
                            .unwrap_or("manual");
                        match rotator {
                            "postgres" | "mysql" | "aws_iam" => (
                                Actor::Automatic,
                                format!("rotated by rekey's `{rotator}` rotator; the old credential is retired at once and tried to prove it dead"),
                            ),
                            other => (
                                Actor::Operator,
                                format!("rotated step by step by an operator (`{other}` rotation: rekey shows each step and tests the new credential)"),
                            ),
                        }
                    }
                    CampaignAction::Reauthorize => (
                        Actor::Owner,
                        "the owner reconnects through a Connect link valid until the deadline; rekey then probes the new credential".to_string(),
                    ),
                    CampaignAction::Disable => (
                        Actor::Automatic,
                        "disabled: rekey stops handing the credential out".to_string(),
                    ),
                };
                PlannedStep {
                    action: *a,
                    by,
                    note,
                }
            })
            .collect()
    }
}
