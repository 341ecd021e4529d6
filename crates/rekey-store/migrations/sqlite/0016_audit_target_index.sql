-- Audit entries by what they name: a connection's history and "who read
-- this credential" (`GET …/readers`) without scanning the whole log. Keep
-- the sqlite and postgres files in step.
CREATE INDEX audit_log_target ON audit_log (tenant, target, action, at);
