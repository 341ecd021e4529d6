//! `revocations`: one row a revocation of one credential of a connection,
//! its manual steps and the verdict of trying the old credential. The old
//! material is in `secrets` (owner kind `revocation`) until the verdict is
//! final.

use crate::rows::{self, AnyQuery, JsonList, Parsed, TenantScoped};
use rekey_core::revocation::{RevocationMethod, RevocationState, Verdict};
use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RevocationRow {
    pub id: String,
    pub tenant: String,
    pub connection_id: String,
    /// The connection's `credential_version` the revoked material was.
    pub credential_version: i64,
    pub kind: String,
    /// The revoked credential's non-secret fields (the connection's
    /// `credential_meta` then), to try it as it was.
    pub meta: String,
    pub fingerprint: Option<String>,
    /// The scopes the revoked credential carried (the connection's then).
    #[sqlx(try_from = "JsonList")]
    pub scopes: Vec<String>,
    /// Where the credential was used when revoked: the connection's URL
    /// placeholder values (JSON object text) and probe URL override then.
    /// None on rows recorded before they were kept.
    pub params: Option<String>,
    pub probe_url: Option<String>,
    /// OAuth grants: the app's provider, params and endpoint overrides
    /// then (JSON), to compare with the app's now.
    pub oauth_target: Option<String>,
    #[sqlx(try_from = "Parsed<RevocationMethod>")]
    pub method: RevocationMethod,
    #[sqlx(try_from = "Parsed<RevocationState>")]
    pub state: RevocationState,
    /// JSON list of `{text, done_at, done_by, note}`.
    pub steps: String,
    pub requested_at: i64,
    pub requested_by: String,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub verdict: Option<String>,
    /// JSON: what each try at the provider answered (scrubbed).
    pub evidence: Option<String>,
    pub verified_at: Option<i64>,
    /// When the next verification is due; None: none planned.
    pub verify_due_at: Option<i64>,
    pub verify_attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
}

impl RevocationRow {
    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict.as_deref().and_then(|v| v.parse().ok())
    }
}

const COLS: &str =
    "id, tenant, connection_id, credential_version, kind, meta, fingerprint, scopes, params, probe_url, \
     oauth_target, method, state, steps, requested_at, requested_by, revoked_at, revoked_by, verdict, evidence, \
     verified_at, verify_due_at, verify_attempts, lease_owner, lease_until";

impl TenantScoped for RevocationRow {
    const TABLE: &'static str = "revocations";
    const COLUMNS: &'static str = COLS;
}

/// The moving parts of a revocation, which [`update`] writes, in the order
/// [`bind_moving`] binds them.
const MOVING: &str = "state, steps, revoked_at, revoked_by, verdict, evidence, verified_at, \
     verify_due_at, verify_attempts";

fn bind_moving<'q>(q: AnyQuery<'q>, r: &'q RevocationRow) -> AnyQuery<'q> {
    q.bind(r.state.as_str())
        .bind(&r.steps)
        .bind(r.revoked_at)
        .bind(&r.revoked_by)
        .bind(&r.verdict)
        .bind(&r.evidence)
        .bind(r.verified_at)
        .bind(r.verify_due_at)
        .bind(r.verify_attempts)
}

pub async fn insert(c: &mut AnyConnection, r: &RevocationRow) -> Result<(), Error> {
    let columns = format!(
        "id, tenant, connection_id, credential_version, kind, meta, fingerprint, scopes, params, \
         probe_url, oauth_target, method, requested_at, requested_by, lease_owner, lease_until, {MOVING}"
    );
    let sql = rows::insert_sql("revocations", &columns);
    let q = sqlx::query(&sql)
        .bind(&r.id)
        .bind(&r.tenant)
        .bind(&r.connection_id)
        .bind(r.credential_version)
        .bind(&r.kind)
        .bind(&r.meta)
        .bind(&r.fingerprint)
        .bind(crate::json_list(&r.scopes))
        .bind(&r.params)
        .bind(&r.probe_url)
        .bind(&r.oauth_target)
        .bind(r.method.as_str())
        .bind(r.requested_at)
        .bind(&r.requested_by)
        .bind(&r.lease_owner)
        .bind(r.lease_until);
    bind_moving(q, r).execute(c).await?;
    Ok(())
}

/// Write the moving parts (state, steps, verdict and schedule) and drop
/// the lease.
pub async fn update(c: &mut AnyConnection, r: &RevocationRow) -> Result<(), Error> {
    let (set, n) = rows::set_clause(MOVING);
    let sql = format!(
        "UPDATE revocations SET {set}, lease_owner = NULL, lease_until = NULL \
         WHERE tenant = ${} AND id = ${}",
        n + 1,
        n + 2
    );
    bind_moving(sqlx::query(&sql), r)
        .bind(&r.tenant)
        .bind(&r.id)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<RevocationRow>, Error> {
    rows::get(c, tenant, id).await
}

/// The connection's revocations, newest first.
pub async fn for_connection(
    c: &mut AnyConnection,
    tenant: &str,
    connection_id: &str,
) -> Result<Vec<RevocationRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM revocations WHERE tenant = $1 AND connection_id = $2 \
         ORDER BY requested_at DESC, id DESC"
    ))
    .bind(tenant)
    .bind(connection_id)
    .fetch_all(c)
    .await?)
}

/// Revocations whose verification is due.
pub const DUE: crate::Due = crate::Due::new(
    "revocations",
    "verify_due_at IS NOT NULL AND verify_due_at <= $1",
);

/// Claim up to `limit` revocations whose verification is due and not
/// leased by a live worker: `(tenant, id)`.
pub async fn claim_due(
    c: &mut AnyConnection,
    backend: crate::Backend,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, Error> {
    crate::rows::claim_due(
        c,
        backend,
        &DUE,
        "verify_due_at",
        owner,
        now,
        lease_until,
        limit,
    )
    .await
}

/// Claim revocation `id` for an immediate verification, unless a live
/// worker holds it; false when it does.
pub async fn claim_one(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    owner: &str,
    now: i64,
    lease_until: i64,
) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE revocations SET lease_owner = $1, lease_until = $2 WHERE tenant = $3 AND id = $4 \
         AND (lease_until IS NULL OR lease_until < $5)",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(tenant)
    .bind(id)
    .bind(now)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Free the leases of `owner` (every lease with None).
pub async fn release(c: &mut AnyConnection, owner: Option<&str>) -> Result<u64, Error> {
    rows::release_leases(c, "revocations", owner).await
}
