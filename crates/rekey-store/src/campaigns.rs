//! `campaigns` and `campaign_items`: an incident campaign and its plan,
//! one item a connection, each item the last step it reached; and
//! `campaign_mail`, the owners' e-mail queue. Never holds
//! material (a reauthorization link's token is sealed in `secrets`, owner
//! kind `campaign_link`, under the item's id).

use crate::rows::{self, AnyQuery, Due, Parsed, TenantScoped};
use rekey_core::campaign::{CampaignState, ItemState};
use rekey_core::Error;
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct CampaignRow {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub reason: String,
    /// The connection filter, JSON object text.
    pub filter: String,
    /// Action overrides by kind or connection id, JSON object text.
    pub actions: String,
    /// Rotation options by kind or connection id, JSON object text.
    pub rotation: String,
    pub deadline: i64,
    /// JSON object text.
    pub notify: String,
    #[sqlx(try_from = "Parsed<CampaignState>")]
    pub state: CampaignState,
    pub created_by: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

const COLS: &str = "id, tenant, name, reason, filter, actions, rotation, deadline, notify, state, \
     created_by, created_at, started_at, finished_at, updated_at";

impl TenantScoped for CampaignRow {
    const TABLE: &'static str = "campaigns";
    const COLUMNS: &'static str = COLS;
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ItemRow {
    pub id: String,
    pub tenant: String,
    pub campaign_id: String,
    pub connection_id: String,
    pub display_name: String,
    pub provider: String,
    pub kind: String,
    /// The owner's email, else subject, when the plan was frozen.
    pub owner: Option<String>,
    /// The connection's credential version when the plan was frozen: a
    /// higher one is a new credential.
    pub base_version: i64,
    /// JSON list of action names.
    pub actions: String,
    /// Index into `actions` of the one running (= its length when all ran).
    pub step: i64,
    #[sqlx(try_from = "Parsed<ItemState>")]
    pub state: ItemState,
    /// Why it is where it is (what the operator or owner must do, the
    /// failure, the skip reason).
    pub detail: Option<String>,
    pub revocation_id: Option<String>,
    pub rotation_id: Option<String>,
    /// The reauthorization link's connect session.
    pub session_id: Option<String>,
    pub link_expires_at: Option<i64>,
    /// When the owner was reminded of the link (once).
    pub reminded_at: Option<i64>,
    /// When the running action's side effect (a provider call) was begun.
    pub started_at: Option<i64>,
    pub attempts: i64,
    pub due_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub confirmed_by: Option<String>,
    pub comment: Option<String>,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

const ITEM_COLS: &str = "id, tenant, campaign_id, connection_id, display_name, provider, kind, \
     owner, base_version, actions, step, state, detail, revocation_id, rotation_id, session_id, \
     link_expires_at, reminded_at, started_at, attempts, due_at, lease_owner, lease_until, \
     confirmed_by, comment, updated_at, finished_at";

/// What a step writes of an item, in the order [`bind_moving`] binds it.
const MOVING: &str = "step, state, detail, revocation_id, rotation_id, session_id, \
     link_expires_at, started_at, attempts, due_at, confirmed_by, comment, updated_at, finished_at";

fn bind_moving<'q>(q: AnyQuery<'q>, r: &'q ItemRow) -> AnyQuery<'q> {
    q.bind(r.step)
        .bind(r.state.as_str())
        .bind(&r.detail)
        .bind(&r.revocation_id)
        .bind(&r.rotation_id)
        .bind(&r.session_id)
        .bind(r.link_expires_at)
        .bind(r.started_at)
        .bind(r.attempts)
        .bind(r.due_at)
        .bind(&r.confirmed_by)
        .bind(&r.comment)
        .bind(r.updated_at)
        .bind(r.finished_at)
}

pub async fn insert(c: &mut AnyConnection, r: &CampaignRow) -> Result<(), Error> {
    let sql = rows::insert_sql("campaigns", COLS);
    sqlx::query(&sql)
        .bind(&r.id)
        .bind(&r.tenant)
        .bind(&r.name)
        .bind(&r.reason)
        .bind(&r.filter)
        .bind(&r.actions)
        .bind(&r.rotation)
        .bind(r.deadline)
        .bind(&r.notify)
        .bind(r.state.as_str())
        .bind(&r.created_by)
        .bind(r.created_at)
        .bind(r.started_at)
        .bind(r.finished_at)
        .bind(r.updated_at)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn get(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<CampaignRow>, Error> {
    rows::get(c, tenant, id).await
}

/// A page of `tenant`'s campaigns, newest first, before the id `before`.
pub async fn list(
    c: &mut AnyConnection,
    tenant: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<CampaignRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM campaigns WHERE tenant = $1 AND ($2 IS NULL OR id < $2) \
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(tenant)
    .bind(before.map(str::to_string))
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// Move a campaign from one of `from` to `to` (with `started_at` /
/// `finished_at` when given); false when it was in none of them.
pub async fn set_state(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    from: &[CampaignState],
    to: CampaignState,
    now: i64,
) -> Result<bool, Error> {
    let names: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
    let started = if to == CampaignState::Running {
        "COALESCE(started_at, $2)"
    } else {
        "started_at"
    };
    let finished = if to.is_finished() { "$2" } else { "NULL" };
    let sql = format!(
        "UPDATE campaigns SET state = $1, updated_at = $2, started_at = {started}, \
         finished_at = {finished} WHERE tenant = $3 AND id = $4 AND state IN ({})",
        names.join(", ")
    );
    let r = sqlx::query(&sql)
        .bind(to.as_str())
        .bind(now)
        .bind(tenant)
        .bind(id)
        .execute(c)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Add items (the plan frozen); an item already there for its connection
/// is kept as it is. How many were added.
pub async fn insert_items(c: &mut AnyConnection, items: &[ItemRow]) -> Result<u64, Error> {
    let columns = format!(
        "id, tenant, campaign_id, connection_id, display_name, provider, kind, owner, \
         base_version, actions, lease_owner, lease_until, {MOVING}"
    );
    rows::insert_many_then(
        c,
        "campaign_items",
        &columns,
        " ON CONFLICT (campaign_id, connection_id) DO NOTHING",
        items,
        |q, r| {
            let q = q
                .bind(&r.id)
                .bind(&r.tenant)
                .bind(&r.campaign_id)
                .bind(&r.connection_id)
                .bind(&r.display_name)
                .bind(&r.provider)
                .bind(&r.kind)
                .bind(&r.owner)
                .bind(r.base_version)
                .bind(&r.actions)
                .bind(&r.lease_owner)
                .bind(r.lease_until);
            bind_moving(q, r)
        },
    )
    .await
}

/// Write an item's moving parts, only while this worker holds its lease
/// (`owner`) or, for an operator's change (`owner` None), while it is
/// still at `step` in state `state`; false when not.
pub async fn update_item(
    c: &mut AnyConnection,
    r: &ItemRow,
    owner: Option<&str>,
    was: (i64, ItemState),
) -> Result<bool, Error> {
    let (set, n) = rows::set_clause(MOVING);
    let sql = format!(
        "UPDATE campaign_items SET {set} WHERE tenant = ${t} AND id = ${i} AND step = ${s} \
         AND state = ${st} AND (${o} IS NULL OR lease_owner = ${o})",
        t = n + 1,
        i = n + 2,
        s = n + 3,
        st = n + 4,
        o = n + 5,
    );
    let done = bind_moving(sqlx::query(&sql), r)
        .bind(&r.tenant)
        .bind(&r.id)
        .bind(was.0)
        .bind(was.1.as_str())
        .bind(owner.map(str::to_string))
        .execute(c)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn item(
    c: &mut AnyConnection,
    tenant: &str,
    campaign_id: &str,
    connection_id: &str,
) -> Result<Option<ItemRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ITEM_COLS} FROM campaign_items WHERE tenant = $1 AND campaign_id = $2 \
         AND connection_id = $3"
    ))
    .bind(tenant)
    .bind(campaign_id)
    .bind(connection_id)
    .fetch_optional(c)
    .await?)
}

pub async fn item_by_id(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<ItemRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ITEM_COLS} FROM campaign_items WHERE tenant = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(c)
    .await?)
}

/// A page of a campaign's items in connection-id order after `after`,
/// optionally only those in `state`.
pub async fn items(
    c: &mut AnyConnection,
    tenant: &str,
    campaign_id: &str,
    state: Option<ItemState>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ItemRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ITEM_COLS} FROM campaign_items WHERE tenant = $1 AND campaign_id = $2 \
         AND ($3 IS NULL OR state = $3) AND ($4 IS NULL OR connection_id > $4) \
         ORDER BY connection_id LIMIT $5"
    ))
    .bind(tenant)
    .bind(campaign_id)
    .bind(state.map(|s| s.as_str().to_string()))
    .bind(after.map(str::to_string))
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// `(state, provider, owner, count)` over a campaign's items.
pub async fn counts(
    c: &mut AnyConnection,
    tenant: &str,
    campaign_id: &str,
) -> Result<Vec<(String, String, Option<String>, i64)>, Error> {
    Ok(sqlx::query_as(
        "SELECT state, provider, owner, COUNT(*) FROM campaign_items \
         WHERE tenant = $1 AND campaign_id = $2 GROUP BY state, provider, owner",
    )
    .bind(tenant)
    .bind(campaign_id)
    .fetch_all(c)
    .await?)
}

