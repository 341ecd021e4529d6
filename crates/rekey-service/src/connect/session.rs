//! Connect sessions: creating a link, showing its page, and the form of
//! the key-based kinds.

use super::form::{form_for, gather, page_form, page_message, Current};
use super::{session_ctx, session_err, token_hash, CallbackOutcome, ConnectPage};
use crate::audit::record_ok;
use crate::connection_rows::not_found as connection_not_found;
use crate::connections::rules;
use crate::{Ctx, NewConnectSession, Rekey};
use rekey_api::CreateConnectSession;
use rekey_core::audit::AuditAction;
use rekey_core::connection::ConnectSessionStatus;
use rekey_core::connection::ConnectionKind;
use rekey_core::time::{ms_to_rfc3339, now_ms};
use rekey_core::ErrorCode;
use rekey_core::{ids, Error};
use rekey_store::connect_sessions::{self as store, ConnectSessionRow};
use rekey_store::connections::{self as conns};
use serde_json::{json, Value};
use std::collections::BTreeMap;

impl Rekey {
    pub async fn create_connect_session(
        &self,
        ctx: &Ctx,
        req: CreateConnectSession,
    ) -> Result<NewConnectSession, Error> {
        self.create_connect_session_until(ctx, req, None).await
    }

    /// A connect session; `until` (epoch ms) replaces `expires_in` for the
    /// links a campaign makes, which live until its deadline.
    pub(crate) async fn create_connect_session_until(
        &self,
        ctx: &Ctx,
        req: CreateConnectSession,
        until: Option<i64>,
    ) -> Result<NewConnectSession, Error> {
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
                            ErrorCode::NotOauth,
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
                    ErrorCode::InvalidField,
                    format!(
                        "`integration` is required to reauthorize OAuth connection {}",
                        r.id
                    ),
                ))
            }
            (None, None) => {
                let (Some(p), Some(k)) = (&req.provider, &req.kind) else {
                    return Err(Error::invalid(
                        ErrorCode::InvalidField,
                        "give `integration` (OAuth) or `provider` and `kind` (key-based form)",
                    ));
                };
                let kind: ConnectionKind = k.parse()?;
                let provider = self.catalog().find(p).ok_or_else(|| {
                    Error::unprocessable(
                        ErrorCode::UnknownProvider,
                        format!(
                            "no provider `{}` in the catalog",
                            ids::truncate_for_message(p)
                        ),
                    )
                })?;
                if !kind.is_static() {
                    return Err(Error::unprocessable(
                        ErrorCode::KindNotSupported,
                        "OAuth kinds need an `integration`",
                    ));
                }
                if !provider.supports(kind) {
                    return Err(Error::unprocessable(
                        ErrorCode::KindNotSupportedByProvider,
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
                ErrorCode::InvalidField,
                "`expires_in` must be 60–3600 seconds",
            ));
        }
        if let Some(n) = &req.display_name {
            rekey_core::connection::validate_display_name(n)?;
        }
        if let Some(h) = &req.owner_hint {
            // Shown on the Connect page; with an `@` it becomes the owner's email.
            rekey_core::connection::validate_text(ErrorCode::InvalidField, "owner_hint", h, 320)?;
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
            status: ConnectSessionStatus::Created,
            error: None,
            connection_id: None,
            created_by: ctx.actor.clone(),
            created_at: now,
            expires_at: until.unwrap_or(now + ttl * 1000),
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
        record_ok(
            &mut tx,
            ctx,
            AuditAction::ConnectSessionCreate,
            &row.id,
            json!({"integration": integration, "provider": provider, "kind": kind.as_str(), "reauthorize": row.reauthorize_id, "superseded": superseded}),
        )
        .await?;
        tx.commit().await?;
        Ok(NewConnectSession {
            id: row.id,
            url: format!("{}/connect/{token}", self.public_url()),
            token,
            expires_at: row.expires_at,
            integration,
            provider,
            kind,
            reauthorize: row.reauthorize_id,
        })
    }

    pub(super) async fn live_session(&self, token: &str) -> Result<ConnectSessionRow, Error> {
        if token.len() != 43
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::not_found(
                ErrorCode::ConnectSessionNotFound,
                "connect link",
            ));
        }
        let s = {
            let mut c = self.store().read().await?;
            store::by_token_hash(&mut c, &token_hash(token)).await?
        }
        .ok_or_else(|| Error::not_found(ErrorCode::ConnectSessionNotFound, "connect link"))?;
        if s.status == ConnectSessionStatus::Superseded {
            return Err(session_err(
                ErrorCode::ConnectSessionSuperseded,
                "this link was replaced by a newer one or cancelled; use the newest link you were sent, or ask for a new one",
            ));
        }
        if s.status != ConnectSessionStatus::Created {
            return Err(session_err(
                ErrorCode::ConnectSessionUsed,
                "this connect link has already been used; ask for a new one",
            ));
        }
        if now_ms() > s.expires_at {
            return Err(session_err(
                ErrorCode::ConnectSessionExpired,
                "this connect link has expired; ask for a new one",
            ));
        }
        Ok(s)
    }

    /// The Connect page. After a refused submission it is shown again as
    /// it was: nothing typed comes back (a secret pasted into the wrong
    /// field must not land in the HTML).
    pub async fn connect_page(&self, token: &str) -> Result<ConnectPage, Error> {
        let s = self.live_session(token).await?;
        let reauth = self.reauth_target(&s).await?;
        let title = |fallback: &str| {
            reauth
                .as_ref()
                .map(|(name, _)| name.clone())
                .or_else(|| s.display_name.clone())
                .unwrap_or_else(|| fallback.to_string())
        };
        let expires_at = ms_to_rfc3339(s.expires_at);
        let expires_at_readable = rekey_core::time::ms_to_readable_utc(s.expires_at);
        if s.integration_id.is_empty() {
            let (provider, kind) = self.static_target(&s)?;
            let form = page_form(provider, kind, reauth.as_ref().map(|(_, c)| c))?;
            return Ok(ConnectPage {
                title: title(&provider.display_name),
                provider_name: provider.display_name.clone(),
                integration_name: provider.display_name.clone(),
                owner_hint: s.owner_hint.clone(),
                reauthorize: s.reauthorize_id.is_some(),
                expires_at,
                expires_at_readable,
                form: Some(form),
            });
        }
        let integ = self.integration_row(&s.tenant, &s.integration_id).await?;
        let provider = self.oauth_provider(&integ.provider)?;
        Ok(ConnectPage {
            title: title(&integ.display_name),
            provider_name: provider.display_name.clone(),
            integration_name: integ.display_name.clone(),
            owner_hint: s.owner_hint.clone(),
            reauthorize: s.reauthorize_id.is_some(),
            expires_at,
            expires_at_readable,
            form: None,
        })
    }

    /// On a reauthorization link: the connection's name and its current
    /// non-secret settings and URL parameters (never its secrets).
    async fn reauth_target(
        &self,
        s: &ConnectSessionRow,
    ) -> Result<Option<(String, Current)>, Error> {
        let Some(cid) = &s.reauthorize_id else {
            return Ok(None);
        };
        let row = {
            let mut c = self.store().read().await?;
            conns::get(&mut c, &s.tenant, cid)
                .await?
                .ok_or_else(|| connection_not_found(cid))?
        };
        let meta = match serde_json::from_str::<Value>(&row.credential_meta) {
            Ok(Value::Object(m)) => m,
            _ => Default::default(),
        };
        let params = serde_json::from_str(&row.params).unwrap_or_default();
        Ok(Some((
            row.display_name,
            Current {
                meta,
                params,
                has_probe_url: row.probe_url.is_some(),
            },
        )))
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
                    ErrorCode::UnknownProvider,
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
                ErrorCode::NotAForm,
                "this connect link starts an OAuth authorization, not a form",
            ));
        }
        let (provider, kind) = self.static_target(&s)?;
        let current = self.reauth_target(&s).await?.map(|(_, c)| c);
        let form = page_form(provider, kind, current.as_ref())?;
        let (creds, params) = gather(&form, kind, values, current.as_ref());
        let ctx = session_ctx(&s);
        // Validate fully before spending the link, so a typo can be
        // corrected: the same rules as the API's (`connections::rules`),
        // told with the form's labels.
        let page_err = |e: Error| match e.code() {
            ErrorCode::InvalidCredentials | ErrorCode::InvalidField => Error::invalid(
                ErrorCode::InvalidCredentials,
                page_message(&e.public_message(), &form),
            ),
            _ => e,
        };
        let creds = rules::apply_key_form(provider, kind, Value::Object(creds))
            .map_err(|p| p.to_page_error())?;
        self.parse_material(kind, creds.clone()).map_err(page_err)?;
        crate::connections::check_params(provider, &params).map_err(page_err)?;
        self.check_probe_host(provider, kind, &params)
            .map_err(page_err)?;
        let has_probe_url = current.as_ref().is_some_and(|c| c.has_probe_url);
        rules::check_required_params(provider, kind, &params, has_probe_url)
            .map_err(|p| p.to_page_error())?;
        // Parameters change only if the form has them and they differ.
        let params_changed = form.fields.iter().any(|f| f.name.starts_with("params."))
            && current.as_ref().is_none_or(|c| c.params != params);
        {
            let mut tx = self.store().begin_write().await?;
            if !store::transition(
                tx.conn(),
                &s.id,
                ConnectSessionStatus::Created,
                ConnectSessionStatus::Exchanging,
                None,
                None,
                now_ms(),
            )
            .await?
            {
                return Err(session_err(
                    ErrorCode::ConnectSessionUsed,
                    "this connect link has already been used; ask for a new one",
                ));
            }
            tx.commit().await?;
        }
        let result = match &s.reauthorize_id {
            Some(cid) => self
                .replace_credentials(
                    &ctx,
                    cid,
                    creds,
                    params_changed.then_some(params),
                    None,
                    rekey_core::versions::DEFAULT_GRACE,
                )
                .await
                .map(|v| CallbackOutcome::Connected {
                    connection_id: v.row.id,
                    display_name: v.row.display_name,
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
                        params,
                        probe_url: None,
                        credentials: creds,
                    },
                )
                .await
                .map(|v| CallbackOutcome::Connected {
                    connection_id: v.row.id,
                    display_name: v.row.display_name,
                    reauthorized: false,
                })
            }
        };
        let mut tx = self.store().begin_write().await?;
        match &result {
            Ok(CallbackOutcome::Connected { connection_id, .. }) => {
                store::complete(tx.conn(), &s.id, connection_id).await?
            }
            Ok(_) => {}
            Err(e) => store::fail(tx.conn(), &s.id, e.code()).await?,
        }
        tx.commit().await?;
        result
    }
}
