-- reach_fetch_jobs: procrastinate_fetch_job_v2 for up to p_limit jobs at once.
--
-- A worker with several free slots fetched one job per round trip. This is the
-- same selection (the lock rule, the queues, due jobs, highest priority then
-- lowest id, FOR UPDATE SKIP LOCKED) and the same update (status 'doing', the
-- worker), with LIMIT p_limit instead of LIMIT 1; the worker calls it once for
-- all its free slots (tasks/queue/procrastinate_boundary.py, BatchingJobManager),
-- and the send task's claim of each due email joins that statement. The plan
-- settings are 0006's for procrastinate_fetch_job_v2, for the same reason: walk
-- the (priority, id) index, never sort every due job. ROWS 5 (a worker's free slots,
-- not the default estimate of 1000) lets the statement that joins its result to
-- emails look each email up by primary key, however small emails was when the
-- plan was made (tests/integration/test_plans.py; see also 0011). PL/pgSQL, as
-- Procrastinate's is, so the session keeps the plan (a SQL function with SET
-- options is planned again at each call: three times the cost, measured).
CREATE FUNCTION reach_fetch_jobs(target_queue_names character varying[], p_worker_id bigint, p_limit integer)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
    ROWS 5
    SET enable_sort = off
    SET enable_bitmapscan = off
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    WITH candidate AS (
        SELECT jobs.id
          FROM procrastinate_jobs AS jobs
         WHERE NOT EXISTS (
                   SELECT 1
                     FROM procrastinate_jobs AS other_jobs
                    WHERE jobs.lock IS NOT NULL
                      AND other_jobs.lock = jobs.lock
                      AND (other_jobs.status = 'doing'
                           OR (other_jobs.status = 'todo'
                               AND (other_jobs.priority > jobs.priority
                                    OR (other_jobs.priority = jobs.priority AND other_jobs.id < jobs.id))))
               )
           AND jobs.status = 'todo'
           AND (target_queue_names IS NULL OR jobs.queue_name = ANY(target_queue_names))
           AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
         ORDER BY jobs.priority DESC, jobs.id ASC
         LIMIT p_limit
           FOR UPDATE OF jobs SKIP LOCKED
    )
    UPDATE procrastinate_jobs
       SET status = 'doing', worker_id = p_worker_id
      FROM candidate
     WHERE procrastinate_jobs.id = candidate.id
    RETURNING procrastinate_jobs.*;
END;
$$;
