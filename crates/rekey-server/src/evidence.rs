//! An evidence export as a file: CSV (a spreadsheet opens it; no cell
//! runs as a formula) or JSON, streamed page by page in bounded memory,
//! hashed as it goes, recorded in the audit chain once every row is out,
//! and closed by the seal line (see `rekey_api::evidence`). The API and the
//! dashboard both answer with [`export`].

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use rekey_api::{csv_safe, EvidenceQuery, EvidenceRow};
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::{ids, Error, ErrorCode};
use rekey_service::{
    outcome_counts, Ctx, EvidenceFilter, EvidenceItem, EvidenceOutcome, Rekey, RevocationRecord,
};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub fn parse(s: Option<&str>) -> Result<Format, Error> {
        match s {
            None | Some("csv") => Ok(Format::Csv),
            Some("json") => Ok(Format::Json),
            Some(other) => Err(Error::invalid(
                ErrorCode::InvalidFormat,
                format!(
                    "`format` must be `csv` or `json`, not `{}`",
                    ids::truncate_for_message(other)
                ),
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

/// Validate the query (errors are answered as JSON before any byte of the
/// file), then stream the export.
/// A `HEAD` request (`head_only`) is validated the same and answered with
/// the headers only: no export runs and nothing is recorded.
pub async fn export(
    rekey: Rekey,
    ctx: Ctx,
    q: EvidenceQuery,
    head_only: bool,
) -> Result<Response, Error> {
    let format = Format::parse(q.format.as_deref())?;
    let filter = rekey
        .evidence_filter(&ctx.tenant, &q.filter(), q.campaign.as_deref())
        .await?;
    let campaign = rekey
        .evidence_campaign(&ctx.tenant, &filter)
        .await?
        .map(|c| campaign_summary(&c));
    let (ctype, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Json => ("application/json", "json"),
    };
    let id = ids::new_id(ids::EVIDENCE);
    let headers = |r: &mut Response| {
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        if let Ok(v) = HeaderValue::from_str(&format!(
            "attachment; filename=\"rekey-evidence-{id}.{ext}\""
        )) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    };
    if head_only {
        // The same headers as a GET, with a body of unknown length (no
        // `content-length: 0` claiming an empty export).
        let empty = futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
        let mut r = Body::from_stream(empty).into_response();
        headers(&mut r);
        return Ok(r);
    }
    // A few chunks in flight: a slow reader holds the writer back instead
    // of the export piling up in memory.
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let head = Head {
        id: id.clone(),
        generated_at: ms_to_rfc3339(now_ms()),
        generated_by: ctx.actor.clone(),
        filter: q
            .filters_set()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect(),
        format,
        campaign,
    };
    tokio::spawn(async move {
        let mut sink = Sink {
            tx,
            hash: Sha256::new(),
        };
        if let Err(e) = write(&rekey, &ctx, &filter, &head, &mut sink).await {
            // The body ends in an error: the client sees a cut transfer,
            // and a file without its seal line never verifies.
            if sink.tx.is_closed() {
                tracing::info!(export = %head.id, "evidence download ended by the client");
            } else {
                tracing::warn!(export = %head.id, code = %e.code(), "evidence export failed");
            }
            let _ = sink
                .tx
                .send(Err(std::io::Error::other(e.code().as_str())))
                .await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut r = Body::from_stream(stream).into_response();
    headers(&mut r);
    Ok(r)
}

struct Head {
    id: String,
    generated_at: String,
    generated_by: String,
    filter: Map<String, Value>,
    format: Format,
    /// The campaign the export is scoped to: what it was, where it stands.
    campaign: Option<Value>,
}

fn campaign_summary(c: &rekey_service::Campaign) -> Value {
    let v = crate::routes::campaigns::view(c);
    json!({"id": v.id, "name": v.name, "reason": v.reason, "state": v.state,
           "deadline": v.deadline, "created_by": v.created_by, "created_at": v.created_at,
           "started_at": v.started_at, "finished_at": v.finished_at, "total": v.total,
           "counts": v.counts})
}

/// A campaign's timeline after its rows: every audit entry about it,
/// oldest first, page by page.
async fn write_timeline(
    rekey: &Rekey,
    ctx: &Ctx,
    head: &Head,
    campaign_id: &str,
    sink: &mut Sink,
) -> Result<(), Error> {
    let mut after = 0;
    let mut first = true;
    match head.format {
        Format::Csv => {
            let mut out = Vec::new();
            csv_line(
                &mut out,
                ["# timeline", "at", "actor", "action", "outcome", "details"].into_iter(),
            )?;
            sink.put(out).await?;
        }
        Format::Json => sink.put(b"\"timeline\":[".to_vec()).await?,
    }
    loop {
        let page = rekey
            .campaign_timeline(&ctx.tenant, campaign_id, after, 500)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.entry.seq;
        let mut chunk = Vec::new();
        for e in &page {
            let at = ms_to_rfc3339(e.entry.at);
            let details: Value = serde_json::from_str(&e.entry.details).unwrap_or(Value::Null);
            match head.format {
                Format::Csv => csv_line(
                    &mut chunk,
                    [
                        "# event",
                        at.as_str(),
                        e.entry.actor.as_str(),
                        e.entry.action.as_str(),
                        e.entry.outcome.as_str(),
                        details.to_string().as_str(),
                    ]
                    .into_iter(),
                )?,
                Format::Json => {
                    chunk.extend_from_slice(if first { b"\n" } else { b",\n" });
                    let ev = json!({"seq": e.entry.seq, "at": at, "actor": e.entry.actor,
                        "action": e.entry.action.as_str(), "outcome": e.entry.outcome.as_str(),
                        "details": details});
                    chunk.extend_from_slice(ev.to_string().as_bytes());
                }
            }
            first = false;
        }
        sink.put(chunk).await?;
        if page.len() < 500 {
            break;
        }
    }
    if head.format == Format::Json {
        sink.put(b"\n],\n".to_vec()).await?;
    }
    Ok(())
}

/// Where the file goes: the response body, hashed on the way.
struct Sink {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    hash: Sha256,
}

impl Sink {
    /// Send hashed bytes; an error when the client went away.
    async fn put(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        self.hash.update(&bytes);
        self.send(bytes).await
    }

    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        self.tx
            .send(Ok(Bytes::from(bytes)))
            .await
            .map_err(|_| Error::Unavailable("the client closed the evidence download".into()))
    }
}

async fn write(
    rekey: &Rekey,
    ctx: &Ctx,
    filter: &EvidenceFilter,
    head: &Head,
    sink: &mut Sink,
) -> Result<(), Error> {
    let mut counts: BTreeMap<EvidenceOutcome, u64> = BTreeMap::new();
    let mut rows: u64 = 0;
    sink.put(render_head(head)?).await?;
    let mut after: Option<String> = None;
    loop {
        let page = rekey
            .evidence_page(&ctx.tenant, filter, after.as_deref())
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.connection.id.clone());
        let mut chunk = Vec::new();
        for item in &page {
            *counts.entry(item.outcome()).or_default() += 1;
            let r = row(item);
            match head.format {
                Format::Csv => csv_line(&mut chunk, r.cells().iter().copied())?,
                Format::Json => {
                    chunk.extend_from_slice(if rows == 0 { b"\n" } else { b",\n" });
                    serde_json::to_writer(&mut chunk, &r).map_err(Error::internal)?;
                }
            }
            rows += 1;
        }
        sink.put(chunk).await?;
        if (page.len() as i64) < rekey_service::EVIDENCE_PAGE {
            break;
        }
    }
    let counts: Vec<(&str, u64)> = outcome_counts(&counts);
    sink.put(render_tail(head.format, rows, &counts)?).await?;
    let campaign_id = head
        .campaign
        .as_ref()
        .and_then(|c| c["id"].as_str())
        .map(str::to_string);
    if let Some(cid) = &campaign_id {
        write_timeline(rekey, ctx, head, cid, sink).await?;
    }
    let sha256 = format!("{:x}", sink.hash.clone().finalize());
    let counts_obj: Map<String, Value> = counts
        .iter()
        .map(|(k, n)| (k.to_string(), Value::from(*n)))
        .collect();
    rekey
        .record_evidence(
            ctx,
            &head.id,
            &sha256,
            json!({"format": head.format.as_str(), "rows": rows, "counts": counts_obj,
                   "filter": head.filter, "generated_at": head.generated_at,
                   "campaign": campaign_id}),
        )
        .await?;
    let seal = match head.format {
        Format::Csv => rekey_api::csv_seal(&head.id, &sha256),
        Format::Json => rekey_api::json_seal(&head.id, &sha256),
    };
    sink.send(seal.into_bytes()).await
}

/// One CSV record, every cell made safe for a spreadsheet.
fn csv_line<'a>(out: &mut Vec<u8>, cells: impl Iterator<Item = &'a str>) -> Result<(), Error> {
    let mut w = csv::WriterBuilder::new().flexible(true).from_writer(out);
    w.write_record(cells.map(|c| csv_safe(c).into_owned()))
        .map_err(Error::internal)?;
    w.flush().map_err(Error::internal)
}

fn render_head(h: &Head) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    match h.format {
        Format::Csv => {
            let filter = if h.filter.is_empty() {
                "(none: every connection)".to_string()
            } else {
                h.filter
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            for (k, v) in [
                ("# rekey evidence export", h.id.as_str()),
                ("# generated_at", &h.generated_at),
                ("# generated_by", &h.generated_by),
                ("# filter", &filter),
            ] {
                csv_line(&mut out, [k, v].into_iter())?;
            }
            if let Some(c) = &h.campaign {
                let text = |k: &str| match &c[k] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                for k in [
                    "id",
                    "name",
                    "reason",
                    "state",
                    "deadline",
                    "created_by",
                    "started_at",
                    "finished_at",
                    "total",
                    "counts",
                ] {
                    let label = format!("# campaign {k}");
                    csv_line(&mut out, [label.as_str(), text(k).as_str()].into_iter())?;
                }
            }
            csv_line(&mut out, EvidenceRow::COLUMNS.into_iter())?;
        }
        Format::Json => {
            let mut head = json!({"evidence": {
                "id": h.id, "generated_at": h.generated_at, "generated_by": h.generated_by,
                "filter": h.filter, "columns": EvidenceRow::COLUMNS,
            }});
            if let Some(c) = &h.campaign {
                head["evidence"]["campaign"] = c.clone();
            }
            let text = head.to_string();
            // `{"evidence":{…}` then `,"rows":[` : the object stays open.
            out.extend_from_slice(text.strip_suffix('}').unwrap_or(&text).as_bytes());
            out.extend_from_slice(b",\n\"rows\":[");
        }
    }
    Ok(out)
}

fn render_tail(format: Format, rows: u64, counts: &[(&str, u64)]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    match format {
        Format::Csv => {
            let n = rows.to_string();
            csv_line(&mut out, ["# rows", n.as_str()].into_iter())?;
            for (k, v) in counts {
                let v = v.to_string();
                let k = format!("# {k}");
                csv_line(&mut out, [k.as_str(), v.as_str()].into_iter())?;
            }
        }
        Format::Json => {
            let summary = json!({"rows": rows, "counts": counts.iter()
                .map(|(k, n)| (k.to_string(), Value::from(*n))).collect::<Map<_, _>>()});
            out.extend_from_slice(b"\n],\n\"summary\":");
            out.extend_from_slice(summary.to_string().as_bytes());
            out.extend_from_slice(b",\n");
        }
    }
    Ok(out)
}

fn t(ms: Option<i64>) -> String {
    ms.map(ms_to_rfc3339).unwrap_or_default()
}

fn s(v: Option<&String>) -> String {
    v.cloned().unwrap_or_default()
}

/// What the provider last answered to the old credential.
fn provider_answer(r: &RevocationRecord) -> String {
    let Some(c) = r.checks.last() else {
        return String::new();
    };
    let mut a = format!("{} {} at {}", c.tried, c.result, ms_to_rfc3339(c.at));
    if let Some(st) = c.http_status {
        a.push_str(&format!(": HTTP {st}"));
    }
    a.push_str(&format!(" {}: {}", c.code, c.message));
    if let Some(b) = &c.body {
        a.push_str(&format!(" (body: {b})"));
    }
    if let Some(e) = c.expires_at {
        a.push_str(&format!(
            " (accepted until it expires at {})",
            ms_to_rfc3339(e)
        ));
    }
    a
}

/// Where the old credential is tried (as it was when revoked).
fn verified_against(r: &RevocationRecord, provider: &str) -> String {
    if let Some(u) = &r.row.probe_url {
        return u.clone();
    }
    if let Some(t) = &r.row.oauth_target {
        return format!("the OAuth app's endpoints when revoked: {t}");
    }
    let Some(params) = r.row.params.as_deref() else {
        return "the connection's target at verification time (revoked before rekey kept it)"
            .to_string();
    };
    let params: Map<String, Value> = serde_json::from_str(params).unwrap_or_default();
    if params.is_empty() {
        return format!("the catalog's probe for {provider}");
    }
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn confirmations(r: &RevocationRecord) -> String {
    r.steps
        .iter()
        .zip(1..)
        .filter_map(|(st, n)| {
            let at = st.done_at?;
            let by = st.done_by.as_deref().unwrap_or("?");
            let note = st
                .note
                .as_deref()
                .map(|n| format!(" (note: {n})"))
                .unwrap_or_default();
            Some(format!(
                "step {n} \"{}\" done by {by} at {}{note}",
                st.text,
                ms_to_rfc3339(at)
            ))
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The export's row for one connection.
pub fn row(i: &EvidenceItem) -> EvidenceRow {
    let c = &i.connection;
    let rev = i.revocation.as_ref();
    let new = i.replacement();
    let owner = c
        .owner
        .email
        .clone()
        .or_else(|| c.owner.subject.clone())
        .unwrap_or_default();
    EvidenceRow {
        connection_id: c.id.clone(),
        provider: c.provider.clone(),
        kind: c.kind.as_str().to_string(),
        display_name: c.display_name.clone(),
        status: c.status.as_str().to_string(),
        outcome: i.outcome().as_str().to_string(),
        owner: owner.clone(),
        custody: c.custody.join(" "),
        scopes_before: rev.map(|r| r.row.scopes.join(" ")).unwrap_or_default(),
        scopes_after: c.scopes.join(" "),
        revocations: i.revocations.to_string(),
        revocation_id: rev.map(|r| r.row.id.clone()).unwrap_or_default(),
        old_fingerprint: rev
            .and_then(|r| r.row.fingerprint.clone())
            .or_else(|| i.revoked_version.as_ref().map(|v| v.fingerprint.clone()))
            .unwrap_or_default(),
        revocation_method: rev
            .map(|r| r.row.method.as_str().to_string())
            .unwrap_or_default(),
        revocation_requested_at: t(rev.map(|r| r.row.requested_at)),
        revocation_requested_by: s(rev.map(|r| &r.row.requested_by)),
        revoked_at: t(rev.and_then(|r| r.row.revoked_at)),
        revoked_by: s(rev.and_then(|r| r.row.revoked_by.as_ref())),
        verdict: s(rev.and_then(|r| r.row.verdict.as_ref())),
        verified_at: t(rev.and_then(|r| r.row.verified_at)),
        verification_attempts: rev
            .map(|r| r.row.verify_attempts.to_string())
            .unwrap_or_default(),
        verified_against: rev
            .filter(|r| r.row.revoked_at.is_some())
            .map(|r| verified_against(r, &c.provider))
            .unwrap_or_default(),
        provider_answer: rev.map(provider_answer).unwrap_or_default(),
        confirmations: rev.map(confirmations).unwrap_or_default(),
        current_fingerprint: s(i.current.as_ref().map(|v| &v.fingerprint)),
        new_fingerprint: s(new.map(|v| &v.fingerprint)),
        new_credential_source: s(new.map(|v| &v.source)),
        // When it became current (promotion), else when it was stored.
        new_credential_at: t(new.map(|v| v.promoted_at.unwrap_or(v.created_at))),
        new_credential_by: s(new.map(|v| &v.created_by)),
        reauthorized_identity: if new.is_some_and(|v| v.source == "reauthorized") {
            owner
        } else {
            String::new()
        },
        verified_working_at: t(i.verified_working_at()),
    }
}
