-- The next free slot of each provider's campaign steps (Unix ms): a worker
-- reserves a slot (next_at moves on by the spacing) before a step that
-- calls the provider, and waits for it, so every replica sharing the
-- database keeps one per-provider rate. Keep the sqlite and postgres
-- files in step.
CREATE TABLE provider_pace (
    provider TEXT PRIMARY KEY,
    next_at BIGINT NOT NULL
);
