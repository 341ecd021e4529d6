//! Verification: try the revoked credential at the provider and record
//! what it answered. OAuth grants: the old refresh token must get
//! `invalid_grant`, the old access token a 401 at the probe or identity
//! endpoint. Static kinds: the probe with the old material must fail to
//! authenticate. The verdict and each answer (scrubbed) go on the
//! revocation, into the audit chain and out as an event.

use super::RevocationRecord;
use crate::status::{status_changed, Observation, Outcome};
use crate::webhooks::{connection_data, emit};
use crate::{Ctx, Rekey};
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::{ConnectionKind, Status};
use rekey_core::credential_meta::OAuthMeta;
use rekey_core::events::EventType;
use rekey_core::revocation::{next_verify_delay_ms, RevocationState, Verdict, MAX_VERIFY_ATTEMPTS};
use rekey_core::time::now_ms;
use rekey_core::{ids, Error, ErrorCode, SecretString};
use rekey_store::connections::{self as conns, ConnectionRow};
use rekey_store::revocations::{self as store, RevocationRow};
use rekey_store::Leased;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// Verifications one worker pass claims.
pub const VERIFY_BATCH: usize = 20;
/// How long a worker holds a claimed verification.
const LEASE_MS: i64 = 120_000;
/// How long a verification right after the revocation holds it.
const INLINE_LEASE_MS: i64 = 30_000;
/// A provider that did not answer is asked again after this.
const NO_ANSWER_RETRY_MS: i64 = 60_000;

/// One try of the old credential at the provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Check {
    pub at: i64,
    /// What was tried: `refresh_token`, `access_token` or `credential`.
    pub tried: String,
    /// `rejected`, `accepted`, `no_answer` or `not_tried`.
    pub result: String,
    /// The provider's error code or rekey's (`invalid_grant`, `auth_rejected`…).
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub http_status: Option<u16>,
    /// The provider's answer, truncated and scrubbed of the credential.
    #[serde(default)]
    pub body: Option<String>,
    /// An access token the provider keeps accepting until it expires.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl Check {
    fn of(tried: &str, o: &Observation, at: i64) -> Check {
        let result = match o.outcome {
            Outcome::AuthFailure => "rejected",
            Outcome::Ok => "accepted",
            Outcome::Transient => "no_answer",
            Outcome::Unexpected if o.code == "probe_misconfigured" => "not_tried",
            // A database let the old password log in: accepted, whatever
            // the statement after it met.
            _ if o.code == crate::health::LOGGED_IN_QUERY_FAILED => "accepted",
            Outcome::Unexpected => "no_answer",
        };
        Check {
            at,
            tried: tried.into(),
            result: result.into(),
            code: o.code.clone(),
            message: o.message.clone(),
            http_status: o.http_status,
            body: o.body.clone(),
            expires_at: None,
        }
    }

    fn not_tried(tried: &str, why: String, at: i64) -> Check {
        Check {
            at,
            tried: tried.into(),
            result: "not_tried".into(),
            code: "unverifiable".into(),
            message: why,
            http_status: None,
            body: None,
            expires_at: None,
        }
    }
}

/// The verdict of one round of checks: None when the provider did not
/// answer (asked again later).
fn verdict_of(checks: &[Check]) -> Option<Verdict> {
    let any = |r: &str| checks.iter().any(|c| c.result == r);
    if any("accepted") {
        Some(Verdict::StillAccepted)
    } else if any("no_answer") {
        None
    } else if any("rejected") {
        Some(Verdict::VerifiedRejected)
    } else {
        Some(Verdict::Unverifiable)
    }
}