/// Campaigns still running or paused whose every item has finished: left
/// so by a process that stopped between an item's last write and the
/// campaign's completion.
pub async fn all_finished(c: &mut AnyConnection) -> Result<Vec<(String, String)>, Error> {
    Ok(sqlx::query_as(
        "SELECT tenant, id FROM campaigns WHERE state IN ('running', 'paused') \
         AND NOT EXISTS (SELECT 1 FROM campaign_items i WHERE i.campaign_id = campaigns.id \
         AND i.finished_at IS NULL)",
    )
    .fetch_all(c)
    .await?)
}

/// How many of a campaign's items are not finished.
pub async fn unfinished(
    c: &mut AnyConnection,
    tenant: &str,
    campaign_id: &str,
) -> Result<i64, Error> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM campaign_items WHERE tenant = $1 AND campaign_id = $2 \
         AND finished_at IS NULL",
    )
    .bind(tenant)
    .bind(campaign_id)
    .fetch_one(c)
    .await?;
    Ok(n)
}

/// The connection ids a campaign already holds, among `ids`.
pub async fn held(
    c: &mut AnyConnection,
    tenant: &str,
    campaign_id: &str,
    after: Option<&str>,
    upto: &str,
) -> Result<Vec<String>, Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT connection_id FROM campaign_items WHERE tenant = $1 AND campaign_id = $2 \
         AND ($3 IS NULL OR connection_id > $3) AND connection_id <= $4",
    )
    .bind(tenant)
    .bind(campaign_id)
    .bind(after.map(str::to_string))
    .bind(upto)
    .fetch_all(c)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Unfinished items of running campaigns whose step is due.
