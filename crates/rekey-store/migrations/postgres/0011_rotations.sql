-- Credential rotations: one row a rotation, its state the last step it
-- reached (written before the next step's side effect, so a restart on
-- any replica resumes there). At most one unfinished rotation per
-- connection. Work is claimed with a lease (lease_owner until
-- lease_until), as health checks are. Keep the sqlite and postgres files
-- in step.
CREATE TABLE rotations (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    rotator TEXT NOT NULL,
    strategy TEXT,
    state TEXT NOT NULL,
    -- Options of the rotator (admin connection, alternate role), JSON object text.
    options TEXT NOT NULL,
    grace_ms BIGINT NOT NULL,
    pending_version_id TEXT,
    old_version_id TEXT,
    -- The last failure, JSON {code, message, at, step}, and what to do next.
    last_error TEXT,
    next_action TEXT,
    attempts BIGINT NOT NULL,
    -- When the next step may run (a retry's backoff; retirement after the grace).
    due_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    requested_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE UNIQUE INDEX rotations_one_running ON rotations (connection_id) WHERE finished_at IS NULL;
CREATE INDEX rotations_tenant ON rotations (tenant, id);
CREATE INDEX rotations_due ON rotations (due_at) WHERE finished_at IS NULL;