impl Rekey {
    /// `POST /connections/{id}/revoke/verify`: try the connection's latest
    /// revoked credential now.
    pub async fn verify_revocation(&self, ctx: &Ctx, id: &str) -> Result<RevocationRecord, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let all = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &ctx.tenant, &id)
                .await?
                .ok_or_else(|| crate::connection_rows::not_found(&id))?;
            store::for_connection(&mut c, &ctx.tenant, &id).await?
        };
        let Some(r) = all
            .into_iter()
            .find(|r| r.state == RevocationState::Revoked)
        else {
            return Err(Error::conflict(
                ErrorCode::NotRevoked,
                format!(
                    "connection {id} has no revoked credential to verify: revoke it (and confirm \
                     the runbook's steps) first"
                ),
            ));
        };
        self.verify_one(ctx, r).await.map(RevocationRecord::from)
    }

    /// Verify `r` right after it was revoked, unless a worker holds it. A
    /// verification cut short (a crash, an error) is the worker's to redo:
    /// `r` is still due.
    pub(crate) async fn verify_now(&self, ctx: &Ctx, r: RevocationRow) -> RevocationRow {
        crate::rotation::fault::after("revoked");
        let now = now_ms();
        let claimed: Result<bool, Error> = async {
            let mut tx = self.store().begin_write().await?;
            let owner = self.replica_id().to_string();
            let ok = store::claim_one(
                tx.conn(),
                &r.tenant,
                &r.id,
                &owner,
                now,
                now + INLINE_LEASE_MS,
            )
            .await?;
            tx.commit().await?;
            Ok(ok)
        }
        .await;
        if !matches!(claimed, Ok(true)) {
            return r;
        }
        match self.verify_one(ctx, r.clone()).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(revocation = %r.id, error = %e, "revocation verification failed; the worker retries");
                r
            }
        }
    }

    /// Verify every revocation whose (re-)verification is due: `(verified, failed)`.
    pub async fn verify_due_revocations(&self, owner: &str) -> Result<(usize, usize), Error> {
        let now = now_ms();
        let claimed = self
            .store()
            .claim(
                &store::DUE,
                store::claim_due,
                owner,
                now,
                now + LEASE_MS,
                VERIFY_BATCH as i64,
            )
            .await?;
        let (mut done, mut failed) = (0, 0);
        for (tenant, id) in claimed {
            // The batch is verified one after another, each try bounded by
            // its provider's timeout: the lease starts again with each, so
            // the last of a slow batch is not taken over while it runs.
            let kept = self
                .store()
                .renew_lease(Leased::Revocation, &tenant, &id, owner, now_ms() + LEASE_MS)
                .await?;
            if !kept {
                continue;
            }
            let row = {
                let mut c = self.store().read().await?;
                store::get(&mut c, &tenant, &id).await?
            };
            let Some(row) = row else { continue };
            match self
                .verify_one(&Ctx::worker(&tenant, "revocation"), row)
                .await
            {
                Ok(_) => done += 1,
                Err(e) => {
                    failed += 1;
                    tracing::warn!(revocation = %id, error = %e, "revocation verification failed");
                }
            }
        }
        Ok((done, failed))
    }

    /// Try `r`'s credential, then record the verdict (or plan the next try).
    async fn verify_one(&self, ctx: &Ctx, mut r: RevocationRow) -> Result<RevocationRow, Error> {
        let conn = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &r.tenant, &r.connection_id)
                .await?
                .ok_or_else(|| crate::connection_rows::not_found(&r.connection_id))?
        };
        let now = now_ms();
        let checks = match self.revocation_material(&r).await {
            Ok(m) if m.is_empty() => vec![Check::not_tried(
                "credential",
                "rekey kept no copy of this credential".into(),
                now,
            )],
            Ok(m) => self.try_old(&conn, &r, m).await,
            Err(e) => vec![Check::not_tried("credential", e.public_message(), now)],
        };
        let verdict = match (r.verdict(), verdict_of(&checks)) {
            // A try that could not be made (the app changed, no copy) does
            // not silence an alarm: the last answer stands, and rekey asks again.
            (Some(Verdict::StillAccepted), Some(Verdict::Unverifiable)) => None,
            (_, v) => v,
        };
        r.verify_attempts += 1;
        r.evidence = Some(serde_json::to_string(&checks).map_err(Error::internal)?);
        r.verify_due_at = match verdict {
            None if r.verify_attempts < MAX_VERIFY_ATTEMPTS => Some(now + NO_ANSWER_RETRY_MS),
            Some(Verdict::StillAccepted) if r.verify_attempts < MAX_VERIFY_ATTEMPTS => {
                // An access token the provider honours until it expires is
                // tried again just after that.
                let expiry = checks.iter().filter_map(|c| c.expires_at).max();
                Some(
                    expiry.map_or(now + next_verify_delay_ms(r.verify_attempts), |e| {
                        e.max(now) + NO_ANSWER_RETRY_MS
                    }),
                )
            }
            _ => None,
        };
        if let Some(v) = verdict {
            r.verdict = Some(v.as_str().to_string());
            r.verified_at = Some(now);
        }
        self.write_verdict(ctx, &r, verdict, &checks).await?;
        Ok(r)
    }

    async fn write_verdict(
        &self,
        ctx: &Ctx,
        r: &RevocationRow,
        verdict: Option<Verdict>,
        checks: &[Check],
    ) -> Result<(), Error> {
        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(
            &mut tx,
            rekey_store::Locked::Connection,
            &r.tenant,
            &r.connection_id,
        )
        .await?;
        store::update(tx.conn(), r).await?;
        rekey_store::campaigns::nudge(tx.conn(), &r.tenant, &r.connection_id, now_ms()).await?;
        let outcome = match verdict {
            Some(Verdict::StillAccepted) => AuditOutcome::Error,
            _ => AuditOutcome::Ok,
        };
        crate::audit::record(
            &mut tx,
            ctx,
            AuditAction::RevocationVerified,
            Some(&r.connection_id),
            outcome,
            json!({"revocation": r.id, "verdict": verdict.map(Verdict::as_str),
                   "fingerprint": r.fingerprint, "attempt": r.verify_attempts,
                   "checks": checks.iter().map(|c| json!({"tried": c.tried, "result": c.result,
                       "code": c.code, "http_status": c.http_status})).collect::<Vec<_>>()}),
        )
        .await?;
        // The connection's own status speaks of the old credential only
        // while the connection is revoked (no newer credential on it), and
        // only of the credential it was revoked with: an older record (a
        // grant switched away from, asked again on a schedule) never moves it.
        if let Some(mut row) = conns::get(tx.conn(), &r.tenant, &r.connection_id).await? {
            let about_current = r.credential_version == row.credential_version;
            let to = match (verdict, row.status) {
                (Some(Verdict::StillAccepted), Status::Revoked) if about_current => {
                    Some(Status::RevocationFailed)
                }
                (Some(Verdict::VerifiedRejected), Status::RevocationFailed) if about_current => {
                    Some(Status::Revoked)
                }
                _ => None,
            };
            if let Some(to) = to {
                let from = row.status;
                row.status = to;
                let old = row.version;
                row.version += 1;
                row.updated_at = now_ms();
                if conns::update(tx.conn(), &row, old).await? {
                    status_changed(&mut tx, ctx, &row, from, "revocation", None).await?;
                }
            }
            let event = match verdict {
                Some(Verdict::VerifiedRejected) => Some(EventType::ConnectionRevocationVerified),
                Some(Verdict::StillAccepted) => Some(EventType::ConnectionRevocationUnverified),
                _ => None,
            };
            if let Some(e) = event {
                let mut data = connection_data(&row);
                if let Some(m) = data.as_object_mut() {
                    m.insert("revocation_id".into(), r.id.clone().into());
                    m.insert("fingerprint".into(), json!(r.fingerprint));
                }
                emit(&mut tx, &r.tenant, e, data).await?;
            }
        }
        tx.commit().await
    }

    /// Whether the connection's current credential still works where it
    /// is used: Some(false) refused (proof it is dead), Some(true)
    /// accepted, None no answer. For a revocation cut short by a crash:
    /// was the provider's revocation call made before it?
    pub(crate) async fn current_accepted(
        &self,
        row: &ConnectionRow,
        material: BTreeMap<String, SecretString>,
    ) -> Option<bool> {
        let as_revoked = RevocationRow {
            id: String::new(),
            tenant: row.tenant.clone(),
            connection_id: row.id.clone(),
            credential_version: row.credential_version,
            kind: row.kind.as_str().to_string(),
            meta: row.credential_meta.clone(),
            fingerprint: None,
            scopes: row.scopes.clone(),
            params: None,
            probe_url: None,
            oauth_target: None,
            method: rekey_core::revocation::RevocationMethod::Provider,
            state: RevocationState::Revoked,
            steps: "[]".into(),
            requested_at: 0,
            requested_by: String::new(),
            revoked_at: None,
            revoked_by: None,
            verdict: None,
            evidence: None,
            verified_at: None,
            verify_due_at: None,
            verify_attempts: 0,
            lease_owner: None,
            lease_until: None,
        };
        match verdict_of(&self.try_old(row, &as_revoked, material).await) {
            Some(Verdict::VerifiedRejected) => Some(false),
            Some(Verdict::StillAccepted) => Some(true),
            _ => None,
        }
    }

    /// Try the old material the way its kind is used.
    async fn try_old(
        &self,
        conn: &ConnectionRow,
        r: &RevocationRow,
        material: BTreeMap<String, SecretString>,
    ) -> Vec<Check> {
        let now = now_ms();
        let kind: ConnectionKind = match r.kind.parse() {
            Ok(k) => k,
            Err(e) => return vec![Check::not_tried("credential", e.public_message(), now)],
        };
        // The connection as it was: the old kind and non-secret fields,
        // and where the credential was used then (a connection pointed
        // elsewhere since must not receive the old secret, nor vouch for it).
        let mut old = conn.clone();
        old.kind = kind;
        old.credential_meta = r.meta.clone();
        if let Some(p) = &r.params {
            old.params = p.clone();
            old.probe_url = r.probe_url.clone();
        }
        if kind.is_static() {
            return vec![match self.probe_with(&old, material).await {
                Ok(o) => Check::of("credential", &o, now),
                Err(why) => Check::not_tried("credential", why, now),
            }];
        }
        // The app's endpoints changed since the revocation: the old tokens
        // are not sent to where they were never issued (nor may that place
        // vouch for them).
        if let Some(then) = &r.oauth_target {
            let now_target = match old.integration_id() {
                Some(iid) => self
                    .integration_row(&old.tenant, &iid)
                    .await
                    .ok()
                    .map(|i| super::oauth_target_of(&i)),
                None => None,
            };
            if now_target.as_deref() != Some(then.as_str()) {
                return vec![Check::not_tried(
                    "credential",
                    "the OAuth app's provider, parameters or endpoints changed since the \
                     revocation; rekey tries the old tokens only where they were issued"
                        .into(),
                    now,
                )];
            }
        }
        let mut checks = Vec::new();
        if let Some(rt) = material.get("refresh_token") {
            checks.push(self.try_old_refresh(&old, rt).await);
        }
        match material.get("access_token") {
            Some(at) => {
                let mut c = match self.probe_access_token(&old, at).await {
                    Ok(o) => Check::of("access_token", &o, now),
                    Err(why) => Check::not_tried("access_token", why, now),
                };
                if c.result == "accepted" {
                    c.expires_at = OAuthMeta::from_column(&r.meta).access_expires_at;
                }
                checks.push(c);
            }
            None if checks.is_empty() => checks.push(Check::not_tried(
                "credential",
                "the grant held no token to try".into(),
                now,
            )),
            None => {}
        }
        checks
    }

    /// The old refresh token at the token endpoint: `invalid_grant` is the
    /// proof. New tokens it still yields are revoked at once (best effort).
    async fn try_old_refresh(&self, old: &ConnectionRow, rt: &SecretString) -> Check {
        let now = now_ms();
        let res: Result<_, Error> = async {
            let iid = old
                .integration_id()
                .ok_or_else(|| Error::internal("OAuth connection without integration"))?;
            let integ = self.integration_row(&old.tenant, &iid).await?;
            let resolved = self.resolve(&integ).await?;
            let auth = self.client_auth(&integ).await?;
            Ok((
                rekey_oauth::refresh(&self.inner.http, &resolved.token_url, &auth, rt).await,
                iid,
            ))
        }
        .await;
        match res {
            Err(e) => Check::not_tried("refresh_token", e.public_message(), now),
            Ok((Err(e), _)) => {
                let mut c = Check::of(
                    "refresh_token",
                    &Observation::from_oauth(&e, &[rt.expose()]),
                    now,
                );
                // Only `invalid_grant` speaks of the token: `invalid_client`
                // and the like say the app's own login failed (a changed
                // secret or client id), which proves nothing about it.
                let of_grant = matches!(&e, rekey_oauth::OAuthError::Provider { error, .. } if error == "invalid_grant");
                if c.result == "rejected" && !of_grant {
                    c.result = "no_answer".into();
                    c.message = format!(
                        "not proof the token is dead (only invalid_grant is): {}",
                        c.message
                    );
                }
                c
            }
            Ok((Ok(tokens), iid)) => {
                let mut fresh = vec![("access_token", tokens.access_token.clone())];
                if let Some(t) = &tokens.refresh_token {
                    fresh.push(("refresh_token", t.clone()));
                }
                let ctx = Ctx::worker(&old.tenant, "revocation");
                self.revoke_at_provider(&ctx, &old.id, &iid, fresh).await;
                Check::of("refresh_token", &Observation::ok(), now)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_check_results() {
        let check = |outcome, code: &str| {
            Check::of(
                "credential",
                &Observation::failed(outcome, code, String::new()),
                0,
            )
            .result
        };
        assert_eq!(check(Outcome::AuthFailure, "auth_rejected"), "rejected");
        assert_eq!(check(Outcome::Transient, "timeout"), "no_answer");
        assert_eq!(
            check(Outcome::Unexpected, "probe_misconfigured"),
            "not_tried"
        );
        assert_eq!(
            check(Outcome::Unexpected, "unexpected_response"),
            "no_answer"
        );
        // A database took the old password, then a statement failed: the
        // credential is still accepted, not "no answer" retried forever.
        assert_eq!(
            check(Outcome::Unexpected, crate::health::LOGGED_IN_QUERY_FAILED),
            "accepted"
        );
        assert_eq!(
            Check::of("credential", &Observation::ok(), 0).result,
            "accepted"
        );
    }
}
