-- Incident campaigns: a named, filtered run of revocations, rotations and
-- reauthorizations with a deadline. `campaign_items` is the plan frozen at
-- start, one row per connection, each row the last step its connection
-- reached (written before the next step's side effect, so a restart on any
-- replica resumes there). Items are claimed with a lease, as rotations
-- are. Keep the sqlite and postgres files in step.
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- The connection filter, JSON object text (the API's field names).
    filter TEXT NOT NULL,
    -- Action overrides by kind or connection id, JSON object text.
    actions TEXT NOT NULL,
    -- Rotation options by kind or connection id, JSON object text.
    rotation TEXT NOT NULL,
    deadline BIGINT NOT NULL,
    -- Who is told, JSON object text ({"webhooks": bool, "email": bool}).
    notify TEXT NOT NULL,
    state TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX campaigns_tenant ON campaigns (tenant, id);

CREATE TABLE campaign_items (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL,
    -- As the connection was when the plan was frozen (it may be deleted since).
    display_name TEXT NOT NULL,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    owner TEXT,
    base_version BIGINT NOT NULL,
    -- The actions, JSON list text, and the index of the one running.
    actions TEXT NOT NULL,
    step BIGINT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT,
    revocation_id TEXT,
    rotation_id TEXT,
    session_id TEXT,
    link_expires_at BIGINT,
    -- When the owner was reminded of the link (once, before the deadline).
    reminded_at BIGINT,
    -- When the running action's side effect was begun: set before a call
    -- to a provider, so a restart knows the call may have been made.
    started_at BIGINT,
    attempts BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    confirmed_by TEXT,
    comment TEXT,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE UNIQUE INDEX campaign_items_conn ON campaign_items (campaign_id, connection_id);
CREATE INDEX campaign_items_due ON campaign_items (due_at) WHERE finished_at IS NULL;
CREATE INDEX campaign_items_connection ON campaign_items (tenant, connection_id) WHERE finished_at IS NULL;
