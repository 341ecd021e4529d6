//! Connect sessions and the OAuth authorization-code flow.
//!
//! A session is a capability: whoever holds its token (in the Connect URL)
//! may complete it once, before it expires. `state` binds the provider's
//! redirect back to the session; PKCE S256 and (for OIDC) a nonce bind the
//! code and ID token to it.

use crate::audit::record;
use crate::connections::{not_found as connection_not_found, OWNER_KIND as CONN_KIND};
use crate::integrations::Resolved;
use crate::webhooks::{connection_data, emit};
use crate::{Ctx, Rekey};
use rekey_api::{ConnectSessionView, CreateConnectSession};
use rekey_core::connection::{ConnectionKind, Owner, Status};
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::{ids, Error, SecretString};
use rekey_crypto::{hash_api_key, Aad};
use rekey_oauth::{IdTokenCheck, Pkce, TokenSet};
use rekey_store::connect_sessions::{self as store, ConnectSessionRow};
use rekey_store::connections::{self as conns, ConnectionRow};
use rekey_store::integrations::IntegrationRow;
use rekey_store::secrets;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const SESSION_KIND: &str = "connect_session";

/// What the Connect page shows for a token.
#[derive(Debug, Clone)]
pub struct ConnectPage {
    pub provider_name: String,
    pub integration_name: String,
    pub owner_hint: Option<String>,
    pub reauthorize: bool,
    pub expires_at: String,
    /// Key-based kinds: the form to fill in (None for OAuth).
    pub form: Option<ConnectForm>,
}

#[derive(Debug, Clone)]
pub struct ConnectForm {
    pub kind: String,
    pub help: Option<String>,
    pub fields: Vec<ConnectField>,
}

#[derive(Debug, Clone)]
pub struct ConnectField {
    pub name: String,
    pub label: String,
    pub secret: bool,
    pub required: bool,
    pub multiline: bool,
    pub help: Option<String>,
}

