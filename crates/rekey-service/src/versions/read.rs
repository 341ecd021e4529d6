//! Reading the previous credential during its grace, for consumers that
//! switch keys on their own schedule. Audited like every credential read.

use crate::connection_rows::not_found;
use crate::model::Credentials;
use crate::{Ctx, Principal, Rekey};
use rekey_core::audit::AuditOutcome;
use rekey_core::revocation::{RevocationMethod, RevocationState};
use rekey_core::scope::Scope;
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::versions::VersionLabel;
use rekey_core::{credentials, ids, Error, ErrorCode};
use rekey_store::connections as conn_store;
use rekey_store::credential_versions as store;
use serde_json::{json, Map, Value};

impl Rekey {
    /// The `previous` credential of a connection while its grace lasts.
    pub async fn read_previous_credentials(
        &self,
        p: &Principal,
        ctx: &Ctx,
        id: &str,
    ) -> Result<Credentials, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let denied = |reason: &str| json!({"reason": reason, "label": "previous"});
        if let Err(e) = p.require(Scope::CredentialsRead) {
            self.audit_read(ctx, &id, AuditOutcome::Denied, denied("missing_scope"))
                .await?;
            return Err(e);
        }
        let now = now_ms();
        let mut tx = self.store().begin_snapshot().await?;
        let row = conn_store::get(&mut tx, &ctx.tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        let version = store::with_label(&mut tx, &ctx.tenant, &id, VersionLabel::Previous).await?;
        // A credential someone revoked is never handed out again, grace or
        // not (a rotation's own outgoing credential is revoked only when
        // the rotation retires it, after the grace).
        let revoked = match &version {
            Some(v) => rekey_store::revocations::for_connection(&mut tx, &ctx.tenant, &id)
                .await?
                .iter()
                .any(|r| {
                    r.credential_version == v.seq
                        && !(r.method == RevocationMethod::Rotation
                            && r.state == RevocationState::Open)
                }),
            None => false,
        };
        let readable = version
            .as_ref()
            .filter(|v| !revoked && v.grace_until.is_some_and(|g| g > now));
        let material = match readable {
            Some(v) => Some(self.version_material(&mut tx, v).await),
            None => None,
        };
        tx.commit().await?;
        self.refuse_out_of_service(ctx, &id, row.status).await?;
        let (Some(v), Some(material)) = (readable, material) else {
            let why = match version.and_then(|v| v.grace_until) {
                _ if revoked => "it was revoked".to_string(),
                Some(g) => format!("its grace ended at {}", ms_to_rfc3339(g)),
                None => {
                    "none is kept (a zero grace, an OAuth grant, or no earlier credential)".into()
                }
            };
            self.audit_read(
                ctx,
                &id,
                AuditOutcome::Denied,
                denied("no_previous_version"),
            )
            .await?;
            return Err(Error::not_found(
                ErrorCode::NoPreviousVersion,
                format!("connection {id} has no previous credential to read: {why}"),
            ));
        };
        let assembled = material.and_then(|secrets| {
            let meta: Map<String, Value> =
                serde_json::from_str(&v.meta).map_err(Error::internal)?;
            credentials::assemble(row.kind, &meta, &secrets)
        });
        let credentials = match assembled {
            Ok(m) => m,
            Err(e) => {
                self.audit_read(
                    ctx,
                    &id,
                    AuditOutcome::Error,
                    json!({"error": e.code(), "label": "previous"}),
                )
                .await?;
                return Err(e);
            }
        };
        self.audit_read(
            ctx,
            &id,
            AuditOutcome::Ok,
            json!({"credential_version": v.seq, "label": "previous", "fingerprint": v.fingerprint}),
        )
        .await?;
        Ok(Credentials {
            connection_id: id,
            kind: row.kind,
            version: v.seq,
            material: credentials,
        })
    }
}
