//! `rekey connections import`: an inventory file (JSON or CSV) sent in
//! requests of up to [`IMPORT_MAX_ROWS`] rows and 1 MiB, with each row's
//! outcome printed against its place in the file.

use super::{client, read_input, ApiArgs};
use crate::output::{outln, print_json};
use anyhow::{anyhow, bail, Context, Result};
use rekey_api::*;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;

/// Leaves room under the server's 1 MiB limit for the envelope.
const MAX_REQUEST_BYTES: usize = 900 * 1024;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The inventory: a JSON array of connections (each the body of
    /// `POST /api/v1/connections`) or a CSV file with a header row; `-`
    /// reads stdin.
    file: String,
    #[command(flatten)]
    api: ApiArgs,
    /// `json` or `csv`; by default taken from the file's extension (`.csv`
    /// is CSV, anything else JSON).
    #[arg(long, value_parser = ["json", "csv"])]
    format: Option<String>,
    /// Check every row and report; create nothing.
    #[arg(long)]
    dry_run: bool,
    /// Start at this row (1-based, header not counted): to go on after an
    /// interrupted import without creating its first rows again.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    from_row: u64,
}

pub async fn run(args: ImportArgs) -> Result<ExitCode> {
    let text = read_input(&args.file, "the inventory from stdin")?;
    let csv = match args.format.as_deref() {
        Some(f) => f == "csv",
        None => args.file.to_ascii_lowercase().ends_with(".csv"),
    };
    let rows = if csv {
        rows_from_csv(&text)?
    } else {
        rows_from_json(&text)?
    };
    let skip = (args.from_row - 1) as usize;
    if skip >= rows.len() {
        bail!(
            "--from-row {} is past the last row ({})",
            args.from_row,
            rows.len()
        );
    }
    let c = client(&args.api)?;
    let mut report = ImportReport {
        dry_run: args.dry_run,
        created: 0,
        valid: 0,
        failed: 0,
        rows: Vec::new(),
    };
    let mut start = skip;
    for batch in batches(&rows[skip..])? {
        let n = batch.len();
        let answer = c
            .import_connections(&ImportConnections {
                connections: batch,
                dry_run: args.dry_run,
            })
            .await
            .map_err(|e| {
                let hint = if report.created > 0 {
                    format!(
                        "; rows {}–{start} were imported; go on with --from-row {}",
                        skip + 1,
                        start + 1
                    )
                } else {
                    String::new()
                };
                anyhow::Error::new(e).context(format!(
                    "import of rows {}–{} failed{hint}",
                    start + 1,
                    start + n
                ))
            })?;
        report.created += answer.created;
        report.valid += answer.valid;
        report.failed += answer.failed;
        for mut r in answer.rows {
            // The file's row number (1-based), not the request's index.
            r.index += start as u64 + 1;
            if !args.api.json {
                if let Some(e) = &r.error {
                    outln!("row {}: {}: {}", r.index, e.code, e.message)?;
                }
            }
            report.rows.push(r);
        }
        start += n;
        if !args.api.json {
            eprintln!("{start} of {} rows sent", rows.len());
        }
    }
    if args.api.json {
        print_json(&report)?;
    } else if args.dry_run {
        outln!(
            "dry run: {} rows would be created, {} refused",
            report.valid,
            report.failed
        )?;
    } else {
        outln!("created {}, refused {}", report.created, report.failed)?;
    }
    Ok(if report.failed > 0 {
        ExitCode::from(crate::exit::OTHER)
    } else {
        ExitCode::SUCCESS
    })
}

