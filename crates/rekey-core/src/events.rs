//! Webhook event types: the closed set of events rekey emits.

string_enum!(
    /// Every event type rekey emits. Subscriptions name these, a family
    /// (`connection.*`) or `*`.
    EventType, crate::ErrorCode::InvalidField, {
        ConnectionCreated => "connection.created",
        ConnectionStatusChanged => "connection.status_changed",
        ConnectionRefreshFailed => "connection.refresh_failed",
        ConnectionRefreshed => "connection.refreshed",
        ConnectionRevoked => "connection.revoked",
        ConnectionReauthorized => "connection.reauthorized",
        ConnectionDeleted => "connection.deleted",
        ConnectionRevocationVerified => "connection.revocation_verified",
        ConnectionRevocationUnverified => "connection.revocation_unverified",
        WebhookTest => "webhook.test",
        RotationStarted => "rotation.started",
        RotationStep => "rotation.step",
        RotationSucceeded => "rotation.succeeded",
        RotationFailed => "rotation.failed",
        RotationAwaitingOperator => "rotation.awaiting_operator",
        CampaignStarted => "campaign.started",
        CampaignReauthRequested => "campaign.reauth_requested",
        CampaignReauthReminder => "campaign.reauth_reminder",
        CampaignProgress => "campaign.progress",
        CampaignCompleted => "campaign.completed",
    }
);

/// The wire names of [`EventType::ALL`], in order.
pub fn event_types() -> impl Iterator<Item = &'static str> {
    EventType::ALL.iter().map(|t| t.as_str())
}

/// What a subscription may name: `*`, every family (`connection.*`) and
/// every event type.
pub fn event_filters() -> Vec<String> {
    let mut out = vec!["*".to_string()];
    for t in event_types() {
        if let Some((fam, _)) = t.split_once('.') {
            let f = format!("{fam}.*");
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out.extend(event_types().map(str::to_string));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_are_star_families_and_types() {
        let f = super::event_filters();
        assert_eq!(&f[..4], ["*", "connection.*", "webhook.*", "rotation.*"]);
        assert_eq!(f.len(), 5 + super::EventType::ALL.len());
        assert_eq!(f[4], "campaign.*");
    }
}