pub const DUE: Due = Due::new(
    "campaign_items",
    "finished_at IS NULL AND due_at <= $1 AND campaign_id IN \
     (SELECT id FROM campaigns WHERE state = 'running')",
);

/// Claim up to `limit` unfinished items of running campaigns that are due
/// and not leased by a live worker: `(tenant, item id)`.
pub async fn claim_due(
    c: &mut AnyConnection,
    backend: crate::Backend,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, Error> {
    rows::claim_due(c, backend, &DUE, "due_at", owner, now, lease_until, limit).await
}

/// Record that the owner was reminded of the item's link; false when
/// another worker did already (so one reminder goes out).
pub async fn mark_reminded(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    now: i64,
) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE campaign_items SET reminded_at = $1 WHERE tenant = $2 AND id = $3 \
         AND reminded_at IS NULL",
    )
    .bind(now)
    .bind(tenant)
    .bind(id)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Raise an item's base credential version (a link resent after a
/// credential the provider refused: only a newer one counts).
pub async fn set_base_version(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    base_version: i64,
) -> Result<(), Error> {
    sqlx::query("UPDATE campaign_items SET base_version = $1 WHERE tenant = $2 AND id = $3")
        .bind(base_version)
        .bind(tenant)
        .bind(id)
        .execute(c)
        .await?;
    Ok(())
}

