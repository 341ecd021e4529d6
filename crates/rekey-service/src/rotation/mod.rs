//! Credential rotation: a resumable state machine per rotation (see
//! [`rekey_core::rotation::RotationState`]), one rotator per target behind
//! [`Rotate`], and the use cases that start, list and show rotations.
//!
//! Every step's outcome is written before the next step's side effect, and
//! every step is idempotent, so a crash anywhere resumes at the last step
//! written, on any replica (work is leased; see [`engine`]). The new secret
//! is the connection's `pending` credential version until promoted.
//!
//! Files: `engine.rs` runs the steps; `database.rs` is the PostgreSQL and
//! MySQL/MariaDB rotator; `aws_iam.rs` the AWS IAM access key rotator;
//! `key_pair.rs` the RSA key pair (two public-key slots) rotator;
//! `manual.rs` the guided rotation for every other kind; `confirm.rs` the
//! operator's confirmations and cancellation; `fault.rs` is the test-only
//! crash switch.

mod aws_iam;
mod confirm;
mod database;
mod engine;
pub(crate) use engine::LEASE_MS;
pub(crate) mod fault;
mod key_pair;
mod manual;
mod schedule;
mod step;

use crate::audit::record_ok;
use crate::connection_rows::not_found;
use crate::webhooks::emit;
use crate::{Ctx, Rekey};
use rekey_core::audit::AuditAction;
use rekey_core::events::EventType;
use rekey_core::rotation::{RotationState, RotationStrategy};
use rekey_core::time::now_ms;
use rekey_core::versions::DEFAULT_GRACE;
use rekey_core::{ids, Error, ErrorCode};
use rekey_providers::Rotator as CatalogRotator;
use rekey_store::connections::ConnectionRow;
use rekey_store::rotations::{self as store, RotationRow};
use rekey_store::Locked;
use serde_json::{json, Value};
use std::time::Duration;

pub use rekey_store::rotations::RotationRow as Rotation;
pub use schedule::{schedule_options, RotationSchedule, ScheduleRequest};

/// The rotators rekey runs itself. `rekey providers lint` refuses a catalog
/// entry whose `rotate.method = "api"` names any other.
pub const IMPLEMENTED: &[CatalogRotator] = &[
    CatalogRotator::Postgres,
    CatalogRotator::Mysql,
    CatalogRotator::AwsIam,
    CatalogRotator::RsaSecondSlot,
    CatalogRotator::Manual,
];

pub use confirm::ConfirmRequest;
pub use rekey_core::rotation::RotationMethod;
pub use step::{Confirmation, Instructions, Options};
pub(crate) use step::{Material, StepError};

/// What every step after `prepare` works on: the service, the connection
/// (its target's address and parameters) and the rotation's options.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub rk: &'a Rekey,
    pub row: &'a ConnectionRow,
    pub opts: &'a Options,
}

