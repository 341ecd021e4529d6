//! Importing an inventory: many connections in one request, each row
//! checked on its own, the rows that pass written in one transaction.

use super::create::NewConnection;
use crate::{Ctx, Rekey};
use rekey_api::{CreateConnection, IMPORT_MAX_ROWS};
use rekey_core::{Error, ErrorCode};

/// What an import did with one row.
#[derive(Debug)]
pub enum ImportOutcome {
    /// Created, with this id.
    Created(String),
    /// Passed every check (a dry run's row that would be created).
    Valid,
    /// Refused; nothing was written for it.
    Failed(Error),
}

impl Rekey {
    /// Check every row, then create the ones that pass in one transaction
    /// (each with its audit entry and `connection.created` event, as a
    /// single create would). Rows arrive already decoded, a row that could
    /// not be decoded as its error. Outcomes are in the rows' order.
    pub async fn import_connections(
        &self,
        ctx: &Ctx,
        rows: Vec<Result<CreateConnection, Error>>,
        dry_run: bool,
    ) -> Result<Vec<ImportOutcome>, Error> {
        if rows.is_empty() {
            return Err(Error::invalid(
                ErrorCode::InvalidField,
                "`connections` is empty: send at least one row",
            ));
        }
        if rows.len() > IMPORT_MAX_ROWS {
            return Err(Error::invalid(
                ErrorCode::InvalidField,
                format!(
                    "`connections` has {} rows; at most {IMPORT_MAX_ROWS} per request \
                     (`rekey connections import` splits a larger file)",
                    rows.len()
                ),
            ));
        }
        // Parsing material (RSA keys above all) is CPU work: off the
        // request threads.
        let (this, c) = (self.clone(), ctx.clone());
        let checked: Vec<Result<NewConnection, Error>> = tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|r| r.and_then(|req| this.prepare_connection(&c, req)))
                .collect()
        })
        .await
        .map_err(|_| Error::internal("import check task failed"))?;
        let mut out = Vec::with_capacity(checked.len());
        let mut ready = Vec::new();
        for (i, r) in checked.into_iter().enumerate() {
            match r {
                Ok(new) => {
                    ready.push((i, new));
                    out.push(ImportOutcome::Valid);
                }
                Err(e) => out.push(ImportOutcome::Failed(e)),
            }
        }
        if dry_run || ready.is_empty() {
            return Ok(out);
        }
        let (at, batch): (Vec<usize>, Vec<_>) = ready
            .into_iter()
            .map(|(i, new)| (i, (ctx.clone(), new)))
            .unzip();
        let mut tx = self.store().begin_write().await?;
        let rows = self.insert_connections(&mut tx, batch).await?;
        tx.commit().await?;
        for (i, row) in at.into_iter().zip(rows) {
            out[i] = ImportOutcome::Created(row.id);
        }
        Ok(out)
    }
}