/// Make a connection's unfinished items due now (its credential or
/// revocation changed: the campaign looks again at once).
pub async fn nudge(
    c: &mut AnyConnection,
    tenant: &str,
    connection_id: &str,
    now: i64,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE campaign_items SET due_at = $1 WHERE tenant = $2 AND connection_id = $3 \
         AND finished_at IS NULL AND due_at > $1",
    )
    .bind(now)
    .bind(tenant)
    .bind(connection_id)
    .execute(c)
    .await?;
    Ok(())
}

/// Finish every unfinished item of a cancelled campaign as skipped.
pub async fn skip_unfinished(
    c: &mut AnyConnection,
    tenant: &str,
    campaign_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64, Error> {
    let r = sqlx::query(
        "UPDATE campaign_items SET state = 'skipped', detail = $1, finished_at = $2, \
         updated_at = $2, lease_owner = NULL, lease_until = NULL \
         WHERE tenant = $3 AND campaign_id = $4 AND finished_at IS NULL",
    )
    .bind(reason)
    .bind(now)
    .bind(tenant)
    .bind(campaign_id)
    .execute(c)
    .await?;
    Ok(r.rows_affected())
}

/// Drop `owner`'s lease on an item.
pub async fn release_item(c: &mut AnyConnection, owner: &str, id: &str) -> Result<(), Error> {
    sqlx::query(
        "UPDATE campaign_items SET lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .execute(c)
    .await?;
    Ok(())
}

/// Free the leases of `owner` (every lease with None).
pub async fn release(c: &mut AnyConnection, owner: Option<&str>) -> Result<u64, Error> {
    Ok(
        rows::release_leases(&mut *c, "campaign_items", owner).await?
            + rows::release_leases(c, "campaign_mail", owner).await?,
    )
}

/// One queued e-mail to an owner (`campaign_mail`).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct MailRow {
    pub id: String,
    pub tenant: String,
    pub campaign_id: String,
    pub item_id: String,
    pub session_id: String,
    /// `link` or `reminder`.
    pub kind: String,
    pub recipient: String,
    /// `pending`, `sent`, `failed` or `dropped`.
    pub state: String,
    pub attempts: i64,
    pub due_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

const MAIL_COLS: &str = "id, tenant, campaign_id, item_id, session_id, kind, recipient, state, \
     attempts, due_at, last_error, created_at, sent_at";

pub async fn insert_mail(c: &mut AnyConnection, m: &MailRow) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO campaign_mail ({MAIL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&m.id)
    .bind(&m.tenant)
    .bind(&m.campaign_id)
    .bind(&m.item_id)
    .bind(&m.session_id)
    .bind(&m.kind)
    .bind(&m.recipient)
    .bind(&m.state)
    .bind(m.attempts)
    .bind(m.due_at)
    .bind(&m.last_error)
    .bind(m.created_at)
    .bind(m.sent_at)
    .execute(c)
    .await?;
    Ok(())
}

/// Campaign mail waiting to go out.
pub const MAIL_DUE: Due = Due::new("campaign_mail", "state = 'pending' AND due_at <= $1");

/// Lease due pending messages to `owner`: (tenant, id) of each.
pub async fn claim_mail(
    c: &mut AnyConnection,
    backend: crate::Backend,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, Error> {
    rows::claim_due(
        c,
        backend,
        &MAIL_DUE,
        "due_at",
        owner,
        now,
        lease_until,
        limit,
    )
    .await
}

pub async fn get_mail(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<MailRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {MAIL_COLS} FROM campaign_mail WHERE tenant = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(c)
    .await?)
}

/// Record a send's outcome while `owner` still holds the lease: the new
/// state, attempts, next try and error. False when the lease was lost.
pub async fn settle_mail(c: &mut AnyConnection, owner: &str, m: &MailRow) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE campaign_mail SET state = $1, attempts = $2, due_at = $3, last_error = $4, \
         sent_at = $5, lease_owner = NULL, lease_until = NULL \
         WHERE tenant = $6 AND id = $7 AND lease_owner = $8",
    )
    .bind(&m.state)
    .bind(m.attempts)
    .bind(m.due_at)
    .bind(&m.last_error)
    .bind(m.sent_at)
    .bind(&m.tenant)
    .bind(&m.id)
    .bind(owner)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A campaign's messages, oldest first, after `after` (an id).
pub async fn mail_of(
    c: &mut AnyConnection,
    tenant: &str,
    campaign_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<MailRow>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {MAIL_COLS} FROM campaign_mail WHERE tenant = $1 AND campaign_id = $2 \
         AND id > $3 ORDER BY id LIMIT $4"
    ))
    .bind(tenant)
    .bind(campaign_id)
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(c)
    .await?)
}

