-- emails_due_idx serves range scans of scheduled emails by time (the promoter,
-- the spread of a burst, next_due, the operators' queries). Its predicate,
-- status = 'scheduled', was also implied by statements that find ONE email by
-- id while it is scheduled: the claim of every send ("WHERE id = ... AND
-- status = 'scheduled' AND job_id = ..."), edit_email, the promoter's recheck,
-- spread_move. A worker's pooled connection prepares each statement after five
-- runs, and PostgreSQL keeps the generic plan it makes then; made while emails
-- was small, that plan read the claim through this partial index, with no
-- condition on it: every claim read every scheduled email. With 5,000 due at
-- once, the claim cost 224 buffers (1.6 ms) instead of 38, and the cost fell as
-- the burst drained (bench/ANALYSIS.md, "What grew with the backlog").
--
-- The extra "next_attempt_at IS NOT NULL" (always true: the column is NOT NULL)
-- is implied by any comparison on next_attempt_at, so every range scan still
-- reads through the index, and by nothing in a lookup by id, so those can only
-- use the primary key. tests/integration/test_plans.py checks both.
--
-- Building it reads every scheduled email and blocks writes to emails meanwhile
-- (about a second per million scheduled emails); the old index is dropped in the
-- same transaction.
DROP INDEX emails_due_idx;
CREATE INDEX emails_due_idx ON emails (next_attempt_at)
    WHERE status = 'scheduled' AND next_attempt_at IS NOT NULL;
