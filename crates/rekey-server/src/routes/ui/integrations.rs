//! The integrations page: OAuth apps (client registrations, the API's
//! `/api/v1/integrations`) with the connections made through each; admins
//! register new ones and replace a client secret. Roles follow the API's
//! scopes: reading needs `connections:read`, changing needs `admin`.
//! Client secrets are never shown: the provider issues them, rekey only
//! stores them (sealed).

use super::show::When;
use super::{look_name, CsrfForm, SessionUser, UiError, UiResult};
use crate::pages::page;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use rekey_api::{IntegrationQuery, IntegrationView, UpdateIntegration};
use rekey_core::SecretString;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};

/// Refusals on these pages lead back here, not to the connections.
const BACK: (&str, &str) = ("/ui/integrations", "Back to integrations");

struct Used {
    id: String,
    name: String,
    class: &'static str,
    status_label: &'static str,
}

struct App {
    i: IntegrationView,
    provider: String,
    created: When,
    updated: When,
    used_by: Vec<Used>,
}

#[derive(Template)]
#[template(path = "ui/integrations.html")]
struct IntegrationsPage {
    csrf: String,
    admin: bool,
    apps: Vec<App>,
    /// (id, display name) of catalog providers with OAuth, by name.
    providers: Vec<(String, String)>,
    error: Option<String>,
    /// The filters as given (tag, custody).
    tag: String,
    custody: String,
}

/// `GET /ui/integrations`: the tenant's OAuth apps (filtered by tag and
/// custody, as the API's list) and the connections of each.
pub(super) async fn list(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    u: SessionUser,
) -> Response {
    list_page(s, q, u).await.unwrap_or_else(|e| e.render(BACK))
}

async fn list_page(s: AppState, q: HashMap<String, String>, u: SessionUser) -> UiResult {
    require_read(&u)?;
    let field = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let (tag, custody) = (field("tag"), field("custody"));
    let opt = |v: &String| (!v.is_empty()).then(|| v.clone());
    // The service validates the filters (slugs) as for the API.
    let query = IntegrationQuery {
        provider: None,
        tag: opt(&tag),
        custody: opt(&custody),
    };
    let list = s
        .rekey
        .list_integrations_filtered(u.tenant(), &query)
        .await
        .map_err(UiError::service("Cannot list integrations"))?;
    // Without the usage the apps are still listed, with none shown.
    let (mut uses, error) = match s.rekey.connections_by_integration(u.tenant()).await {
        Ok(m) => (m, None),
        Err(e) => (Default::default(), Some(e.public_message())),
    };
    let mut apps: Vec<App> = list
        .iter()
        .map(crate::views::integration)
        .map(|i| App {
            provider: s
                .rekey
                .catalog()
                .get(&i.provider)
                .map(|p| p.display_name.clone())
                .unwrap_or_else(|| i.provider.clone()),
            created: When::now(&i.created_at),
            updated: When::now(&i.updated_at),
            used_by: uses
                .remove(&i.id)
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    let (class, _, status_label) = look_name(&c.status);
                    Used {
                        id: c.id,
                        name: c.display_name,
                        class,
                        status_label,
                    }
                })
                .collect(),
            i,
        })
        .collect();
    apps.sort_by_key(|a| a.i.display_name.to_lowercase());
    let mut providers: Vec<(String, String)> = s
        .rekey
        .catalog()
        .all()
        .filter(|p| p.oauth.is_some())
        .map(|p| (p.id.clone(), p.display_name.clone()))
        .collect();
    providers.sort_by_key(|p| p.1.to_lowercase());
    Ok(page(
        StatusCode::OK,
        &IntegrationsPage {
            csrf: u.csrf.clone(),
            admin: u.is_admin(),
            apps,
            providers,
            error,
            tag,
            custody,
        },
    ))
}

fn require_read(u: &SessionUser) -> Result<(), UiError> {
    u.principal
        .require(rekey_core::scope::Scope::ConnectionsRead)
        .map_err(|_| UiError::Forbidden("This role cannot see integrations.".into()))
}

/// The register form. Scopes are separated by spaces or commas; empty
/// optional fields are left out, so the catalog's defaults apply.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct CreateForm {
    provider: String,
    display_name: String,
    client_id: String,
    client_secret: SecretString,
    auth_method: String,
    scopes: String,
    issuer: String,
    authorize_url: String,
    token_url: String,
    revocation_url: String,
    identity_url: String,
    /// Comma-separated.
    tags: String,
    custody: String,
    /// The provider's URL parameters as `name=value` pairs, e.g.
    /// `login_host=login.salesforce.com`.
    params: String,
}

/// Comma- or space-separated words; the service validates each.
fn words(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `name=value` pairs separated by commas, spaces or lines. Names and
/// values are validated by the service against the provider's catalog.
fn params_of(v: &str) -> Result<BTreeMap<String, String>, UiError> {
    words(v)
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(UiError::page(
                StatusCode::BAD_REQUEST,
                "Not registered",
                "URL parameters are name=value pairs, e.g. login_host=login.salesforce.com.",
                "bad",
            )),
        })
        .collect()
}