/// Rows in requests of at most [`IMPORT_MAX_ROWS`] rows and
/// [`MAX_REQUEST_BYTES`] of JSON.
fn batches(rows: &[Value]) -> Result<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    let (mut cur, mut bytes) = (Vec::new(), 0);
    for (i, r) in rows.iter().enumerate() {
        let size = serde_json::to_vec(r)?.len() + 1;
        if size > MAX_REQUEST_BYTES {
            bail!("row {} is larger than one request may be", i + 1);
        }
        if cur.len() == IMPORT_MAX_ROWS || bytes + size > MAX_REQUEST_BYTES {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        cur.push(r.clone());
        bytes += size;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// A JSON array of rows, or `{"connections": [...]}`.
fn rows_from_json(text: &str) -> Result<Vec<Value>> {
    // No serde message: it could quote a secret from the file.
    let v: Value = serde_json::from_str(text).map_err(|e| {
        anyhow!(
            "the inventory is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let rows = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("connections") {
            Some(Value::Array(a)) => a,
            _ => bail!("expected a JSON array of connections, or {{\"connections\": [...]}}"),
        },
        _ => bail!("expected a JSON array of connections"),
    };
    if rows.is_empty() {
        bail!("the inventory has no rows");
    }
    Ok(rows)
}

/// CSV columns: `provider`, `kind`, `display_name` (or `name`), `tags`,
/// `custody`, `scopes` (lists split at `;`, `,` or spaces),
/// `owner_email`, `owner_subject`, `owner_name`, `expires_at`,
/// `probe_url`, and `params.NAME` / `credentials.FIELD` for each
/// placeholder and credential field. Empty cells are left out.
fn rows_from_csv(text: &str) -> Result<Vec<Value>> {
    let mut rd = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rd.headers().context("cannot read the CSV header")?.clone();
    for h in &headers {
        if !is_csv_column(h) {
            bail!(
                "unknown CSV column `{h}`; columns are provider, kind, display_name, tags, custody, \
                 scopes, owner_email, owner_subject, owner_name, expires_at, probe_url, \
                 params.NAME and credentials.FIELD"
            );
        }
    }
    let mut rows = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        // The csv crate's message can quote a cell: say where only.
        let rec = rec.map_err(|_| anyhow!("CSV row {} cannot be read", i + 1))?;
        rows.push(csv_row(&headers, &rec));
    }
    if rows.is_empty() {
        bail!("the inventory has no rows");
    }
    Ok(rows)
}

fn is_csv_column(h: &str) -> bool {
    const PLAIN: [&str; 12] = [
        "provider",
        "kind",
        "display_name",
        "name",
        "tags",
        "custody",
        "scopes",
        "owner_email",
        "owner_subject",
        "owner_name",
        "expires_at",
        "probe_url",
    ];
    PLAIN.contains(&h)
        || h.strip_prefix("params.").is_some_and(|n| !n.is_empty())
        || h.strip_prefix("credentials.")
            .is_some_and(|n| !n.is_empty())
}

fn csv_row(headers: &csv::StringRecord, rec: &csv::StringRecord) -> Value {
    let mut row = Map::new();
    let (mut owner, mut params, mut creds) = (Map::new(), BTreeMap::new(), Map::new());
    for (h, cell) in headers.iter().zip(rec.iter()) {
        if cell.is_empty() {
            continue;
        }
        let list = || {
            Value::from(
                cell.split([';', ',', ' '])
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>(),
            )
        };
        match h {
            "name" | "display_name" => {
                row.insert("display_name".into(), cell.into());
            }
            "tags" | "custody" | "scopes" => {
                row.insert(h.into(), list());
            }
            "owner_email" | "owner_subject" | "owner_name" => {
                owner.insert(h["owner_".len()..].into(), cell.into());
            }
            _ => {
                if let Some(n) = h.strip_prefix("params.") {
                    params.insert(n.to_string(), Value::from(cell));
                } else if let Some(f) = h.strip_prefix("credentials.") {
                    creds.insert(f.into(), cell.into());
                } else {
                    row.insert(h.into(), cell.into());
                }
            }
        }
    }
    if !owner.is_empty() {
        row.insert("owner".into(), owner.into());
    }
    if !params.is_empty() {
        row.insert(
            "params".into(),
            params.into_iter().collect::<Map<_, _>>().into(),
        );
    }
    row.insert("credentials".into(), creds.into());
    row.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_become_a_create_body() {
        let rows = rows_from_csv(
            "provider,kind,name,tags,params.site,credentials.api_key,owner_email\n\
             jira,api_key,Jira sync,\"ci;prod\",acme,k-123,ada@example.com\n\
             stripe,api_key,Stripe,,,sk_test_x,\n",
        )
        .unwrap();
        assert_eq!(
            rows[0],
            serde_json::json!({
                "provider": "jira", "kind": "api_key", "display_name": "Jira sync",
                "tags": ["ci", "prod"], "params": {"site": "acme"},
                "owner": {"email": "ada@example.com"},
                "credentials": {"api_key": "k-123"},
            })
        );
        assert_eq!(
            rows[1],
            serde_json::json!({
                "provider": "stripe", "kind": "api_key", "display_name": "Stripe",
                "credentials": {"api_key": "sk_test_x"},
            })
        );
    }

    #[test]
    fn unknown_csv_column_is_refused() {
        let e = rows_from_csv("provider,kind,secret\nx,api_key,s\n").unwrap_err();
        assert!(e.to_string().contains("unknown CSV column `secret`"), "{e}");
    }

    #[test]
    fn batches_respect_row_and_byte_limits() {
        let rows: Vec<Value> = (0..2500).map(|i| serde_json::json!({"i": i})).collect();
        let b = batches(&rows).unwrap();
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            [IMPORT_MAX_ROWS, IMPORT_MAX_ROWS, 500]
        );
        let big = "x".repeat(300 * 1024);
        let rows: Vec<Value> = (0..7).map(|_| serde_json::json!({ "v": big })).collect();
        let b = batches(&rows).unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2, 1]);
    }

    #[test]
    fn json_error_does_not_quote_the_file() {
        let e = rows_from_json("[{\"credentials\": {\"api_key\": \"sk_live_SECRET\"}").unwrap_err();
        assert!(!e.to_string().contains("sk_live"), "{e}");
    }
}
