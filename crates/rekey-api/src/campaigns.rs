//! Incident campaigns on the wire.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Which connections a campaign covers: the connection filter of
/// `GET /api/v1/connections`, with `providers` for several providers. At
/// least one field must be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Any of these providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::enums::ConnectionKind>)]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::enums::ConnectionStatus>)]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Where the credential was also kept (`salesforce`, `ci`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custody: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Case-insensitive substring of the display name, owner email or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_read_after: Option<String>,
}

/// Who a campaign tells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignNotify {
    /// `campaign.*` webhook events (the reauthorization links among them).
    #[serde(default = "yes")]
    pub webhooks: bool,
    /// E-mail each owner their link and a reminder, when rekey has an SMTP
    /// server (`REKEY_SMTP_URL`) and the owner an e-mail address.
    #[serde(default = "yes")]
    pub email: bool,
}

fn yes() -> bool {
    true
}

impl Default for CampaignNotify {
    fn default() -> Self {
        CampaignNotify {
            webhooks: true,
            email: true,
        }
    }
}

/// `POST /api/v1/campaigns`
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    /// 1–100 characters.
    pub name: String,
    /// Why (the breach, the advisory): 1–2000 characters.
    pub reason: String,
    pub filter: CampaignFilter,
    /// Actions overriding the defaults, by connection kind (`api_key`) or
    /// connection id (`con_…`). Defaults: OAuth grants `[revoke,
    /// reauthorize]`, client-credentials tokens `[revoke]`, key-based
    /// credentials `[rotate]`.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Vec<crate::enums::CampaignAction>>)]
    pub actions: BTreeMap<String, Vec<String>>,
    /// Options of the rotations the campaign starts, by connection kind or
    /// connection id (as `POST …/rotate` takes them: an AWS `endpoint`, a
    /// database `strategy`…). `grace` defaults to 0: after a breach the old
    /// credential is retired as soon as the new one works.
    #[serde(default)]
    pub rotation: BTreeMap<String, crate::StartRotation>,
    /// RFC 3339, in the future (at most 90 days): reauthorization links
    /// live until then; what is not done by then is overdue.
    pub deadline: String,
    #[serde(default)]
    pub notify: Option<CampaignNotify>,
}

/// One step planned for a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlannedStep {
    #[schema(value_type = crate::enums::CampaignAction)]
    pub action: String,
    #[schema(value_type = crate::enums::CampaignActor)]
    pub by: String,
    pub note: String,
}

/// Counts of a campaign's connections by state, for one provider or owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignBreakdown {
    pub key: String,
    pub total: i64,
    pub done: i64,
    #[schema(value_type = BTreeMap<crate::enums::CampaignItemState, i64>)]
    pub counts: BTreeMap<String, i64>,
}

/// A campaign and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub reason: String,
    pub filter: CampaignFilter,
    #[schema(value_type = BTreeMap<String, Vec<crate::enums::CampaignAction>>)]
    pub actions: BTreeMap<String, Vec<String>>,
    pub rotation: BTreeMap<String, crate::StartRotation>,
    pub deadline: String,
    pub notify: CampaignNotify,
    #[schema(value_type = crate::enums::CampaignState)]
    pub state: String,
    pub created_by: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Connections in the frozen plan (0 before the start).
    pub total: i64,
    /// Per state, every state named (`overdue` counts unfinished
    /// connections past the deadline, which also count in their state).
    #[schema(value_type = BTreeMap<crate::enums::CampaignItemState, i64>)]
    pub counts: BTreeMap<String, i64>,
    /// Done, failed or skipped, of the total, 0–100.
    pub percent_finished: f64,
    /// Done, of the total, 0–100.
    pub percent_done: f64,
    pub by_provider: Vec<CampaignBreakdown>,
    pub by_owner: Vec<CampaignBreakdown>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignList {
    pub items: Vec<CampaignView>,
    pub next_cursor: Option<String>,
}

