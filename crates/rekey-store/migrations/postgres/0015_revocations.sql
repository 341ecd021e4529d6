-- One row a revocation of one credential of a connection: how it was done
-- (at the provider, or by an operator following the runbook, step by
-- step), and whether rekey then proved the old credential dead by trying
-- it at the provider. The old material stays sealed in `secrets` (owner
-- kind 'revocation', the row's id) until the verdict is final, so a new
-- credential on the connection never closes the old one's revocation.
-- Keep the sqlite and postgres files in step.
CREATE TABLE revocations (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    credential_version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    meta TEXT NOT NULL,
    fingerprint TEXT,
    method TEXT NOT NULL,
    state TEXT NOT NULL,
    steps TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    requested_by TEXT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT,
    verdict TEXT,
    evidence TEXT,
    verified_at BIGINT,
    verify_due_at BIGINT,
    verify_attempts BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT
);
CREATE INDEX revocations_conn ON revocations (tenant, connection_id);
CREATE INDEX revocations_due ON revocations (verify_due_at);
