//! Credential versions on the wire: the history of a connection's
//! credentials (never values) and the grace of a replaced one.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A grace period: whole seconds, or text such as `"15m"`, `"1h"`, `"7d"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Grace {
    Seconds(i64),
    Text(String),
}

/// `GET /api/v1/connections/{id}/credentials?version=`
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CredentialsQuery {
    /// `current` (the default) or `previous`: the credential replaced last,
    /// while its grace lasts, for consumers that switch keys on their own
    /// schedule.
    pub version: Option<String>,
}

/// One credential a connection holds or has held. Never carries material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub id: String,
    /// The connection's credential version number this material was sealed for.
    pub seq: i64,
    #[schema(value_type = crate::enums::VersionLabel)]
    pub label: String,
    /// Names the credential without revealing it: the AWS access key id,
    /// the RSA public key's `SHA256:` fingerprint, else `kh:` and a keyed
    /// hash that cannot be checked without rekey's keys.
    pub fingerprint: String,
    /// `aws_access_key_id`, `rsa_sha256` or `keyed_hash`.
    pub fingerprint_kind: String,
    /// What made it: `created`, `replaced`, `reauthorized`, `backfill`
    /// (recorded later for a credential stored before versions existed).
    pub source: String,
    pub created_at: String,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_by: Option<String>,
    /// A `previous` version's material may be read until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_by: Option<String>,
    /// The newest revocation of this credential (`GET …/revocations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_id: Option<String>,
    /// When it was revoked at the provider (or the last runbook step confirmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// What trying it at the provider afterwards showed:
    /// `verified_rejected`, `still_accepted` or `unverifiable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::enums::Verdict>)]
    pub verdict: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
}

/// `GET /api/v1/connections/{id}/versions`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub items: Vec<VersionView>,
}

/// `POST /api/v1/connections/{id}/rotate`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRotation {
    /// How long the old credential stays readable as `previous` where it
    /// still works after the switch (two roles), before it is disabled at
    /// the target and retired: seconds, or `"15m"`, `"1h"`, `"7d"`. Default
    /// one hour, at most 30 days.
    #[serde(default)]
    pub grace: Option<Grace>,
    /// Databases: `single_user` (default; the role's own password changes,
    /// the old one stops working at once) or `alternate_users` (two roles
    /// take turns; needs `alternate_username` and `admin_connection_id`).
    #[serde(default)]
    #[schema(value_type = Option<crate::enums::RotationStrategy>)]
    pub strategy: Option<String>,
    /// Another connection (same provider and kind) whose credential may
    /// change this one's password (a database admin). Without it the
    /// credential changes itself.
    #[serde(default)]
    pub admin_connection_id: Option<String>,
    /// `alternate_users`: the second role, with the same grants.
    #[serde(default)]
    pub alternate_username: Option<String>,
    /// MySQL/MariaDB with an admin: the account's host part, default `%`.
    #[serde(default)]
    pub user_host: Option<String>,
    /// AWS: the IAM endpoint the key is rotated at (default
    /// `https://iam.amazonaws.com/`; an AWS-compatible service otherwise).
    /// Subject to the outbound policy; https, or http to loopback only.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// AWS: the IAM user whose key rotates; default: the user the current
    /// key belongs to (`GetUser`).
    #[serde(default)]
    pub iam_user: Option<String>,
    /// AWS: when the user already has two access keys (the most AWS
    /// allows), delete the one that is inactive and not current to make
    /// room. Without it such a rotation is refused (rolled back).
    #[serde(default)]
    pub delete_inactive_key: bool,
    /// `api`: rekey's rotator for the kind (422 `no_rotator` when it has
    /// none). `manual`: a guided rotation (static kinds): rekey waits for
    /// you to make the new credential at the provider and submit it
    /// (`POST /api/v1/rotations/{id}/confirm`), tests it with the probe,
    /// then waits for you to confirm the old one revoked. Default: the
    /// catalog's rotator where rekey has one, else guided.
    #[serde(default)]
    #[schema(value_type = Option<crate::enums::RotationMethod>)]
    pub method: Option<String>,
    /// RSA key pairs: the public-key slot (1 = `RSA_PUBLIC_KEY`, 2 =
    /// `RSA_PUBLIC_KEY_2`) that holds the current key; the new key goes in
    /// the other. Default: the slot the last rotation filled, else 1.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2)]
    pub current_slot: Option<u8>,
}

