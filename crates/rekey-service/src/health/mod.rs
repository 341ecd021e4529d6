//! Connection health: running a catalog probe with the connection's current
//! credential and recording what it saw through `crate::status` (the status
//! policy and its one writer).
//!
//! - `check`: running one check; `scheduler`: the scheduled passes and
//!   their per-provider throttle; `probe`: one module per probe family;
//!   `confirm`: connections no probe can check, and operator confirmation.

mod check;
mod confirm;
mod probe;
mod scheduler;

pub(crate) use probe::LOGGED_IN_QUERY_FAILED;
pub(crate) use scheduler::Throttle;
pub use scheduler::{CheckRun, HealthSettings};
