-- The last audit entry a walk of the chain verified, so later walks (the
-- dashboard's audit page, `?incremental=true`) start there instead of at the
-- first entry. One row. A full walk (`rekey audit verify`, the API's
-- default) still reads everything and is the check of record.
CREATE TABLE audit_checkpoint (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    -- Entries up to and including `seq`, all tenants.
    entries BIGINT NOT NULL,
    verified_at BIGINT NOT NULL,
    -- When a walk from the first entry last found the chain intact.
    full_at BIGINT
);
-- Entries of each tenant up to the checkpoint's `seq`.
CREATE TABLE audit_checkpoint_tenants (
    tenant TEXT PRIMARY KEY,
    entries BIGINT NOT NULL
);
