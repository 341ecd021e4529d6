-- Connection health (probes, error context, scheduling) and webhooks with a
-- durable outbox. Keep the sqlite and postgres files in step.
ALTER TABLE connections ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
ALTER TABLE connections ADD COLUMN probe_url TEXT;
ALTER TABLE connections ADD COLUMN last_ok_at BIGINT;
ALTER TABLE connections ADD COLUMN last_checked_at BIGINT;
ALTER TABLE connections ADD COLUMN first_failed_at BIGINT;
ALTER TABLE connections ADD COLUMN consecutive_failures BIGINT NOT NULL DEFAULT 0;
-- Scheduler state: when the next check is due and who holds it now.
ALTER TABLE connections ADD COLUMN next_check_at BIGINT;
ALTER TABLE connections ADD COLUMN lease_owner TEXT;
ALTER TABLE connections ADD COLUMN lease_until BIGINT;
CREATE INDEX connections_next_check ON connections (next_check_at);

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT,
    disabled_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant, id);

-- The outbox: one row per event, written in the transaction that made the
-- change it reports. Payloads never hold secret values.
CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_events_tenant ON webhook_events (tenant, id);

-- One row per (event, subscription), fanned out in the same transaction.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL REFERENCES webhook_events (id),
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    last_http_status BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, id);

CREATE TABLE webhook_attempts (
    id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    at BIGINT NOT NULL,
    http_status BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    response_body TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, at);
-- Rows from before this migration are due for a first check.
UPDATE connections SET next_check_at = 0;
