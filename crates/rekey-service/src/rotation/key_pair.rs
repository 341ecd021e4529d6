//! RSA key pairs on a user with two public-key slots (Snowflake's
//! `RSA_PUBLIC_KEY` and `RSA_PUBLIC_KEY_2`): rekey generates the new key,
//! the free slot gets its public key, the probe signs a key-pair JWT with
//! it, it becomes current, and the old slot is unset after the grace.
//!
//! rekey has no adapter that runs the statements at the target (that would
//! need a Snowflake session of an admin role), so `set` and `retired` wait
//! for an operator to run the exact statements shown and confirm.

use super::{plain_name, At, Instructions, Material, Options, Rotate, StepError};
use crate::Rekey;
use rekey_core::rotation::RotationState;
use rekey_core::{Error, ErrorCode};
use rekey_store::connections::ConnectionRow;
use rekey_store::rotations as store;
use serde_json::Value;

pub(crate) struct KeyPair;

/// The column of slot 1 or 2.
fn slot_column(slot: u8) -> &'static str {
    if slot == 2 {
        "RSA_PUBLIC_KEY_2"
    } else {
        "RSA_PUBLIC_KEY"
    }
}

fn other(slot: u8) -> u8 {
    if slot == 2 {
        1
    } else {
        2
    }
}

fn username(m: &Material) -> String {
    m.meta
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Rotate for KeyPair {
    /// The user name must be a plain identifier (it goes into statements
    /// unquoted, as Snowflake upper-cases it); the current slot is the
    /// request's, else the one the last rotation of this connection filled,
    /// else 1.
    async fn prepare(
        &self,
        rk: &Rekey,
        row: &ConnectionRow,
        current: &Material,
        opts: &mut Options,
    ) -> Result<(), Error> {
        let user = username(current);
        if !plain_name(&user, 255, b"_$") {
            return Err(Error::unprocessable(
                ErrorCode::InvalidField,
                "the key pair's `username` must be a plain identifier (A-Z, 0-9, '_', '$') to rotate it; rotate by hand",
            ));
        }
        if opts.current_slot.is_none() {
            let mut c = rk.store().read().await?;
            let recent = store::list(&mut c, &row.tenant, Some(&row.id), None, 20).await?;
            opts.current_slot = recent
                .iter()
                .find(|r| r.rotator == "rsa_second_slot" && r.state == RotationState::Retired)
                .and_then(|r| Options::of(r).current_slot)
                .map(other)
                .or(Some(1));
        }
        Ok(())
    }

    fn generate(&self, current: &Material, _opts: &Options) -> Result<Material, Error> {
        let pem = crate::rsa_key::generate()?;
        let info = crate::rsa_key::derive(&pem, None)?;
        let mut meta = serde_json::Map::new();
        meta.insert("username".into(), username(current).into());
        meta.insert("public_key_fingerprint".into(), info.fingerprint.into());
        meta.insert("public_key_pem".into(), info.public_key_pem.into());
        meta.insert("key_bits".into(), info.bits.into());
        Ok(Material {
            meta,
            secrets: [("private_key_pem".to_string(), pem)].into(),
        })
    }

    async fn set(
        &self,
        at: &At<'_>,
        _current: &Material,
        pending: &Material,
    ) -> Result<Option<Material>, StepError> {
        let At { opts, .. } = *at;
        if opts.is_confirmed(RotationState::Set) {
            return Ok(None);
        }
        let slot = other(opts.current_slot.unwrap_or(1));
        let col = slot_column(slot);
        let user = username(pending);
        let public = pending
            .meta
            .get("public_key_pem")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let fp = pending
            .meta
            .get("public_key_fingerprint")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Err(StepError::operator(Instructions {
            step: RotationState::Set.as_str().into(),
            summary: format!("Put the new public key in slot {slot} ({col}) of user {user}, then confirm this step."),
            steps: vec![
                "Run the statement as a role that may alter the user (SECURITYADMIN, or the user's owner).".into(),
                format!("Check with DESC USER {user}: {col}_FP must be {fp}."),
                "Confirm here; rekey then signs in with the new key to test it.".into(),
            ],
            statements: vec![format!(
                "ALTER USER {user} SET {col} = '{}';",
                crate::rsa_key::public_key_body(public)
            )],
            needs_credentials: false,
        }))
    }

    /// Rolled back after the operator set the new key: its slot must be
    /// emptied by hand.
    async fn discard(
        &self,
        at: &At<'_>,
        _current: &Material,
        pending: &Material,
    ) -> Result<(), StepError> {
        let At { opts, .. } = *at;
        if !opts.is_confirmed(RotationState::Set) {
            return Ok(());
        }
        let col = slot_column(other(opts.current_slot.unwrap_or(1)));
        Err(StepError::permanent(
            "manual_cleanup",
            "rekey cannot unset the new public key itself",
            format!("run ALTER USER {} UNSET {col};", username(pending)),
        ))
    }

    async fn test(&self, at: &At<'_>, pending: &Material) -> Result<(), StepError> {
        let At { rk, row, .. } = *at;
        super::manual::probe_pending(rk, row, pending).await
    }

    async fn retire(
        &self,
        at: &At<'_>,
        _old: &Material,
        current: &Material,
    ) -> Result<(), StepError> {
        let At { opts, .. } = *at;
        if opts.is_confirmed(RotationState::Retired) {
            return Ok(());
        }
        let old = opts.current_slot.unwrap_or(1);
        let col = slot_column(old);
        let user = username(current);
        Err(StepError::operator(Instructions {
            step: RotationState::Retired.as_str().into(),
            summary: format!(
                "The new key (slot {}) is current. Remove the old public key from slot {old} ({col}) of user {user}, then confirm this step.",
                other(old)
            ),
            steps: vec![format!(
                "Check with DESC USER {user} that {col}_FP is the old key's fingerprint before you unset it."
            )],
            statements: vec![format!("ALTER USER {user} UNSET {col};")],
            needs_credentials: false,
        }))
    }

    fn old_survives_set(&self, _opts: &Options) -> bool {
        true
    }
}
