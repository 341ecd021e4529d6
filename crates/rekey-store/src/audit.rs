//! The append-only audit log. Appends are serialised (SQLite: the write
//! lock; PostgreSQL: a table lock held to commit) so the chain never forks.

use crate::Backend;
use rekey_core::audit::{AuditEntry, ChainedEntry, GENESIS};
use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

pub(crate) const COLS: &str = "seq, id, at, tenant, actor, action, target, request_id, source, outcome, details, prev_hash, hash";

/// An `audit_log` row ([`COLS`]) as `#[derive(FromRow)]` decodes it; the
/// domain type lives in rekey-core, which knows nothing of rows.
#[derive(FromRow)]
struct AuditRow {
    seq: i64,
    id: String,
    at: i64,
    tenant: String,
    actor: String,
    action: String,
    target: Option<String>,
    request_id: Option<String>,
    source: Option<String>,
    outcome: String,
    details: String,
    prev_hash: String,
    hash: String,
}

impl From<AuditRow> for ChainedEntry {
    fn from(r: AuditRow) -> Self {
        ChainedEntry {
            entry: AuditEntry {
                seq: r.seq,
                id: r.id,
                at: r.at,
                tenant: r.tenant,
                actor: r.actor,
                action: r.action,
                target: r.target,
                request_id: r.request_id,
                source: r.source,
                outcome: r.outcome,
                details: r.details,
            },
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// Append `entry` (its `seq` is assigned here) inside the caller's write
/// transaction, so the audit record commits or rolls back with the change.
pub async fn append(
    c: &mut AnyConnection,
    backend: Backend,
    entry: AuditEntry,
) -> Result<ChainedEntry, Error> {
    let mut chained = append_all(c, backend, vec![entry]).await?;
    chained
        .pop()
        .ok_or_else(|| Error::internal("audit append wrote nothing"))
}

/// Append `entries` in order (each `seq` assigned here, each hash chained
/// to the one before) inside the caller's write transaction: one lock,
/// one read of the chain's head and multi-row INSERTs
/// ([`crate::rows::insert_many`]), which is what makes group commit cheap.
pub async fn append_all(
    c: &mut AnyConnection,
    backend: Backend,
    entries: Vec<AuditEntry>,
) -> Result<Vec<ChainedEntry>, Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    lock_for_append(c, backend).await?;
    let head: Option<(i64, String)> = sqlx::query_as(HEAD_SQL).fetch_optional(&mut *c).await?;
    append_after(c, head, entries).await
}

/// The chain's last link: `seq, hash`, or no row for an empty log.
pub(crate) const HEAD_SQL: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

/// PostgreSQL: appends are serialised by a table lock held to the end of
/// the transaction, taken before the chain's head is read (SQLite's write
/// lock already serialises them).
pub(crate) async fn lock_for_append(c: &mut AnyConnection, backend: Backend) -> Result<(), Error> {
    if backend == Backend::Postgres {
        sqlx::query(PG_APPEND_LOCK).execute(&mut *c).await?;
    }
    Ok(())
}

/// The table lock PostgreSQL appends take ([`lock_for_append`]).
pub(crate) const PG_APPEND_LOCK: &str = "LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE";

/// `entries` linked after `head` (the chain's last `seq, hash`, None for
/// an empty log): each given the next `seq` and its hash over the one
/// before.
pub fn chain(head: Option<(i64, String)>, entries: Vec<AuditEntry>) -> Vec<ChainedEntry> {
    let (mut seq, mut prev_hash) = head.unwrap_or_else(|| (0, GENESIS.to_string()));
    let mut chained = Vec::with_capacity(entries.len());
    for mut entry in entries {
        seq += 1;
        entry.seq = seq;
        let hash = entry.chain_hash(&prev_hash);
        let prev = std::mem::replace(&mut prev_hash, hash.clone());
        chained.push(ChainedEntry {
            entry,
            prev_hash: prev,
            hash,
        });
    }
    chained
}

/// [`append_all`] after the caller has taken [`lock_for_append`] and read
/// `head` ([`HEAD_SQL`]) in this transaction.
pub(crate) async fn append_after(
    c: &mut AnyConnection,
    head: Option<(i64, String)>,
    entries: Vec<AuditEntry>,
) -> Result<Vec<ChainedEntry>, Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let chained = chain(head, entries);
    crate::rows::insert_many(c, "audit_log", COLS, &chained, |q, ce| {
        let e = &ce.entry;
        q.bind(e.seq)
            .bind(&e.id)
            .bind(e.at)
            .bind(&e.tenant)
            .bind(&e.actor)
            .bind(&e.action)
            .bind(&e.target)
            .bind(&e.request_id)
            .bind(&e.source)
            .bind(&e.outcome)
            .bind(&e.details)
            .bind(&ce.prev_hash)
            .bind(&ce.hash)
    })
    .await?;
    Ok(chained)
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub target: Option<String>,
    pub actor: Option<String>,
    pub since: Option<i64>,
    /// Cursor: entries with seq below this (newest first).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

pub async fn list(
    c: &mut AnyConnection,
    tenant: &str,
    f: &AuditFilter,
) -> Result<Vec<ChainedEntry>, Error> {
    let mut sql = format!("SELECT {COLS} FROM audit_log WHERE tenant = $1");
    let mut n = 1;
    let mut next = |sql: &mut String, clause: &str| {
        n += 1;
        sql.push_str(&clause.replace("$?", &format!("${n}")));
    };
    if f.action.is_some() {
        next(&mut sql, " AND action = $?");
    }
    if f.target.is_some() {
        next(&mut sql, " AND target = $?");
    }
    if f.actor.is_some() {
        next(&mut sql, " AND actor = $?");
    }
    if f.since.is_some() {
        next(&mut sql, " AND at >= $?");
    }
    if f.before_seq.is_some() {
        next(&mut sql, " AND seq < $?");
    }
    next(&mut sql, " ORDER BY seq DESC LIMIT $?");
    let mut q = sqlx::query_as::<_, AuditRow>(&sql).bind(tenant.to_string());
    for s in [&f.action, &f.target, &f.actor].into_iter().flatten() {
        q = q.bind(s.clone());
    }
    for i in [f.since, f.before_seq].into_iter().flatten() {
        q = q.bind(i);
    }
    q = q.bind(f.limit);
    let rows = q.fetch_all(c).await?;
    Ok(rows.into_iter().map(ChainedEntry::from).collect())
}

/// `tenant`'s entries about `target` with seq > `after`, oldest first, at
/// most `limit` (a campaign's timeline).
pub async fn for_target_from(
    c: &mut AnyConnection,
    tenant: &str,
    target: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<ChainedEntry>, Error> {
    let rows: Vec<AuditRow> = sqlx::query_as(&format!(
        "SELECT {COLS} FROM audit_log WHERE tenant = $1 AND target = $2 AND seq > $3 \
         ORDER BY seq LIMIT $4"
    ))
    .bind(tenant)
    .bind(target)
    .bind(after)
    .bind(limit)
    .fetch_all(c)
    .await?;
    Ok(rows.into_iter().map(ChainedEntry::from).collect())
}

/// All entries with seq > `after`, oldest first, at most `limit` (for verification).
pub async fn page_from(
    c: &mut AnyConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<ChainedEntry>, Error> {
    let rows: Vec<AuditRow> = sqlx::query_as(&format!(
        "SELECT {COLS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(c)
    .await?;
    Ok(rows.into_iter().map(ChainedEntry::from).collect())
}

/// Who read one credential: the reads of `target` since `since`, grouped
/// by actor, client address and outcome (most recent first, at most
/// `limit` groups). Served by the `audit_log_target` index.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ReaderRow {
    pub actor: String,
    pub source: Option<String>,
    pub outcome: String,
    pub reads: i64,
    pub first_at: i64,
    pub last_at: i64,
}

pub async fn readers(
    c: &mut AnyConnection,
    tenant: &str,
    target: &str,
    read_action: &str,
    since: i64,
    limit: i64,
) -> Result<Vec<ReaderRow>, Error> {
    Ok(sqlx::query_as(
        "SELECT actor, source, outcome, COUNT(*) AS reads, MIN(at) AS first_at, MAX(at) AS last_at \
         FROM audit_log WHERE tenant = $1 AND target = $2 AND action = $3 AND at >= $4 \
         GROUP BY actor, source, outcome ORDER BY MAX(at) DESC, actor LIMIT $5",
    )
    .bind(tenant)
    .bind(target)
    .bind(read_action)
    .bind(since)
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// The last verified entry of the chain (see migration 0022): where the
/// next walk starts, and how many entries (all, and each tenant's) lie up
/// to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub entries: i64,
    pub verified_at: i64,
    /// When a walk from the first entry last found the chain intact.
    pub full_at: Option<i64>,
    pub tenants: std::collections::BTreeMap<String, i64>,
}

/// The checkpoint, if a walk has saved one.
pub async fn checkpoint(c: &mut AnyConnection) -> Result<Option<Checkpoint>, Error> {
    let row: Option<(i64, String, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT seq, hash, entries, verified_at, full_at FROM audit_checkpoint WHERE id = 1",
    )
    .fetch_optional(&mut *c)
    .await?;
    let Some((seq, hash, entries, verified_at, full_at)) = row else {
        return Ok(None);
    };
    let tenants: Vec<(String, i64)> =
        sqlx::query_as("SELECT tenant, entries FROM audit_checkpoint_tenants")
            .fetch_all(&mut *c)
            .await?;
    Ok(Some(Checkpoint {
        seq,
        hash,
        entries,
        verified_at,
        full_at,
        tenants: tenants.into_iter().collect(),
    }))
}

/// Save `cp` unless a walk already saved one at or past its entry
/// (replicas may walk at once; the counts up to a given entry are the same
/// whoever computed them) — or whatever is saved, with `force` (a full
/// walk, the check of record, that found the chain broken before the
/// saved entry). Run in a write transaction.
pub async fn save_checkpoint(
    c: &mut AnyConnection,
    cp: &Checkpoint,
    force: bool,
) -> Result<bool, Error> {
    let current: Option<i64> = sqlx::query_scalar("SELECT seq FROM audit_checkpoint WHERE id = 1")
        .fetch_optional(&mut *c)
        .await?;
    if !force && current.is_some_and(|s| s >= cp.seq) {
        return Ok(false);
    }
    let q = if current.is_some() {
        "UPDATE audit_checkpoint SET seq = $1, hash = $2, entries = $3, verified_at = $4, \
         full_at = $5 WHERE id = 1"
    } else {
        "INSERT INTO audit_checkpoint (seq, hash, entries, verified_at, full_at, id) \
         VALUES ($1, $2, $3, $4, $5, 1)"
    };
    sqlx::query(q)
        .bind(cp.seq)
        .bind(&cp.hash)
        .bind(cp.entries)
        .bind(cp.verified_at)
        .bind(cp.full_at)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM audit_checkpoint_tenants")
        .execute(&mut *c)
        .await?;
    for (tenant, n) in &cp.tenants {
        sqlx::query("INSERT INTO audit_checkpoint_tenants (tenant, entries) VALUES ($1, $2)")
            .bind(tenant)
            .bind(n)
            .execute(&mut *c)
            .await?;
    }
    Ok(true)
}

/// Forget the checkpoint: the next walk starts at the first entry.
pub async fn clear_checkpoint(c: &mut AnyConnection) -> Result<(), Error> {
    sqlx::query("DELETE FROM audit_checkpoint")
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM audit_checkpoint_tenants")
        .execute(&mut *c)
        .await?;
    Ok(())
}
