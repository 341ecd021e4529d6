//! The closed set of error codes rekey answers with. Clients may rely on
//! these wire names; the OpenAPI document lists them (`ErrorCode` schema),
//! built from [`ErrorCode::ALL`], so it cannot drift from the code.

use std::fmt;

macro_rules! error_codes {
    ($( $(#[$m:meta])* $var:ident => $s:literal ),+ $(,)?) => {
        /// A stable, machine-readable error code (`{"error":{"code"}}`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode { $( $(#[$m])* $var ),+ }
        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$var),+];
            /// The wire name.
            pub fn as_str(self) -> &'static str { match self { $(ErrorCode::$var => $s),+ } }
            /// The code with this wire name, if there is one (clients parse
            /// codes they receive; unknown ones come from newer servers).
            pub fn from_wire(s: &str) -> Option<ErrorCode> {
                match s { $($s => Some(ErrorCode::$var),)+ _ => None }
            }
        }
    };
}

error_codes! {
    AlreadyExists => "already_exists",
    AlreadyRevoked => "already_revoked",
    AlreadyRotated => "already_rotated",
    ApiKeyExpired => "api_key_expired",
    ApiKeyNotFound => "api_key_not_found",
    BackupNotSupported => "backup_not_supported",
    CampaignEmpty => "campaign_empty",
    CampaignItemNotFound => "campaign_item_not_found",
    CampaignNotFound => "campaign_not_found",
    CampaignState => "campaign_state",
    ClientSecretRejected => "client_secret_rejected",
    ClientSecretUntested => "client_secret_untested",
    ConfirmationRefused => "confirmation_refused",
    ConnectSessionExpired => "connect_session_expired",
    ConnectSessionNotFound => "connect_session_not_found",
    ConnectSessionSuperseded => "connect_session_superseded",
    ConnectSessionUsed => "connect_session_used",
    ConnectionNotFound => "connection_not_found",
    ConnectionUnusable => "connection_unusable",
    DataDirInUse => "data_dir_in_use",
    DecryptionFailed => "decryption_failed",
    DeliveryInFlight => "delivery_in_flight",
    DeliveryNotFound => "delivery_not_found",
    EvidenceNotFound => "evidence_not_found",
    HeadersTooLarge => "headers_too_large",
    IdentityFailed => "identity_failed",
    IdentityMismatch => "identity_mismatch",
    IntegrationInUse => "integration_in_use",
    IntegrationNotFound => "integration_not_found",
    IntegrationProviderMismatch => "integration_provider_mismatch",
    Internal => "internal",
    InvalidBody => "invalid_body",
    InvalidCatalog => "invalid_catalog",
    InvalidConfig => "invalid_config",
    InvalidCredentials => "invalid_credentials",
    InvalidCursor => "invalid_cursor",
    InvalidField => "invalid_field",
    InvalidFormat => "invalid_format",
    InvalidGrace => "invalid_grace",
    InvalidId => "invalid_id",
    InvalidIdToken => "invalid_id_token",
    InvalidIfMatch => "invalid_if_match",
    InvalidIntegration => "invalid_integration",
    InvalidKind => "invalid_kind",
    InvalidLimit => "invalid_limit",
    InvalidPath => "invalid_path",
    InvalidQuery => "invalid_query",
    InvalidRole => "invalid_role",
    InvalidScope => "invalid_scope",
    InvalidSearch => "invalid_search",
    InvalidState => "invalid_state",
    InvalidStep => "invalid_step",
    InvalidStrategy => "invalid_strategy",
    InvalidStatus => "invalid_status",
    InvalidTimestamp => "invalid_timestamp",
    InvalidTransition => "invalid_transition",
    InvalidUrl => "invalid_url",
    InvalidUsername => "invalid_username",
    InvalidVersion => "invalid_version",
    IssuerMismatch => "issuer_mismatch",
    KindNotImportable => "kind_not_importable",
    KindNotSupported => "kind_not_supported",
    KindNotSupportedByProvider => "kind_not_supported_by_provider",
    MalformedJson => "malformed_json",
    MalformedRequest => "malformed_request",
    MethodNotAllowed => "method_not_allowed",
    MissingCode => "missing_code",
    MissingScope => "missing_scope",
    NeedsReauth => "needs_reauth",
    NoPendingSecret => "no_pending_secret",
    NoForm => "no_form",
    NoPendingGrant => "no_pending_grant",
    NoPreviousVersion => "no_previous_version",
    NoRotator => "no_rotator",
    NoRekeyData => "no_rekey_data",
    NotAForm => "not_a_form",
    NotDisabled => "not_disabled",
    NotOauth => "not_oauth",
    NotRevokePending => "not_revoke_pending",
    NotRevoked => "not_revoked",
    NothingToUpdate => "nothing_to_update",
    OauthConfig => "oauth_config",
    OutboundRefused => "outbound_refused",
    Overloaded => "overloaded",
    PayloadTooLarge => "payload_too_large",
    ProbeAvailable => "probe_available",
    ProviderDenied => "provider_denied",
    ProviderHasNoOauth => "provider_has_no_oauth",
    ProviderNotFound => "provider_not_found",
    RequestTimeout => "request_timeout",
    RevocationIncomplete => "revocation_incomplete",
    RotationFailed => "rotation_failed",
    RotationInProgress => "rotation_in_progress",
    RotationNotAwaiting => "rotation_not_awaiting",
    RotationNotCancellable => "rotation_not_cancellable",
    RotationNotFound => "rotation_not_found",
    RotationScheduleNotFound => "rotation_schedule_not_found",
    RouteNotFound => "route_not_found",
    ScopeDowngrade => "scope_downgrade",
    StepAlreadyConfirmed => "step_already_confirmed",
    TokenExchangeFailed => "token_exchange_failed",
    TokenRequestFailed => "token_request_failed",
    TooManyAttempts => "too_many_attempts",
    Unauthorized => "unauthorized",
    Unavailable => "unavailable",
    UnknownProvider => "unknown_provider",
    UnsupportedMediaType => "unsupported_media_type",
    UriTooLong => "uri_too_long",
    UserExists => "user_exists",
    VersionConflict => "version_conflict",
    WeakPassword => "weak_password",
    WebhookLimit => "webhook_limit",
    WebhookNotFound => "webhook_not_found",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Comparing with a wire name, as clients and tests see codes.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn wire_names_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "duplicate {s}");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert_eq!(ErrorCode::from_wire(s), Some(*c));
        }
        assert_eq!(ErrorCode::from_wire("nope"), None);
    }
}
