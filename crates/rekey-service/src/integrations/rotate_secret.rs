//! Rotating an integration's client secret (or its `private_key_jwt` key):
//! the operator makes the new one in the provider's console and hands it to
//! rekey, which first asks the provider's token endpoint whether it works
//! and only then makes it the one every connection of the integration uses.
//! A refused or untestable secret changes nothing. The old secret is then
//! deleted in the provider's console (rekey cannot do that for them).
//!
//! Crash-safe by construction: nothing is written before the test, and the
//! switch is one transaction (compare-and-set on the integration's
//! version), so a crash leaves either the old secret or the new one.

use super::{not_found, view, Fields, INTEGRATION_PREFIX};
use crate::audit::record;
use crate::{Ctx, Rekey};
use rekey_api::{EndpointOverrides, IntegrationView};
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::ConnectionKind;
use rekey_core::time::now_ms;
use rekey_core::{ids, Error, ErrorCode, SecretString};
use rekey_oauth::{CheckGrant, ClientAuth, ClientAuthCheck, ClientAuthMethod};
use rekey_store::integrations as store;
use rekey_store::WriteTx;
use serde_json::json;
use std::collections::BTreeMap;

/// The new client credential: a secret, or for `private_key_jwt` a PEM
/// private key (with its `kid`, when the provider wants one).
#[derive(Default)]
pub struct NewClientSecret {
    pub client_secret: Option<String>,
    pub private_key_pem: Option<String>,
    pub key_id: Option<String>,
}

/// The outcome of a rotation: the integration as it now is, how the new
/// secret was tested, and both fingerprints (never the secrets).
#[derive(Debug, Clone)]
pub struct ClientSecretRotation {
    pub integration: IntegrationView,
    /// `client_credentials` (a token was issued with the new secret) or
    /// `authorization_code` (an unknown code was refused as `invalid_grant`,
    /// which the provider says only after the client authenticated).
    pub tested_with: &'static str,
    pub old_fingerprint: String,
    pub new_fingerprint: String,
    /// Connections that use the integration, and now the new secret.
    pub connections: i64,
}

