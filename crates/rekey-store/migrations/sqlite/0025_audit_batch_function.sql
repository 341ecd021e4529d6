-- Nothing to do on SQLite: PostgreSQL's migration of this number adds the
-- audit writer's one-round-trip batch function; SQLite's writer runs in
-- process (rusqlite), where a round trip costs nothing. Kept so that both
-- folders stay numbered alike.
SELECT 1;
