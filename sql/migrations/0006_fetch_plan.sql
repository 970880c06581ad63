-- Keep Procrastinate's fetch an index walk that stops at the first due job.
--
-- procrastinate_fetch_job_v2 orders todo jobs by (priority DESC, id) and takes
-- one. A queue table empties and fills faster than autovacuum re-analyses it,
-- so with stale statistics ("6 rows") the planner chose a bitmap scan of every
-- todo job plus a sort: each fetch cost O(due jobs), 2-4 ms with 5,000 due,
-- 70% of the database's time in a burst (bench/RESULTS.md, "Profile").
-- Without sorts and bitmap scans the only plan left is the ordered walk of
-- procrastinate_jobs_priority_idx_v1, whatever the statistics say.
-- (If a Procrastinate upgrade replaces the function, the setting goes with it
-- and `make bench` shows the fetch cost again.)
ALTER FUNCTION procrastinate_fetch_job_v2(character varying[], bigint)
    SET enable_sort = off;
ALTER FUNCTION procrastinate_fetch_job_v2(character varying[], bigint)
    SET enable_bitmapscan = off;
-- One plan per session instead of re-planning every call (~0.5 ms each).
ALTER FUNCTION procrastinate_fetch_job_v2(character varying[], bigint)
    SET plan_cache_mode = force_generic_plan;

-- 0001's index for the wake-up timer also matched the fetch's
-- "scheduled_at IS NULL OR scheduled_at <= now()"; this one serves only the
-- timer's "earliest scheduled todo job" (queries.sql, seconds_to_next_job).
DROP INDEX IF EXISTS reach_jobs_todo_scheduled_at_idx;
CREATE INDEX reach_jobs_future_idx ON procrastinate_jobs (scheduled_at)
    WHERE status = 'todo' AND scheduled_at IS NOT NULL;