/// One target's rotation steps. Each must be idempotent: after a crash it
/// runs again with the same material and must end in the same place.
pub(crate) trait Rotate {
    /// Before anything is written: look at the target (read only) and
    /// record in `opts` what later steps need to know of how it was when
    /// the rotation started. Errors refuse the rotation.
    fn prepare(
        &self,
        rk: &Rekey,
        row: &ConnectionRow,
        current: &Material,
        opts: &mut Options,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send;
    /// The new material, from the current one and the options. Where the
    /// target makes the secret (AWS), this holds only what is known before
    /// (no secrets), and `set` returns the rest.
    fn generate(&self, current: &Material, opts: &Options) -> Result<Material, Error>;
    /// Apply the new material at the target. Material the target made is
    /// returned, and stored as the pending version in the same transaction
    /// as the move to `set`.
    fn set(
        &self,
        at: &At<'_>,
        current: &Material,
        pending: &Material,
    ) -> impl std::future::Future<Output = Result<Option<Material>, StepError>> + Send;
    /// The rotation is being rolled back after `set` (the old credential
    /// still works): remove the pending material at the target where it
    /// exists on its own (an AWS key).
    fn discard(
        &self,
        at: &At<'_>,
        current: &Material,
        pending: &Material,
    ) -> impl std::future::Future<Output = Result<(), StepError>> + Send;
    /// Check the new material works at the target.
    fn test(
        &self,
        at: &At<'_>,
        pending: &Material,
    ) -> impl std::future::Future<Output = Result<(), StepError>> + Send;
    /// Disable the old material at the target (after the grace).
    fn retire(
        &self,
        at: &At<'_>,
        old: &Material,
        current: &Material,
    ) -> impl std::future::Future<Output = Result<(), StepError>> + Send;
    /// Whether the old material still works once the new one is set (so it
    /// can be handed out as `previous` during the grace).
    fn old_survives_set(&self, opts: &Options) -> bool;
}

/// A request to rotate a connection's credential.
#[derive(Debug, Clone, Default)]
pub struct RotateRequest {
    /// How long the old credential stays readable as `previous` (where it
    /// still works) before it is retired; default one hour.
    pub grace: Option<Duration>,
    pub strategy: Option<RotationStrategy>,
    pub admin_connection_id: Option<String>,
    pub alternate_username: Option<String>,
    pub user_host: Option<String>,
    /// AWS: the IAM endpoint (default `https://iam.amazonaws.com/`).
    pub endpoint: Option<String>,
    /// AWS: the IAM user (found with `GetUser` when not given).
    pub iam_user: Option<String>,
    /// AWS: delete the user's inactive key when it already has two.
    pub delete_inactive_key: bool,
    /// Who carries out the steps; default: the catalog's rotator where
    /// rekey has one, else a guided rotation.
    pub method: Option<RotationMethod>,
    /// RSA key pair: the slot (1 or 2) that holds the current public key
    /// (default 1, or the slot the last rotation put it in).
    pub current_slot: Option<u8>,
}

impl RotateRequest {
    /// The request a `POST …/rotate` body (or a campaign's rotation
    /// options) asks for, validated.
    pub fn from_wire(b: rekey_api::StartRotation) -> Result<RotateRequest, Error> {
        use rekey_api::Grace;
        use rekey_core::versions::{grace_from_secs, parse_grace};
        Ok(RotateRequest {
            grace: match b.grace {
                None => None,
                Some(Grace::Seconds(n)) => Some(grace_from_secs(n)?),
                Some(Grace::Text(t)) => Some(parse_grace(&t)?),
            },
            strategy: b.strategy.as_deref().map(str::parse).transpose()?,
            admin_connection_id: b.admin_connection_id,
            alternate_username: b.alternate_username,
            user_host: b.user_host,
            endpoint: b.endpoint,
            iam_user: b.iam_user,
            delete_inactive_key: b.delete_inactive_key,
            method: b.method.as_deref().map(str::parse).transpose()?,
            current_slot: b.current_slot,
        })
    }
}

/// The rotator for a catalog name, when rekey has one.
pub(crate) enum Rotator {
    Database(database::DbRotator),
    AwsIam(aws_iam::AwsIam),
    KeyPair(key_pair::KeyPair),
    Manual(manual::Manual),
}

impl Rotator {
    pub fn of(r: CatalogRotator) -> Option<Rotator> {
        match r {
            CatalogRotator::Postgres => Some(Rotator::Database(database::DbRotator::Postgres)),
            CatalogRotator::Mysql => Some(Rotator::Database(database::DbRotator::Mysql)),
            CatalogRotator::AwsIam => Some(Rotator::AwsIam(aws_iam::AwsIam)),
            CatalogRotator::RsaSecondSlot => Some(Rotator::KeyPair(key_pair::KeyPair)),
            CatalogRotator::Manual => Some(Rotator::Manual(manual::Manual)),
            _ => None,
        }
    }

