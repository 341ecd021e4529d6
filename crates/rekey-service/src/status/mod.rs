//! A connection's status and health record: what was observed (a probe's
//! answer, a token refresh), the pure policy that turns an observation into
//! a transition, and the one writer that applies it with its audit entry and
//! event. Below both `health` (which probes) and `oauth_conn` (which
//! refreshes), so neither depends on the other to record what it saw.
//!
//! - `observation`: what a probe or a token refresh observed.
//! - `policy`: the status policy, a pure function of (state, observation,
//!   now).
//! - `writer`: the one writer of health, [`apply_observation`], and of
//!   operator and lifecycle status changes, [`status_changed`].

mod observation;
mod policy;
mod writer;

pub(crate) use observation::{Observation, Outcome};
pub(crate) use writer::{apply_observation, reauthorized, status_changed};
