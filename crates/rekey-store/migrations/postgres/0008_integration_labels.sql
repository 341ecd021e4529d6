-- Integrations (OAuth app registrations) carry tags and custody places like
-- connections: a client secret known to live elsewhere ("stored in
-- Salesforce") can be found in a breach. Lists as JSON text on the row (what
-- views read) and one row per value in side tables (what filters join), as
-- for connections. Keep the sqlite and postgres files in step.
ALTER TABLE integrations ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE integrations ADD COLUMN custody TEXT NOT NULL DEFAULT '[]';

CREATE TABLE integration_tags (
    integration_id TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (integration_id, tag)
);
CREATE INDEX integration_tags_tag ON integration_tags (tag);

CREATE TABLE integration_custody (
    integration_id TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    place TEXT NOT NULL,
    PRIMARY KEY (integration_id, place)
);
CREATE INDEX integration_custody_place ON integration_custody (place);
