-- Fewer B-trees per audit entry: every credential read writes one, and each
-- commit rewrites a page of every B-tree it touches into the write-ahead
-- log (docs/PERFORMANCE.md, 2026-12-07).
-- * `seq` becomes SQLite's rowid. Declared `BIGINT PRIMARY KEY` in 0001, it
--   was a unique index beside the rowid's own B-tree; as `INTEGER PRIMARY
--   KEY` it is the table's key.
-- * `id` is no longer indexed as unique. Nothing looks an entry up by it,
--   and it is unique by construction (the store makes it: a UUIDv7, which
--   increases strictly within a process and carries fresh random bits); the chain is keyed by `seq`, and each hash
--   covers the id, so a changed id is still caught by `audit verify`.
-- Five B-trees become three. The table is rebuilt once, every row kept as
-- it was (the hashes cover values, not storage).
CREATE TABLE audit_log_v2 (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
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
INSERT INTO audit_log_v2
    (seq, id, at, tenant, actor, action, target, request_id, source, outcome, details, prev_hash, hash)
SELECT seq, id, at, tenant, actor, action, target, request_id, source, outcome, details, prev_hash, hash
FROM audit_log ORDER BY seq;

DROP TRIGGER audit_log_no_update;
DROP TRIGGER audit_log_no_delete;
DROP TABLE audit_log;
ALTER TABLE audit_log_v2 RENAME TO audit_log;

CREATE INDEX audit_log_tenant ON audit_log (tenant, seq);
CREATE INDEX audit_log_target ON audit_log (tenant, target, action, at);

-- Append-only, as before: refuse edits and deletions.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
