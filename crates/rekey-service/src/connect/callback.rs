//! The authorization-code flow: the redirect to the provider, the
//! callback, and who authorized.

use super::{
    pkce_aad, session_ctx, session_err, token_hash, CallbackOutcome, CallbackParams, Identity,
    SESSION_KIND,
};
use crate::audit::{record, record_ok};
use crate::integrations::Resolved;
use crate::Rekey;
use rekey_core::audit::{AuditAction, AuditOutcome};
use rekey_core::connection::ConnectSessionStatus;
use rekey_core::time::now_ms;
use rekey_core::ErrorCode;
use rekey_core::{Error, SecretString};
use rekey_oauth::{IdTokenCheck, Pkce, TokenSet};
use rekey_store::connect_sessions::{self as store, ConnectSessionRow};
use rekey_store::secrets;
use serde_json::json;
use std::collections::BTreeMap;

impl Rekey {
    /// Start the redirect: returns the provider's authorization URL.
    pub async fn connect_start(&self, token: &str) -> Result<String, Error> {
        let s = self.live_session(token).await?;
        if s.integration_id.is_empty() {
            return Err(Error::invalid(
                ErrorCode::NotOauth,
                "this connect link shows a form; fill it in on the Connect page",
            ));
        }
        let integ = self.integration_row(&s.tenant, &s.integration_id).await?;
        let r = self.resolve(&integ).await?;
        let authorize_url = r.authorize_url.clone().ok_or_else(|| {
            Error::unprocessable(
                ErrorCode::OauthConfig,
                "no authorization endpoint for this integration",
            )
        })?;
        let state = rekey_oauth::random_token();
        let nonce = rekey_oauth::random_token();
        let pkce = Pkce::new();
        let redirect_uri = integ
            .redirect_uri
            .clone()
            .unwrap_or_else(|| self.default_redirect_uri());
        let extra: Vec<(String, String)> =
            serde_json::from_str::<BTreeMap<String, String>>(&integ.extra_params)
                .unwrap_or_default()
                .into_iter()
                .chain(r.spec.extra_authorize_params.clone())
                .collect();
        let url = rekey_oauth::authorize_url(&rekey_oauth::AuthorizeRequest {
            authorize_url: &authorize_url,
            client_id: &integ.client_id,
            redirect_uri: &redirect_uri,
            scopes: &integ.scopes,
            scope_separator: &r.spec.scope_separator,
            state: &state,
            nonce: r.issuer.as_ref().map(|_| nonce.as_str()),
            code_challenge: &pkce.challenge,
            extra: &extra,
        })
        .map_err(|e| Error::unprocessable(ErrorCode::OauthConfig, e.to_string()))?;
        let sealed = crate::sealing::seal_row(&*self.keyring()?, &pkce_aad(&s), &pkce.verifier);
        let mut tx = self.store().begin_write().await?;
        if !store::transition(
            tx.conn(),
            &s.id,
            ConnectSessionStatus::Created,
            ConnectSessionStatus::Started,
            Some(&token_hash(&state)),
            Some(&nonce),
            now_ms(),
        )
        .await?
        {
            return Err(session_err(
                ErrorCode::ConnectSessionUsed,
                "this connect link has already been used; ask for a new one",
            ));
        }
        store::set_redirect(tx.conn(), &s.id, &redirect_uri).await?;
        secrets::insert(tx.conn(), &sealed).await?;
        record_ok(
            &mut tx,
            &session_ctx(&s),
            AuditAction::ConnectSessionStart,
            &s.id,
            json!({"integration": integ.id}),
        )
        .await?;
        tx.commit().await?;
        Ok(url)
    }

