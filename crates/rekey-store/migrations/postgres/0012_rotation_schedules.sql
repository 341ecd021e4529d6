-- Scheduled rotation: at most one schedule per connection. A rotation is
-- started when next_due_at has passed and the time of day (UTC) is inside
-- the window [window_start, window_end) in minutes after midnight (a
-- window that wraps midnight has window_start > window_end). Keep the
-- sqlite and postgres files in step.
CREATE TABLE rotation_schedules (
    connection_id TEXT PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    period_secs BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    -- The rotation's options (grace, strategy, admin…), JSON object text.
    options TEXT NOT NULL,
    next_due_at BIGINT NOT NULL,
    last_rotation_id TEXT,
    -- Why the last scheduled start did not happen, JSON {code, message, at}.
    last_error TEXT,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX rotation_schedules_due ON rotation_schedules (next_due_at);