/// One connection of a campaign: its plan and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignItemView {
    pub connection_id: String,
    pub display_name: String,
    pub provider: String,
    #[schema(value_type = crate::enums::ConnectionKind)]
    pub kind: String,
    pub owner: Option<String>,
    pub steps: Vec<PlannedStep>,
    /// The action running (absent once all ran).
    #[schema(value_type = Option<crate::enums::CampaignAction>)]
    pub current: Option<String>,
    #[schema(value_type = crate::enums::CampaignItemState)]
    pub state: String,
    /// What the operator or owner must do, the failure, or the skip reason.
    pub detail: Option<String>,
    pub revocation_id: Option<String>,
    pub rotation_id: Option<String>,
    /// When the reauthorization link expires (the link itself: `GET …/links`).
    pub link_expires_at: Option<String>,
    pub confirmed_by: Option<String>,
    pub comment: Option<String>,
    pub updated_at: Option<String>,
    pub finished_at: Option<String>,
}

/// The plan: every connection the campaign covers, with its steps. Before
/// the start it is computed from the filter; from the start on it is the
/// frozen plan, with each connection's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignPlan {
    pub campaign_id: String,
    pub frozen: bool,
    pub items: Vec<CampaignItemView>,
    pub next_cursor: Option<String>,
}

/// Query of `GET …/plan` and `GET …/items`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CampaignItemQuery {
    /// Only connections in this state (frozen plans).
    #[param(value_type = Option<crate::enums::CampaignItemState>)]
    pub state: Option<String>,
    pub cursor: Option<String>,
    /// 1–200, default 100.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Query of `GET /api/v1/campaigns`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CampaignQuery {
    pub cursor: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// `POST …/items/{connection_id}/confirm`: the operator checked the
/// connection by hand (old credential dead, new one working).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmCampaignItem {
    /// What was checked, and how: 1–2000 characters.
    pub comment: String,
}

/// `POST …/items/{connection_id}/skip`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkipCampaignItem {
    /// 1–2000 characters.
    pub reason: String,
}

/// A reauthorization link of a campaign. Its `Debug` hides the URL (the
/// token in it lets its holder replace a credential).
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignLinkView {
    pub connection_id: String,
    pub display_name: String,
    pub owner: Option<String>,
    /// The single-use Connect link (hand it to the owner only).
    pub url: String,
    pub expires_at: String,
    /// `created` (unused), `completed`, `superseded` (cancelled or resent)…
    pub status: String,
}

impl std::fmt::Debug for CampaignLinkView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampaignLinkView")
            .field("connection_id", &self.connection_id)
            .field("owner", &self.owner)
            .field("url", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("status", &self.status)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignLinks {
    pub items: Vec<CampaignLinkView>,
    pub next_cursor: Option<String>,
}

/// `POST …/refresh-plan`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshCampaignPlan {
    /// Add the connections found to the frozen plan (default: only list them).
    #[serde(default)]
    pub add: bool,
}

/// Connections matching the filter that the frozen plan lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignPlanRefresh {
    pub items: Vec<CampaignItemView>,
    /// How many were added (0 unless `add`).
    pub added: i64,
}

/// Links as a mail-merge CSV file (`rekey campaign links --csv`, the
/// dashboard's download): a header, then one row per link, each cell
/// [`crate::csv_safe`].
pub fn links_csv(links: &[CampaignLinkView]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "connection_id",
        "display_name",
        "owner",
        "url",
        "expires_at",
        "status",
    ])?;
    for l in links {
        let cells = [
            l.connection_id.as_str(),
            &l.display_name,
            l.owner.as_deref().unwrap_or_default(),
            &l.url,
            &l.expires_at,
            &l.status,
        ];
        w.write_record(cells.map(|c| crate::csv_safe(c).into_owned()))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_link_view_does_not_print_its_url() {
        let v = super::CampaignLinkView {
            connection_id: "con_x".into(),
            display_name: "n".into(),
            owner: None,
            url: "http://h/connect/SECRET-TOKEN".into(),
            expires_at: "t".into(),
            status: "created".into(),
        };
        let shown = format!(
            "{v:?} {:?}",
            super::CampaignLinks {
                items: vec![v.clone()],
                next_cursor: None
            }
        );
        assert!(!shown.contains("SECRET-TOKEN"), "{shown}");
    }
}
