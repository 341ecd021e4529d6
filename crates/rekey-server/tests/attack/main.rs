//! Attack tests: every fault an attack on rekey found, kept as a test that
//! fails if the fault comes back (issue 12). One module per area; the next
//! attack adds a module here. Each test starts the real router (or binary)
//! on an ephemeral loopback port, on SQLite and PostgreSQL where storage
//! matters.
#![allow(clippy::unwrap_used, clippy::expect_used)]
//!
//! Attacks that need the real binary (open-file limits, signals, two
//! processes on one data directory) are in `crates/rekey-cli/tests/attack.rs`.

mod consistency;
mod headers;
mod http;
mod names;
mod outbound;
mod scrub;
mod signin;
mod webhooks;