/// The result of a completed callback.
#[derive(Debug, Clone)]
pub enum CallbackOutcome {
    Connected {
        connection_id: String,
        display_name: String,
        reauthorized: bool,
    },
    /// A reauthorization whose identity or scopes differ: the new grant is parked.
    Parked {
        connection_id: String,
        reasons: Vec<String>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

fn session_err(code: &'static str, msg: &str) -> Error {
    Error::invalid(code, msg.to_string())
}

fn token_hash(t: &str) -> String {
    // Same construction as API keys: tokens carry 256 bits, a plain hash suffices.
    hash_api_key(t)
}

fn pkce_aad(s: &ConnectSessionRow) -> Aad {
    Aad {
        tenant: s.tenant.clone(),
        record_kind: SESSION_KIND.into(),
        record_id: s.id.clone(),
        field: "pkce_verifier".into(),
        version: 1,
    }
}

/// Identity facts about who authorized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    pub subject: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

impl Identity {
    fn describe(&self) -> String {
        match (&self.subject, &self.email) {
            (Some(s), Some(e)) => format!("{e} ({s})"),
            (Some(s), None) => s.clone(),
            (None, Some(e)) => e.clone(),
            (None, None) => "unknown".into(),
        }
    }
}

impl Rekey {
    pub async fn create_connect_session(
        &self,
        ctx: &Ctx,
        req: CreateConnectSession,
    ) -> Result<ConnectSessionView, Error> {
        // OAuth sessions name an integration; key-based ones a provider and kind
        // (a reauthorization takes them from the connection).
        let reauth_row = match &req.reauthorize {
            Some(cid) => {
                let cid = ids::parse_id(ids::CONNECTION, cid)?;
                let mut c = self.store().read().await?;
                Some(
                    conns::get(&mut c, &ctx.tenant, &cid)
                        .await?
                        .ok_or_else(|| connection_not_found(&cid))?,
                )
            }
            None => None,
        };
        let (integration, provider, kind) = match (&req.integration, &reauth_row) {
            (Some(i), _) => {
                let integ = self.integration_row(&ctx.tenant, i).await?;
                if let Some(r) = &reauth_row {
                    if r.kind != ConnectionKind::OAuth2AuthorizationCode {
                        return Err(Error::unprocessable(
                            "not_oauth",
                            format!(
                                "connection {} is not an OAuth authorization-code connection",
                                r.id
                            ),
                        ));
                    }
                }
                (
                    Some(integ.id.clone()),
                    integ.provider.clone(),
                    ConnectionKind::OAuth2AuthorizationCode,
                )
            }
            (None, Some(r)) if r.kind.is_static() => (None, r.provider.clone(), r.kind),
            (None, Some(r)) => {
                return Err(Error::invalid(
                    "invalid_field",
                    format!(
                        "`integration` is required to reauthorize OAuth connection {}",
                        r.id
                    ),
                ))
            }
            (None, None) => {
                let (Some(p), Some(k)) = (&req.provider, &req.kind) else {
                    return Err(Error::invalid(
                        "invalid_field",
                        "give `integration` (OAuth) or `provider` and `kind` (key-based form)",
                    ));
                };
                let kind: ConnectionKind = k.parse()?;
                let provider = self.catalog().find(p).ok_or_else(|| {
                    Error::unprocessable(
                        "unknown_provider",
                        format!(
                            "no provider `{}` in the catalog",
                            ids::truncate_for_message(p)
                        ),
                    )
                })?;
                if !kind.is_static() {
                    return Err(Error::unprocessable(
                        "kind_not_supported",
                        "OAuth kinds need an `integration`",
                    ));
                }
                if !provider.supports(kind) {
                    return Err(Error::unprocessable(
                        "kind_not_supported_by_provider",
                        format!("provider `{}` does not support kind `{kind}`", provider.id),
                    ));
                }
                form_for(provider, kind)?;
                (None, provider.id.clone(), kind)
            }
        };
        let ttl = req.expires_in.unwrap_or(900);
        if !(60..=3600).contains(&ttl) {
            return Err(Error::invalid(
                "invalid_field",
                "`expires_in` must be 60–3600 seconds",
            ));
        }
        if let Some(n) = &req.display_name {
            rekey_core::connection::validate_display_name(n)?;
        }
        if let Some(h) = &req.owner_hint {
            // Shown on the Connect page; with an `@` it becomes the owner's email.
            rekey_core::connection::validate_text("invalid_field", "owner_hint", h, 320)?;
            if h.contains('@') {
                rekey_core::connection::validate_email("owner_hint", h)?;
            }
        }
        let tags = rekey_core::connection::normalize_slugs("tags", &req.tags)?;
        let custody = rekey_core::connection::normalize_slugs("custody", &req.custody)?;
        let token = rekey_oauth::random_token();
        let now = now_ms();
        let row = ConnectSessionRow {
            id: ids::new_id("cs"),
            tenant: ctx.tenant.clone(),
            token_hash: token_hash(&token),
            state_hash: None,
            integration_id: integration.clone().unwrap_or_default(),
            provider: Some(provider.clone()),
            kind: Some(kind.as_str().to_string()),
            display_name: req.display_name.clone(),
            owner_hint: req.owner_hint.clone(),
            tags,
            custody,
            reauthorize_id: req.reauthorize.clone(),
            nonce: None,
            redirect_uri: None,
            status: "created".into(),
            error: None,
            connection_id: None,
            created_by: ctx.actor.clone(),
            created_at: now,
            expires_at: now + ttl * 1000,
            used_at: None,
        };
        let mut tx = self.store().begin_write().await?;
        store::insert(tx.conn(), &row).await?;
        // One live reauthorization link per connection: a new one retires
        // the unused older ones (a lost or leaked link stops working).
        let superseded = match &row.reauthorize_id {
            Some(cid) => {
                store::supersede_reauthorizations(tx.conn(), &row.tenant, cid, &row.id).await?
            }
            None => 0,
        };
        record(
            &mut tx,
            ctx,
            "connect_session.create",
            Some(&row.id),
            "ok",
            json!({"integration": integration, "provider": provider, "kind": kind.as_str(), "reauthorize": row.reauthorize_id, "superseded": superseded}),
        )
        .await?;
        tx.commit().await?;
        Ok(ConnectSessionView {
            id: row.id,
            url: format!("{}/connect/{token}", self.public_url()),
            token,
            expires_at: ms_to_rfc3339(row.expires_at),
            integration,
            provider,
            kind: kind.as_str().to_string(),
            reauthorize: row.reauthorize_id,
        })
    }

    async fn live_session(&self, token: &str) -> Result<ConnectSessionRow, Error> {
        if token.len() != 43
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::not_found(
                "connect_session_not_found",
                "connect link",
            ));
        }
        let s = {
            let mut c = self.store().read().await?;
            store::by_token_hash(&mut c, &token_hash(token)).await?
        }
        .ok_or_else(|| Error::not_found("connect_session_not_found", "connect link"))?;
        if s.status == "superseded" {
            return Err(session_err(
                "connect_session_superseded",
                "a newer link was made for this connection; use the newest one, or ask for a new one",
            ));
        }
        if s.status != "created" {
            return Err(session_err(
                "connect_session_used",
                "this connect link has already been used; ask for a new one",
            ));
        }
        if now_ms() > s.expires_at {
            return Err(session_err(
                "connect_session_expired",
                "this connect link has expired; ask for a new one",
            ));
        }
        Ok(s)
    }