impl Rekey {
    /// Test a new client secret at the provider and switch the integration
    /// to it. 422 `client_secret_rejected` when the provider refuses it,
    /// `client_secret_untested` when it could not say; nothing changes then.
    pub async fn rotate_client_secret(
        &self,
        ctx: &Ctx,
        id: &str,
        req: NewClientSecret,
    ) -> Result<ClientSecretRotation, Error> {
        let id = ids::parse_id(INTEGRATION_PREFIX, id)?;
        let row = {
            let mut c = self.store().read().await?;
            store::get(&mut c, &ctx.tenant, &id)
                .await?
                .ok_or_else(|| not_found(&id))?
        };
        let provider = self.oauth_provider(&row.provider)?.clone();
        let method = ClientAuthMethod::parse(&row.auth_method)
            .ok_or_else(|| Error::internal("stored auth method unknown"))?;
        let wants_key = method == ClientAuthMethod::PrivateKeyJwt;
        match (wants_key, &req.client_secret, &req.private_key_pem) {
            (true, None, Some(_)) | (false, Some(_), None) => {}
            (true, _, _) => {
                return Err(Error::invalid(
                    ErrorCode::InvalidField,
                    "this integration authenticates with private_key_jwt: give the new `private_key_pem` (and `key_id` if the provider needs one), not a `client_secret`",
                ))
            }
            (false, _, _) => {
                return Err(Error::invalid(
                    ErrorCode::InvalidField,
                    "give the new `client_secret` (and nothing else: this integration does not use a private key)",
                ))
            }
        }
        if let Some(k) = &req.key_id {
            if !wants_key || k.is_empty() || k.len() > 200 || k.chars().any(char::is_control) {
                return Err(Error::invalid(
                    ErrorCode::InvalidField,
                    "`key_id` is 1–200 printable characters, for private_key_jwt only",
                ));
            }
        }
        let params: BTreeMap<String, String> =
            serde_json::from_str(&row.params).unwrap_or_default();
        let endpoints: EndpointOverrides = serde_json::from_str(&row.endpoints).unwrap_or_default();
        let secret = self.validate_fields(
            &provider,
            &Fields {
                method: &row.auth_method,
                secret: &req.client_secret,
                pem: &req.private_key_pem,
                params: &params,
                scopes: &row.scopes,
                endpoints: &endpoints,
                redirect: &row.redirect_uri,
            },
        )?;
        let old = self.client_auth(&row).await?;
        if old.secret.expose() == secret.expose() {
            return Err(Error::unprocessable(
                ErrorCode::InvalidField,
                "that is the integration's current secret: make a new one in the provider's console",
            ));
        }
        let key_id = req.key_id.clone().or_else(|| row.key_id.clone());
        let resolved = self.resolve(&row).await?;
        let kinds = {
            let mut c = self.store().read().await?;
            store::connection_kinds_using(&mut c, &ctx.tenant, &id).await?
        };
        let m2m = kinds
            .iter()
            .any(|k| k == ConnectionKind::OAuth2ClientCredentials.as_str());
        let redirect = row
            .redirect_uri
            .clone()
            .unwrap_or_else(|| self.default_redirect_uri());
        let (grant, tested_with) = if m2m {
            (
                CheckGrant::ClientCredentials {
                    scopes: &row.scopes,
                    sep: &resolved.spec.scope_separator,
                },
                "client_credentials",
            )
        } else {
            (
                CheckGrant::UnknownCode {
                    redirect_uri: &redirect,
                },
                "authorization_code",
            )
        };
        let candidate = ClientAuth {
            client_id: row.client_id.clone(),
            method,
            secret: secret.clone(),
            key_id: key_id.clone(),
        };
        let verdict = rekey_oauth::check_client_auth(
            &self.inner.http,
            &resolved.token_url,
            &candidate,
            grant,
        )
        .await;
        let refusal = match verdict {
            Ok(ClientAuthCheck::Accepted) => None,
            Ok(ClientAuthCheck::Rejected(why)) => Some(Error::unprocessable(
                ErrorCode::ClientSecretRejected,
                format!(
                    "{} refused the new client {}: {why}. Nothing changed; check that it was made for client `{}` and copied whole",
                    provider.display_name,
                    if wants_key { "key" } else { "secret" },
                    row.client_id
                ),
            )),
            Err(e) => Some(crate::oauth_error(e, |e| {
                Error::unprocessable(
                    ErrorCode::ClientSecretUntested,
                    format!(
                        "the new client secret could not be tested at {}'s token endpoint ({e}). Nothing changed; try again",
                        provider.display_name
                    ),
                )
            })),
        };
        if let Some(e) = refusal {
            self.audit_secret_attempt(ctx, &id, &e).await;
            return Err(e);
        }

        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(&mut tx, rekey_store::Locked::Integration, &ctx.tenant, &id).await?;
        let mut now_row = store::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        if now_row.credential_version != row.credential_version
            || now_row.auth_method != row.auth_method
        {
            return Err(Error::conflict(
                ErrorCode::VersionConflict,
                format!("integration {id}'s secret was changed meanwhile; look again"),
            ));
        }
        let old_fingerprint = self
            .client_fingerprint(&mut tx, method, &old.secret)
            .await?;
        let new_fingerprint = self.client_fingerprint(&mut tx, method, &secret).await?;
        let old_version = now_row.version;
        now_row.credential_version += 1;
        now_row.version += 1;
        now_row.key_id = key_id;
        now_row.updated_at = now_ms();
        self.write_integration_secret(&mut tx, &now_row, &secret)
            .await?;
        if !store::update(tx.conn(), &now_row, old_version).await? {
            return Err(Error::conflict(
                ErrorCode::VersionConflict,
                format!("integration {id} was changed concurrently"),
            ));
        }
        let connections = store::connections_using(tx.conn(), &ctx.tenant, &id).await?;
        record(
            &mut tx,
            ctx,
            AuditAction::IntegrationSecretRotate,
            Some(&id),
            AuditOutcome::Ok,
            json!({"old_fingerprint": old_fingerprint, "new_fingerprint": new_fingerprint,
                   "tested_with": tested_with, "connections": connections, "version": now_row.version}),
        )
        .await?;
        tx.commit().await?;
        Ok(ClientSecretRotation {
            integration: view(&now_row, &self.default_redirect_uri()),
            tested_with,
            old_fingerprint,
            new_fingerprint,
            connections,
        })
    }

    /// A refused rotation is evidence too (someone holds a secret that
    /// does not work); best effort, the caller's error is what matters.
    async fn audit_secret_attempt(&self, ctx: &Ctx, id: &str, e: &Error) {
        let res = async {
            let mut tx = self.store().begin_write().await?;
            record(
                &mut tx,
                ctx,
                AuditAction::IntegrationSecretRotate,
                Some(id),
                AuditOutcome::Error,
                json!({"code": e.code().as_str()}),
            )
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(err) = res {
            tracing::warn!(error = %err, integration = id, "could not audit a refused client-secret rotation");
        }
    }

    /// The secret's fingerprint: a key's `SHA256:` public-key fingerprint,
    /// else the keyed hash used for credential versions.
    async fn client_fingerprint(
        &self,
        tx: &mut WriteTx,
        method: ClientAuthMethod,
        secret: &SecretString,
    ) -> Result<String, Error> {
        if method == ClientAuthMethod::PrivateKeyJwt {
            if let Ok(info) = crate::rsa_key::derive(secret, None) {
                return Ok(info.fingerprint);
            }
        }
        let mut secrets = BTreeMap::new();
        secrets.insert("client_secret".to_string(), secret.clone());
        Ok(self
            .fingerprint(tx, ConnectionKind::ApiKey, &Default::default(), &secrets)
            .await?
            .value)
    }
}
