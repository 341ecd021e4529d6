-- The scopes the revoked credential carried, so evidence can show the
-- scopes before a reauthorization beside the scopes after. Rows recorded
-- before this column existed show none. Keep the sqlite and postgres files
-- in step.
ALTER TABLE revocations ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