    pub async fn connect_page(&self, token: &str) -> Result<ConnectPage, Error> {
        let s = self.live_session(token).await?;
        if s.integration_id.is_empty() {
            let (provider, kind) = self.static_target(&s)?;
            return Ok(ConnectPage {
                provider_name: provider.display_name.clone(),
                integration_name: provider.display_name.clone(),
                owner_hint: s.owner_hint.clone(),
                reauthorize: s.reauthorize_id.is_some(),
                expires_at: ms_to_rfc3339(s.expires_at),
                form: Some(form_for(provider, kind)?),
            });
        }
        let integ = self.integration_row(&s.tenant, &s.integration_id).await?;
        let provider = self.oauth_provider(&integ.provider)?;
        Ok(ConnectPage {
            provider_name: provider.display_name.clone(),
            integration_name: integ.display_name.clone(),
            owner_hint: s.owner_hint.clone(),
            reauthorize: s.reauthorize_id.is_some(),
            expires_at: ms_to_rfc3339(s.expires_at),
            form: None,
        })
    }

    fn static_target(
        &self,
        s: &ConnectSessionRow,
    ) -> Result<(&rekey_providers::Provider, ConnectionKind), Error> {
        let provider = s
            .provider
            .as_deref()
            .and_then(|p| self.catalog().find(p))
            .ok_or_else(|| {
                Error::unprocessable(
                    "unknown_provider",
                    "this connect link's provider is no longer in the catalog",
                )
            })?;
        let kind: ConnectionKind = s.kind.as_deref().unwrap_or("").parse()?;
        Ok((provider, kind))
    }

