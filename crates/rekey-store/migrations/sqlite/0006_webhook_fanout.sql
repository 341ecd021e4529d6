-- Webhook fan-out leaves the change's transaction: a change writes one
-- outbox event; the delivery worker later claims pending events (those with
-- no `fanned_out_at`), writes one delivery per matching enabled
-- subscription and sets `fanned_out_at`, in one transaction. Keep the sqlite
-- and postgres files in step.
ALTER TABLE webhook_events ADD COLUMN fanned_out_at BIGINT;
-- Events from before this migration already have their deliveries.
UPDATE webhook_events SET fanned_out_at = created_at;
-- The worker's scan of pending events (small: only unfanned rows).
CREATE INDEX webhook_events_pending ON webhook_events (id) WHERE fanned_out_at IS NULL;
-- `emit`'s check for an enabled subscription, and the fan-out's load of them.
CREATE INDEX webhooks_enabled ON webhooks (tenant, id) WHERE disabled_at IS NULL;