    pub fn by_name(name: &str) -> Option<Rotator> {
        IMPLEMENTED
            .iter()
            .find(|r| r.as_str() == name)
            .and_then(|r| Rotator::of(*r))
    }
}

/// Call the same method on whichever rotator it is.
macro_rules! dispatch {
    ($self:ident, $r:ident => $call:expr) => {
        match $self {
            Rotator::Database($r) => $call,
            Rotator::AwsIam($r) => $call,
            Rotator::KeyPair($r) => $call,
            Rotator::Manual($r) => $call,
        }
    };
}

impl Rotate for Rotator {
    async fn prepare(
        &self,
        rk: &Rekey,
        row: &ConnectionRow,
        current: &Material,
        opts: &mut Options,
    ) -> Result<(), Error> {
        dispatch!(self, x => x.prepare(rk, row, current, opts).await)
    }

    fn generate(&self, current: &Material, opts: &Options) -> Result<Material, Error> {
        dispatch!(self, x => x.generate(current, opts))
    }

    async fn set(
        &self,
        at: &At<'_>,
        current: &Material,
        pending: &Material,
    ) -> Result<Option<Material>, StepError> {
        dispatch!(self, x => x.set(at, current, pending).await)
    }

    async fn discard(
        &self,
        at: &At<'_>,
        current: &Material,
        pending: &Material,
    ) -> Result<(), StepError> {
        dispatch!(self, x => x.discard(at, current, pending).await)
    }

    async fn test(&self, at: &At<'_>, pending: &Material) -> Result<(), StepError> {
        dispatch!(self, x => x.test(at, pending).await)
    }

    async fn retire(
        &self,
        at: &At<'_>,
        old: &Material,
        current: &Material,
    ) -> Result<(), StepError> {
        dispatch!(self, x => x.retire(at, old, current).await)
    }

    fn old_survives_set(&self, opts: &Options) -> bool {
        dispatch!(self, x => x.old_survives_set(opts))
    }
}

/// `s` is 1 to `max` bytes of ASCII letters, digits and `extra`: the names
/// rotators put inside quoted statements and request parameters.
pub(crate) fn plain_name(s: &str, max: usize, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// Database role names rekey rotates (safe inside the statements' quotes).
pub(crate) const ROLE_NAME: (usize, &[u8]) = (63, b"_.-@");

fn validate_options(req: &RotateRequest, strategy: RotationStrategy) -> Result<(), Error> {
    let checks: [(&Option<String>, usize, &[u8], &str); 3] = [
        (
            &req.alternate_username,
            ROLE_NAME.0,
            ROLE_NAME.1,
            "`alternate_username` must be 1–63 characters of A-Z, a-z, 0-9, '_', '.', '-', '@'",
        ),
        (
            &req.user_host,
            255,
            b"_.-%:",
            "`user_host` must be a MySQL host pattern (A-Z, 0-9, '.', '-', '_', '%', ':')",
        ),
        (
            &req.iam_user,
            64,
            b"_+=,.@-",
            "`iam_user` must be an IAM user name: 1–64 characters of A-Z, a-z, 0-9, '_', '+', '=', ',', '.', '@', '-'",
        ),
    ];
    if req.current_slot.is_some_and(|s| s != 1 && s != 2) {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            "`current_slot` must be 1 (RSA_PUBLIC_KEY) or 2 (RSA_PUBLIC_KEY_2)",
        ));
    }
    for (value, max, extra, message) in checks {
        if let Some(v) = value {
            if !plain_name(v, max, extra) {
                return Err(Error::invalid(ErrorCode::InvalidField, message));
            }
        }
    }
    if strategy == RotationStrategy::AlternateUsers
        && (req.alternate_username.is_none() || req.admin_connection_id.is_none())
    {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            "`alternate_users` needs `alternate_username` (the second role) and `admin_connection_id` (a connection allowed to change both roles' passwords)",
        ));
    }
    Ok(())
}

