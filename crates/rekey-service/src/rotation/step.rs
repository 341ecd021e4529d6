//! What a rotation step is given and answers: the material, the stored
//! options (with the operator's confirmations), and a step's error or the
//! instructions it leaves for an operator.

use rekey_core::rotation::{RotationState, RotationStrategy};
use rekey_core::SecretString;
use rekey_store::rotations::RotationRow;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Material: the non-secret credential fields and the secret ones.
pub(crate) struct Material {
    pub meta: Map<String, Value>,
    pub secrets: BTreeMap<String, SecretString>,
}

/// What an operator must do at the target for a step rekey cannot do
/// itself, shown with the rotation until they confirm it done. Never holds
/// a secret (a public key is not one).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Instructions {
    /// The step waiting for confirmation: `set` or `retired`.
    pub step: String,
    pub summary: String,
    /// What to do, in order (the catalog's runbook, or rekey's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// Statements to run at the target, exactly as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<String>,
    /// The confirmation must carry the new credential (a guided rotation's
    /// `set`): the fields of the connection's kind.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_credentials: bool,
}

/// Why a step did not succeed: `retry` when trying again later may help
/// (the target could not be reached), else it needs a person; `operator`
/// when the step is an operator's to do (the rotation waits for them).
#[derive(Debug, Clone)]
pub(crate) struct StepError {
    pub code: String,
    pub message: String,
    pub retry: bool,
    /// What an operator should do about it.
    pub next_action: Option<String>,
    pub operator: Option<Box<Instructions>>,
}

impl StepError {
    /// The step waits for an operator to do `i` and confirm it.
    pub fn operator(i: Instructions) -> Self {
        StepError {
            code: "awaiting_operator".into(),
            message: i.summary.clone(),
            retry: false,
            next_action: None,
            operator: Some(Box::new(i)),
        }
    }

    /// The probe found the new credential not working.
    pub fn from_probe(o: &crate::status::Observation) -> Self {
        let retry = o.outcome == crate::status::Outcome::Transient;
        StepError {
            code: o.code.clone(),
            message: format!("the new credential does not work: {}", o.message),
            retry,
            next_action: Some(if retry {
                "the probe could not reach the provider; rekey tries again".into()
            } else {
                "check the new credential at the provider, then cancel this rotation and start another".into()
            }),
            operator: None,
        }
    }

    pub fn permanent(code: &str, message: impl Into<String>, next: impl Into<String>) -> Self {
        StepError {
            code: code.into(),
            message: message.into(),
            retry: false,
            next_action: Some(next.into()),
            operator: None,
        }
    }
}

/// A rotation's options, as given when it was started (stored as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Options {
    /// Another connection of the tenant whose credential may change this
    /// one's (a database admin); without it the credential changes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_connection_id: Option<String>,
    /// `alternate_users`: the second role, with the same grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate_username: Option<String>,
    /// `alternate_users`: the role that held the credential when the
    /// rotation started (the other one gets the new password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_username: Option<String>,
    /// MySQL: the host part of the account (`'user'@'host'`), default `%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_host: Option<String>,
    #[serde(default)]
    pub strategy: Option<String>,
    /// AWS: the IAM endpoint (default `https://iam.amazonaws.com/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// AWS: the IAM user whose key rotates (found with `GetUser` when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_user: Option<String>,
    /// AWS: with two keys already, delete the user's inactive one (not the
    /// current) to make room; without it such a rotation is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_inactive_key: bool,
    /// AWS: the user's access key ids when the rotation started (by
    /// `prepare`); a key not among them, not held by rekey, is this
    /// rotation's own left over by a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_before: Option<Vec<String>>,
    /// RSA key pair: the public-key slot (1 or 2) of the current key; the
    /// new key goes into the other one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_slot: Option<u8>,
    /// Guided rotation: the provider's old credential stops working once
    /// the new one is made (catalog `invalidates_old_immediately`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub old_dies_at_set: bool,
    /// The operator's confirmations, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmed: Vec<Confirmation>,
}

/// An operator confirmed a step done at the target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Confirmation {
    pub step: String,
    pub by: String,
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Options {
    pub fn strategy(&self) -> RotationStrategy {
        match self.strategy.as_deref() {
            Some("alternate_users") => RotationStrategy::AlternateUsers,
            _ => RotationStrategy::SingleUser,
        }
    }

    /// An operator confirmed `step` done.
    pub fn is_confirmed(&self, step: RotationState) -> bool {
        self.confirmed.iter().any(|c| c.step == step.as_str())
    }

    /// The rotation's confirmations, from its stored options.
    pub fn of(r: &RotationRow) -> Options {
        serde_json::from_str(&r.options).unwrap_or_default()
    }
}