/// `POST /ui/integrations`: register an OAuth app (admin).
pub(super) async fn create(
    State(s): State<AppState>,
    CsrfForm { user: u, form: f }: CsrfForm<CreateForm>,
) -> Response {
    register(s, u, f).await.unwrap_or_else(|e| e.render(BACK))
}

async fn register(s: AppState, u: SessionUser, f: CreateForm) -> UiResult {
    u.require_admin("register OAuth apps")?;
    let opt = |v: &str| {
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_string())
    };
    let scopes = words(&f.scopes);
    let params = params_of(&f.params)?;
    let secret = f.client_secret.expose().trim();
    // Built from JSON so that fields the API gains later keep their defaults.
    let body = json!({
        "provider": f.provider.trim(),
        "display_name": f.display_name.trim(),
        "client_id": f.client_id.trim(),
        "client_secret": (!secret.is_empty()).then_some(secret),
        "auth_method": opt(&f.auth_method),
        "scopes": (!scopes.is_empty()).then_some(scopes),
        "tags": words(&f.tags),
        "custody": words(&f.custody),
        "params": params,
        "endpoints": {
            "issuer": opt(&f.issuer),
            "authorize_url": opt(&f.authorize_url),
            "token_url": opt(&f.token_url),
            "revocation_url": opt(&f.revocation_url),
            "identity_url": opt(&f.identity_url),
        },
    });
    let req = serde_json::from_value(body).map_err(|_| {
        UiError::page(
            StatusCode::BAD_REQUEST,
            "Not registered",
            "The form could not be read. Reload the page and try again.",
            "bad",
        )
    })?;
    // Validation messages name the field, never the secret.
    let v = s
        .rekey
        .create_integration(&u.ctx(), req)
        .await
        .map_err(UiError::service("Not registered"))?;
    Ok(super::message_to(
        StatusCode::CREATED,
        "Registered",
        format!(
            "{} ({}) is registered; its client secret is stored encrypted and never shown. Its redirect URI is {}.",
            v.row.display_name, v.row.id, v.redirect_uri
        ),
        "ok",
        BACK,
    ))
}

#[derive(Template)]
#[template(path = "ui/integration_rotate.html")]
struct RotatePage {
    csrf: String,
    i: IntegrationView,
    /// Signs in with a private key rather than a client secret.
    key: bool,
}

/// `GET /ui/integrations/{id}/rotate-secret`: the form for the new secret.
pub(super) async fn rotate_form(
    State(s): State<AppState>,
    Path(id): Path<String>,
    u: SessionUser,
) -> Response {
    rotate_page(s, id, u)
        .await
        .unwrap_or_else(|e| e.render(BACK))
}

async fn rotate_page(s: AppState, id: String, u: SessionUser) -> UiResult {
    u.require_admin("replace client secrets")?;
    let i = s
        .rekey
        .get_integration(u.tenant(), &id)
        .await
        .map_err(UiError::service("Not found"))?;
    Ok(page(
        StatusCode::OK,
        &RotatePage {
            csrf: u.csrf.clone(),
            key: i.row.auth_method == "private_key_jwt",
            i: crate::views::integration(&i),
        },
    ))
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct RotateForm {
    client_secret: SecretString,
    private_key_pem: SecretString,
    key_id: String,
}

/// `POST /ui/integrations/{id}/rotate-secret`: store the new client secret
/// (or private key) the provider issued, as the API's PATCH does. It
/// applies to the next token request of every connection of this app.
pub(super) async fn rotate(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { user: u, form: f }: CsrfForm<RotateForm>,
) -> Response {
    replace_secret(s, id, u, f)
        .await
        .unwrap_or_else(|e| e.render(BACK))
}

async fn replace_secret(s: AppState, id: String, u: SessionUser, f: RotateForm) -> UiResult {
    u.require_admin("replace client secrets")?;
    let secret = f.client_secret.expose().trim();
    let pem = f.private_key_pem.expose().trim();
    let req = match (secret.is_empty(), pem.is_empty()) {
        (false, true) => UpdateIntegration {
            client_secret: Some(secret.to_string()),
            ..Default::default()
        },
        (true, false) => UpdateIntegration {
            private_key_pem: Some(pem.to_string()),
            key_id: Some(f.key_id.trim().to_string()).filter(|k| !k.is_empty()),
            ..Default::default()
        },
        _ => {
            return Err(UiError::page(
                StatusCode::BAD_REQUEST,
                "Nothing saved",
                "Give either the new client secret or the new private key.",
                "warn",
            ))
        }
    };
    let v = s
        .rekey
        .update_integration(&u.ctx(), &id, req, None)
        .await
        .map_err(UiError::service("Not saved"))?;
    Ok(super::message_to(
        StatusCode::OK,
        "Client secret replaced",
        format!(
            "{} uses its new {} from the next token request on; it is stored encrypted and not shown again. Retire the old one at the provider once its connections have refreshed.",
            v.row.display_name,
            if secret.is_empty() { "private key" } else { "client secret" }
        ),
        "ok",
        BACK,
    ))
}