impl Rekey {
    /// The rotator for the connection. `api`: the catalog's rotator, when
    /// rekey has it, else 422 `no_rotator` saying how to rotate by hand.
    /// `manual`: the guided rotation. Neither: the catalog's rotator where
    /// rekey has one (a key pair's is operator-assisted), else guided.
    fn rotator_for(
        &self,
        row: &ConnectionRow,
        method: Option<RotationMethod>,
    ) -> Result<(&'static str, Rotator), Error> {
        let provider = self.catalog().get(&row.provider).ok_or_else(|| {
            Error::unprocessable(
                ErrorCode::UnknownProvider,
                format!("provider `{}` is no longer in the catalog", row.provider),
            )
        })?;
        let runbook = provider.rotate_for(row.kind.as_str());
        let catalog = runbook
            .rotator
            .filter(|r| *r != CatalogRotator::Manual)
            .and_then(|r| Rotator::of(r).map(|x| (r.as_str(), x)));
        let guided = || -> Result<(&'static str, Rotator), Error> {
            if !row.kind.is_static() {
                let integration = row
                    .integration_id()
                    .unwrap_or_else(|| "{integration}".into());
                return Err(Error::unprocessable(
                    ErrorCode::NoRotator,
                    format!(
                        "`{}` connections are not rotated themselves: reauthorize the grant (POST /api/v1/connections/{}/reauthorize), or rotate the OAuth app's client secret (POST /api/v1/integrations/{integration}/rotate-secret)",
                        row.kind, row.id
                    ),
                ));
            }
            Ok((
                CatalogRotator::Manual.as_str(),
                Rotator::Manual(manual::Manual),
            ))
        };
        match method {
            Some(RotationMethod::Manual) => guided(),
            Some(RotationMethod::Api) => catalog
                .filter(|_| runbook.method == rekey_providers::RunbookMethod::Api)
                .ok_or_else(|| {
                    Error::unprocessable(
                        ErrorCode::NoRotator,
                        format!(
                            "rekey has no API rotator for {} `{}` connections; start a guided rotation (`method`: `manual`), or rotate at the provider by the runbook (GET /api/v1/providers/{}) and submit the new credential with PUT /api/v1/connections/{}/credentials",
                            provider.display_name, row.kind, provider.id, row.id
                        ),
                    )
                }),
            None => match catalog {
                Some(c) => Ok(c),
                None => guided(),
            },
        }
    }

