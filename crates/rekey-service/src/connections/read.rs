//! Reading connections: one, a filtered page, and the credential
//! material itself (always audited).

use crate::connection_rows::not_found;
use crate::hot::CachedConnection;
use crate::model::Credentials;
use crate::{CachedPrincipal, Connection, ConnectionPage, Ctx, Principal, Rekey};
use rekey_api::ConnectionQuery;
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::credentials;
use rekey_core::scope::Scope;
use rekey_core::time::parse_rfc3339;
use rekey_core::ErrorCode;
use rekey_core::{ids, Error};
use rekey_store::connections::{self as store, ConnectionFilter, ConnectionRow};
use rekey_store::health_notes;
use rekey_store::secrets::SecretRow;
use rekey_store::ReadCheck;
use serde_json::{json, Value};

impl Rekey {
    pub async fn get_connection(&self, tenant: &str, id: &str) -> Result<Connection, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        let mut c = self.store().read().await?;
        let row = store::get(&mut c, tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        let notes = health_notes::get(&mut c, tenant, &id).await?;
        Ok(Connection { row, notes })
    }

    pub async fn list_connections(
        &self,
        tenant: &str,
        q: &ConnectionQuery,
    ) -> Result<ConnectionPage, Error> {
        let limit = crate::paging::limit(q.limit, 200)?;
        let after_id = crate::paging::after_id(q.cursor.as_deref(), ids::CONNECTION)?;
        let f = ConnectionFilter {
            after_id,
            // One more than asked: a cursor only when another page exists.
            limit: limit + 1,
            ..connection_filter(q)?
        };
        let mut c = self.store().read().await?;
        let mut rows = store::list(&mut c, tenant, &f).await?;
        let next_cursor = crate::paging::next_cursor(&mut rows, limit, |r| r.id.as_str());
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let notes = health_notes::for_connections(&mut c, tenant, &ids).await?;
        let items = rows
            .into_iter()
            .map(|row| {
                let notes = notes.iter().find(|n| n.connection_id == row.id).cloned();
                Connection { row, notes }
            })
            .collect();
        Ok(ConnectionPage { items, next_cursor })
    }

    /// Decrypt a connection's material. Every call is audited — granted,
    /// denied or failed — and the audit entry commits before the secret is
    /// returned.
    pub async fn read_credentials(
        &self,
        p: &Principal,
        ctx: &Ctx,
        id: &str,
    ) -> Result<Credentials, Error> {
        let id = ids::parse_id(ids::CONNECTION, id)?;
        if let Err(e) = p.require(Scope::CredentialsRead) {
            self.audit_read(
                ctx,
                &id,
                AuditOutcome::Denied,
                json!({"reason": "missing_scope"}),
            )
            .await?;
            return Err(e);
        }
        let (row, rows) = self.load_secret_rows(&ctx.tenant, &id).await?;
        self.refuse_out_of_service(ctx, &id, row.status).await?;
        let material = if row.kind.is_static() {
            self.static_material(&row, &rows)
        } else {
            self.oauth_material(ctx, &row).await
        };
        let (version, material) = match material {
            Ok(m) => m,
            Err(e) => {
                self.audit_read(ctx, &id, AuditOutcome::Error, json!({"error": e.code()}))
                    .await?;
                return Err(e);
            }
        };
        self.audit_read(
            ctx,
            &id,
            AuditOutcome::Ok,
            json!({"credential_version": version}),
        )
        .await?;
        Ok(Credentials {
            connection_id: id,
            kind: row.kind,
            version,
            material,
        })
    }

    /// [`Rekey::read_credentials`] for a caller from the key cache: served
    /// from the hot path's caches when they hold the key and the
    /// connection, its entry written only if both are still as cached in
    /// the transaction that writes it ([`crate::hot`]). Anything the cached
    /// path does not settle — a miss, a stale entry, a refusal, an error,
    /// a token due for refresh — is decided by the full path from the
    /// database, after the key is proven active.
    pub async fn read_credentials_cached(
        &self,
        cp: &CachedPrincipal,
        ctx: &Ctx,
        id: &str,
    ) -> Result<Credentials, Error> {
        // Every answer but the secret goes to a key proven active: a revoked
        // key still in this replica's cache gets 401, as everywhere else,
        // not a 400 or a 404 that would tell it anything.
        let id = match ids::parse_id(ids::CONNECTION, id) {
            Ok(id) => id,
            Err(e) => {
                Box::pin(self.confirm(cp)).await?;
                return Err(e);
            }
        };
        match self.cached_read(cp, ctx, &id).await {
            Ok(Some(c)) => return Ok(c),
            Ok(None) => {}
            Err(e) => {
                Box::pin(self.confirm(cp)).await?;
                return Err(e);
            }
        }
        // The full path, boxed: its state (several KiB) would otherwise
        // be part of this future, moved and copied on every cached read.
        let p = Box::pin(self.confirm(cp)).await?;
        self.inner.hot.forget_connection(&ctx.tenant, &id);
        Box::pin(self.read_credentials(&p, ctx, &id)).await
    }