    /// Key-based kinds: the Connect page's form was submitted. Invalid input
    /// re-shows the form (the link stays usable); success spends the link.
    pub async fn connect_submit(
        &self,
        token: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<CallbackOutcome, Error> {
        let s = self.live_session(token).await?;
        if !s.integration_id.is_empty() {
            return Err(Error::invalid(
                "not_a_form",
                "this connect link starts an OAuth authorization, not a form",
            ));
        }
        let (provider, kind) = self.static_target(&s)?;
        let form = form_for(provider, kind)?;
        let fixed = provider
            .key_form(kind.as_str())
            .map(|f| f.fixed_fields())
            .unwrap_or_default();
        let mut creds = serde_json::Map::new();
        for (k, v) in fixed {
            creds.insert(k.to_string(), Value::String(v));
        }
        for f in &form.fields {
            let v = values
                .get(&f.name)
                .map(|v| v.trim_end_matches(['\r', '\n']).to_string())
                .unwrap_or_default();
            let check = provider
                .key_form(kind.as_str())
                .and_then(|kf| kf.field(&f.name).cloned());
            if let Some(rule) = check {
                rule.check(&v)
                    .map_err(|m| Error::invalid("invalid_credentials", m))?;
            } else if f.required && v.is_empty() {
                return Err(Error::invalid(
                    "invalid_credentials",
                    format!("`{}` is required", f.label),
                ));
            }
            if v.is_empty() {
                continue;
            }
            match f.name.strip_prefix("headers.") {
                Some(h) => {
                    let headers = creds
                        .entry("headers")
                        .or_insert_with(|| Value::Object(Default::default()));
                    if let Value::Object(m) = headers {
                        m.insert(h.to_string(), Value::String(v));
                    }
                }
                None => {
                    creds.insert(f.name.clone(), Value::String(v));
                }
            }
        }
        let ctx = session_ctx(&s);
        // Validate fully before spending the link, so a typo can be corrected.
        self.parse_material(kind, Value::Object(creds.clone()))?;
        {
            let mut tx = self.store().begin_write().await?;
            if !store::transition(
                tx.conn(),
                &s.id,
                "created",
                "exchanging",
                None,
                None,
                now_ms(),
            )
            .await?
            {
                return Err(session_err(
                    "connect_session_used",
                    "this connect link has already been used; ask for a new one",
                ));
            }
            tx.commit().await?;
        }
        let result = match &s.reauthorize_id {
            Some(cid) => self
                .update_credentials(
                    &ctx,
                    cid,
                    rekey_api::UpdateCredentials {
                        credentials: Value::Object(creds),
                        version: None,
                    },
                    None,
                )
                .await
                .map(|v| CallbackOutcome::Connected {
                    connection_id: v.id,
                    display_name: v.display_name,
                    reauthorized: true,
                }),
            None => {
                let owner = s
                    .owner_hint
                    .clone()
                    .filter(|h| h.contains('@'))
                    .map(|email| rekey_api::OwnerView {
                        email: Some(email),
                        ..Default::default()
                    });
                self.create_connection(
                    &ctx,
                    rekey_api::CreateConnection {
                        provider: provider.id.clone(),
                        kind: kind.as_str().to_string(),
                        display_name: s
                            .display_name
                            .clone()
                            .unwrap_or_else(|| provider.display_name.clone()),
                        owner,
                        scopes: Vec::new(),
                        tags: s.tags.clone(),
                        custody: s.custody.clone(),
                        expires_at: None,
                        params: Default::default(),
                        probe_url: None,
                        credentials: Value::Object(creds),
                    },
                )
                .await
                .map(|v| CallbackOutcome::Connected {
                    connection_id: v.id,
                    display_name: v.display_name,
                    reauthorized: false,
                })
            }
        };
        let mut tx = self.store().begin_write().await?;
        match &result {
            Ok(CallbackOutcome::Connected { connection_id, .. }) => {
                store::finish(tx.conn(), &s.id, "completed", None, Some(connection_id)).await?
            }
            Ok(_) => {}
            Err(e) => store::finish(tx.conn(), &s.id, "failed", Some(e.code()), None).await?,
        }
        tx.commit().await?;
        result
    }

    /// Start the redirect: returns the provider's authorization URL.
    pub async fn connect_start(&self, token: &str) -> Result<String, Error> {
        let s = self.live_session(token).await?;
        if s.integration_id.is_empty() {
            return Err(Error::invalid(
                "not_oauth",
                "this connect link shows a form; fill it in on the Connect page",
            ));
        }
        let integ = self.integration_row(&s.tenant, &s.integration_id).await?;
        let r = self.resolve(&integ).await?;
        let authorize_url = r.authorize_url.clone().ok_or_else(|| {
            Error::unprocessable(
                "oauth_config",
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
        .map_err(|e| Error::unprocessable("oauth_config", e.to_string()))?;
        let sealed = crate::sealing::seal_row(&*self.keyring()?, &pkce_aad(&s), &pkce.verifier);
        let mut tx = self.store().begin_write().await?;
        if !store::transition(
            tx.conn(),
            &s.id,
            "created",
            "started",
            Some(&token_hash(&state)),
            Some(&nonce),
            now_ms(),
        )
        .await?
        {
            return Err(session_err(
                "connect_session_used",
                "this connect link has already been used; ask for a new one",
            ));
        }
        store::set_redirect(tx.conn(), &s.id, &redirect_uri).await?;
        secrets::insert(tx.conn(), &sealed).await?;
        record(
            &mut tx,
            &session_ctx(&s),
            "connect_session.start",
            Some(&s.id),
            "ok",
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
                session_err("invalid_state", "the authorization response has no `state`")
            })?;
        if state.len() > 128 {
            return Err(session_err(
                "invalid_state",
                "unknown or already used `state`",
            ));
        }
        let s = {
            let mut c = self.store().read().await?;
            store::by_state_hash(&mut c, &token_hash(state)).await?
        }
        .ok_or_else(|| session_err("invalid_state", "unknown or already used `state`"))?;
        // Single use: only one callback may move the session on.
        {
            let mut tx = self.store().begin_write().await?;
            if !store::transition(
                tx.conn(),
                &s.id,
                "started",
                "exchanging",
                None,
                None,
                now_ms(),
            )
            .await?
            {
                return Err(session_err("connect_session_used", "this authorization was already completed or abandoned; start again from a new connect link"));
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
                store::finish(tx.conn(), &s.id, "completed", None, Some(&cid)).await?;
            }
            Err(e) => {
                store::finish(tx.conn(), &s.id, "failed", Some(e.code()), None).await?;
                record(
                    &mut tx,
                    &ctx,
                    "connect_session.fail",
                    Some(&s.id),
                    "error",
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
                "connect_session_expired",
                "this connect link expired before the authorization finished",
            ));
        }
        if let Some(e) = &p.error {
            return Err(Error::unprocessable(
                "provider_denied",
                rekey_oauth::denial_message(e, p.error_description.as_deref()),
            ));
        }
        let integ = self.integration_row(&s.tenant, &s.integration_id).await?;
        let r = self.resolve(&integ).await?;
        // RFC 9207: an `iss` in the response must be the issuer we sent the user to.
        if let Some(iss) = &p.iss {
            match &r.issuer {
                Some(expected) if expected == iss => {}
                Some(_) => return Err(session_err("issuer_mismatch", "the authorization response came from a different issuer (possible mix-up attack)")),
                None => {}
            }
        }
        let code = p
            .code
            .as_deref()
            .filter(|c| !c.is_empty() && c.len() <= 4096)
            .ok_or_else(|| {
                session_err("missing_code", "the authorization response has no `code`")
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
                "token_exchange_failed",
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
                "connect_session_used",
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
                Error::unprocessable("oauth_config", "the issuer publishes no jwks_uri")
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
            .map_err(|e| Error::unprocessable("invalid_id_token", e.to_string()))?;
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
                "invalid_id_token",
                "the provider granted `openid` but returned no ID token",
            ));
        }
        if id.subject.is_none() || id.email.is_none() {
            if let Some(url) = &r.identity_url {
                let v = rekey_oauth::fetch_identity(&self.inner.http, url, &t.access_token)
                    .await
                    .map_err(|e| {
                        Error::unprocessable(
                            "identity_failed",
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
            return Err(Error::unprocessable("identity_failed", "the provider did not say who authorized (no ID token subject or identity endpoint answer)"));
        }
        // A display name is whatever the user typed at the provider: keep
        // it, without controls or bidi overrides (it is shown as the owner).
        id.name = id
            .name
            .map(|n| rekey_core::connection::strip_invisible(&n))
            .filter(|n| !n.trim().is_empty());
        Ok(id)
    }

    async fn create_oauth_connection(
        &self,
        s: &ConnectSessionRow,
        integ: &IntegrationRow,
        identity: Identity,
        granted: Vec<String>,
        tokens: TokenSet,
    ) -> Result<CallbackOutcome, Error> {
        let (provider, integration_id, integration_name) = (
            integ.provider.as_str(),
            integ.id.as_str(),
            integ.display_name.as_str(),
        );
        let now = now_ms();
        let display_name = s
            .display_name
            .clone()
            .unwrap_or_else(|| format!("{integration_name} ({})", identity.describe()));
        let display_name: String = display_name.chars().take(200).collect();
        let mut row = ConnectionRow {
            id: ids::new_id(ids::CONNECTION),
            tenant: s.tenant.clone(),
            provider: provider.into(),
            kind: ConnectionKind::OAuth2AuthorizationCode,
            display_name: display_name.clone(),
            owner: Owner {
                subject: identity.subject.clone(),
                email: identity.email.clone(),
                name: identity.name.clone(),
            },
            scopes: granted,
            tags: s.tags.clone(),
            custody: s.custody.clone(),
            credential_meta: String::new(),
            status: Status::Active,
            last_error: None,
            created_at: now,
            updated_at: now,
            rotated_at: None,
            expires_at: None,
            version: 1,
            credential_version: 1,
            params: "{}".into(),
            probe_url: None,
            last_ok_at: None,
            last_checked_at: None,
            first_failed_at: None,
            consecutive_failures: 0,
        };
        let (meta, secrets_map) = token_material(integration_id, &tokens, now, Value::Null);
        row.credential_meta = meta.to_string();
        row.expires_at = access_expiry(&tokens, now);
        let mut tx = self.store().begin_write().await?;
        conns::insert(tx.conn(), &row).await?;
        self.write_secrets(&mut tx, &row, &secrets_map).await?;
        record(
            &mut tx,
            &session_ctx(s),
            "connection.create",
            Some(&row.id),
            "ok",
            json!({
                "provider": provider, "kind": row.kind.as_str(), "integration": integration_id,
                "authorized_by": identity.describe(), "scopes": row.scopes, "connect_session": s.id,
            }),
        )
        .await?;
        emit(
            &mut tx,
            &s.tenant,
            "connection.created",
            connection_data(&row),
        )
        .await?;
        tx.commit().await?;
        Ok(CallbackOutcome::Connected {
            connection_id: row.id,
            display_name,
            reauthorized: false,
        })
    }

    async fn reauthorized(
        &self,
        s: &ConnectSessionRow,
        cid: &str,
        integration_id: &str,
        identity: Identity,
        granted: Vec<String>,
        tokens: TokenSet,
    ) -> Result<CallbackOutcome, Error> {
        let now = now_ms();
        let mut tx = self.store().begin_write().await?;
        let mut row = conns::get(tx.conn(), &s.tenant, cid)
            .await?
            .ok_or_else(|| connection_not_found(cid))?;
        let old_version = row.version;
        let old_secrets = {
            let rows = secrets::for_owner(tx.conn(), CONN_KIND, cid).await?;
            self.open_secrets(&row, &rows)?
        };
        let old_tokens = revocable(&old_secrets, "");
        let original = Identity {
            subject: row.owner.subject.clone(),
            email: row.owner.email.clone(),
            name: None,
        };
        let same_person = match (&original.subject, &identity.subject) {
            (Some(a), Some(b)) => a == b,
            _ => original.email.is_some() && original.email == identity.email,
        };
        let missing: Vec<String> = row
            .scopes
            .iter()
            .filter(|sc| !granted.contains(sc))
            .cloned()
            .collect();
        let mut reasons = Vec::new();
        if !same_person {
            reasons.push(format!(
                "identity_mismatch: authorized by {} but the connection belongs to {}",
                identity.describe(),
                original.describe()
            ));
        }
        if !missing.is_empty() {
            reasons.push(format!(
                "scope_downgrade: missing scopes {}",
                missing.join(", ")
            ));
        }
        let ctx = session_ctx(s);
        let (meta, new_secrets) = token_material(integration_id, &tokens, now, Value::Null);
        let outcome = if reasons.is_empty() {
            // Switch to the new grant; the old tokens are revoked after commit.
            row.credential_meta = meta.to_string();
            row.expires_at = access_expiry(&tokens, now);
            row.scopes = granted.clone();
            row.owner.email = identity.email.clone().or(row.owner.email.clone());
            row.owner.name = identity.name.clone().or(row.owner.name.clone());
            let status_before = row.status;
            row.status = match row.status {
                Status::Disabled => Status::Disabled,
                Status::Active => Status::Active,
                st if st.can_transition(Status::Active) => Status::Active,
                _ => Status::Pending,
            };
            row.last_error = None;
            row.consecutive_failures = 0;
            row.first_failed_at = None;
            row.last_ok_at = Some(now);
            row.credential_version += 1;
            row.version += 1;
            row.updated_at = now;
            row.rotated_at = Some(now);
            if !conns::update(tx.conn(), &row, old_version).await? {
                return Err(Error::conflict(
                    "version_conflict",
                    format!("connection {cid} changed during reauthorization; try again"),
                ));
            }
            self.write_secrets(&mut tx, &row, &new_secrets).await?;
            record(&mut tx, &ctx, "connection.reauthorized", Some(cid), "ok", json!({"authorized_by": identity.describe(), "scopes": granted, "connect_session": s.id})).await?;
            if row.status != status_before {
                crate::health::status_changed(
                    &mut tx,
                    &ctx,
                    &row,
                    status_before,
                    "reauthorization",
                    None,
                )
                .await?;
            }
            let mut data = connection_data(&row);
            data["method"] = json!("oauth");
            emit(&mut tx, &ctx.tenant, "connection.reauthorized", data).await?;
            CallbackOutcome::Connected {
                connection_id: cid.to_string(),
                display_name: row.display_name.clone(),
                reauthorized: true,
            }
        } else {
            // Park the new grant beside the current one; the connection keeps working on the old grant.
            let mut meta_now: serde_json::Map<String, Value> =
                serde_json::from_str(&row.credential_meta).unwrap_or_default();
            meta_now.insert("pending_grant".into(), json!({
                "meta": meta, "subject": identity.subject, "email": identity.email, "name": identity.name,
                "scopes": granted, "at": ms_to_rfc3339(now), "connect_session": s.id,
            }));
            let mut all = old_secrets
                .into_iter()
                .filter(|(k, _)| !k.starts_with("pending:"))
                .collect::<BTreeMap<_, _>>();
            for (k, v) in new_secrets {
                all.insert(format!("pending:{k}"), v);
            }
            let code = if !same_person {
                "identity_mismatch"
            } else {
                "scope_downgrade"
            };
            row.last_error = Some(
                json!({
                    "code": code,
                    "message": reasons.join("; "),
                    "expected_identity": original.describe(), "got_identity": identity.describe(),
                    "missing_scopes": missing, "at": ms_to_rfc3339(now),
                })
                .to_string(),
            );
            row.credential_meta = Value::Object(meta_now).to_string();
            row.credential_version += 1;
            row.version += 1;
            row.updated_at = now;
            if !conns::update(tx.conn(), &row, old_version).await? {
                return Err(Error::conflict(
                    "version_conflict",
                    format!("connection {cid} changed during reauthorization; try again"),
                ));
            }
            self.write_secrets(&mut tx, &row, &all).await?;
            record(
                &mut tx,
                &ctx,
                "connection.reauthorize_mismatch",
                Some(cid),
                "parked",
                json!({"reasons": reasons, "connect_session": s.id}),
            )
            .await?;
            CallbackOutcome::Parked {
                connection_id: cid.to_string(),
                reasons,
            }
        };
        tx.commit().await?;
        if matches!(outcome, CallbackOutcome::Connected { .. }) {
            // The switch is committed; now kill the old grant at the provider.
            self.revoke_at_provider(&ctx, cid, integration_id, old_tokens)
                .await;
        }
        Ok(outcome)
    }
}

/// Split a token response into the non-secret meta and the secret fields.
pub(crate) fn token_material(
    integration_id: &str,
    t: &TokenSet,
    now: i64,
    prev_meta: Value,
) -> (Value, BTreeMap<String, SecretString>) {
    let mut secrets_map = BTreeMap::new();
    secrets_map.insert("access_token".to_string(), t.access_token.clone());
    if let Some(r) = &t.refresh_token {
        secrets_map.insert("refresh_token".to_string(), r.clone());
    }
    let mut meta = json!({
        "integration_id": integration_id,
        "token_type": t.token_type,
        "access_expires_at": t.expires_in.map(|s| now + s * 1000),
        "obtained_at": now,
        "has_refresh_token": t.refresh_token.is_some(),
    });
    if let (Some(m), Value::Object(prev)) = (meta.as_object_mut(), prev_meta) {
        for (k, v) in prev {
            m.entry(k).or_insert(v);
        }
    }
    (meta, secrets_map)
}

pub(crate) fn access_expiry(t: &TokenSet, now: i64) -> Option<i64> {
    t.expires_in.map(|s| now + s * 1000)
}

fn session_ctx(s: &ConnectSessionRow) -> Ctx {
    Ctx {
        tenant: s.tenant.clone(),
        actor: format!("connect_session:{}", s.id),
        request_id: None,
        source: None,
    }
}

/// The tokens of a grant being replaced, with their RFC 7009 type hints
/// (refresh token first: revoking it usually kills the access token too).
pub(crate) fn revocable(
    secrets_map: &BTreeMap<String, SecretString>,
    prefix: &str,
) -> Vec<(&'static str, SecretString)> {
    let mut out = Vec::new();
    if let Some(t) = secrets_map.get(&format!("{prefix}refresh_token")) {
        out.push(("refresh_token", t.clone()));
    }
    if let Some(t) = secrets_map.get(&format!("{prefix}access_token")) {
        out.push(("access_token", t.clone()));
    }
    out
}

/// The Connect page form for a key-based kind: the catalog's, else the
/// kind's standard fields.
pub(crate) fn form_for(
    provider: &rekey_providers::Provider,
    kind: ConnectionKind,
) -> Result<ConnectForm, Error> {
    if let Some(kf) = provider.key_form(kind.as_str()) {
        return Ok(ConnectForm {
            kind: kind.as_str().into(),
            help: kf.help.clone(),
            fields: kf
                .fields
                .iter()
                .map(|f| ConnectField {
                    name: f.name.clone(),
                    label: f.label.clone(),
                    secret: f.secret,
                    required: f.required,
                    multiline: f.multiline,
                    help: f.help.clone(),
                })
                .collect(),
        });
    }
    let f = |name: &str, label: &str, secret: bool, required: bool, multiline: bool| ConnectField {
        name: name.into(),
        label: label.into(),
        secret,
        required,
        multiline,
        help: None,
    };
    let fields = match kind {
        ConnectionKind::ApiKey => vec![f("key", "API key", true, true, false)],
        ConnectionKind::Basic => vec![
            f("username", "Username", false, true, false),
            f("password", "Password", true, true, false),
        ],
        ConnectionKind::AwsAccessKey => vec![
            f("access_key_id", "Access key ID", false, true, false),
            f("secret_access_key", "Secret access key", true, true, false),
            f("region", "Region", false, false, false),
        ],
        ConnectionKind::ServiceAccountJson => vec![f(
            "json",
            "Service-account key file (JSON)",
            true,
            true,
            true,
        )],
        ConnectionKind::RsaKeyPair => vec![
            f("private_key_pem", "Private key (PEM)", true, true, true),
            f("passphrase", "Passphrase", true, false, false),
            f("username", "User name", false, false, false),
        ],
        _ => {
            return Err(Error::unprocessable(
                "no_form",
                format!(
                    "provider `{}` defines no Connect form for kind `{kind}`",
                    provider.id
                ),
            ))
        }
    };
    Ok(ConnectForm {
        kind: kind.as_str().into(),
        help: None,
        fields,
    })
}
