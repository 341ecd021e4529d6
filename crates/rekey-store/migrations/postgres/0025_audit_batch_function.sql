-- The audit writer's batch (a group of credential reads' entries) in one
-- round trip: called as a single statement in its own transaction, it takes
-- the append lock, reads the chain's head and the reads' checks, and inserts
-- the entries the writer chained beforehand only if the head and every
-- check are as the writer expected. Otherwise it inserts nothing and returns
-- the state (as the writer's state query does: 'k' live keys, 'c'
-- connections and their versions, 'h' the head) so that the writer can
-- chain again. Written: one row 'w'. The statements inside are planned once
-- per connection, where the same statements sent as text are planned on
-- every batch.
--
--   want_seq, want_hash: the head the entries were chained after (NULL, NULL
--     for an empty log);
--   mine_seq: the seq of the batch's last entry (NULL when it has none). When
--     nothing is written, the row at that seq comes back as 'x' (hash, seq):
--     a writer that resends a batch whose first call's answer it never got
--     learns from it whether that call committed, and does not write the
--     entries twice.
--   checks: [{"k": api key id, "c": connection id, "t": tenant,
--     "v": connection version, "e": whether the writer expects it to hold}];
--   entries: audit_log rows as JSON objects, in chain order.
CREATE FUNCTION rekey_audit_batch(want_seq BIGINT, want_hash TEXT, mine_seq BIGINT, checks JSON, entries JSON)
RETURNS TABLE (r_what TEXT, r_id TEXT, r_tenant TEXT, r_n BIGINT) AS $$
DECLARE
    head_seq BIGINT;
    head_hash TEXT;
    now_ms BIGINT;
    as_expected BOOLEAN;
    written BIGINT;
    first_prev TEXT;
BEGIN
    -- Each statement below must see what committed before the lock: a
    -- snapshot per statement, as only read committed gives.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'rekey_audit_batch needs read committed, not %',
            current_setting('transaction_isolation');
    END IF;
    -- As every append: held to the end of the transaction, taken before the
    -- head and the checks are read (a revocation holds it until it commits).
    LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE;
    -- The time after the lock: a key that expired while this waited for it
    -- no longer counts as live.
    now_ms := CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT);
    SELECT a.seq, a.hash INTO head_seq, head_hash
        FROM audit_log a ORDER BY a.seq DESC LIMIT 1;
    as_expected := head_seq IS NOT DISTINCT FROM want_seq
        AND head_hash IS NOT DISTINCT FROM want_hash;
    IF as_expected THEN
        SELECT COALESCE(bool_and(COALESCE(
            (EXISTS (SELECT 1 FROM api_keys k WHERE k.id = c.k AND k.revoked_at IS NULL
                     AND (k.expires_at IS NULL OR k.expires_at > now_ms))
             AND EXISTS (SELECT 1 FROM connections x WHERE x.id = c.c AND x.tenant = c.t
                     AND x.version = c.v)) = c.e, FALSE)), TRUE)
        INTO as_expected
        FROM json_to_recordset(checks) AS c(k TEXT, c TEXT, t TEXT, v BIGINT, e BOOLEAN);
    END IF;
    IF as_expected THEN
        INSERT INTO audit_log (seq, id, at, tenant, actor, action, target, request_id,
                               source, outcome, details, prev_hash, hash)
            SELECT seq, id, at, tenant, actor, action, target, request_id,
                   source, outcome, details, prev_hash, hash
            FROM json_populate_recordset(NULL::audit_log, entries);
        -- The entries must continue the chain: the first linked to the
        -- head, and seqs without a gap (the key forbids overlaps).
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written > 0 THEN
            SELECT a.prev_hash INTO first_prev
                FROM audit_log a WHERE a.seq = COALESCE(want_seq, 0) + 1;
            SELECT a.seq INTO head_seq FROM audit_log a ORDER BY a.seq DESC LIMIT 1;
            IF first_prev IS DISTINCT FROM COALESCE(want_hash, repeat('0', 64))
                OR head_seq IS DISTINCT FROM COALESCE(want_seq, 0) + written THEN
                RAISE EXCEPTION 'rekey_audit_batch: the entries do not continue the chain';
            END IF;
        END IF;
        RETURN QUERY SELECT 'w'::TEXT, ''::TEXT, ''::TEXT, 0::BIGINT;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT 'k'::TEXT, k.id, ''::TEXT, 0::BIGINT FROM api_keys k
            WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now_ms)
            AND k.id IN (SELECT c.k FROM json_to_recordset(checks) AS c(k TEXT))
        UNION ALL
        SELECT 'c'::TEXT, x.id, x.tenant, x.version FROM connections x
            WHERE x.id IN (SELECT c.c FROM json_to_recordset(checks) AS c(c TEXT))
        UNION ALL
        SELECT 'h'::TEXT, head_hash, ''::TEXT, head_seq WHERE head_seq IS NOT NULL
        UNION ALL
        SELECT 'x'::TEXT, a.hash, ''::TEXT, a.seq FROM audit_log a WHERE a.seq = mine_seq;
END;
$$ LANGUAGE plpgsql;