/// `POST /api/v1/rotations/{id}/confirm`: the step the rotation waits for
/// is done at the target. Its `Debug` leaves `credentials` out.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRotation {
    /// The step confirmed: the rotation's `awaiting` (`set` or `retired`).
    #[schema(value_type = crate::enums::RotationState)]
    pub step: String,
    /// Evidence for the audit log (a ticket, what was checked), at most
    /// 500 characters.
    #[serde(default)]
    pub note: Option<String>,
    /// A guided rotation's `set` (when `instructions.needs_credentials`):
    /// the new credential, in the fields of the connection's kind, as for
    /// `PUT /api/v1/connections/{id}/credentials`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<serde_json::Value>,
}

/// `POST /api/v1/rotations/{id}/cancel`
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRotation {
    #[serde(default)]
    pub note: Option<String>,
}

/// What an operator must do for the step a rotation waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotationInstructions {
    /// The step waiting: `set` or `retired`.
    pub step: String,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// Statements to run at the target, exactly as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<String>,
    /// The confirmation must carry the new credential.
    #[serde(default)]
    pub needs_credentials: bool,
}

/// An operator's confirmation of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotationConfirmationView {
    pub step: String,
    pub by: String,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A credential rotation and where it stands. Never carries material.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RotationView {
    pub id: String,
    pub connection_id: String,
    /// The catalog's rotator (`postgres`, `mysql`).
    pub rotator: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// The last step reached: `created`, `set`, `tested`, `promoted`,
    /// `retired` (done), or `failed` / `rolled_back` (stopped).
    #[schema(value_type = crate::enums::RotationState)]
    pub state: String,
    pub finished: bool,
    pub grace_secs: i64,
    /// The new credential's version (see `GET …/versions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_version_id: Option<String>,
    /// The last failure: `{code, message, step, at, attempts}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub last_error: Option<serde_json::Value>,
    /// What happens next or what an operator should do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_action: Option<String>,
    pub attempts: i64,
    /// When the next step may run (a retry, or retirement after the grace);
    /// absent once finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step_at: Option<String>,
    pub requested_by: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The step waiting for an operator's confirmation (`set`, `retired`),
    /// with what to do in `instructions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<RotationInstructions>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmations: Vec<RotationConfirmationView>,
}

/// `GET /api/v1/rotations`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RotationList {
    pub items: Vec<RotationView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/rotations?connection=&cursor=&limit=`
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RotationQuery {
    /// Only this connection's rotations.
    pub connection: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// `PUT /api/v1/connections/{id}/rotation-schedule`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRotationSchedule {
    /// How often: `"30d"`, `"12h"` or seconds, from 1h to 366d.
    pub period: Grace,
    /// When in the day (UTC) a rotation may start: `"02:00-04:00"` (wraps
    /// midnight when the end comes first), or `"any"` (the default).
    #[serde(default)]
    pub window: Option<String>,
    /// As for `POST …/rotate`.
    #[serde(default)]
    pub grace: Option<Grace>,
    #[serde(default)]
    #[schema(value_type = Option<crate::enums::RotationStrategy>)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub admin_connection_id: Option<String>,
    #[serde(default)]
    pub alternate_username: Option<String>,
    #[serde(default)]
    pub user_host: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub iam_user: Option<String>,
    #[serde(default)]
    pub delete_inactive_key: bool,
}

impl SetRotationSchedule {
    /// A schedule every `period`, every other setting its default.
    pub fn every(period: Grace) -> SetRotationSchedule {
        SetRotationSchedule {
            period,
            window: None,
            grace: None,
            strategy: None,
            admin_connection_id: None,
            alternate_username: None,
            user_host: None,
            endpoint: None,
            iam_user: None,
            delete_inactive_key: false,
        }
    }
}

/// A connection's rotation schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RotationScheduleView {
    pub connection_id: String,
    pub period_secs: i64,
    /// `"HH:MM-HH:MM"` in UTC, or `"any"`.
    pub window: String,
    /// When the next rotation starts (at the earliest).
    pub next_due_at: String,
    /// The rotation options (grace, strategy, admin connection…).
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotation_id: Option<String>,
    /// Why the last scheduled start did not happen: `{code, message, at}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub last_error: Option<serde_json::Value>,
    pub updated_at: String,
}

impl std::fmt::Debug for ConfirmRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmRotation")
            .field("step", &self.step)
            .field("note", &self.note)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}