    /// The cached path: Some when served (and audited), None when the full
    /// path must decide. Errs only when the audit log cannot be written.
    async fn cached_read(
        &self,
        cp: &CachedPrincipal,
        ctx: &Ctx,
        id: &str,
    ) -> Result<Option<Credentials>, Error> {
        if !cp.principal.scopes.allows(Scope::CredentialsRead) {
            return Ok(None);
        }
        let cached = match self.inner.hot.connection(&ctx.tenant, id) {
            Some(c) => c,
            // A miss, boxed: see `read_credentials_cached`.
            None => match Box::pin(self.load_secret_rows(&ctx.tenant, id)).await {
                Ok((row, secrets)) => self
                    .inner
                    .hot
                    .put_connection(CachedConnection::new(row, secrets)),
                Err(_) => return Ok(None),
            },
        };
        let row = &cached.row;
        if row.status.is_out_of_service() {
            return Ok(None);
        }
        let material = if row.kind.is_static() {
            let Some(meta) = &cached.meta else {
                return Ok(None);
            };
            self.static_material_with(row, &cached.secrets, meta)
        } else if self.oauth_fresh(row).await {
            self.open_secrets(row, &cached.secrets)
                .and_then(|s| self.oauth_view(row, &s))
        } else {
            return Ok(None);
        };
        let Ok((version, material)) = material else {
            return Ok(None);
        };
        let entry = crate::audit::entry(
            ctx,
            AuditAction::CredentialsRead,
            Some(id),
            AuditOutcome::Ok,
            json!({"credential_version": version}),
        );
        let check = ReadCheck {
            api_key_id: cp.principal.key_id.clone(),
            tenant: ctx.tenant.clone(),
            connection_id: id.to_string(),
            connection_version: row.version,
        };
        if !self.store().append_audit_if(entry, Some(check)).await? {
            return Ok(None);
        }
        self.touch(&cp.principal.key_id).await;
        Ok(Some(Credentials {
            connection_id: id.to_string(),
            kind: row.kind,
            version,
            material,
        }))
    }

    /// A static connection's material from its row and sealed secrets.
    fn static_material(
        &self,
        row: &ConnectionRow,
        rows: &[SecretRow],
    ) -> Result<(i64, Value), Error> {
        let meta = serde_json::from_str::<serde_json::Map<String, Value>>(&row.credential_meta)
            .map_err(Error::internal)?;
        self.static_material_with(row, rows, &meta)
    }

    /// [`Rekey::static_material`] with the row's metadata already parsed.
    fn static_material_with(
        &self,
        row: &ConnectionRow,
        rows: &[SecretRow],
        meta: &serde_json::Map<String, Value>,
    ) -> Result<(i64, Value), Error> {
        let sec = self.open_secrets(row, rows)?;
        credentials::assemble(row.kind, meta, &sec).map(|m| (row.credential_version, m))
    }

    /// Once revocation is asked for (or the connection is disabled), no
    /// credential of it is handed out, even while the provider side is
    /// still pending: the refusal is audited as a denied read.
    pub(crate) async fn refuse_out_of_service(
        &self,
        ctx: &Ctx,
        id: &str,
        status: rekey_core::connection::Status,
    ) -> Result<(), Error> {
        if !status.is_out_of_service() {
            return Ok(());
        }
        self.audit_read(
            ctx,
            id,
            AuditOutcome::Denied,
            json!({"reason": status.as_str()}),
        )
        .await?;
        Err(Error::conflict(
            ErrorCode::ConnectionUnusable,
            format!("connection {id} is {status}; its credentials are not handed out"),
        ))
    }

    pub(crate) async fn audit_read(
        &self,
        ctx: &Ctx,
        id: &str,
        outcome: AuditOutcome,
        details: Value,
    ) -> Result<(), Error> {
        // Committed (with whatever other reads are waiting) before the
        // caller answers: no secret leaves without its entry in the chain.
        let entry = crate::audit::entry(
            ctx,
            AuditAction::CredentialsRead,
            Some(id),
            outcome,
            details,
        );
        self.store().append_audit(entry).await
    }
}

/// The connection filter a query asks for, validated (cursor and limit
/// are the caller's to set).
pub(crate) fn connection_filter(q: &ConnectionQuery) -> Result<ConnectionFilter, Error> {
    let slug = |field: &str, v: &Option<String>| -> Result<Option<String>, Error> {
        if let Some(s) = v {
            ids::validate_slug(field, s, 64)?;
        }
        Ok(v.clone())
    };
    Ok(ConnectionFilter {
        provider: slug("provider", &q.provider)?,
        providers: Vec::new(),
        kind: q.kind.as_deref().map(str::parse).transpose()?,
        status: q.status.as_deref().map(str::parse).transpose()?,
        tag: slug("tag", &q.tag)?,
        custody: slug("custody", &q.custody)?,
        owner: q.owner.clone(),
        search: match q.q.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) if t.chars().count() > 100 || t.chars().any(char::is_control) => {
                return Err(Error::invalid(
                    ErrorCode::InvalidSearch,
                    "`q` must be at most 100 printable characters",
                ))
            }
            Some(t) => Some(t.to_string()),
        },
        created_before: q
            .created_before
            .as_deref()
            .map(|s| parse_rfc3339("created_before", s))
            .transpose()?,
        rotated_before: q
            .rotated_before
            .as_deref()
            .map(|s| parse_rfc3339("rotated_before", s))
            .transpose()?,
        integration: q
            .integration
            .as_deref()
            .map(|i| ids::parse_id(ids::INTEGRATION, i))
            .transpose()?,
        last_read_after: q
            .last_read_after
            .as_deref()
            .map(|s| parse_rfc3339("last_read_after", s))
            .transpose()?,
        campaign: None,
        after_id: None,
        limit: 0,
    })
}
