//! Webhook event types: the closed set of events rekey emits.

/// Every event type rekey emits. Subscriptions name these, a family
/// (`connection.*`) or `*`.
pub const EVENT_TYPES: &[&str] = &[
    "connection.created",
    "connection.status_changed",
    "connection.refresh_failed",
    "connection.refreshed",
    "connection.revoked",
    "connection.reauthorized",
    "connection.deleted",
    "webhook.test",
];

/// What a subscription may name: `*`, every family (`connection.*`) and
/// every event type.
pub fn event_filters() -> Vec<String> {
    let mut out = vec!["*".to_string()];
    for t in EVENT_TYPES {
        if let Some((fam, _)) = t.split_once('.') {
            let f = format!("{fam}.*");
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out.extend(EVENT_TYPES.iter().map(|t| t.to_string()));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_are_star_families_and_types() {
        let f = super::event_filters();
        assert_eq!(&f[..3], ["*", "connection.*", "webhook.*"]);
        assert_eq!(f.len(), 3 + super::EVENT_TYPES.len());
    }
}