    /// The rotator a rotation of this connection would use without an
    /// explicit `method` (`postgres`, `rsa_second_slot`, `manual`…), or why
    /// it cannot be rotated. For pages that offer the rotation.
    pub fn default_rotator(&self, row: &ConnectionRow) -> Result<&'static str, Error> {
        self.rotator_for(row, None).map(|(name, _)| name)
    }

    /// Start rotating a connection's credential: checks, then the new
    /// secret is generated and stored as the pending version and the
    /// rotation written as `created`, in one transaction. The steps run in
    /// the background (see [`Rekey::drive_rotation`]); callers may drive it
    /// at once.
    pub async fn start_rotation(
        &self,
        ctx: &Ctx,
        id: &str,
        req: RotateRequest,
    ) -> Result<Rotation, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let grace = req.grace.unwrap_or(DEFAULT_GRACE);
        let strategy = req.strategy.unwrap_or(RotationStrategy::SingleUser);
        validate_options(&req, strategy)?;
        let (row, secrets) = self.load_with_secrets(&ctx.tenant, &id).await?;
        if row.status.is_out_of_service() {
            return Err(Error::conflict(
                ErrorCode::ConnectionUnusable,
                format!("connection {id} is {}; it cannot be rotated", row.status),
            ));
        }
        let (name, rotator) = self.rotator_for(&row, req.method)?;
        if req.current_slot.is_some() && !matches!(rotator, Rotator::KeyPair(_)) {
            return Err(Error::invalid(
                ErrorCode::InvalidField,
                "`current_slot` is for RSA key pairs only",
            ));
        }
        if let Some(admin) = &req.admin_connection_id {
            let admin = ids::parse_id(ids::CONNECTION, admin)?;
            let (a, _) = self
                .load_secret_rows(&ctx.tenant, &admin)
                .await
                .map_err(|_| {
                    Error::unprocessable(
                        ErrorCode::InvalidField,
                        format!("`admin_connection_id`: no connection {admin} in this tenant"),
                    )
                })?;
            if a.provider != row.provider || a.kind != row.kind || a.id == row.id {
                return Err(Error::unprocessable(
                    ErrorCode::InvalidField,
                    "`admin_connection_id` must be another connection of the same provider and kind",
                ));
            }
        }
        let current = Material {
            meta: serde_json::from_str(&row.credential_meta).map_err(Error::internal)?,
            secrets,
        };
        let mut opts = Options {
            admin_connection_id: req.admin_connection_id.clone(),
            alternate_username: req.alternate_username.clone(),
            original_username: current
                .meta
                .get("username")
                .and_then(Value::as_str)
                .map(str::to_string),
            user_host: req.user_host.clone(),
            strategy: Some(strategy.as_str().to_string()),
            endpoint: req
                .endpoint
                .as_deref()
                .map(|u| self.check_url("endpoint", u))
                .transpose()?,
            iam_user: req.iam_user.clone(),
            delete_inactive_key: req.delete_inactive_key,
            keys_before: None,
            current_slot: req.current_slot,
            old_dies_at_set: false,
            confirmed: vec![],
        };
        if strategy == RotationStrategy::AlternateUsers
            && opts.alternate_username == opts.original_username
        {
            // Named the role that holds the credential now: the idle one is
            // its partner from the last rotation between the two.
            opts.alternate_username = self
                .partner_role(&ctx.tenant, &id, opts.original_username.as_deref())
                .await?;
        }
        rotator.prepare(self, &row, &current, &mut opts).await?;
        // Generating a key pair takes a second of CPU: not on the async threads.
        let (opts, pending) = tokio::task::spawn_blocking(move || {
            let pending = rotator.generate(&current, &opts);
            (opts, pending)
        })
        .await
        .map_err(Error::internal)?;
        let (mut opts, pending) = (opts, pending?);
        let now = now_ms();
        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(&mut tx, Locked::Connection, &ctx.tenant, &id).await?;
        if let Some(r) = store::running_for(tx.conn(), &ctx.tenant, &id).await? {
            return Err(in_progress(&id, &r));
        }
        // Seen under the lock: a credential change meanwhile means the
        // material generated from is stale.
        let fresh = rekey_store::connections::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        if fresh.credential_version != row.credential_version {
            return Err(Error::conflict(
                ErrorCode::VersionConflict,
                format!("connection {id} changed while the rotation was prepared; try again"),
            ));
        }
        let v = self
            .store_pending(&mut tx, ctx, &row, &pending.meta, &pending.secrets)
            .await?;
        opts.strategy = Some(strategy.as_str().to_string());
        let r = RotationRow {
            id: ids::new_id(ids::ROTATION),
            tenant: ctx.tenant.clone(),
            connection_id: id.clone(),
            rotator: name.to_string(),
            strategy: Some(strategy.as_str().to_string()),
            state: RotationState::Created,
            options: serde_json::to_string(&opts).map_err(Error::internal)?,
            grace_ms: grace.as_millis() as i64,
            pending_version_id: Some(v.id.clone()),
            old_version_id: None,
            last_error: None,
            next_action: None,
            attempts: 0,
            due_at: now,
            lease_owner: None,
            lease_until: None,
            requested_by: ctx.actor.clone(),
            created_at: now,
            updated_at: now,
            finished_at: None,
            awaiting: None,
            instructions: None,
        };
        store::insert(tx.conn(), &r).await.map_err(|e| {
            // The unique index: another rotation started in between (SQLite
            // has no row lock to wait on).
            if e.code() == ErrorCode::AlreadyExists {
                Error::conflict(
                    ErrorCode::RotationInProgress,
                    format!("connection {id} is already being rotated"),
                )
            } else {
                e
            }
        })?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::RotationStart,
            &id,
            json!({
                "rotation": r.id, "rotator": name, "strategy": strategy.as_str(),
                "grace_secs": grace.as_secs(), "new_fingerprint": v.fingerprint,
            }),
        )
        .await?;
        emit(
            &mut tx,
            &ctx.tenant,
            EventType::RotationStarted,
            rotation_data(&r, &row),
        )
        .await?;
        tx.commit().await?;
        fault::after("created");
        Ok(r)
    }

    pub async fn get_rotation(&self, tenant: &str, id: &str) -> Result<Rotation, Error> {
        let id = ids::parse_id(ids::ROTATION, id)?;
        let mut c = self.store().read().await?;
        store::get(&mut c, tenant, &id)
            .await?
            .ok_or_else(|| Error::not_found(ErrorCode::RotationNotFound, format!("rotation {id}")))
    }

    /// A page of rotations, newest first, optionally of one connection.
    pub async fn list_rotations(
        &self,
        tenant: &str,
        connection: Option<&str>,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Vec<Rotation>, Option<String>), Error> {
        let limit = crate::paging::limit(limit, 200)?;
        let connection = connection
            .map(|c| ids::parse_id(ids::CONNECTION, c))
            .transpose()?;
        let before = crate::paging::after_id(cursor, ids::ROTATION)?;
        let mut c = self.store().read().await?;
        let mut rows = store::list(
            &mut c,
            tenant,
            connection.as_deref(),
            before.as_deref(),
            limit + 1,
        )
        .await?;
        let next = crate::paging::next_cursor(&mut rows, limit, |r| r.id.as_str());
        Ok((rows, next))
    }
}

