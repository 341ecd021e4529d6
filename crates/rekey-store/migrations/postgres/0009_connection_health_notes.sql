-- What health knows about a connection beyond its status: that no probe can
-- check it (the reason, set by the check that found none, cleared by the
-- first probe that runs), and the last operator confirmation that its data
-- flows (who, when, note). A side table, so the connection row and its
-- writers stay as they are. Keep the sqlite and postgres files in step.
CREATE TABLE connection_health_notes (
    connection_id TEXT PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    unchecked_reason TEXT,
    confirmed_at BIGINT,
    confirmed_by TEXT,
    confirmation_note TEXT
);
