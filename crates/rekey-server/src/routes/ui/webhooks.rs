//! The webhooks pages: subscriptions (list, create, delete, new signing
//! secret) and one subscription's recent deliveries with their attempts,
//! each replayable. The API gives all of this to the `admin` scope only,
//! so the dashboard does the same (reading included: URLs and delivery
//! bodies say where events go). A signing secret is shown once, on the page
//! that created it.

use super::show::When;
use super::{CsrfForm, SessionUser, UiError, UiResult};
use crate::pages::page;
use crate::{views, AppState};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rekey_api::{CreateWebhook, DeliveryQuery, DeliveryView, WebhookQuery, WebhookView};

use super::session::TokenOnly;

/// Deliveries shown on a subscription's page, newest first.
const RECENT: i64 = 20;

struct Hook {
    w: WebhookView,
    created: When,
}

#[derive(Template)]
#[template(path = "ui/webhooks.html")]
struct WebhooksPage {
    csrf: String,
    hooks: Vec<Hook>,
    /// `*`, families and event types, for the create form.
    filters: Vec<String>,
}

/// `GET /ui/webhooks`.
pub(super) async fn list(State(s): State<AppState>, u: SessionUser) -> UiResult {
    u.require_admin("see webhooks")?;
    let l = s
        .rekey
        .list_webhooks(
            u.tenant(),
            &WebhookQuery {
                limit: Some(200),
                ..Default::default()
            },
        )
        .await
        .map_err(UiError::service("Cannot list webhooks"))?;
    let l = views::webhook_list(&l);
    Ok(page(
        StatusCode::OK,
        &WebhooksPage {
            csrf: u.csrf.clone(),
            hooks: l
                .items
                .into_iter()
                .map(|w| Hook {
                    created: When::now(&w.created_at),
                    w,
                })
                .collect(),
            filters: rekey_core::events::event_filters(),
        },
    ))
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct CreateForm {
    url: String,
    /// Checked event filters (repeated field).
    #[serde(rename = "event")]
    events: Vec<String>,
    description: String,
}

/// The signing secret, shown once after create or rotation.
#[derive(Template)]
#[template(path = "ui/webhook_secret.html")]
struct SecretPage {
    heading: &'static str,
    w: WebhookView,
    secret: String,
}

/// `POST /ui/webhooks`: subscribe (admin); the answer shows the secret once.
pub(super) async fn create(
    State(s): State<AppState>,
    CsrfForm { user: u, form: f }: CsrfForm<CreateForm>,
) -> UiResult {
    u.require_admin("create webhooks")?;
    let description = f.description.trim();
    let req = CreateWebhook {
        url: f.url.trim().to_string(),
        events: f.events,
        description: (!description.is_empty()).then(|| description.to_string()),
    };
    // The service checks the URL (outbound policy), events and description.
    let c = s
        .rekey
        .create_webhook(&u.ctx(), &req)
        .await
        .map(views::created_webhook)
        .map_err(UiError::service("Not created"))?;
    Ok(page(
        StatusCode::CREATED,
        &SecretPage {
            heading: "Webhook created",
            w: c.webhook,
            secret: c.secret,
        },
    ))
}

/// `POST /ui/webhooks/{id}/rotate-secret`: a new signing secret, shown once;
/// the old one stops signing at once.
pub(super) async fn rotate_secret(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { user: u, .. }: CsrfForm<TokenOnly>,
) -> UiResult {
    u.require_admin("change webhooks")?;
    let c = s
        .rekey
        .rotate_webhook_secret(&u.ctx(), &id)
        .await
        .map(views::created_webhook)
        .map_err(UiError::service("Not rotated"))?;
    Ok(page(
        StatusCode::OK,
        &SecretPage {
            heading: "New signing secret",
            w: c.webhook,
            secret: c.secret,
        },
    ))
}

/// `POST /ui/webhooks/{id}/delete`.
pub(super) async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { user: u, .. }: CsrfForm<TokenOnly>,
) -> UiResult {
    u.require_admin("delete webhooks")?;
    s.rekey
        .delete_webhook(&u.ctx(), &id)
        .await
        .map_err(UiError::service("Not deleted"))?;
    Ok(super::message_to(
        StatusCode::OK,
        "Deleted",
        "The webhook subscription is deleted; no more events are sent to it.".into(),
        "ok",
        ("/ui/webhooks", "Back to webhooks"),
    ))
}

struct Delivery {
    d: DeliveryView,
    class: &'static str,
    created: When,
    next: When,
    attempts: Vec<Attempt>,
}

struct Attempt {
    at: When,
    http_status: Option<i64>,
    error: Option<String>,
    duration_ms: i64,
}

#[derive(Template)]
#[template(path = "ui/webhook.html")]
struct WebhookPage {
    csrf: String,
    w: WebhookView,
    created: When,
    deliveries: Vec<Delivery>,
}

/// `GET /ui/webhooks/{id}`: the subscription and its recent deliveries,
/// each with its attempts.
pub(super) async fn detail(
    State(s): State<AppState>,
    Path(id): Path<String>,
    u: SessionUser,
) -> UiResult {
    u.require_admin("see webhooks")?;
    let not_found = UiError::service("Not found");
    let w = s
        .rekey
        .get_webhook(u.tenant(), &id)
        .await
        .map(|w| views::webhook(&w))
        .map_err(&not_found)?;
    let l = s
        .rekey
        .list_deliveries(
            u.tenant(),
            &w.id,
            &DeliveryQuery {
                limit: Some(RECENT),
                ..Default::default()
            },
        )
        .await
        .map(|l| views::delivery_list(&l))
        .map_err(&not_found)?;
    let mut deliveries = Vec::with_capacity(l.items.len());
    for d in l.items {
        // The attempt log comes with one delivery at a time.
        let log = s
            .rekey
            .get_delivery(u.tenant(), &w.id, &d.id)
            .await
            .map(|full| views::delivery(&full).attempt_log.unwrap_or_default())
            .unwrap_or_default();
        deliveries.push(Delivery {
            class: match d.status.as_str() {
                "delivered" => "ok",
                "failed" => "bad",
                _ => "warn",
            },
            created: When::now(&d.created_at),
            next: When::opt(&d.next_attempt_at),
            attempts: log
                .into_iter()
                .map(|a| Attempt {
                    at: When::now(&a.at),
                    http_status: a.http_status,
                    error: a.error,
                    duration_ms: a.duration_ms,
                })
                .collect(),
            d,
        });
    }
    Ok(page(
        StatusCode::OK,
        &WebhookPage {
            csrf: u.csrf.clone(),
            created: When::now(&w.created_at),
            w,
            deliveries,
        },
    ))
}

/// `POST /ui/webhooks/{id}/deliveries/{delivery}/replay`: send it again
/// (same `webhook-id`), whatever its state.
pub(super) async fn replay(
    State(s): State<AppState>,
    Path((id, delivery)): Path<(String, String)>,
    CsrfForm { user: u, .. }: CsrfForm<TokenOnly>,
) -> UiResult {
    u.require_admin("replay deliveries")?;
    let d = s
        .rekey
        .replay_delivery(&u.ctx(), &id, &delivery)
        .await
        .map(|d| views::delivery(&d))
        .map_err(UiError::service("Not replayed"))?;
    Ok(super::message_to(
        StatusCode::OK,
        "Replay queued",
        format!(
            "Delivery {} ({}) is queued to be sent again; its page shows the new attempt.",
            d.id, d.event_type
        ),
        "ok",
        ("/ui/webhooks", "Back to webhooks"),
    ))
}
