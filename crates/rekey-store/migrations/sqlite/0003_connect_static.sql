-- Connect sessions for key-based kinds (a form instead of an OAuth redirect):
-- they name the provider and kind; integration_id is '' for them.
ALTER TABLE connect_sessions ADD COLUMN provider TEXT;
ALTER TABLE connect_sessions ADD COLUMN kind TEXT;
