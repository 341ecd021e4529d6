-- A connection's OAuth integration as its own column (it was only inside the
-- `credential_meta` JSON, found with LIKE). The store keeps it in step with
-- `credential_meta."integration_id"` on every insert and update. Keep the
-- sqlite and postgres files in step.
ALTER TABLE connections ADD COLUMN integration_id TEXT;
-- Backfill from the JSON; text that is not JSON, or has no string
-- `integration_id` at the top level, leaves NULL.
UPDATE connections SET integration_id = json_extract(credential_meta, '$.integration_id')
    WHERE json_valid(credential_meta) AND json_type(credential_meta, '$.integration_id') = 'text';
-- "Connections using integration X" (integration delete).
CREATE INDEX connections_integration ON connections (tenant, integration_id);