/// Reserve `provider`'s next step slot: the later of now and the next free
/// slot, moving the next free one on by `spacing_ms`. Every replica on the
/// database shares it, so the steps keep one rate between them.
pub async fn reserve_pace(
    c: &mut AnyConnection,
    backend: crate::Backend,
    provider: &str,
    now: i64,
    spacing_ms: i64,
) -> Result<i64, Error> {
    let later = match backend {
        crate::Backend::Postgres => "GREATEST",
        crate::Backend::Sqlite => "MAX",
    };
    let (slot,): (i64,) = sqlx::query_as(&format!(
        "INSERT INTO provider_pace (provider, next_at) VALUES ($1, $2 + $3) \
         ON CONFLICT (provider) DO UPDATE SET next_at = {later}(provider_pace.next_at, $2) + $3 \
         RETURNING next_at - $3"
    ))
    .bind(provider)
    .bind(now)
    .bind(spacing_ms)
    .fetch_one(c)
    .await?;
    Ok(slot)
}

/// [`counts`] of several campaigns at once, by campaign id.
pub async fn counts_of(
    c: &mut AnyConnection,
    tenant: &str,
    campaign_ids: &[String],
) -> Result<std::collections::HashMap<String, Vec<(String, String, Option<String>, i64)>>, Error> {
    let mut out: std::collections::HashMap<String, Vec<_>> = Default::default();
    if campaign_ids.is_empty() {
        return Ok(out);
    }
    let marks: Vec<String> = (0..campaign_ids.len())
        .map(|i| format!("${}", i + 2))
        .collect();
    let sql = format!(
        "SELECT campaign_id, state, provider, owner, COUNT(*) FROM campaign_items \
         WHERE tenant = $1 AND campaign_id IN ({}) \
         GROUP BY campaign_id, state, provider, owner",
        marks.join(", ")
    );
    let mut q =
        sqlx::query_as::<_, (String, String, String, Option<String>, i64)>(&sql).bind(tenant);
    for id in campaign_ids {
        q = q.bind(id);
    }
    for (id, state, provider, owner, n) in q.fetch_all(c).await? {
        out.entry(id).or_default().push((state, provider, owner, n));
    }
    Ok(out)
}

/// Replace the detail of an item still waiting for its owner on the link
/// `session_id` (a note the operator must see, such as a failed e-mail).
pub async fn set_waiting_detail(
    c: &mut AnyConnection,
    tenant: &str,
    id: &str,
    session_id: &str,
    detail: &str,
) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE campaign_items SET detail = $1 WHERE tenant = $2 AND id = $3 \
         AND session_id = $4 AND state = 'waiting_for_owner'",
    )
    .bind(detail)
    .bind(tenant)
    .bind(id)
    .bind(session_id)
    .execute(c)
    .await?;
    Ok(r.rows_affected() == 1)
}
