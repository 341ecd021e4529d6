-- rekey schema v1 (PostgreSQL). Keep in step with ../sqlite/0001_init.sql.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, id);

CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    display_name TEXT NOT NULL,
    owner_subject TEXT,
    owner_email TEXT,
    owner_name TEXT,
    scopes TEXT NOT NULL,
    tags TEXT NOT NULL,
    custody TEXT NOT NULL,
    credential_meta TEXT NOT NULL,
    status TEXT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    rotated_at BIGINT,
    expires_at BIGINT,
    version BIGINT NOT NULL,
    credential_version BIGINT NOT NULL
);
CREATE INDEX connections_tenant ON connections (tenant, id);
CREATE INDEX connections_status ON connections (tenant, status);
CREATE INDEX connections_provider ON connections (tenant, provider);

CREATE TABLE connection_tags (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (connection_id, tag)
);
CREATE INDEX connection_tags_tag ON connection_tags (tag);

CREATE TABLE connection_custody (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    place TEXT NOT NULL,
    PRIMARY KEY (connection_id, place)
);
CREATE INDEX connection_custody_place ON connection_custody (place);

CREATE TABLE secrets (
    owner_kind TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    field TEXT NOT NULL,
    tenant TEXT NOT NULL,
    version BIGINT NOT NULL,
    kek_id TEXT NOT NULL,
    wrapped_dek BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    PRIMARY KEY (owner_kind, owner_id, field)
);
CREATE INDEX secrets_kek ON secrets (kek_id);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    request_id TEXT,
    source TEXT,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant, seq);

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
