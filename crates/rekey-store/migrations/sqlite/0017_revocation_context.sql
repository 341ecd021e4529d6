-- What a revocation keeps of the connection as it was when the credential
-- was revoked: the scopes it carried (evidence shows them beside the
-- scopes after a reauthorization), and where it was used — the URL
-- placeholders' values (`params`, e.g. a database host) and the probe URL
-- override, and for OAuth grants the app's provider, parameters and
-- endpoint overrides — so verification tries the old credential there
-- (or, the app's endpoints changed, not at all), whatever the connection
-- or its app is changed to later. Rows recorded before these columns
-- existed show no scopes and are tried where the connection points now.
-- Keep the sqlite and postgres files in step.
ALTER TABLE revocations ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE revocations ADD COLUMN params TEXT;
ALTER TABLE revocations ADD COLUMN probe_url TEXT;
ALTER TABLE revocations ADD COLUMN oauth_target TEXT;
