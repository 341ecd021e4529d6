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

use super::{method_of, not_found, INTEGRATION_PREFIX};
use crate::audit::{record, record_ok};
use crate::model::Integration;
use crate::{Ctx, Rekey};
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::ConnectionKind;
use rekey_core::time::now_ms;
use rekey_core::{ids, Error, ErrorCode, SecretString};
use rekey_crypto::Aad;
use rekey_oauth::{CheckGrant, ClientAuth, ClientAuthCheck, ClientAuthMethod};
use rekey_store::integrations as store;
use rekey_store::secrets;
use rekey_store::WriteTx;
use serde_json::json;
use std::collections::BTreeMap;

/// Where a generated key waits for its registration at the provider,
/// sealed (JSON `{"private_key_pem", "key_id"}`) under the integration's id.
pub(super) const PENDING_KIND: &str = "integration_pending";

fn pending_aad(tenant: &str, id: &str) -> Aad {
    Aad::new(tenant, PENDING_KIND, id, "private_key", 1)
}

fn no_pending(id: &str) -> Error {
    Error::conflict(
        ErrorCode::NoPendingSecret,
        format!("integration {id} has no generated key waiting to be confirmed"),
    )
}

/// The new client credential: a secret, or for `private_key_jwt` a PEM
/// private key (with its `kid`, when the provider wants one).
#[derive(Default)]
pub struct NewClientSecret {
    pub client_secret: Option<String>,
    pub private_key_pem: Option<String>,
    pub key_id: Option<String>,
    /// `private_key_jwt`: rekey generates the key pair and answers the
    /// public JWK to register at the provider; `confirm` then tests it.
    pub generate_key: bool,
}

