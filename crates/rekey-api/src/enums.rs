//! Schema-only types for the OpenAPI document: the closed sets of values some
//! `String` fields take on the wire, built from rekey-core's own lists
//! (`ConnectionKind::ALL`, `Scope::ALL`, `Status::ALL`, `EventType::ALL`), so
//! the document cannot drift from the code. Fields stay `String`s: the wire
//! format is unchanged, and the service still validates every value.

use rekey_core::connection::{ConnectionKind as CoreKind, Status};
use rekey_core::events::{event_filters, event_types};
use rekey_core::scope::Scope as CoreScope;
use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

fn string_enum<V: Into<serde_json::Value>>(
    description: &str,
    values: impl IntoIterator<Item = V>,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values))
        .into()
}

macro_rules! schema_enum {
    ($(#[$m:meta])* $name:ident, $description:literal, $values:expr) => {
        $(#[$m])*
        pub struct $name;
        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string_enum($description, $values)
            }
        }
        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

schema_enum!(
    /// `rekey_core::connection::ConnectionKind`.
    ConnectionKind,
    "How a connection authenticates.",
    CoreKind::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// `rekey_core::connection::Status`.
    ConnectionStatus,
    "Where a connection is in its lifecycle.",
    Status::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// `rekey_core::versions::VersionLabel`.
    VersionLabel,
    "Where a credential version stands: `current` (what consumers get), `pending` (a rotation's new secret, not yet promoted), `previous` (readable until its grace ends), `retired` (material deleted; fingerprint and history kept).",
    rekey_core::versions::VersionLabel::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// `rekey_core::rotation::RotationState`.
    RotationState,
    "The last step a rotation reached.",
    rekey_core::rotation::RotationState::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// `rekey_core::rotation::RotationStrategy`.
    RotationStrategy,
    "How a database password is rotated.",
    rekey_core::rotation::RotationStrategy::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// `rekey_core::rotation::RotationMethod`.
    RotationMethod,
    "Who carries out a rotation's steps: `api` (rekey's rotator) or `manual` (guided: an operator confirms each step).",
    rekey_core::rotation::RotationMethod::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// `rekey_core::scope::Scope`.
    Scope,
    "An API key scope; `admin` implies all the others.",
    CoreScope::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// `rekey_core::events::EventType`.
    WebhookEventType,
    "An event rekey sends to webhook subscribers.",
    event_types()
);
schema_enum!(
    /// `rekey_core::events::event_filters`.
    WebhookEventFilter,
    "What a subscription receives: `*`, a family (`connection.*`) or one event type.",
    event_filters()
);
schema_enum!(
    /// `rekey_core::ErrorCode`.
    ErrorCode,
    "A stable, machine-readable error code. New codes may be added; clients should treat an unknown code by its HTTP status.",
    rekey_core::ErrorCode::ALL.iter().map(|c| c.as_str())
);
schema_enum!(
    /// `rekey_core::revocation::Verdict`.
    Verdict,
    "What trying a revoked credential at the provider showed: `verified_rejected` (refused: proof it is dead), `still_accepted` (an alarm; retried) or `unverifiable` (no way to try it for this kind).",
    rekey_core::revocation::Verdict::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// `rekey_core::campaign::CampaignState`.
    CampaignState,
    "Where a campaign is: `draft` (planned, nothing done), `running`, `paused` (no new step starts), `completed` (every connection finished), `cancelled`.",
    rekey_core::campaign::CampaignState::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// `rekey_core::campaign::ItemState`.
    CampaignItemState,
    "Where one connection of a campaign is. `overdue`: not finished by the deadline.",
    rekey_core::campaign::ItemState::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// `rekey_core::campaign::CampaignAction`.
    CampaignAction,
    "What a campaign does to a connection: `revoke`, `rotate`, `reauthorize` (a Connect link to the owner) or `disable`.",
    rekey_core::campaign::CampaignAction::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// `rekey_core::campaign::Actor`.
    CampaignActor,
    "Who carries a planned step out: `automatic` (rekey), `operator` (a person following the runbook) or `owner` (the connection's owner, through a Connect link).",
    rekey_core::campaign::Actor::ALL.iter().map(|k| k.as_str())
);
schema_enum!(
    /// [`crate::ImportRow::outcome`].
    ImportOutcome,
    "What an import did with a row: `created`, `valid` (a dry run's row that would be created) or `failed` (see its `error`).",
    ["created", "valid", "failed"]
);
