-- OAuth: app registrations (integrations) and connect sessions.
CREATE TABLE integrations (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    provider TEXT NOT NULL,
    display_name TEXT NOT NULL,
    client_id TEXT NOT NULL,
    auth_method TEXT NOT NULL,
    key_id TEXT,
    scopes TEXT NOT NULL,
    extra_params TEXT NOT NULL,
    params TEXT NOT NULL,
    endpoints TEXT NOT NULL,
    redirect_uri TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    credential_version BIGINT NOT NULL
);
CREATE INDEX integrations_tenant ON integrations (tenant, id);

CREATE TABLE connect_sessions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    state_hash TEXT UNIQUE,
    integration_id TEXT NOT NULL,
    display_name TEXT,
    owner_hint TEXT,
    tags TEXT NOT NULL,
    custody TEXT NOT NULL,
    reauthorize_id TEXT,
    nonce TEXT,
    redirect_uri TEXT,
    status TEXT NOT NULL,
    error TEXT,
    connection_id TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX connect_sessions_tenant ON connect_sessions (tenant, id);
