-- A connection's OAuth integration as its own column (it was only inside the
-- `credential_meta` JSON, found with LIKE). The store keeps it in step with
-- `credential_meta."integration_id"` on every insert and update. Keep the
-- sqlite and postgres files in step.
ALTER TABLE connections ADD COLUMN integration_id TEXT;
-- Backfill from the JSON; text that is not JSON, or has no string
-- `integration_id` at the top level, leaves NULL (the cast's error is caught
-- per row, so one bad row cannot fail the migration).
CREATE FUNCTION pg_temp.rekey_meta_integration(meta TEXT) RETURNS TEXT AS $$
BEGIN
    IF jsonb_typeof(meta::jsonb -> 'integration_id') = 'string' THEN
        RETURN meta::jsonb ->> 'integration_id';
    END IF;
    RETURN NULL;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
UPDATE connections SET integration_id = pg_temp.rekey_meta_integration(credential_meta);
DROP FUNCTION pg_temp.rekey_meta_integration(TEXT);
-- "Connections using integration X" (integration delete).
CREATE INDEX connections_integration ON connections (tenant, integration_id);
