//! Client-credentials (M2M) connections.

use crate::audit::record_ok;
use crate::connect::{access_expiry, token_material};
use crate::webhooks::emit;
use crate::{Connection, Ctx, Rekey};
use rekey_core::audit::AuditAction;
use rekey_core::connection::{ConnectionKind, Status};
use rekey_core::events::EventType;
use rekey_core::time::now_ms;
use rekey_core::Error;
use rekey_core::ErrorCode;
use rekey_store::connections::{self as conns, ConnectionRow};
use serde_json::{json, Value};

impl Rekey {
    /// Create a client-credentials (M2M) connection from an integration; the
    /// first token is requested now, which also proves the client works.
    pub(crate) async fn create_m2m(
        &self,
        ctx: &Ctx,
        req: &rekey_api::CreateConnection,
    ) -> Result<Connection, Error> {
        let integ_id = req
            .credentials
            .get("integration")
            .and_then(Value::as_str)
            .filter(|_| req.credentials.as_object().is_some_and(|o| o.len() == 1))
            .ok_or_else(|| Error::invalid(ErrorCode::InvalidCredentials, "`credentials` must be {\"integration\": \"int_…\"} for oauth2_client_credentials"))?;
        let integ = self.integration_row(&ctx.tenant, integ_id).await?;
        if integ.provider != req.provider {
            return Err(Error::unprocessable(
                ErrorCode::IntegrationProviderMismatch,
                format!(
                    "integration {} is for provider `{}`",
                    integ.id, integ.provider
                ),
            ));
        }
        let resolved = self.resolve(&integ).await?;
        let auth = self.client_auth(&integ).await?;
        let scopes = if req.scopes.is_empty() {
            integ.scopes.clone()
        } else {
            rekey_core::connection::normalize_scopes(&req.scopes)?
        };
        let tokens = rekey_oauth::client_credentials(
            &self.inner.http,
            &resolved.token_url,
            &auth,
            &scopes,
            &resolved.spec.scope_separator,
        )
        .await
        .map_err(|e| {
            crate::oauth_error(e, |e| {
                Error::unprocessable(
                    ErrorCode::TokenRequestFailed,
                    format!(
                        "the provider refused the client-credentials request: {}",
                        rekey_core::scrub::scrub_text(&e.to_string(), &[auth.secret.expose()])
                    ),
                )
            })
        })?;
        let now = now_ms();
        let (meta, s) = token_material(&integ.id, &tokens, now, Default::default());
        let granted = rekey_oauth::granted_scopes(&tokens, None, &resolved.spec.scope_separator)
            .unwrap_or(scopes);
        rekey_core::connection::validate_display_name(&req.display_name)?;
        let row = ConnectionRow {
            owner: rekey_core::connection::Owner {
                subject: Some(integ.client_id.clone()),
                email: None,
                name: Some(integ.display_name.clone()),
            },
            scopes: granted,
            tags: rekey_core::connection::normalize_slugs("tags", &req.tags)?,
            custody: rekey_core::connection::normalize_slugs("custody", &req.custody)?,
            credential_meta: meta.to_column(),
            expires_at: access_expiry(&tokens, now),
            ..ConnectionRow::new(
                &ctx.tenant,
                &integ.provider,
                ConnectionKind::OAuth2ClientCredentials,
                req.display_name.trim(),
                Status::Active,
                now,
            )
        };
        let mut tx = self.store().begin_write().await?;
        conns::insert(tx.conn(), &row).await?;
        self.write_secrets(&mut tx, &row, &s).await?;
        self.record_first_version(&mut tx, ctx, &row, &s).await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::ConnectionCreate,
            &row.id,
            json!({"provider": row.provider, "kind": row.kind.as_str(), "integration": integ.id}),
        )
        .await?;
        emit(
            &mut tx,
            &ctx.tenant,
            EventType::ConnectionCreated,
            crate::webhooks::connection_data(&row),
        )
        .await?;
        tx.commit().await?;
        Ok(row.into())
    }
}