    /// Finish the flow at `/oauth/callback`. Any failure leaves existing
    /// connections untouched; the session is spent either way.
    pub async fn oauth_callback(&self, p: CallbackParams) -> Result<CallbackOutcome, Error> {
        let state = p
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                session_err(
                    ErrorCode::InvalidState,
                    "the authorization response has no `state`",
                )
            })?;
        if state.len() > 128 {
            return Err(session_err(
                ErrorCode::InvalidState,
                "unknown or already used `state`",
            ));
        }
        let s = {
            let mut c = self.store().read().await?;
            store::by_state_hash(&mut c, &token_hash(state)).await?
        }
        .ok_or_else(|| session_err(ErrorCode::InvalidState, "unknown or already used `state`"))?;
        // Single use: only one callback may move the session on.
        {
            let mut tx = self.store().begin_write().await?;
            if !store::transition(
                tx.conn(),
                &s.id,
                ConnectSessionStatus::Started,
                ConnectSessionStatus::Exchanging,
                None,
                None,
                now_ms(),
            )
            .await?
            {
                return Err(session_err(ErrorCode::ConnectSessionUsed, "this authorization was already completed or abandoned; start again from a new connect link"));
            }
            tx.commit().await?;
        }
        let res = self.finish_callback(&s, &p, state).await;
        let mut tx = self.store().begin_write().await?;
        let ctx = session_ctx(&s);
        match &res {
            Ok(o) => {
                let cid = match o {
                    CallbackOutcome::Connected { connection_id, .. }
                    | CallbackOutcome::Parked { connection_id, .. } => connection_id.clone(),
                };
                store::complete(tx.conn(), &s.id, &cid).await?;
            }
            Err(e) => {
                store::fail(tx.conn(), &s.id, e.code()).await?;
                record(
                    &mut tx,
                    &ctx,
                    AuditAction::ConnectSessionFail,
                    Some(&s.id),
                    AuditOutcome::Error,
                    json!({"error": e.code()}),
                )
                .await?;
            }
        }
        secrets::delete_owner(tx.conn(), SESSION_KIND, &s.id).await?;
        tx.commit().await?;
        res
    }

    async fn finish_callback(
        &self,
        s: &ConnectSessionRow,
        p: &CallbackParams,
        _state: &str,
    ) -> Result<CallbackOutcome, Error> {
        if now_ms() > s.expires_at {
            return Err(session_err(
                ErrorCode::ConnectSessionExpired,
                "this connect link expired before the authorization finished",
            ));
        }
        if let Some(e) = &p.error {
            return Err(Error::unprocessable(
                ErrorCode::ProviderDenied,
                rekey_oauth::denial_message(e, p.error_description.as_deref()),
            ));
        }
        let integ = self.integration_row(&s.tenant, &s.integration_id).await?;
        let r = self.resolve(&integ).await?;
        // RFC 9207: an `iss` in the response must be the issuer we sent the user to.
        if let Some(iss) = &p.iss {
            match &r.issuer {
                Some(expected) if expected == iss => {}
                Some(_) => return Err(session_err(ErrorCode::IssuerMismatch, "the authorization response came from a different issuer (possible mix-up attack)")),
                None => {}
            }
        }
        let code = p
            .code
            .as_deref()
            .filter(|c| !c.is_empty() && c.len() <= 4096)
            .ok_or_else(|| {
                session_err(
                    ErrorCode::MissingCode,
                    "the authorization response has no `code`",
                )
            })?;
        let verifier = self.session_verifier(s).await?;
        let auth = self.client_auth(&integ).await?;
        let redirect_uri = s
            .redirect_uri
            .clone()
            .unwrap_or_else(|| self.default_redirect_uri());
        let tokens = rekey_oauth::exchange_code(
            &self.inner.http,
            &r.token_url,
            &auth,
            code,
            &redirect_uri,
            &verifier,
        )
        .await
        .map_err(|e| {
            // The provider may echo what it was sent: code, verifier, secret.
            let known = [code, verifier.expose(), auth.secret.expose()];
            Error::unprocessable(
                ErrorCode::TokenExchangeFailed,
                format!(
                    "the provider refused the code exchange: {}",
                    rekey_core::scrub::scrub_text(&e.to_string(), &known)
                ),
            )
        })?;
        let identity = self
            .identity_of(&r, &integ.client_id, s.nonce.as_deref(), &tokens)
            .await?;
        let granted = rekey_oauth::granted_scopes(
            &tokens,
            r.spec.granted_scopes_field.as_deref(),
            &r.spec.scope_separator,
        )
        .unwrap_or_else(|| integ.scopes.clone());
        match &s.reauthorize_id {
            None => {
                self.create_oauth_connection(s, &integ, identity, granted, tokens)
                    .await
            }
            Some(cid) => {
                self.reauthorized(s, cid, &integ.id, identity, granted, tokens)
                    .await
            }
        }
    }

    async fn session_verifier(&self, s: &ConnectSessionRow) -> Result<SecretString, Error> {
        let rows = {
            let mut c = self.store().read().await?;
            secrets::for_owner(&mut c, SESSION_KIND, &s.id).await?
        };
        let row = rows.first().ok_or_else(|| {
            session_err(
                ErrorCode::ConnectSessionUsed,
                "this authorization has no pending PKCE verifier",
            )
        })?;
        crate::sealing::open_row(&*self.keyring()?, &pkce_aad(s), row)
            .map_err(|e| Error::DecryptionFailed(format!("PKCE verifier failed to decrypt: {e}")))?
    }

    /// Who authorized: validated ID token claims, else the identity endpoint.
    pub(crate) async fn identity_of(
        &self,
        r: &Resolved,
        client_id: &str,
        nonce: Option<&str>,
        t: &TokenSet,
    ) -> Result<Identity, Error> {
        let spec = &r.spec;
        let mut id = Identity::default();
        if let (Some(issuer), Some(id_token)) = (&r.issuer, &t.id_token) {
            let jwks = r.jwks_uri.as_deref().ok_or_else(|| {
                Error::unprocessable(ErrorCode::OauthConfig, "the issuer publishes no jwks_uri")
            })?;
            let nonce = nonce.ok_or_else(|| Error::internal("OIDC session without nonce"))?;
            let claims = rekey_oauth::validate_id_token(
                &self.inner.http,
                &IdTokenCheck {
                    jwks_uri: jwks,
                    issuer,
                    client_id,
                    nonce,
                },
                id_token.expose(),
            )
            .await
            .map_err(|e| Error::unprocessable(ErrorCode::InvalidIdToken, e.to_string()))?;
            id.subject = rekey_oauth::json_path_str(&claims, "sub");
            id.email = rekey_oauth::json_path_str(&claims, &spec.identity_email_field)
                .or_else(|| rekey_oauth::json_path_str(&claims, "email"));
            id.name = rekey_oauth::json_path_str(
                &claims,
                spec.identity_name_field.as_deref().unwrap_or("name"),
            );
        } else if r.issuer.is_some()
            && t.id_token.is_none()
            && t.scope
                .as_deref()
                .is_some_and(|s| s.split(' ').any(|x| x == "openid"))
        {
            return Err(Error::unprocessable(
                ErrorCode::InvalidIdToken,
                "the provider granted `openid` but returned no ID token",
            ));
        }
        if id.subject.is_none() || id.email.is_none() {
            if let Some(url) = &r.identity_url {
                let v = rekey_oauth::fetch_identity(&self.inner.http, url, &t.access_token)
                    .await
                    .map_err(|e| {
                        Error::unprocessable(
                            ErrorCode::IdentityFailed,
                            format!(
                                "could not read the authorizing identity: {}",
                                rekey_core::scrub::scrub_text(
                                    &e.to_string(),
                                    &[t.access_token.expose()]
                                )
                            ),
                        )
                    })?;
                id.subject = id
                    .subject
                    .or_else(|| rekey_oauth::json_path_str(&v, &spec.identity_subject_field));
                id.email = id
                    .email
                    .or_else(|| rekey_oauth::json_path_str(&v, &spec.identity_email_field));
                id.name = id.name.or_else(|| {
                    spec.identity_name_field
                        .as_deref()
                        .and_then(|p| rekey_oauth::json_path_str(&v, p))
                });
            }
        }
        if id.subject.is_none() {
            // Some token responses carry the user (Slack: authed_user.id).
            id.subject = rekey_oauth::json_path_str(&t.extra, &spec.identity_subject_field);
        }
        if id.subject.is_none() && id.email.is_none() {
            return Err(Error::unprocessable(ErrorCode::IdentityFailed, "the provider did not say who authorized (no ID token subject or identity endpoint answer)"));
        }
        // A display name is whatever the user typed at the provider: keep
        // it, without controls or bidi overrides (it is shown as the owner).
        id.name = id
            .name
            .map(|n| rekey_core::connection::strip_invisible(&n))
            .filter(|n| !n.trim().is_empty());
        Ok(id)
    }
}
