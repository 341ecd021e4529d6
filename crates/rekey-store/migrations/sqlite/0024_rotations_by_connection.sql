-- A connection's rotations, newest first, whether finished or not: a
-- campaign step that crashed between starting a rotation and writing its
-- id down finds the rotation it started (by who requested it) instead of
-- starting a second one; listing one connection's rotations uses it too.
CREATE INDEX rotations_connection ON rotations (tenant, connection_id, id);
