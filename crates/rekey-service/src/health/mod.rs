//! Connection health: running a catalog probe with the connection's current
//! credential, judging the answer, and moving the status machine with the
//! error context (`last_error`, `first_failed_at`, `consecutive_failures`,
//! `last_ok_at`).
//!
//! - `observation`: what a probe or a token refresh observed.
//! - `policy`: the status policy, a pure function of (state, observation,
//!   now).
//! - `writer`: the one writer of health, [`apply_observation`]; refresh
//!   failures and successes go through it too, so both feed one picture of
//!   a connection's health.
//! - `check`: running one check; `scheduler`: the scheduled passes and
//!   their per-provider throttle; `probe`: one module per probe family;
//!   `confirm`: connections no probe can check, and operator confirmation.

mod check;
mod confirm;
mod observation;
mod policy;
mod probe;
mod scheduler;
mod writer;

pub(crate) use observation::Observation;
pub(crate) use scheduler::Throttle;
pub use scheduler::{CheckRun, HealthSettings};
pub(crate) use writer::{apply_observation, status_changed};