impl Rekey {
    /// The role that alternated with `current` in this connection's last
    /// `alternate_users` rotation.
    async fn partner_role(
        &self,
        tenant: &str,
        connection_id: &str,
        current: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let mut c = self.store().read().await?;
        let recent = store::list(&mut c, tenant, Some(connection_id), None, 50).await?;
        for r in recent {
            let Ok(o) = serde_json::from_str::<Options>(&r.options) else {
                continue;
            };
            if o.strategy() != RotationStrategy::AlternateUsers {
                continue;
            }
            let pair = [o.original_username, o.alternate_username];
            if pair.iter().any(|u| u.as_deref() == current) {
                if let Some(other) = pair
                    .into_iter()
                    .flatten()
                    .find(|u| Some(u.as_str()) != current)
                {
                    return Ok(Some(other));
                }
            }
        }
        Err(Error::invalid(
            ErrorCode::InvalidField,
            "`alternate_username` must name the other role: the connection's user already is this one",
        ))
    }
}

fn in_progress(id: &str, r: &RotationRow) -> Error {
    Error::conflict(
        ErrorCode::RotationInProgress,
        format!(
            "connection {id} is already being rotated (rotation {}, at `{}`)",
            r.id, r.state
        ),
    )
}

/// The webhook payload of a rotation event (no material, no options).
pub(crate) fn rotation_data(r: &RotationRow, c: &ConnectionRow) -> Value {
    json!({
        "rotation_id": r.id, "connection_id": r.connection_id, "provider": c.provider,
        "rotator": r.rotator, "strategy": r.strategy, "state": r.state.as_str(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalog's lint (`Rotator::is_implemented`) and the rotators here
    /// name the same set, so `method = "api"` is always backed by code.
    #[test]
    fn the_catalog_knows_which_rotators_exist() {
        for r in CatalogRotator::ALL {
            assert_eq!(
                Rotator::of(*r).is_some(),
                r.is_implemented(),
                "{}",
                r.as_str()
            );
            assert_eq!(
                IMPLEMENTED.contains(r),
                r.is_implemented(),
                "{}",
                r.as_str()
            );
        }
    }
}
