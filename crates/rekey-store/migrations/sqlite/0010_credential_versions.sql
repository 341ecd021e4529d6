-- Every credential a connection has held: one row a version, labelled
-- current (what consumers get), pending (a rotation's new secret, not yet
-- promoted), previous (the one before current, readable until grace_until)
-- or retired (its material is gone; the fingerprint and history stay as
-- evidence). seq is the connection's credential_version the material was
-- (or will be) sealed for. The material of pending and previous versions is
-- in `secrets` under owner_kind 'credential_version' and the version's id;
-- the current material stays under the connection. Keep the sqlite and
-- postgres files in step.
CREATE TABLE credential_versions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    label TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    fingerprint_kind TEXT NOT NULL,
    meta TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    promoted_at BIGINT,
    promoted_by TEXT,
    grace_until BIGINT,
    retired_at BIGINT,
    retired_by TEXT,
    UNIQUE (connection_id, seq)
);
CREATE INDEX credential_versions_conn ON credential_versions (tenant, connection_id);
CREATE INDEX credential_versions_grace ON credential_versions (label, grace_until);
