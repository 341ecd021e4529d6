-- One index less per audit entry (every credential read writes one): `id`
-- is no longer indexed as unique. Nothing looks an entry up by it, and it
-- is unique by construction (the store makes it: a UUIDv7, which increases
-- strictly within a process and carries fresh random bits); the chain is keyed by `seq`, and each hash covers the id,
-- so a changed id is still caught by `audit verify`. The SQLite file of the
-- same number also makes `seq` that table's rowid; here `seq` already is
-- the primary key.
ALTER TABLE audit_log DROP CONSTRAINT IF EXISTS audit_log_id_key;
