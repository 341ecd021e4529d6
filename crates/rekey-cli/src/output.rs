//! How the CLI prints: JSON, plain aligned tables, the audit verdict. Shared
//! by the API client commands and the offline ones.

use anyhow::Result;
use rekey_api::AuditVerifyReport;

pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A plain aligned table.
pub fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
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
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
}

pub fn print_verify(r: &AuditVerifyReport, json: bool) -> Result<()> {
    if json {
        print_json(r)
    } else {
        println!("{}", r.message);
        Ok(())
    }
}
