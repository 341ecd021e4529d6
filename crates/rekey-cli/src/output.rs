//! How the CLI prints: JSON, plain aligned tables, the audit verdict. Shared
//! by the API client commands and the offline ones.
//!
//! Everything goes through [`write_stdout`] (or [`outln!`]) rather than
//! `println!`, which panics when the reader has gone (`rekey … | head`):
//! a closed pipe becomes [`StdoutClosed`], which `main` turns into a quiet
//! exit with status 0. A secret shown once goes through [`write_secret`]
//! instead, which never counts a closed pipe as success.

use anyhow::{anyhow, Result};
use rekey_api::AuditVerifyReport;
use std::io::{self, Write};

/// The reader of stdout went away. Not a failure of the command: `main`
/// exits quietly with status 0, like `ls | head` does.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Write `text` to stdout and flush. A closed pipe is [`StdoutClosed`].
pub fn write_stdout(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow!("cannot write to stdout: {e}")),
    }
}

/// `println!` that returns [`write_stdout`]'s result instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Write a secret that is shown once (credential material, a signing
/// secret) to stdout in one write, before anything else is printed. If it
/// cannot be written, even to a closed pipe, that is an error saying the
/// secret may not have been received, so nobody assumes it was stored.
pub fn write_secret(text: &str, what: &str) -> Result<()> {
    write_stdout(text).map_err(|e| {
        let e = e
            .downcast_ref::<StdoutClosed>()
            .map_or_else(|| e.to_string(), ToString::to_string);
        anyhow!("could not write {what} to stdout ({e}): the secret may not have been received")
    })
}

pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)
}

/// A plain aligned table.
pub fn print_table(headers: &[&str], rows: Vec<Vec<String>>) -> Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        outln!("{}", s.join("  ").trim_end())
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect())?;
    for r in rows {
        line(r)?;
    }
    Ok(())
}

pub fn print_verify(r: &AuditVerifyReport, json: bool) -> Result<()> {
    if json {
        print_json(r)
    } else {
        outln!("{}", r.message)
    }
}