/// The outcome of a rotation: the integration as it now is, how the new
/// secret was tested, and both fingerprints (never the secrets).
#[derive(Debug, Clone)]
pub struct ClientSecretRotation {
    pub integration: Integration,
    /// `rotated`, or `awaiting_registration` (a generated key waits to be
    /// registered at the provider, then confirmed).
    pub state: &'static str,
    /// `client_credentials` (a token was issued with the new secret) or
    /// `authorization_code` (an unknown code was refused as `invalid_grant`,
    /// which the provider says only after the client authenticated); none
    /// before the test.
    pub tested_with: Option<&'static str>,
    /// A generated key's public half, to register at the provider.
    pub public_jwk: Option<serde_json::Value>,
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
        let row = self.integration_for_rotation(&ctx.tenant, id).await?;
        let method = method_of(&row)?;
        let wants_key = method == ClientAuthMethod::PrivateKeyJwt;
        if let Some(k) = &req.key_id {
            if !wants_key || k.is_empty() || k.len() > 200 || k.chars().any(char::is_control) {
                return Err(Error::invalid(
                    ErrorCode::InvalidField,
                    "`key_id` is 1–200 printable characters, for private_key_jwt only",
                ));
            }
        }
        match (wants_key, req.generate_key, &req.client_secret, &req.private_key_pem) {
            (true, true, None, None) => return self.stage_generated_key(ctx, &row, req.key_id).await,
            (true, false, None, Some(_)) | (false, false, Some(_), None) => {}
            (true, _, _, _) => {
                return Err(Error::invalid(
                    ErrorCode::InvalidField,
                    "this integration authenticates with private_key_jwt: give the new `private_key_pem` (and `key_id` if the provider needs one), or `generate_key: true` for rekey to make one",
                ))
            }
            (false, _, _, _) => {
                return Err(Error::invalid(
                    ErrorCode::InvalidField,
                    "give the new `client_secret` (and nothing else: this integration does not use a private key)",
                ))
            }
        }
        let provider = self.oauth_provider(&row.provider)?.clone();
        let secret =
            self.validate_secret_for(&provider, &row, &req.client_secret, &req.private_key_pem)?;
        let key_id = req.key_id.clone().or_else(|| row.key_id.clone());
        self.test_and_switch(ctx, &row, method, secret, key_id, None)
            .await
    }

    /// Test the generated key waiting for registration and switch to it.
    /// 409 `no_pending_secret` when there is none; a refusal keeps it
    /// waiting (register it, then confirm again).
    pub async fn confirm_client_secret(
        &self,
        ctx: &Ctx,
        id: &str,
    ) -> Result<ClientSecretRotation, Error> {
        let row = self.integration_for_rotation(&ctx.tenant, id).await?;
        let (pem, key_id, seen) = self.pending_key(&row).await?;
        let method = method_of(&row)?;
        if method != ClientAuthMethod::PrivateKeyJwt {
            return Err(Error::conflict(
                ErrorCode::NoPendingSecret,
                format!("integration {} no longer authenticates with private_key_jwt; discard the generated key", row.id),
            ));
        }
        self.test_and_switch(ctx, &row, method, pem, key_id, Some(seen))
            .await
    }

    /// The generated key waiting for registration, as it was answered when
    /// made (public JWK and fingerprint; never the private key), for an
    /// operator who lost that answer. 409 `no_pending_secret` without one.
    pub async fn pending_client_key(
        &self,
        ctx: &Ctx,
        id: &str,
    ) -> Result<ClientSecretRotation, Error> {
        let row = self.integration_for_rotation(&ctx.tenant, id).await?;
        let (pem, key_id, _) = self.pending_key(&row).await?;
        let jwk = crate::rsa_key::public_jwk(&pem, key_id.as_deref())?;
        let new_fingerprint = crate::rsa_key::derive(&pem, None)?.fingerprint;
        let old = self.client_auth(&row).await?;
        let old_fingerprint = crate::rsa_key::derive(&old.secret, None)
            .map(|i| i.fingerprint)
            .unwrap_or_default();
        Ok(ClientSecretRotation {
            integration: Integration::new(row, &self.default_redirect_uri()),
            state: "awaiting_registration",
            tested_with: None,
            public_jwk: Some(jwk),
            old_fingerprint,
            new_fingerprint,
            connections: 0,
        })
    }

    /// Forget the generated key waiting for registration. 409
    /// `no_pending_secret` when there is none.
    pub async fn discard_client_secret(&self, ctx: &Ctx, id: &str) -> Result<(), Error> {
        let id = ids::parse_id(INTEGRATION_PREFIX, id)?;
        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(&mut tx, rekey_store::Locked::Integration, &ctx.tenant, &id).await?;
        store::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        if secrets::for_owner(tx.conn(), PENDING_KIND, &id)
            .await?
            .is_empty()
        {
            return Err(no_pending(&id));
        }
        secrets::delete_owner(tx.conn(), PENDING_KIND, &id).await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::IntegrationSecretDiscard,
            &id,
            json!({}),
        )
        .await?;
        tx.commit().await
    }

    async fn integration_for_rotation(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<store::IntegrationRow, Error> {
        let id = ids::parse_id(INTEGRATION_PREFIX, id)?;
        let mut c = self.store().read().await?;
        store::get(&mut c, tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))
    }

    /// Generate the new key pair (off the async threads: about a second)
    /// and keep it sealed as the integration's pending key.
    async fn stage_generated_key(
        &self,
        ctx: &Ctx,
        row: &store::IntegrationRow,
        key_id: Option<String>,
    ) -> Result<ClientSecretRotation, Error> {
        let pem = tokio::task::spawn_blocking(crate::rsa_key::generate)
            .await
            .map_err(Error::internal)??;
        let jwk = crate::rsa_key::public_jwk(&pem, key_id.as_deref())?;
        let kid = jwk["kid"].as_str().map(str::to_string);
        let fingerprint = crate::rsa_key::derive(&pem, None)?.fingerprint;
        let payload =
            SecretString::new(json!({"private_key_pem": pem.expose(), "key_id": kid}).to_string());
        let mut tx = self.store().begin_write().await?;
        rekey_store::lock_row(
            &mut tx,
            rekey_store::Locked::Integration,
            &ctx.tenant,
            &row.id,
        )
        .await?;
        let now_row = store::get(tx.conn(), &ctx.tenant, &row.id)
            .await?
            .ok_or_else(|| not_found(&row.id))?;
        let sealed = crate::sealing::seal_row(
            &*self.keyring()?,
            &pending_aad(&now_row.tenant, &now_row.id),
            &payload,
        );
        secrets::delete_owner(tx.conn(), PENDING_KIND, &now_row.id).await?;
        secrets::insert(tx.conn(), &sealed).await?;
        let old = self.client_auth(&now_row).await?;
        let method = method_of(&now_row)?;
        let old_fingerprint = self
            .client_fingerprint(&mut tx, method, &old.secret)
            .await?;
        record_ok(
            &mut tx,
            ctx,
            AuditAction::IntegrationSecretStage,
            &now_row.id,
            json!({"new_fingerprint": fingerprint, "key_id": kid}),
        )
        .await?;
        tx.commit().await?;
        Ok(ClientSecretRotation {
            integration: Integration::new(now_row, &self.default_redirect_uri()),
            state: "awaiting_registration",
            tested_with: None,
            public_jwk: Some(jwk),
            old_fingerprint,
            new_fingerprint: fingerprint,
            connections: 0,
        })
    }

    /// The pending generated key and its `kid`.
    async fn pending_key(
        &self,
        row: &store::IntegrationRow,
    ) -> Result<(SecretString, Option<String>, Vec<u8>), Error> {
        let rows = {
            let mut c = self.store().read().await?;
            secrets::for_owner(&mut c, PENDING_KIND, &row.id).await?
        };
        let s = rows.first().ok_or_else(|| no_pending(&row.id))?;
        let payload =
            crate::sealing::open_row(&*self.keyring()?, &pending_aad(&row.tenant, &row.id), s)
                .map_err(|e| {
                Error::DecryptionFailed(format!(
                    "pending key of integration {} failed to decrypt: {e}",
                    row.id
                ))
            })??;
        let v: serde_json::Value =
            serde_json::from_str(payload.expose()).map_err(Error::internal)?;
        let pem = v["private_key_pem"]
            .as_str()
            .map(|p| SecretString::new(p.to_string()))
            .ok_or_else(|| Error::internal("pending key without its PEM"))?;
        Ok((
            pem,
            v["key_id"].as_str().map(str::to_string),
            s.ciphertext.clone(),
        ))
    }

    /// Ask the token endpoint whether `secret` works, then make it the
    /// integration's in one transaction, which also drops any generated key
    /// waiting (`from_pending`: the sealed key tested, which must still be
    /// the one waiting).
    async fn test_and_switch(
        &self,
        ctx: &Ctx,
        row: &store::IntegrationRow,
        method: ClientAuthMethod,
        secret: SecretString,
        key_id: Option<String>,
        from_pending: Option<Vec<u8>>,
    ) -> Result<ClientSecretRotation, Error> {
        let id = row.id.clone();
        let wants_key = method == ClientAuthMethod::PrivateKeyJwt;
        let provider = self.oauth_provider(&row.provider)?.clone();
        let old = self.client_auth(row).await?;
        if old.secret.expose() == secret.expose() {
            return Err(Error::unprocessable(
                ErrorCode::InvalidField,
                "that is the integration's current secret: make a new one in the provider's console",
            ));
        }
        let resolved = self.resolve(row).await?;
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
        let control = ClientAuth {
            secret: control_credential(method).await?,
            key_id: Some("rekey-control".into()),
            ..candidate.clone()
        };
        let verdict = rekey_oauth::check_client_auth(
            &self.inner.http,
            &resolved.token_url,
            &candidate,
            &control,
            grant,
        )
        .await;
        let scrub = |text: &str| {
            rekey_core::scrub::scrub_text(text, &[secret.expose(), old.secret.expose()])
        };
        let refusal = match verdict {
            Ok(ClientAuthCheck::Accepted) => None,
            // The provider's words may echo what was presented: scrubbed
            // of the new and old secrets (and anything secret-looking).
            Ok(ClientAuthCheck::Rejected(why)) => Some(Error::unprocessable(
                ErrorCode::ClientSecretRejected,
                format!(
                    "{} refused the new client {}: {}. Nothing changed; check that it was made for client `{}` and copied whole",
                    provider.display_name,
                    if wants_key { "key" } else { "secret" },
                    scrub(&why),
                    row.client_id
                ),
            )),
            Err(e) => Some(crate::oauth_error(e, |e| {
                Error::unprocessable(
                    ErrorCode::ClientSecretUntested,
                    format!(
                        "the new client secret could not be tested at {}'s token endpoint ({}). Nothing changed; try again",
                        provider.display_name,
                        scrub(&e.to_string())
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
        if let Some(seen) = &from_pending {
            let waiting = secrets::for_owner(tx.conn(), PENDING_KIND, &id).await?;
            if waiting.first().map(|w| &w.ciphertext) != Some(seen) {
                return Err(Error::conflict(
                    ErrorCode::NoPendingSecret,
                    format!("integration {id}'s generated key was discarded or replaced meanwhile; look again"),
                ));
            }
        }
        secrets::delete_owner(tx.conn(), PENDING_KIND, &id).await?;
        let mut now_row = store::get(tx.conn(), &ctx.tenant, &id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        // Any change since the test (client id, endpoints, method, secret)
        // may make the test say nothing about the integration as it is.
        if now_row.version != row.version {
            return Err(Error::conflict(
                ErrorCode::VersionConflict,
                format!("integration {id} was changed while its new secret was tested; try again"),
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
        record_ok(
            &mut tx,
            ctx,
            AuditAction::IntegrationSecretRotate,
            &id,
            json!({"old_fingerprint": old_fingerprint, "new_fingerprint": new_fingerprint,
                   "tested_with": tested_with, "connections": connections, "version": now_row.version}),
        )
        .await?;
        tx.commit().await?;
        Ok(ClientSecretRotation {
            integration: Integration::new(now_row, &self.default_redirect_uri()),
            state: "rotated",
            tested_with: Some(tested_with),
            public_jwk: None,
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

/// A client credential no provider has registered, for the control request
/// of [`rekey_oauth::check_client_auth`]: a random secret, or for
/// `private_key_jwt` a key made once per process (generating one takes
/// about a second).
async fn control_credential(method: ClientAuthMethod) -> Result<SecretString, Error> {
    static CONTROL_KEY: tokio::sync::OnceCell<SecretString> = tokio::sync::OnceCell::const_new();
    if method != ClientAuthMethod::PrivateKeyJwt {
        return Ok(SecretString::new(format!(
            "rekey-control-{}",
            rekey_oauth::random_token()
        )));
    }
    CONTROL_KEY
        .get_or_try_init(|| async {
            tokio::task::spawn_blocking(crate::rsa_key::generate)
                .await
                .map_err(Error::internal)?
        })
        .await
        .cloned()
}
