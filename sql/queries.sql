-- Named queries, loaded once by tasks/core/db.py. Parameters are %(name)s only.
-- Every query a user can reach is scoped by organization: (%(any_org)s OR org_id = %(org_id)s),
-- where any_org is true only for operators (the CLI); lists take the "mine" filter too,
-- (NOT %(mine_only)s OR owner_id = %(owner_id)s). The web role is also held to its
-- organization by PostgreSQL's row-level security (sql/migrations/0012_organizations.sql).
-- None touches Procrastinate's tables or functions: those statements (schedule_email,
-- finish_emails, requeue_email, spread_move, ...) are in tasks/queue/procrastinate_boundary.py,
-- each with why the public API does not serve, and run by name like these.

-- upsert_user --
-- Create the user on first sight, refresh the name on later ones.
INSERT INTO users (email, name)
     VALUES (%(email)s, %(name)s)
ON CONFLICT ((lower(email))) DO UPDATE
        SET name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE users.name END,
            updated_at = now()
  RETURNING *;

-- get_user --
SELECT * FROM users WHERE id = %(id)s;

-- email_by_idempotency_key --
-- Run unprepared (tasks/domain/emails.py): planned with the actual values each
-- time, it reads through emails_idempotency_key (see schedule_email).
SELECT * FROM emails
 WHERE org_id = %(org_id)s AND owner_id = %(owner_id)s AND idempotency_key = %(idempotency_key)s;

-- insert_event --
-- The event belongs to the email's organization.
INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
SELECT org_id, id, %(kind)s, %(job_id)s, %(detail)s FROM emails WHERE id = %(email_id)s;

-- get_email --
SELECT * FROM emails
 WHERE id = %(id)s AND (%(any_org)s OR org_id = %(org_id)s);

-- lock_email --
SELECT * FROM emails
 WHERE id = %(id)s AND (%(any_org)s OR org_id = %(org_id)s)
   FOR UPDATE;

-- email_events --
SELECT id, at, kind, job_id, detail FROM email_events
 WHERE org_id = %(org_id)s AND email_id = %(id)s ORDER BY id;

-- set_cancelled --
UPDATE emails SET status = 'cancelled', waiting_reason = NULL
 WHERE id = %(id)s AND status IN ('scheduled', 'offline')
  RETURNING *;

-- set_next_attempt --
-- Reschedule, send now, retry: the email waits again, with a new job (or none
-- while it is beyond the horizon).
UPDATE emails
   SET status = 'scheduled',
       send_at = coalesce(%(send_at)s, send_at),
       send_tz = coalesce(%(send_tz)s, send_tz),
       next_attempt_at = %(next_attempt_at)s,
       waiting_reason = NULL,
       job_id = %(job_id)s
 WHERE id = %(id)s
  RETURNING *;

-- status_counts --
SELECT status, count(*) AS n FROM emails GROUP BY status ORDER BY status;

-- next_due --
SELECT min(next_attempt_at) AS next_due FROM emails WHERE status = 'scheduled';

-- claim_email --
-- The only way into 'sending': the email must still wait for exactly this job. ``suppressed``:
-- its recipients on a suppression list since it was scheduled (one probe of suppressions_key
-- each), which it is not sent to.
WITH claimed AS (
    UPDATE emails e
       SET status = 'sending', attempts = attempts + 1, waiting_reason = NULL,
           data_started_at = NULL
     WHERE id = %(email_id)s AND status = 'scheduled' AND job_id = %(job_id)s
    RETURNING e.*,
           (SELECT array_agg(s.address || ' (' || s.reason || ')' ORDER BY s.address)
                   FROM suppressions s
                  WHERE s.address = ANY(SELECT lower(r) FROM unnest(e.to_addrs || e.cc_addrs || e.bcc_addrs) r)
                    AND (s.org_id = e.org_id OR s.org_id IS NULL)) AS suppressed
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, 'claimed', %(job_id)s,
           jsonb_build_object('attempt', attempts, 'worker', %(worker)s::text,
                              'late_ms', round(extract(epoch FROM clock_timestamp() - next_attempt_at) * 1000))
      FROM claimed
)
SELECT * FROM claimed;

-- start_data_many --
-- Committed just before SMTP DATA: from here on a crash makes the email uncertain. For
-- the concurrent sends of one worker in one statement (tasks/delivery/groupcommit.py):
-- a row back for each email that was still its job's, and one commit, flushed before DATA.
-- (e.id = ANY(ids) as well as the join: the emails are then read by primary key whatever
-- the plan thought of unnest's size; tests/integration/test_plans.py.)
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(job_ids)s::bigint[], %(transports)s::text[], %(refused)s::jsonb[],
                         %(from_addrs)s::text[], %(reply_tos)s::text[])
        AS t(id, job_id, transport, refused, from_addr, reply_to)
), started AS (
    -- From and Reply-To as the message carries them (an organization's identity applies at
    -- send time), and the recipients refused at RCPT. No event row: the outcome's event
    -- carries data_started_at, and after a crash the row does (the reconciler's
    -- 'uncertain' follows from it). One row of email_events less per email.
    UPDATE emails e SET data_started_at = clock_timestamp(), transport = i.transport,
                        from_addr = i.from_addr, reply_to = i.reply_to, refused_recipients = i.refused
      FROM input i
     WHERE e.id = ANY(%(ids)s::uuid[]) AND e.id = i.id AND e.status = 'sending' AND e.job_id = i.job_id
    RETURNING e.id
)
-- The worker's connections commit asynchronously (tasks/core/db.py); this commit is
-- the one that must be on disk before DATA, so it waits for the flush.
SELECT id FROM started WHERE set_config('synchronous_commit', 'on', true) = 'on';

-- attach_jobs --
-- Record the jobs the promoter deferred, and say so on each timeline.
WITH attached AS (
    UPDATE emails e SET job_id = v.job_id
      FROM unnest(%(ids)s::uuid[], %(job_ids)s::bigint[]) AS v(id, job_id)
     WHERE e.id = v.id
    RETURNING e.id, e.org_id, e.job_id, e.next_attempt_at
)
INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
SELECT org_id, id, 'queued', job_id, jsonb_build_object('due_at', next_attempt_at) FROM attached;

-- insert_devmail --
INSERT INTO devmail_messages (mail_from, rcpt_tos, message_id, subject, raw)
     VALUES (%(mail_from)s, %(rcpt_tos)s, %(message_id)s, %(subject)s, %(raw)s)
  RETURNING id;

-- ---- Web: users, tokens, lists, batches ----
-- (A comment in a block's body is part of that block; this one is harmless.)

-- user_by_google_sub --
SELECT * FROM users WHERE google_sub = %(google_sub)s;

-- user_by_email --
SELECT * FROM users WHERE lower(email) = lower(%(email)s);

-- upsert_google_user --
-- Sign-in with Google: create the user, or refresh name and Google subject.
INSERT INTO users (email, name, google_sub)
     VALUES (%(email)s, %(name)s, %(google_sub)s)
ON CONFLICT ((lower(email))) DO UPDATE
        SET name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE users.name END,
            google_sub = EXCLUDED.google_sub,
            updated_at = now()
  RETURNING *;

-- bump_session_version --
-- Sign-out: every session cookie issued before now stops working.
UPDATE users SET session_version = session_version + 1, updated_at = now()
 WHERE id = %(id)s
  RETURNING session_version;

-- insert_token --
INSERT INTO api_tokens (org_id, user_id, name, token_hash, prefix, scopes)
     VALUES (%(org_id)s, %(user_id)s, %(name)s, %(token_hash)s, %(prefix)s, %(scopes)s)
  RETURNING id, org_id, user_id, name, prefix, scopes, created_at, last_used_at, revoked_at;

-- user_by_token_hash --
-- Who a token is (web_token_identity: only while its user is a member of its
-- organization), and, in the same statement, the web connection's organization
-- from now on (app.org_id, read by the row-level security policies).
SELECT u.*, t.token_id, t.org_id AS token_org_id, t.role AS token_role, t.scopes AS token_scopes,
       t.last_used_at AS token_last_used_at,
       set_config('app.org_id', t.org_id::text, false) AS _org
  FROM web_token_identity(%(token_hash)s) t JOIN users u ON u.id = t.user_id;

-- touch_token --
-- At most one write a minute per token, whatever the request rate.
UPDATE api_tokens SET last_used_at = now()
 WHERE id = %(id)s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');

-- list_tokens --
-- One user's tokens in an organization, or (all_users: admins) every member's.
SELECT t.id, t.org_id, t.user_id, u.email AS user_email, t.name, t.prefix, t.scopes,
       t.created_at, t.last_used_at, t.revoked_at
  FROM api_tokens t JOIN users u ON u.id = t.user_id
 WHERE t.org_id = %(org_id)s AND (%(all_users)s OR t.user_id = %(user_id)s)
 ORDER BY t.id DESC;

-- revoke_token --
UPDATE api_tokens SET revoked_at = now()
 WHERE org_id = %(org_id)s AND id = %(id)s AND (%(all_users)s OR user_id = %(user_id)s)
   AND revoked_at IS NULL
  RETURNING id;

-- search_emails --
-- One page of emails matching a search, newest first, keyset-paginated on (created_at,
-- id) so rows inserted meanwhile never shift a page. tasks/domain/search.py puts the
-- query's conditions (every value a parameter; TRUE for none) and the list's own (a
-- tab's statuses, a batch) in place of the braces. The page's ids are chosen in the
-- view emails_search (migration 0020: why), its rows read from emails under its policy.
-- Plans per qualifier: docs/search.md.
SELECT e.* FROM emails e
 WHERE e.id = ANY(ARRAY(
        SELECT id FROM emails_search
         WHERE (%(any_org)s OR org_id = %(org_id)s)
           AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
           AND {conditions}
           AND (%(before_created)s::timestamptz IS NULL
                OR (created_at, id) < (%(before_created)s::timestamptz, %(before_id)s::uuid))
         ORDER BY created_at DESC, id DESC
         LIMIT %(limit)s))
 ORDER BY e.created_at DESC, e.id DESC;

-- search_emails_recent --
-- search_emails among the list's newest %(first_look)s rows only (of %(lead_status)s, when
-- every match has that status; the LIMIT keeps the conditions out of that reading):
-- tasks/domain/search.py, page_rows, says why.
SELECT e.* FROM emails e
 WHERE e.id = ANY(ARRAY(
        SELECT id FROM (
            SELECT * FROM emails_search
             WHERE (%(any_org)s OR org_id = %(org_id)s)
               AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
               AND (%(lead_status)s::text IS NULL OR status = %(lead_status)s::text)
               AND (%(before_created)s::timestamptz IS NULL
                    OR (created_at, id) < (%(before_created)s::timestamptz, %(before_id)s::uuid))
             ORDER BY created_at DESC, id DESC
             LIMIT %(first_look)s) recent
         WHERE {conditions}
         ORDER BY created_at DESC, id DESC
         LIMIT %(limit)s))
 ORDER BY e.created_at DESC, e.id DESC;

-- search_emails_recent_before --
-- search_emails_recent for a query with before: (the send time): the newest rows that can
-- match are read instead, those created before %(created_before)s (the time plus an hour:
-- an email is created before it is due), and, in the second branch, those created later
-- but due over an hour before they were created (a few: emails_org_backdated_idx, migration
-- 0024; its predicate and this condition are the same text). tasks/domain/search.py,
-- page_rows, says why the two give the page.
SELECT e.* FROM emails e
 WHERE e.id = ANY(ARRAY(
        SELECT id FROM (
            (SELECT id, created_at FROM (
                SELECT * FROM emails_search
                 WHERE (%(any_org)s OR org_id = %(org_id)s)
                   AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
                   AND (%(lead_status)s::text IS NULL OR status = %(lead_status)s::text)
                   AND (%(before_created)s::timestamptz IS NULL
                        OR (created_at, id) < (%(before_created)s::timestamptz, %(before_id)s::uuid))
                   AND created_at < %(created_before)s::timestamptz
                 ORDER BY created_at DESC, id DESC
                 LIMIT %(first_look)s) recent
              WHERE {conditions}
              ORDER BY created_at DESC, id DESC
              LIMIT %(limit)s)
            UNION ALL
            (SELECT id, created_at FROM emails_search
              WHERE created_at - send_at > interval '1 hour'
                AND created_at >= %(created_before)s::timestamptz
                AND (%(any_org)s OR org_id = %(org_id)s)
                AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
                AND (%(before_created)s::timestamptz IS NULL
                     OR (created_at, id) < (%(before_created)s::timestamptz, %(before_id)s::uuid))
                AND {conditions}
              ORDER BY created_at DESC, id DESC
              LIMIT %(limit)s)
        ) found
         ORDER BY created_at DESC, id DESC
         LIMIT %(limit)s))
 ORDER BY e.created_at DESC, e.id DESC;

-- count_search --
-- How many emails match a search, counted up to %(cap)s (a saved search's count).
SELECT count(*) AS n FROM (
    SELECT 1 FROM emails_search
     WHERE (%(any_org)s OR org_id = %(org_id)s)
       AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
       AND {conditions}
     LIMIT %(cap)s
) matches;

-- count_search_recent --
-- count_search among the newest %(first_look)s rows only (as search_emails_recent).
SELECT count(*) AS n FROM (
    SELECT 1 FROM (
        SELECT * FROM emails_search
         WHERE (%(any_org)s OR org_id = %(org_id)s)
           AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
           AND (%(lead_status)s::text IS NULL OR status = %(lead_status)s::text)
         ORDER BY created_at DESC, id DESC
         LIMIT %(first_look)s) recent
     WHERE {conditions}
     LIMIT %(cap)s
) matches;

-- suggest_recipients --
-- Autocomplete of to: the addresses of the newest 2,000 emails that start with the
-- text typed, most used first.
SELECT addr AS value, count(*) || ' recent' AS hint
  FROM (SELECT to_addrs || cc_addrs || bcc_addrs AS addrs FROM emails
         WHERE (%(any_org)s OR org_id = %(org_id)s)
           AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
         ORDER BY created_at DESC, id DESC LIMIT 2000) recent,
       unnest(addrs) AS addr
 WHERE lower(addr) LIKE %(prefix)s
 GROUP BY addr ORDER BY count(*) DESC, addr LIMIT %(limit)s;

-- suggest_domains --
-- Autocomplete of domain: the recipients' domains of the newest 2,000 emails.
SELECT dom AS value, count(*) || ' recent' AS hint
  FROM (SELECT to_addrs || cc_addrs || bcc_addrs AS addrs FROM emails
         WHERE (%(any_org)s OR org_id = %(org_id)s)
           AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
         ORDER BY created_at DESC, id DESC LIMIT 2000) recent,
       unnest(addrs) AS addr,
       lower(split_part(addr, '@', 2)) AS dom
 WHERE dom LIKE %(prefix)s
 GROUP BY dom ORDER BY count(*) DESC, dom LIMIT %(limit)s;

-- search_from_users --
-- The users a search's from: names (their address or name holds the text), at most
-- %(limit)s: the same rows as the sub-select of its condition (tasks/domain/search.py,
-- _compile_from, says why they are read first).
SELECT u.id FROM users u WHERE u.email ILIKE %(pattern)s OR u.name ILIKE %(pattern)s
 ORDER BY u.id LIMIT %(limit)s;

-- suggest_members --
-- Autocomplete of from: the organization's members.
SELECT u.email AS value, coalesce(nullif(u.name, ''), m.role) AS hint
  FROM memberships m JOIN users u ON u.id = m.user_id
 WHERE (%(any_org)s OR m.org_id = %(org_id)s)
   AND (lower(u.email) LIKE %(prefix)s OR lower(u.name) LIKE %(prefix)s)
 ORDER BY u.email LIMIT %(limit)s;

-- suggest_batches --
SELECT id, coalesce(nullif(name, ''), subject_template) AS hint FROM batches
 WHERE (%(any_org)s OR org_id = %(org_id)s)
   AND (name || ' ' || subject_template) ILIKE %(pattern)s
 ORDER BY created_at DESC, id DESC LIMIT %(limit)s;

-- suggest_recurrences --
SELECT id, subject AS hint FROM recurrences
 WHERE (%(any_org)s OR org_id = %(org_id)s)
   AND subject ILIKE %(pattern)s
 ORDER BY created_at DESC, id DESC LIMIT %(limit)s;

-- saved_searches_list --
-- A user's saved searches in the organization, in the order they were saved.
SELECT id, name, query, created_at FROM saved_searches
 WHERE org_id = %(org_id)s AND user_id = %(user_id)s
 ORDER BY id;

-- saved_search_insert --
INSERT INTO saved_searches (org_id, user_id, name, query)
     VALUES (%(org_id)s, %(user_id)s, %(name)s, %(query)s)
ON CONFLICT (org_id, user_id, name) DO UPDATE SET query = EXCLUDED.query
  RETURNING id, name, query, created_at;

-- saved_search_delete --
DELETE FROM saved_searches WHERE org_id = %(org_id)s AND user_id = %(user_id)s AND id = %(id)s
  RETURNING id;

-- list_items --
-- The dashboard's list: single emails, and each batch as one item (when it has
-- an email in the list's statuses). Same keyset as search_emails. Each branch is
-- ordered and limited on its own, so each reads its first rows through its index
-- (emails_org_created_idx, batches_org_created_idx) and the two are merged; a
-- UNION ordered only as a whole read every email of the organization to sort
-- them (52 ms at 100,000 emails; 1 ms this way: bench/rls_cost.py).
SELECT kind, id, created_at FROM (
    (SELECT 'email' AS kind, e.id, e.created_at
       FROM emails e
      WHERE (%(any_org)s OR e.org_id = %(org_id)s) AND e.batch_id IS NULL
        AND (NOT %(mine_only)s OR e.owner_id = %(owner_id)s)
        AND e.status = ANY(%(statuses)s::text[])
        AND (%(before_created)s::timestamptz IS NULL
             OR (e.created_at, e.id) < (%(before_created)s::timestamptz, %(before_id)s::uuid))
      ORDER BY e.created_at DESC, e.id DESC
      LIMIT %(limit)s)
    UNION ALL
    (SELECT 'batch', b.id, b.created_at
       FROM batches b
      WHERE (%(any_org)s OR b.org_id = %(org_id)s)
        AND (NOT %(mine_only)s OR b.owner_id = %(owner_id)s)
        AND EXISTS (SELECT 1 FROM emails e WHERE e.batch_id = b.id AND e.status = ANY(%(statuses)s::text[]))
        AND (%(before_created)s::timestamptz IS NULL
             OR (b.created_at, b.id) < (%(before_created)s::timestamptz, %(before_id)s::uuid))
      ORDER BY b.created_at DESC, b.id DESC
      LIMIT %(limit)s)
) items
 ORDER BY created_at DESC, id DESC
 LIMIT %(limit)s;

-- emails_by_ids --
SELECT * FROM emails
 WHERE id = ANY(%(ids)s::uuid[]) AND (%(any_org)s OR org_id = %(org_id)s);

-- statuses_by_ids --
-- The live page's polling fallback: current status of the emails on screen.
SELECT id, status, next_attempt_at, sent_at, waiting_reason FROM emails
 WHERE id = ANY(%(ids)s::uuid[]) AND (%(any_org)s OR org_id = %(org_id)s);

-- owner_status_counts --
SELECT status, count(*) AS n FROM emails
 WHERE (%(any_org)s OR org_id = %(org_id)s)
   AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
 GROUP BY status;

-- failure_groups --
-- The Failures view (tasks/domain/failures.py): the failed, uncertain and bounced emails
-- created since %(since)s, grouped by cause (kind, reply code, enhanced status, error
-- class, transport, first recipient domain) and by the hour before %(now)s they failed in
-- (0 to 23; -1 for earlier), with each group's newest ids. Each branch reads one index
-- range: emails_org_status_created_idx (failed, uncertain) and emails_org_delivery_idx
-- (bounced); plans in docs/web-app.md.
WITH f AS (
    SELECT id, status AS kind, reply_code, last_error AS detail, transport,
           recipient_domains[1] AS domain, updated_at AS failed_at, NULL::text AS bounce_type
      FROM emails
     WHERE (%(any_org)s OR org_id = %(org_id)s)
       AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
       AND status IN ('failed', 'uncertain') AND created_at >= %(since)s
       AND delivery IS DISTINCT FROM 'bounced'
    UNION ALL
    SELECT id, 'bounced', NULL, coalesce(delivery_detail, last_error), transport,
           recipient_domains[1], coalesce(delivery_at, updated_at), bounce_type
      FROM emails
     WHERE (%(any_org)s OR org_id = %(org_id)s)
       AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
       AND delivery = 'bounced' AND created_at >= %(since)s
), causes AS (
    SELECT id, kind, failed_at,
           coalesce(reply_code,
                    substring(detail FROM '(?:^|[ :])([2-5][0-9][0-9])(?:[ -]|$)')::smallint) AS code,
           substring(detail FROM '(?:^|[ :(])([245]\.[0-9]{1,3}\.[0-9]{1,3})(?:[ ):;,.]|$)') AS enhanced,
           CASE WHEN kind = 'bounced' THEN 'bounce' || coalesce(' (' || bounce_type || ')', '')
                WHEN kind = 'uncertain' THEN 'uncertain'
                WHEN detail LIKE %(suppressed)s THEN 'suppressed'
                WHEN detail LIKE 'gave up after %%' THEN 'retries exhausted'
                WHEN reply_code >= 500 THEN 'refused'
                ELSE 'other' END AS error_class,
           coalesce(transport, '') AS transport, coalesce(domain, '') AS domain,
           CASE WHEN failed_at > %(now)s - interval '24 hours'
                THEN greatest(0, floor(extract(epoch FROM %(now)s - failed_at) / 3600))::int
                ELSE -1 END AS hour
      FROM f
)
SELECT kind, code, enhanced, error_class, transport, domain, hour, count(*) AS n,
       (array_agg(id ORDER BY failed_at DESC, id))[1:3] AS examples
  FROM causes
 GROUP BY kind, code, enhanced, error_class, transport, domain, hour;

-- upcoming_by_hour --
-- The Upcoming view (tasks/domain/upcoming.py): the scheduled emails due before %(until)s,
-- counted per UTC hour and owner; those already due count in the hour of %(now)s.
-- Read through emails_due_idx (or emails_org_status_idx for a small organization).
SELECT greatest(date_trunc('hour', next_attempt_at, 'UTC'), date_trunc('hour', %(now)s::timestamptz, 'UTC')) AS hour,
       owner_id, count(*) AS n
  FROM emails
 WHERE (%(any_org)s OR org_id = %(org_id)s)
   AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
   AND status = 'scheduled' AND next_attempt_at < %(until)s
 GROUP BY 1, 2;

-- edit_email --
-- Edit a scheduled email's content (the caller holds the row lock).
UPDATE emails
   SET to_addrs = %(to_addrs)s, cc_addrs = %(cc_addrs)s, bcc_addrs = %(bcc_addrs)s,
       subject = %(subject)s, body_text = %(body_text)s, body_html = %(body_html)s,
       send_tz = %(send_tz)s
 WHERE id = %(id)s AND status = 'scheduled'
  RETURNING *;

-- insert_batch --
INSERT INTO batches (id, org_id, owner_id, name, subject_template, total, start_at, send_tz,
                     min_delay_seconds, hourly_cap, idempotency_key, request_hash)
     VALUES (%(id)s, %(org_id)s, %(owner_id)s, %(name)s, %(subject_template)s, %(total)s, %(start_at)s,
             %(send_tz)s, %(min_delay_seconds)s, %(hourly_cap)s, %(idempotency_key)s,
             %(request_hash)s)
ON CONFLICT (org_id, owner_id, idempotency_key) DO NOTHING
  RETURNING *;

-- batch_by_idempotency_key --
SELECT * FROM batches
 WHERE org_id = %(org_id)s AND owner_id = %(owner_id)s AND idempotency_key = %(idempotency_key)s;

-- insert_batch_emails --
-- Emails of a batch, many per statement (one recipient each).
INSERT INTO emails (id, org_id, owner_id, batch_id, from_addr, reply_to, to_addrs, subject, body_text,
                    send_at, send_tz, next_attempt_at, message_id, job_id)
SELECT v.id, %(org_id)s, %(owner_id)s, %(batch_id)s, %(from_addr)s, %(reply_to)s, ARRAY[v.to_addr],
       v.subject, v.body_text, v.send_at, %(send_tz)s, v.send_at,
       '<' || v.id || '@' || %(mail_domain)s || '>', v.job_id
  FROM unnest(%(ids)s::uuid[], %(to_addrs)s::text[], %(subjects)s::text[], %(bodies)s::text[],
              %(send_ats)s::timestamptz[], %(job_ids)s::bigint[])
       AS v(id, to_addr, subject, body_text, send_at, job_id);

-- insert_batch_events --
INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
SELECT org_id, id, 'scheduled', job_id,
       jsonb_build_object('send_at', next_attempt_at, 'time_zone', send_tz, 'recipients', 1,
                          'batch_id', batch_id)
  FROM emails WHERE org_id = %(org_id)s AND batch_id = %(batch_id)s;

-- get_batch --
SELECT * FROM batches WHERE id = %(id)s AND (%(any_org)s OR org_id = %(org_id)s);

-- batch_progress --
-- Per batch: how many emails are in each status and when the next one goes.
SELECT batch_id,
       count(*) FILTER (WHERE status = 'sent') AS sent,
       count(*) FILTER (WHERE status IN ('scheduled', 'sending')) AS pending,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'uncertain') AS uncertain,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       count(*) AS total,
       min(next_attempt_at) FILTER (WHERE status = 'scheduled') AS next_at,
       max(next_attempt_at) FILTER (WHERE status = 'scheduled') AS last_at
  FROM emails
 WHERE (%(any_org)s OR org_id = %(org_id)s) AND batch_id = ANY(%(ids)s::uuid[])
 GROUP BY batch_id;

-- cancel_batch_rest --
-- Cancel every email of the batch that has not been claimed yet.
WITH cancelled AS (
    UPDATE emails SET status = 'cancelled', waiting_reason = NULL
     WHERE (%(any_org)s OR org_id = %(org_id)s) AND batch_id = %(batch_id)s AND status = 'scheduled'
    RETURNING id, org_id, job_id
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, 'cancelled', job_id, jsonb_build_object('batch_id', %(batch_id)s::uuid) FROM cancelled
)
SELECT id, job_id FROM cancelled;

-- list_devmail --
-- Newest first, from just below the id ``before`` (NULL: from the newest), a page at a time.
SELECT id, received_at, mail_from, rcpt_tos, message_id, subject, raw
  FROM devmail_messages
 WHERE %(before)s::bigint IS NULL OR id < %(before)s::bigint
 ORDER BY id DESC
 LIMIT %(limit)s;

-- get_devmail --
SELECT id, received_at, mail_from, rcpt_tos, message_id, subject, raw
  FROM devmail_messages
 WHERE id = %(id)s;

-- delete_devmail --
DELETE FROM devmail_messages WHERE id = ANY(%(ids)s::bigint[]) RETURNING id;

-- prune_devmail --
-- Keep the newest %(keep)s messages: the id of the first one past them bounds the rest.
DELETE FROM devmail_messages
 WHERE id <= (SELECT id FROM devmail_messages ORDER BY id DESC OFFSET %(keep)s LIMIT 1);
-- offline_emails --
-- Emails in the offline log, oldest first (the order replay hands them back in).
SELECT id FROM emails WHERE status = 'offline' ORDER BY offline_at, id LIMIT %(limit)s;

-- lock_offline_email --
SELECT id FROM emails WHERE id = %(id)s AND status = 'offline' FOR UPDATE;

-- replay_offline_email --
WITH moved AS (
    UPDATE emails
       SET status = 'scheduled', next_attempt_at = %(at)s, waiting_reason = %(reason)s,
           job_id = %(job_id)s, data_started_at = NULL
     WHERE id = %(id)s AND status = 'offline'
    RETURNING id, org_id, offline_at
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, 'replayed', %(job_id)s, jsonb_build_object('offline_at', offline_at) FROM moved
)
SELECT id FROM moved;

-- status_counts_of --
SELECT status, count(*) AS n FROM emails WHERE id = ANY(%(ids)s::uuid[]) GROUP BY status;

-- ensure_breakers --
INSERT INTO transport_breakers (label) SELECT unnest(%(labels)s::text[]) ON CONFLICT DO NOTHING;

-- breaker_states --
-- Times are relative to the database's clock, so hosts' clocks need not agree.
SELECT label, state, failures, opened_count, last_error, changed_at, retry_at, trial_by,
       extract(epoch FROM retry_at - now())::float8 AS retry_in,
       extract(epoch FROM now() - trial_started_at)::float8 AS trial_age
  FROM transport_breakers
 WHERE label = ANY(%(labels)s::text[]);

-- breaker_trial --
-- Take the one trial send of an open breaker whose cool-down is over (or whose
-- trial was abandoned by a dead worker). No row back: someone else has it.
UPDATE transport_breakers
   SET state = 'half_open', trial_token = %(token)s, trial_by = %(worker)s,
       trial_started_at = now(), changed_at = now()
 WHERE label = %(label)s
   AND ((state = 'open' AND retry_at <= now())
        OR (state = 'half_open' AND trial_started_at < now() - make_interval(secs => %(stale_after)s)))
RETURNING label, state, failures, opened_count, last_error, changed_at, retry_at, trial_by,
          extract(epoch FROM retry_at - now())::float8 AS retry_in,
          extract(epoch FROM now() - trial_started_at)::float8 AS trial_age;

-- breaker_failure --
-- Count a provider failure. Closed: open after `threshold` in a row. Half-open:
-- the trial failed, open again for another cool-down. Open: just counted.
WITH old AS (
    SELECT label, state,
           CASE WHEN state = 'closed' AND failures + 1 >= %(threshold)s THEN 'open'
                WHEN state = 'half_open' AND trial_token = %(trial)s THEN 'open'
                ELSE state END AS next_state
      FROM transport_breakers WHERE label = %(label)s FOR UPDATE
)
UPDATE transport_breakers b
   SET failures = b.failures + 1,
       last_error = %(error)s,
       last_failure_at = now(),
       state = old.next_state,
       retry_at = CASE WHEN old.next_state = 'open' AND old.state <> 'open'
                       THEN now() + make_interval(secs => %(cooldown)s) ELSE b.retry_at END,
       opened_count = b.opened_count + (old.next_state = 'open' AND old.state <> 'open')::int,
       trial_token = CASE WHEN old.next_state = 'half_open' THEN b.trial_token END,
       trial_by = CASE WHEN old.next_state = 'half_open' THEN b.trial_by END,
       trial_started_at = CASE WHEN old.next_state = 'half_open' THEN b.trial_started_at END,
       changed_at = CASE WHEN old.next_state <> old.state THEN now() ELSE b.changed_at END
  FROM old
 WHERE b.label = old.label
RETURNING b.label, b.state, b.failures, b.opened_count, b.last_error, b.changed_at, b.retry_at, b.trial_by,
          extract(epoch FROM b.retry_at - now())::float8 AS retry_in,
          extract(epoch FROM now() - b.trial_started_at)::float8 AS trial_age,
          old.state AS previous_state;

-- breaker_success --
-- The provider answered: reset the count; a half-open breaker closes. (An open
-- one stays open: only its trial decides.)
WITH old AS (
    SELECT label, state FROM transport_breakers
     WHERE label = %(label)s AND (state = 'half_open' OR (state = 'closed' AND failures > 0))
       FOR UPDATE
)
UPDATE transport_breakers b
   SET failures = 0, state = 'closed', retry_at = NULL,
       trial_token = NULL, trial_by = NULL, trial_started_at = NULL,
       changed_at = CASE WHEN old.state <> 'closed' THEN now() ELSE b.changed_at END
  FROM old
 WHERE b.label = old.label
RETURNING b.label, b.state, b.failures, b.opened_count, b.last_error, b.changed_at, b.retry_at, b.trial_by,
          NULL::float8 AS retry_in, NULL::float8 AS trial_age, old.state AS previous_state;

-- breaker_trial_now --
-- The operator says the providers are back: an open breaker's cool-down ends now,
-- so its next send is the trial (which closes it, or opens it again).
UPDATE transport_breakers
   SET retry_at = now()
 WHERE label = ANY(%(labels)s::text[]) AND state = 'open' AND retry_at > now()
RETURNING label;

-- breaker_release --
-- A trial that was taken but not used (e.g. the send had to wait): open again, due now.
UPDATE transport_breakers
   SET state = 'open', retry_at = now(), trial_token = NULL, trial_by = NULL,
       trial_started_at = NULL, changed_at = now()
 WHERE label = %(label)s AND state = 'half_open' AND trial_token = %(trial)s
RETURNING label, state, failures, opened_count, last_error, changed_at, retry_at, trial_by,
          0::float8 AS retry_in, NULL::float8 AS trial_age;

-- prune_email_events --
-- Delete one batch of old events of finished emails, adding them to the totals
-- first (same statement) so that counters computed from events never go down.
WITH gone AS (
    DELETE FROM email_events
     WHERE id IN (SELECT ev.id
                    FROM email_events ev JOIN emails e ON e.id = ev.email_id
                   WHERE ev.at < %(before)s AND e.status = ANY(%(terminal)s::text[])
                   LIMIT %(batch)s)
    RETURNING kind, detail
), totals AS (
    INSERT INTO email_event_totals AS t (kind, transport, late_le, n, late_sum)
    SELECT kind, transport,
           CASE WHEN late IS NULL THEN 'Infinity'::float8
                ELSE coalesce((%(bounds)s::float8[])[width_bucket(late, %(bounds)s::float8[]) + 1], 'Infinity')
           END AS late_le,
           count(*), coalesce(sum(late), 0)
      FROM (SELECT kind, coalesce(detail->>'transport', '') AS transport,
                   CASE WHEN kind = 'claimed' THEN (detail->>'late_ms')::float8 / 1000 END AS late
              FROM gone) g
     GROUP BY 1, 2, 3
    ON CONFLICT (kind, transport, late_le) DO UPDATE
       SET n = t.n + EXCLUDED.n, late_sum = t.late_sum + EXCLUDED.late_sum
)
SELECT count(*) AS n FROM gone;

-- metrics_emails --
-- One pass over emails: counts by status, rate-limit waits, due backlog.
SELECT status, count(*) AS n,
       count(*) FILTER (WHERE waiting_reason ILIKE %(rate_limit_reason)s) AS rate_limited,
       count(*) FILTER (WHERE next_attempt_at <= now()) AS due,
       extract(epoch FROM now() - min(next_attempt_at))::float8 AS oldest_age
  FROM emails
 GROUP BY status;

-- metrics_event_counts --
-- Events of the given kinds by transport: those in email_events plus those pruned.
SELECT kind, transport, sum(n)::bigint AS n
  FROM (SELECT kind, coalesce(detail->>'transport', '') AS transport, count(*) AS n
          FROM email_events WHERE kind = ANY(%(kinds)s::text[]) GROUP BY 1, 2
        UNION ALL
        SELECT kind, transport, n FROM email_event_totals WHERE kind = ANY(%(kinds)s::text[])) x
 GROUP BY 1, 2;

-- metrics_lateness --
-- Claim lateness (claimed - due) by bucket: late_le is the bucket's upper bound.
SELECT late_le, sum(n)::bigint AS n, sum(late_sum)::float8 AS late_sum
  FROM (SELECT coalesce((%(bounds)s::float8[])[width_bucket(late, %(bounds)s::float8[]) + 1], 'Infinity') AS late_le,
               count(*) AS n, sum(late) AS late_sum
          FROM (SELECT (detail->>'late_ms')::float8 / 1000 AS late FROM email_events WHERE kind = 'claimed') c
         GROUP BY 1
        UNION ALL
        SELECT late_le, n, late_sum FROM email_event_totals WHERE kind = 'claimed') x
 GROUP BY 1;

-- ---- Charts (tasks/ops/charts.py): per-minute rollups of email_events ----
-- The operators' series are counted by two queries that must agree: the rollup
-- (chart_rollup_minutes, chart_rollup_waits) and the read of the latest events
-- not rolled up yet (the "latest" parts of chart_series and chart_waits).
-- tests/integration/test_charts.py checks both give the same charts.

-- chart_rollup_lock --
-- The rollup's watermark, locked for the run: two runs never roll up at once.
SELECT rolled_until, date_trunc('minute', now()) AS now_minute FROM chart_rollup FOR UPDATE;

-- chart_rollup_clear --
-- The minutes about to be counted again (idempotent: a minute is recounted, never added twice).
WITH waits AS (
    DELETE FROM chart_transport_minutes WHERE minute >= %(start)s AND minute < %(end)s
), owners AS (
    DELETE FROM chart_owner_minutes WHERE minute >= %(start)s AND minute < %(end)s
), lateness AS (
    DELETE FROM chart_lateness_minutes WHERE minute >= %(start)s AND minute < %(end)s
)
DELETE FROM chart_minutes WHERE minute >= %(start)s AND minute < %(end)s;

-- chart_rollup_minutes --
-- The operators' series for each minute of [start, end) that had any of their events.
INSERT INTO chart_minutes (minute, sent, failed, retried, claims, late_p50_ms, late_p99_ms)
SELECT date_trunc('minute', at),
       count(*) FILTER (WHERE kind = 'sent'),
       count(*) FILTER (WHERE kind = 'failed'),
       count(*) FILTER (WHERE kind = ANY(%(retried)s::text[])),
       count(*) FILTER (WHERE kind = 'claimed'),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (detail->>'late_ms')::float8) FILTER (WHERE kind = 'claimed'),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY (detail->>'late_ms')::float8) FILTER (WHERE kind = 'claimed')
  FROM email_events
 WHERE at >= %(start)s AND at < %(end)s AND kind = ANY(%(kinds)s::text[])
 GROUP BY 1;

-- chart_rollup_waits --
-- Rate-limit waits per minute and transport over [start, end).
INSERT INTO chart_transport_minutes (minute, transport, rate_limited)
SELECT date_trunc('minute', at), coalesce(detail->>'transport', ''), count(*)
  FROM email_events
 WHERE at >= %(start)s AND at < %(end)s AND kind = 'rate_limited'
 GROUP BY 1, 2;

-- chart_rollup_owners --
-- Each owner's events of owner_kinds per minute over [start, end), for their own chart.
INSERT INTO chart_owner_minutes (minute, org_id, owner_id, kind, n)
SELECT date_trunc('minute', ev.at), e.org_id, e.owner_id, ev.kind, count(*)
  FROM email_events ev
  JOIN emails e ON e.id = ev.email_id
 WHERE ev.at >= %(start)s AND ev.at < %(end)s AND ev.kind = ANY(%(owner_kinds)s::text[])
 GROUP BY 1, 2, 3, 4;

-- chart_rollup_lateness --
-- Sent lateness (the sent event's time minus the email's send_at, ms) per minute of
-- [start, end): exact percentile_cont p50/p95/p99 and the count over 60 s, over everyone
-- (into chart_minutes, whose rows chart_rollup_minutes has just written: a minute with a
-- 'sent' event has one), per organization (owner_id 0) and per owner. One pass over the
-- window's sent events, each joined to its email by primary key.
WITH late AS (
    SELECT date_trunc('minute', ev.at) AS minute, e.org_id, e.owner_id,
           (extract(epoch FROM ev.at - e.send_at) * 1000)::float8 AS late_ms
      FROM email_events ev
      JOIN emails e ON e.id = ev.email_id
     WHERE ev.at >= %(start)s AND ev.at < %(end)s AND ev.kind = 'sent'
), grouped AS (
    SELECT minute, org_id, owner_id, grouping(org_id, owner_id) AS level, count(*) AS sent,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY late_ms) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY late_ms) AS p95,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY late_ms) AS p99,
           count(*) FILTER (WHERE late_ms > 60000) AS over_1m
      FROM late
     GROUP BY GROUPING SETS ((minute), (minute, org_id), (minute, org_id, owner_id))
), scoped AS (
    INSERT INTO chart_lateness_minutes (org_id, owner_id, minute, sent, p50_ms, p95_ms, p99_ms, over_1m)
    SELECT org_id, coalesce(owner_id, 0), minute, sent, p50, p95, p99, over_1m FROM grouped WHERE level < 3
)
UPDATE chart_minutes c
   SET sent_late_p50_ms = g.p50, sent_late_p95_ms = g.p95, sent_late_p99_ms = g.p99, sent_late_over_1m = g.over_1m
  FROM grouped g
 WHERE g.level = 3 AND c.minute = g.minute;

-- chart_rollup_done --
UPDATE chart_rollup SET rolled_until = %(end)s;

-- chart_rollup_prune --
-- Rollup rows and depth samples older than any chart draws.
WITH waits AS (
    DELETE FROM chart_transport_minutes WHERE minute < %(before)s
), owners AS (
    DELETE FROM chart_owner_minutes WHERE minute < %(before)s
), lateness AS (
    DELETE FROM chart_lateness_minutes WHERE minute < %(before)s
), depth AS (
    DELETE FROM queue_depth_samples WHERE minute < %(before)s
)
DELETE FROM chart_minutes WHERE minute < %(before)s;

-- queue_depth_sample --
-- The queue's depth now, as this minute's sample: due (due and not yet claimed:
-- waiting only for a worker), waiting (due within the next hour: the sends,
-- retries and rate-limit slots coming up), sending. Each count is a range of a
-- partial index (emails_due_idx, emails_sending_idx): the cost follows the
-- queue, never the finished emails nor those scheduled further ahead.
INSERT INTO queue_depth_samples (minute, due, waiting, sending)
SELECT date_trunc('minute', now()),
       (SELECT count(*) FROM emails WHERE status = 'scheduled' AND next_attempt_at <= now()),
       (SELECT count(*) FROM emails
         WHERE status = 'scheduled' AND next_attempt_at > now() AND next_attempt_at <= now() + interval '1 hour'),
       (SELECT count(*) FROM emails WHERE status = 'sending')
ON CONFLICT (minute) DO UPDATE SET due = EXCLUDED.due, waiting = EXCLUDED.waiting, sending = EXCLUDED.sending
RETURNING due, waiting, sending;

-- chart_rollup_state --
SELECT rolled_until, date_trunc('minute', now()) AS now_minute FROM chart_rollup;

-- chart_series --
-- The operators' series, one array each, one element per minute of [start, last]:
-- the rollup's rows before rolled_until, the latest events (counted as
-- chart_rollup_minutes does) from latest on, and the depth samples. A quiet
-- minute counts 0; its lateness, like a minute without a sample, is null.
WITH axis AS (
    SELECT generate_series(%(start)s::timestamptz, %(last)s::timestamptz, interval '1 minute') AS minute
), counted AS (
    SELECT minute, sent, failed, retried, late_p50_ms, late_p99_ms
      FROM chart_minutes
     WHERE minute >= %(start)s AND minute < %(rolled_until)s
    UNION ALL
    SELECT date_trunc('minute', at),
           count(*) FILTER (WHERE kind = 'sent'),
           count(*) FILTER (WHERE kind = 'failed'),
           count(*) FILTER (WHERE kind = ANY(%(retried)s::text[])),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY (detail->>'late_ms')::float8) FILTER (WHERE kind = 'claimed'),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY (detail->>'late_ms')::float8) FILTER (WHERE kind = 'claimed')
      FROM email_events
     WHERE at >= %(latest)s AND kind = ANY(%(kinds)s::text[])
     GROUP BY 1
), late AS (
    SELECT minute, sent_late_p50_ms AS p50, sent_late_p95_ms AS p95, sent_late_p99_ms AS p99,
           sent_late_over_1m AS over_1m
      FROM chart_minutes
     WHERE minute >= %(start)s AND minute < %(rolled_until)s
    UNION ALL
    -- counted as chart_rollup_lateness does; only while the rollup is behind (late_latest
    -- null otherwise): each event joins its email, too dear at a peak (docs/operators-charts.md)
    SELECT date_trunc('minute', ev.at),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY late_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY late_ms),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY late_ms),
           count(*) FILTER (WHERE late_ms > 60000)
      FROM email_events ev
      JOIN emails e ON e.id = ev.email_id,
           LATERAL (SELECT (extract(epoch FROM ev.at - e.send_at) * 1000)::float8 AS late_ms) l
     WHERE ev.at >= coalesce(%(late_latest)s::timestamptz, 'infinity') AND ev.kind = 'sent'
     GROUP BY 1
)
SELECT array_agg(extract(epoch FROM a.minute)::bigint ORDER BY a.minute) AS t,
       array_agg(coalesce(c.sent, 0)::int ORDER BY a.minute) AS sent,
       array_agg(coalesce(c.failed, 0)::int ORDER BY a.minute) AS failed,
       array_agg(coalesce(c.retried, 0)::int ORDER BY a.minute) AS retried,
       array_agg(round(c.late_p50_ms::numeric, 1)::float8 ORDER BY a.minute) AS late_p50_ms,
       array_agg(round(c.late_p99_ms::numeric, 1)::float8 ORDER BY a.minute) AS late_p99_ms,
       array_agg(d.due ORDER BY a.minute) AS due,
       array_agg(d.waiting ORDER BY a.minute) AS waiting,
       array_agg(d.sending ORDER BY a.minute) AS sending,
       array_agg(round(l.p50::numeric, 1)::float8 ORDER BY a.minute) AS sent_late_p50_ms,
       array_agg(round(l.p95::numeric, 1)::float8 ORDER BY a.minute) AS sent_late_p95_ms,
       array_agg(round(l.p99::numeric, 1)::float8 ORDER BY a.minute) AS sent_late_p99_ms,
       array_agg(coalesce(l.over_1m, 0)::int ORDER BY a.minute) AS sent_late_over_1m
  FROM axis a
  LEFT JOIN counted c ON c.minute = a.minute
  LEFT JOIN late l ON l.minute = a.minute
  LEFT JOIN queue_depth_samples d ON d.minute = a.minute;

-- chart_waits --
-- Rate-limit waits per transport, for the minutes of [start, last] that had any
-- (minutes as Unix seconds): the rollup's rows, then the latest events.
SELECT transport, array_agg(extract(epoch FROM minute)::bigint) AS t, array_agg(n::int) AS n
  FROM (SELECT minute, transport, rate_limited AS n
          FROM chart_transport_minutes
         WHERE minute >= %(start)s AND minute < %(rolled_until)s
        UNION ALL
        SELECT date_trunc('minute', at), coalesce(detail->>'transport', ''), count(*)
          FROM email_events
         WHERE at >= %(latest)s AND kind = 'rate_limited'
         GROUP BY 1, 2) w
 WHERE minute <= %(last)s
 GROUP BY transport
 ORDER BY transport;

-- chart_lateness --
-- One organization's sent lateness (owner_key 0, mine_only false) or one owner's in it,
-- one array each, one element per minute of [start, last]: the rollup's rows before
-- rolled_until, then the latest sent events counted as chart_rollup_lateness does (none
-- when latest is null: while the rollup is current). A minute without a send counts 0
-- and its percentiles are null.
WITH axis AS (
    SELECT generate_series(%(start)s::timestamptz, %(last)s::timestamptz, interval '1 minute') AS minute
), late AS (
    SELECT minute, sent, p50_ms AS p50, p95_ms AS p95, p99_ms AS p99, over_1m
      FROM chart_lateness_minutes
     WHERE org_id = %(org_id)s AND owner_id = %(owner_key)s
       AND minute >= %(start)s AND minute < %(rolled_until)s
    UNION ALL
    SELECT date_trunc('minute', ev.at), count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY late_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY late_ms),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY late_ms),
           count(*) FILTER (WHERE late_ms > 60000)
      FROM email_events ev
      JOIN emails e ON e.id = ev.email_id,
           LATERAL (SELECT (extract(epoch FROM ev.at - e.send_at) * 1000)::float8 AS late_ms) l
     WHERE ev.at >= coalesce(%(latest)s::timestamptz, 'infinity') AND ev.kind = 'sent' AND ev.org_id = %(org_id)s
       AND e.org_id = %(org_id)s AND (NOT %(mine_only)s OR e.owner_id = %(owner_id)s)
     GROUP BY 1
)
SELECT array_agg(extract(epoch FROM a.minute)::bigint ORDER BY a.minute) AS t,
       array_agg(coalesce(l.sent, 0)::int ORDER BY a.minute) AS sent,
       array_agg(round(l.p50::numeric, 1)::float8 ORDER BY a.minute) AS p50_ms,
       array_agg(round(l.p95::numeric, 1)::float8 ORDER BY a.minute) AS p95_ms,
       array_agg(round(l.p99::numeric, 1)::float8 ORDER BY a.minute) AS p99_ms,
       array_agg(coalesce(l.over_1m, 0)::int ORDER BY a.minute) AS over_1m
  FROM axis a
  LEFT JOIN late l ON l.minute = a.minute;

-- chart_owner_days --
-- One user's own events of owner_kinds per day in the zone tz, since start:
-- their rollup rows before rolled_until, then their latest events (none when
-- latest is null).
SELECT (x.at AT TIME ZONE %(tz)s)::date AS day, x.kind, sum(x.n)::bigint AS n
  FROM (SELECT minute AS at, kind, n
          FROM chart_owner_minutes
         WHERE org_id = %(org_id)s AND owner_id = %(owner_id)s
           AND minute >= %(start)s AND minute < %(rolled_until)s
        UNION ALL
        SELECT ev.at, ev.kind, 1
          FROM email_events ev
          JOIN emails e ON e.id = ev.email_id
         WHERE ev.at >= coalesce(%(latest)s::timestamptz, 'infinity')
           AND ev.kind = ANY(%(owner_kinds)s::text[]) AND ev.org_id = %(org_id)s
           AND e.org_id = %(org_id)s AND e.owner_id = %(owner_id)s) x
 GROUP BY 1, 2;

-- rate_entries_transport --
-- What a transport's bucket held, rebuilt from the truth: each email whose DATA
-- began within the window on this transport, each slot still reserved on it,
-- and, if Redis was emptied (in_flight), every attempt in flight that has not reached DATA
-- (as "<id>:<attempt>:flight": one still waiting at the gate drops its own).
-- Members are "<email id>:<attempt>", as the live bucket names them.
SELECT id::text || ':' || attempts AS member, data_started_at AS at
  FROM emails
 WHERE transport = %(label)s AND data_started_at > now() - make_interval(secs => %(span)s)
UNION ALL
SELECT id::text || ':' || (attempts + 1), rate_slot
  FROM emails
 WHERE status = 'scheduled' AND rate_slot IS NOT NULL AND rate_slot = next_attempt_at
   AND rate_transport = %(label)s
UNION ALL
SELECT id::text || ':' || attempts || ':flight', clock_timestamp()
  FROM emails
 WHERE %(in_flight)s AND status = 'sending' AND data_started_at IS NULL;

-- rate_entries_user --
-- The same for one user's own bucket (every transport together).
SELECT id::text || ':' || attempts AS member, data_started_at AS at
  FROM emails
 WHERE owner_id = %(owner_id)s AND data_started_at > now() - make_interval(secs => %(span)s)
UNION ALL
SELECT id::text || ':' || (attempts + 1), rate_slot
  FROM emails
 WHERE owner_id = %(owner_id)s AND status = 'scheduled' AND rate_slot IS NOT NULL
   AND rate_slot = next_attempt_at
UNION ALL
SELECT id::text || ':' || attempts || ':flight', clock_timestamp()
  FROM emails
 WHERE %(in_flight)s AND owner_id = %(owner_id)s AND status = 'sending' AND data_started_at IS NULL;


-- org_state --
-- One organization as a worker holds it (tasks/delivery/orgs.py): read at most once a
-- second per process and organization, never once per email. Its transports' URLs are
-- Fernet tokens, decrypted by the worker.
SELECT o.id, o.suspended_at, o.suspended_reason,
       s.from_name, s.from_address, s.reply_to,
       coalesce(s.providers_mode, 'before') AS providers_mode, s.daily_quota,
       coalesce((SELECT jsonb_agg(jsonb_build_object('label', t.label, 'secret', t.url_secret,
                                                     'rate_limit', t.rate_limit)
                                  ORDER BY t.position)
                   FROM org_transports t WHERE t.org_id = o.id), '[]') AS transports
  FROM organizations o
  LEFT JOIN org_settings s ON s.org_id = o.id
 WHERE o.id = %(org_id)s;

-- quota_entries --
-- What an organization's daily-quota set held, rebuilt from the truth: each of its
-- emails whose DATA began that UTC day (tasks/delivery/ratelimit.py, count_quota).
SELECT id::text AS member, data_started_at AS at
  FROM emails
 WHERE org_id = %(org_id)s AND data_started_at >= %(day_start)s
   AND data_started_at < %(day_start)s + interval '1 day';

-- org_settings_get --
SELECT o.id AS org_id, o.name, o.suspended_at, o.suspended_reason,
       s.from_name, s.from_address, s.reply_to,
       coalesce(s.providers_mode, 'before') AS providers_mode, s.daily_quota, s.updated_at,
       s.slack_webhook_masked
  FROM organizations o
  LEFT JOIN org_settings s ON s.org_id = o.id
 WHERE o.id = %(org_id)s;

-- org_identity_set --
INSERT INTO org_settings (org_id, from_name, from_address, reply_to)
     VALUES (%(org_id)s, %(from_name)s, %(from_address)s, %(reply_to)s)
ON CONFLICT (org_id) DO UPDATE
        SET from_name = EXCLUDED.from_name, from_address = EXCLUDED.from_address,
            reply_to = EXCLUDED.reply_to, updated_at = now();

-- org_mode_set --
INSERT INTO org_settings (org_id, providers_mode)
     VALUES (%(org_id)s, %(mode)s)
ON CONFLICT (org_id) DO UPDATE SET providers_mode = EXCLUDED.providers_mode, updated_at = now();

-- org_quota_set --
INSERT INTO org_settings (org_id, daily_quota)
     VALUES (%(org_id)s, %(quota)s)
ON CONFLICT (org_id) DO UPDATE SET daily_quota = EXCLUDED.daily_quota, updated_at = now();

-- org_transports_list --
-- What is shown of an organization's transports: never the secret.
SELECT label, position, url_masked, rate_limit, created_at
  FROM org_transports
 WHERE org_id = %(org_id)s
 ORDER BY position;

-- org_transport_add --
-- Last in the organization's order; NULL when the label is taken.
INSERT INTO org_transports (org_id, label, position, url_masked, url_secret, rate_limit)
SELECT %(org_id)s, %(label)s,
       coalesce((SELECT max(position) FROM org_transports WHERE org_id = %(org_id)s), 0) + 1,
       %(url_masked)s, %(url_secret)s, %(rate_limit)s
ON CONFLICT (org_id, label) DO NOTHING
RETURNING label, position, url_masked, rate_limit, created_at;

-- org_transport_remove --
DELETE FROM org_transports
 WHERE org_id = %(org_id)s AND label = %(label)s
RETURNING label, url_masked;

-- org_transport_secrets --
-- Every stored secret, for `keys rotate` (operators: every organization), locked until re-encrypted.
SELECT org_id, label, url_secret
  FROM org_transports
 ORDER BY org_id, label
   FOR UPDATE;

-- org_transport_secret_set --
UPDATE org_transports SET url_secret = %(url_secret)s
 WHERE org_id = %(org_id)s AND label = %(label)s;

-- audit_insert --
INSERT INTO org_audit (org_id, actor_id, action, target, detail)
     VALUES (%(org_id)s, %(actor_id)s, %(action)s, %(target)s, %(detail)s)
  RETURNING id, at;

-- audit_list --
-- An organization's audit log, newest first, a page at a time (before: the last id seen).
SELECT a.id, a.at, a.actor_id, u.email AS actor_email, a.action, a.target, a.detail
  FROM org_audit a
  LEFT JOIN users u ON u.id = a.actor_id
 WHERE a.org_id = %(org_id)s AND (%(before)s::bigint IS NULL OR a.id < %(before)s)
 ORDER BY a.id DESC
 LIMIT %(limit)s;

-- ops_orgs --
-- The Operators page: every organization with its volume, quota and failures (operators only).
SELECT o.id, o.name, o.created_at, o.suspended_at, o.suspended_reason, s.daily_quota,
       coalesce(s.providers_mode, 'before') AS providers_mode,
       (SELECT count(*) FROM memberships m WHERE m.org_id = o.id) AS members,
       (SELECT count(*) FROM emails e
         WHERE e.org_id = o.id AND e.data_started_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
       ) AS sent_today,
       (SELECT count(*) FROM emails e WHERE e.org_id = o.id AND e.status = 'scheduled') AS waiting,
       (SELECT count(*) FROM emails e
         WHERE e.org_id = o.id AND e.status IN ('failed', 'uncertain')
           AND e.updated_at > now() - interval '24 hours') AS failed_24h,
       coalesce((SELECT array_agg(t.label ORDER BY t.position) FROM org_transports t WHERE t.org_id = o.id),
                '{}') AS transports
  FROM organizations o
  LEFT JOIN org_settings s ON s.org_id = o.id
 ORDER BY o.id;

-- ops_org_breakers --
-- Every organization's own transports' breakers (labels o<org>.<label>), for the Operators page.
SELECT label, state, failures, opened_count, last_error
  FROM transport_breakers
 WHERE label ~ '^o[0-9]+\.'
 ORDER BY label;

-- ---- Organizations (tasks/domain/orgs.py) ----

-- user_orgs --
-- A user's organizations, oldest membership first (web_user_orgs: the web role
-- sees only its current organization's memberships).
SELECT org_id, name, role, suspended_at FROM web_user_orgs(%(user_id)s);

-- membership --
SELECT m.role, o.name AS org_name
  FROM memberships m JOIN organizations o ON o.id = m.org_id
 WHERE m.org_id = %(org_id)s AND m.user_id = %(user_id)s;

-- org_members --
SELECT m.user_id, u.email, u.name, m.role, m.created_at
  FROM memberships m JOIN users u ON u.id = m.user_id
 WHERE m.org_id = %(org_id)s
 ORDER BY m.role = 'owner' DESC, lower(u.email);

-- get_org --
SELECT * FROM organizations WHERE id = %(id)s;

-- orgs_by_name --
SELECT * FROM organizations WHERE name = %(name)s ORDER BY id;

-- org_overview --
-- Every organization, with its members and emails (operators: `org list`).
SELECT o.id, o.name, o.created_at, o.suspended_at, o.suspended_reason,
       (SELECT count(*) FROM memberships m WHERE m.org_id = o.id) AS members,
       (SELECT string_agg(u.email, ', ' ORDER BY u.email) FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.org_id = o.id AND m.role = 'owner') AS owners,
       (SELECT count(*) FROM emails e WHERE e.org_id = o.id) AS emails
  FROM organizations o
 ORDER BY o.id;

-- insert_org --
INSERT INTO organizations (name) VALUES (%(name)s) RETURNING *;

-- insert_membership --
-- A new member; an existing one keeps their role (no row back).
INSERT INTO memberships (org_id, user_id, role) VALUES (%(org_id)s, %(user_id)s, %(role)s)
ON CONFLICT (org_id, user_id) DO NOTHING
RETURNING org_id;

-- upsert_membership --
INSERT INTO memberships (org_id, user_id, role) VALUES (%(org_id)s, %(user_id)s, %(role)s)
ON CONFLICT (org_id, user_id) DO UPDATE SET role = EXCLUDED.role;

-- lock_memberships --
-- Every membership of the organization, locked: a change of roles is judged on
-- them (the last owner), and two changes never judge at once.
SELECT user_id, role FROM memberships WHERE org_id = %(org_id)s ORDER BY user_id FOR UPDATE;

-- update_membership --
UPDATE memberships SET role = %(role)s WHERE org_id = %(org_id)s AND user_id = %(user_id)s;

-- delete_membership --
DELETE FROM memberships WHERE org_id = %(org_id)s AND user_id = %(user_id)s;

-- revoke_member_tokens --
-- A member who leaves: their tokens in the organization stop for good (they
-- already stop working, since web_token_identity requires the membership).
UPDATE api_tokens SET revoked_at = now()
 WHERE org_id = %(org_id)s AND user_id = %(user_id)s AND revoked_at IS NULL;

-- suspend_org --
UPDATE organizations SET suspended_at = coalesce(suspended_at, now()), suspended_reason = %(reason)s
 WHERE id = %(id)s
RETURNING *;

-- lock_org --
-- The organization as it is, locked until the caller's transaction ends (resume reads its reason).
SELECT * FROM organizations WHERE id = %(id)s FOR UPDATE;

-- resume_org --
UPDATE organizations SET suspended_at = NULL, suspended_reason = NULL WHERE id = %(id)s RETURNING *;

-- insert_invitation --
INSERT INTO invitations (org_id, email, role, secret_hash, invited_by, expires_at)
     VALUES (%(org_id)s, %(email)s, %(role)s, %(secret_hash)s, %(invited_by)s,
             now() + make_interval(days => %(days)s))
  RETURNING *;

-- pending_invitations --
SELECT * FROM invitations
 WHERE org_id = %(org_id)s AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
 ORDER BY id DESC;

-- revoke_invitation --
UPDATE invitations SET revoked_at = now()
 WHERE org_id = %(org_id)s AND id = %(id)s AND accepted_at IS NULL AND revoked_at IS NULL
RETURNING id;

-- get_invitation --
SELECT *, expires_at <= now() AS expired FROM invitations WHERE org_id = %(org_id)s AND id = %(id)s;

-- lock_invitation --
SELECT *, expires_at <= now() AS expired FROM invitations
 WHERE org_id = %(org_id)s AND id = %(id)s
   FOR UPDATE;

-- accept_invitation --
UPDATE invitations SET accepted_at = now(), accepted_by = %(user_id)s
 WHERE org_id = %(org_id)s AND id = %(id)s AND accepted_at IS NULL;

-- set_org --
-- The web connection's organization from now on ('': none), read by the
-- row-level security policies (current_org_id()).
SELECT set_config('app.org_id', %(org_id)s, false);

-- org_jobs_to_cancel --
-- Deleting an organization: its emails in flight (none may be), and the jobs of
-- those still waiting, locked until the deletion commits.
SELECT id, status, job_id FROM emails
 WHERE org_id = %(org_id)s AND status IN ('scheduled', 'sending')
   FOR UPDATE;

-- delete_org --
-- Everything the organization owns, then the organization (its memberships go
-- with it: ON DELETE CASCADE). One statement, so the foreign keys are checked
-- once everything is gone (emails.batch_id); each email's events go with it.
WITH gone_emails AS (
    DELETE FROM emails WHERE org_id = %(org_id)s RETURNING id
), gone_batches AS (
    DELETE FROM batches WHERE org_id = %(org_id)s RETURNING id
), gone_tokens AS (
    DELETE FROM api_tokens WHERE org_id = %(org_id)s RETURNING id
), gone_invitations AS (
    DELETE FROM invitations WHERE org_id = %(org_id)s RETURNING id
), gone_charts AS (
    DELETE FROM chart_owner_minutes WHERE org_id = %(org_id)s RETURNING 1
), gone_skips AS (
    DELETE FROM recurrence_skips WHERE org_id = %(org_id)s RETURNING 1
), gone_recurrences AS (
    DELETE FROM recurrences WHERE org_id = %(org_id)s RETURNING 1
)
SELECT (SELECT count(*) FROM gone_emails) AS emails, (SELECT count(*) FROM gone_batches) AS batches,
       (SELECT count(*) FROM gone_tokens) AS tokens, (SELECT count(*) FROM gone_invitations) AS invitations,
       (SELECT count(*) FROM gone_charts) AS chart_rows,
       (SELECT count(*) FROM gone_recurrences) AS recurrences;

-- delete_org_row --
DELETE FROM organizations WHERE id = %(org_id)s RETURNING id;

-- ---- Recurring emails (tasks/domain/recurrences.py, tasks/queue/occurrences.py) ----
-- A recurrence's occurrences are ordinary emails rows with recurrence_id and
-- occurrence_at; emails_occurrence_key allows one that is not cancelled per occurrence.

-- insert_recurrence --
INSERT INTO recurrences (org_id, owner_id, to_addrs, cc_addrs, bcc_addrs, subject, body_text, body_html,
                         cron, preset, time_zone, starts_at, ends_at, max_count, next_at,
                         idempotency_key, request_hash)
     VALUES (%(org_id)s, %(owner_id)s, %(to_addrs)s, %(cc_addrs)s, %(bcc_addrs)s, %(subject)s, %(body_text)s,
             %(body_html)s, %(cron)s, %(preset)s, %(time_zone)s, %(starts_at)s, %(ends_at)s,
             %(max_count)s, %(next_at)s, %(idempotency_key)s, %(request_hash)s)
ON CONFLICT (org_id, owner_id, idempotency_key) DO NOTHING
  RETURNING *;

-- recurrence_by_idempotency_key --
SELECT * FROM recurrences
 WHERE org_id = %(org_id)s AND owner_id = %(owner_id)s AND idempotency_key = %(idempotency_key)s;

-- get_recurrence --
SELECT * FROM recurrences
 WHERE id = %(id)s AND status <> 'deleted' AND (%(any_org)s OR org_id = %(org_id)s);

-- lock_recurrence --
SELECT * FROM recurrences
 WHERE id = %(id)s AND status <> 'deleted' AND (%(any_org)s OR org_id = %(org_id)s)
   FOR UPDATE;

-- list_recurrences --
-- The organization's recurrences (mine_only: the caller's own), newest first, with
-- the last occurrence's result.
SELECT r.*, last.status AS last_status, last.occurrence_at AS last_at, last.id AS last_email_id,
       (SELECT min(e.occurrence_at) FROM emails e
         WHERE e.recurrence_id = r.id AND e.status = 'scheduled') AS next_pending
  FROM recurrences r
  LEFT JOIN LATERAL (SELECT e.id, e.status, e.occurrence_at FROM emails e
                      WHERE e.recurrence_id = r.id AND e.occurrence_at <= now()
                      ORDER BY e.occurrence_at DESC LIMIT 1) last ON true
 WHERE (%(any_org)s OR r.org_id = %(org_id)s) AND r.status <> 'deleted'
   AND (NOT %(mine_only)s OR r.owner_id = %(owner_id)s)
 ORDER BY r.created_at DESC, r.id DESC
 LIMIT %(limit)s;

-- update_recurrence --
-- Edit, pause, resume, delete: the caller holds the row lock and passes every column.
UPDATE recurrences
   SET to_addrs = %(to_addrs)s, cc_addrs = %(cc_addrs)s, bcc_addrs = %(bcc_addrs)s,
       subject = %(subject)s, body_text = %(body_text)s, body_html = %(body_html)s,
       cron = %(cron)s, preset = %(preset)s, time_zone = %(time_zone)s,
       starts_at = %(starts_at)s, ends_at = %(ends_at)s, max_count = %(max_count)s,
       status = %(status)s, paused_reason = %(paused_reason)s, next_at = %(next_at)s,
       made = made - %(given_back)s, failures_in_row = %(failures_in_row)s, updated_at = now()
 WHERE id = %(id)s
  RETURNING *;

-- cancel_recurrence_pending --
-- Cancel the recurrence's occurrences that wait and have not been claimed (a
-- pause, an edit of the rule, a delete): nothing more goes out. One in the offline
-- log waits too (a replay would send it), as set_cancelled has it for one email.
WITH cancelled AS (
    UPDATE emails SET status = 'cancelled', waiting_reason = NULL
     WHERE recurrence_id = %(id)s AND status IN ('scheduled', 'offline')
    RETURNING id, org_id, owner_id, job_id
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, 'cancelled', job_id, jsonb_build_object('recurrence_id', %(id)s::uuid, 'reason', %(reason)s::text)
      FROM cancelled
)
SELECT id, org_id, owner_id, job_id FROM cancelled;

-- edit_recurrence_pending --
-- New content for one occurrence not sent yet (rendered for its instant); the caller holds the recurrence's lock.
WITH edited AS (
    UPDATE emails
       SET to_addrs = %(to_addrs)s, cc_addrs = %(cc_addrs)s, bcc_addrs = %(bcc_addrs)s,
           subject = %(subject)s, body_text = %(body_text)s, body_html = %(body_html)s
     WHERE id = %(id)s AND status IN ('scheduled', 'offline')
    RETURNING id, org_id, job_id
)
INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
SELECT org_id, id, 'edited', job_id, jsonb_build_object('fields', %(fields)s::text[], 'recurrence_id', %(recurrence_id)s::uuid)
  FROM edited;

-- recurrence_pending --
SELECT id, occurrence_at FROM emails WHERE recurrence_id = %(id)s AND status = 'scheduled';

-- recurrence_unsent --
-- Its occurrences not sent yet that an edit rewrites: waiting, or in the offline log.
SELECT id, occurrence_at FROM emails WHERE recurrence_id = %(id)s AND status IN ('scheduled', 'offline');

-- recurrence_history --
-- Its occurrences (each an email) and the runs it skipped, newest first.
SELECT * FROM (
    SELECT 'email' AS kind, e.occurrence_at AS at, NULL::timestamptz AS last_at, NULL::integer AS n,
           e.id AS email_id, e.status, e.sent_at, e.last_error AS reason
      FROM emails e
     WHERE e.recurrence_id = %(id)s
    UNION ALL
    SELECT 'skipped', s.first_at, s.last_at, s.n, NULL, 'skipped', NULL, s.reason
      FROM recurrence_skips s
     WHERE s.recurrence_id = %(id)s
) h
 ORDER BY at DESC
 LIMIT %(limit)s;

-- recurrences_due --
-- Active recurrences whose next occurrence is within the horizon, locked so two
-- reconcilers never create the same ones (the unique key would refuse it anyway).
SELECT r.*, now() AS db_now
  FROM recurrences r
 WHERE r.status = 'active' AND r.next_at <= now() + make_interval(secs => %(horizon)s)
 ORDER BY r.next_at
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED;

-- insert_occurrences --
-- Occurrences as emails (many recurrences per statement), each with its
-- 'scheduled' event; one that exists already is left as it is.
WITH inserted AS (
    INSERT INTO emails (id, org_id, owner_id, recurrence_id, occurrence_at, from_addr, reply_to, to_addrs,
                        cc_addrs, bcc_addrs, subject, body_text, body_html, send_at, send_tz,
                        next_attempt_at, message_id)
    SELECT v.id, r.org_id, r.owner_id, r.id, v.at, %(from_addr)s, u.email, r.to_addrs, r.cc_addrs,
           r.bcc_addrs, v.subject, v.body_text, v.body_html, v.at, r.time_zone, v.at,
           '<' || v.id || '@' || %(mail_domain)s || '>'
      FROM unnest(%(ids)s::uuid[], %(recurrence_ids)s::uuid[], %(ats)s::timestamptz[],
                  %(subjects)s::text[], %(bodies)s::text[], %(htmls)s::text[])
           AS v(id, recurrence_id, at, subject, body_text, body_html)
      JOIN recurrences r ON r.id = v.recurrence_id
      JOIN users u ON u.id = r.owner_id
    ON CONFLICT (recurrence_id, occurrence_at) WHERE recurrence_id IS NOT NULL AND status <> 'cancelled'
    DO NOTHING
    RETURNING id, org_id, owner_id, recurrence_id, occurrence_at, next_attempt_at, send_tz,
              cardinality(to_addrs) + cardinality(cc_addrs) + cardinality(bcc_addrs) AS recipients
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, detail)
    SELECT org_id, id, 'scheduled',
           jsonb_build_object('send_at', next_attempt_at, 'time_zone', send_tz, 'recipients', recipients,
                              'recurrence_id', recurrence_id, 'occurrence_at', occurrence_at)
      FROM inserted
)
SELECT id, org_id, owner_id, recurrence_id, next_attempt_at FROM inserted;

-- advance_recurrences --
-- Move each recurrence's cursor past what was created (NULL: none left, it ends).
UPDATE recurrences r
   SET next_at = v.next_at, made = r.made + v.made,
       status = CASE WHEN v.next_at IS NULL THEN 'ended' ELSE r.status END,
       updated_at = now()
  FROM unnest(%(ids)s::uuid[], %(next_ats)s::timestamptz[], %(made)s::integer[]) AS v(id, next_at, made)
 WHERE r.id = v.id;

-- cancel_missed_occurrences --
-- After downtime a recurrence sends at most one occurrence late (tasks/queue/occurrences.py,
-- cancel_missed). Occurrences are created ahead (RECURRENCE_LOOKAHEAD), so some whose
-- instant passed during an outage exist already, never attempted: for a recurrence whose
-- cursor was passed too (%(befores)s: that cursor), every such one before it is cancelled
-- (its catch-up, if any, is later); for the others (NULL), all but the latest past one
-- (no flood when the lookahead was longer than the outage). Cancelled with the reason as
-- an event; the unique key's index finds them; one a worker is claiming is left to go.
WITH past AS (
    SELECT e.id, v.before, v.reason,
           row_number() OVER (PARTITION BY e.recurrence_id ORDER BY e.occurrence_at DESC) AS nth_latest
      FROM unnest(%(ids)s::uuid[], %(befores)s::timestamptz[], %(reasons)s::text[]) AS v(id, before, reason)
      JOIN emails e ON e.recurrence_id = v.id AND e.occurrence_at < least(v.before, now())
     WHERE e.status = 'scheduled' AND e.attempts = 0
), missed AS (
    SELECT e.id, p.reason
      FROM past p
      JOIN emails e ON e.id = p.id
     WHERE (p.before IS NOT NULL OR p.nth_latest > 1) AND e.status = 'scheduled' AND e.attempts = 0
       FOR UPDATE OF e SKIP LOCKED
), cancelled AS (
    UPDATE emails e SET status = 'cancelled', waiting_reason = NULL
      FROM missed m
     WHERE e.id = m.id
    RETURNING e.id, e.org_id, e.job_id, e.recurrence_id, e.occurrence_at, m.reason
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, 'cancelled', job_id, jsonb_build_object('recurrence_id', recurrence_id, 'reason', reason)
      FROM cancelled
)
SELECT id, job_id, recurrence_id, occurrence_at, reason FROM cancelled;

-- insert_recurrence_skips --
INSERT INTO recurrence_skips (org_id, recurrence_id, first_at, last_at, n, reason)
SELECT r.org_id, v.*
  FROM unnest(%(ids)s::uuid[], %(firsts)s::timestamptz[], %(lasts)s::timestamptz[],
              %(ns)s::integer[], %(reasons)s::text[]) AS v(id, first_at, last_at, n, reason)
  JOIN recurrences r ON r.id = v.id;

-- pause_failing_recurrences --
-- Pause the active recurrences whose occurrences failed permanently `limit` times in a row.
UPDATE recurrences
   SET status = 'paused', updated_at = now(),
       paused_reason = 'paused after ' || failures_in_row || ' occurrences in a row failed permanently'
 WHERE status = 'active' AND failures_in_row >= %(limit)s AND failures_in_row > 0
  RETURNING id, org_id, owner_id, paused_reason;

-- give_back_occurrences --
-- Occurrences cancelled before they went out no longer count towards max_count.
UPDATE recurrences SET made = greatest(made - %(n)s, 0) WHERE id = %(id)s;

-- ---- Alerts (tasks/ops/monitor.py, tasks/ops/alerts.py) ----

-- monitor_try_lock --
-- The one active monitor holds this session-level lock on a connection of its own.
SELECT pg_try_advisory_lock(%(key)s) AS locked;

-- monitor_emails --
-- One look at the emails the alerts count, each through a small partial index:
-- due now and overdue by more than the lag (emails_due_idx), in the offline log
-- (emails_offline_idx), uncertain (emails_uncertain_idx).
SELECT (SELECT count(*) FROM emails
         WHERE status = 'scheduled' AND next_attempt_at IS NOT NULL AND next_attempt_at <= now()) AS due,
       (SELECT count(*) FROM emails
         WHERE status = 'scheduled' AND next_attempt_at IS NOT NULL
           AND next_attempt_at < now() - make_interval(secs => %(lag)s)) AS lagging,
       (SELECT min(next_attempt_at) FROM emails
         WHERE status = 'scheduled' AND next_attempt_at IS NOT NULL) AS oldest_due,
       (SELECT count(*) FROM emails WHERE status = 'offline') AS offline,
       (SELECT min(offline_at) FROM emails WHERE status = 'offline') AS oldest_offline;

-- monitor_uncertain --
-- Uncertain emails by organization, and since when (the oldest's last change).
SELECT org_id, count(*) AS n, min(updated_at) AS since
  FROM emails
 WHERE status = 'uncertain'
 GROUP BY org_id;

-- monitor_breakers --
-- Every transport whose breaker is not closed (the deployment's and organizations' own).
SELECT label, state, failures, last_error, changed_at, last_failure_at
  FROM transport_breakers
 WHERE state <> 'closed'
 ORDER BY label;

-- monitor_org_scheduled --
-- Each of these organizations' scheduled emails (what its own transport's breaker holds up).
SELECT org_id, count(*) AS n
  FROM emails
 WHERE org_id = ANY(%(org_ids)s::bigint[]) AND status = 'scheduled'
 GROUP BY org_id;

-- monitor_org_webhooks --
-- The organizations that gave a Slack incoming webhook (as Fernet tokens).
SELECT s.org_id, o.name, s.slack_webhook_secret
  FROM org_settings s
  JOIN organizations o ON o.id = s.org_id
 WHERE s.slack_webhook_secret IS NOT NULL;

-- alerts_open --
SELECT * FROM alerts WHERE resolved_at IS NULL ORDER BY id;

-- alerts_last_posts --
-- The last message posted for each key within the minimum interval (older ones hold nothing back).
SELECT key, max(posted_at) AS posted_at
  FROM alerts
 WHERE posted_at > now() - make_interval(secs => %(within)s)
 GROUP BY key;

-- alert_insert --
-- NULL when an episode of this key is open already (another monitor opened it).
INSERT INTO alerts (key, kind, org_id, summary, action, affected, since, last_seen_at, cleared_at,
                    raised_at, announced, resolved_at, resolved_posted, posted_at, flaps, detail)
     VALUES (%(key)s, %(kind)s, %(org_id)s, %(summary)s, %(action)s, %(affected)s, %(since)s, %(last_seen_at)s,
             %(cleared_at)s, %(raised_at)s, %(announced)s, %(resolved_at)s, %(resolved_posted)s, %(posted_at)s,
             %(flaps)s, %(detail)s)
ON CONFLICT (key) WHERE resolved_at IS NULL DO NOTHING
  RETURNING id;

-- alert_update --
UPDATE alerts
   SET summary = %(summary)s, action = %(action)s, affected = %(affected)s, last_seen_at = %(last_seen_at)s,
       cleared_at = %(cleared_at)s, raised_at = %(raised_at)s, announced = %(announced)s,
       resolved_at = %(resolved_at)s, resolved_posted = %(resolved_posted)s, posted_at = %(posted_at)s,
       flaps = %(flaps)s, detail = %(detail)s
 WHERE id = %(id)s;

-- alerts_recent --
-- What /ops/alerts and the Operators page show: every open episode, then those resolved
-- within the window, newest first.
SELECT * FROM alerts
 WHERE resolved_at IS NULL OR resolved_at > now() - make_interval(secs => %(window)s)
 ORDER BY resolved_at IS NOT NULL, coalesce(resolved_at, since) DESC, id DESC
 LIMIT %(limit)s;

-- metrics_alerts --
-- Open alerts by kind (raised: announced; pending: held back by the minimum interval),
-- and those raised in the last 24 hours (a gauge: `prune` deletes old ones).
SELECT kind,
       count(*) FILTER (WHERE resolved_at IS NULL AND raised_at IS NOT NULL) AS open,
       count(*) FILTER (WHERE resolved_at IS NULL AND raised_at IS NULL) AS pending,
       count(*) FILTER (WHERE raised_at > now() - interval '24 hours') AS raised
  FROM alerts
 WHERE resolved_at IS NULL OR raised_at > now() - interval '24 hours'
 GROUP BY kind;

-- org_slack_set --
INSERT INTO org_settings (org_id, slack_webhook_secret, slack_webhook_masked)
     VALUES (%(org_id)s, %(secret)s, %(masked)s)
ON CONFLICT (org_id) DO UPDATE
        SET slack_webhook_secret = EXCLUDED.slack_webhook_secret,
            slack_webhook_masked = EXCLUDED.slack_webhook_masked, updated_at = now();

-- org_slack_secrets --
-- Every stored Slack webhook, for `keys rotate`, locked until re-encrypted.
SELECT org_id, slack_webhook_secret
  FROM org_settings
 WHERE slack_webhook_secret IS NOT NULL
 ORDER BY org_id
   FOR UPDATE;

-- org_slack_secret --
-- One organization's Slack incoming webhook, encrypted (a disabled webhook endpoint is told there).
SELECT slack_webhook_secret FROM org_settings WHERE org_id = %(org_id)s AND slack_webhook_secret IS NOT NULL;

-- org_slack_secret_set --
UPDATE org_settings SET slack_webhook_secret = %(secret)s WHERE org_id = %(org_id)s;

-- prune_alerts --
-- `prune`: alerts over before the cut-off (the open ones stay, however old).
DELETE FROM alerts WHERE resolved_at < %(before)s;
-- feedback_ingest --
-- A request's provider events (tasks/domain/feedback.py), one statement: the new ones
-- (feedback_seen: a redelivery changes nothing) matched to their emails by id, and by
-- Message-ID when the event gave one; each email's delivery state moved up to its best
-- event (the ranks of feedback.RANK: a late 'delivered' never hides a bounce; concurrent
-- requests re-check the rank on the locked row); every matched event on its timeline;
-- hard bounces, complaints and unsubscribes on the email's organization's suppression list.
WITH v AS (
    SELECT *,
           CASE kind WHEN 'deferred' THEN 10 WHEN 'delivered' THEN 20
                     WHEN 'bounced' THEN CASE bounce_type WHEN 'hard' THEN 40 ELSE 30 END
                     WHEN 'complained' THEN 50 END AS rank
      FROM unnest(%(sources)s::text[], %(event_ids)s::text[], %(email_ids)s::uuid[], %(message_ids)s::text[],
                  %(kinds)s::text[], %(recipients)s::text[], %(bounce_types)s::text[], %(diagnostics)s::text[],
                  %(ats)s::timestamptz[], %(details)s::jsonb[])
           AS v(source, event_id, email_id, message_id, kind, recipient, bounce_type, diagnostic, at, detail)
), fresh AS (
    INSERT INTO feedback_seen (source, event_id)
    SELECT source, event_id FROM v
    ON CONFLICT DO NOTHING
    RETURNING source, event_id
), matched AS (
    SELECT v.*, e.org_id
      FROM v JOIN fresh f USING (source, event_id)
      JOIN emails e ON e.id = v.email_id AND (v.message_id IS NULL OR e.message_id = v.message_id)
     WHERE e.id = ANY(%(email_ids)s::uuid[])
), best AS (
    SELECT DISTINCT ON (email_id) * FROM matched WHERE rank IS NOT NULL
     ORDER BY email_id, rank DESC, at DESC NULLS LAST
), updated AS (
    UPDATE emails e
       SET delivery = b.kind, delivery_at = coalesce(b.at, now()),
           bounce_type = CASE WHEN b.kind = 'bounced' THEN b.bounce_type END,
           delivery_detail = nullif(left(b.diagnostic, 1000), '')
      FROM best b
     WHERE e.id = b.email_id
       AND b.rank > CASE e.delivery WHEN 'deferred' THEN 10 WHEN 'delivered' THEN 20
                                    WHEN 'bounced' THEN CASE e.bounce_type WHEN 'hard' THEN 40 ELSE 30 END
                                    WHEN 'complained' THEN 50 ELSE 0 END
    RETURNING e.id, e.org_id, e.owner_id, e.status, e.delivery, e.delivery_at, e.bounce_type, e.delivery_detail
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, detail)
    SELECT org_id, email_id, kind, detail FROM matched
), suppressed AS (
    INSERT INTO suppressions (org_id, address, reason, detail, email_id)
    SELECT DISTINCT ON (org_id, recipient) org_id, recipient,
           CASE kind WHEN 'bounced' THEN 'hard_bounce' WHEN 'complained' THEN 'complaint' ELSE 'unsubscribe' END,
           left(diagnostic, 500), email_id
      FROM matched
     WHERE ((kind = 'bounced' AND bounce_type = 'hard') OR kind IN ('complained', 'unsubscribed'))
       AND recipient ~ '^[^@\s]+@[^@\s]+$'
    ON CONFLICT (address, org_id) DO NOTHING
)
SELECT (SELECT count(*) FROM fresh) AS fresh, (SELECT count(*) FROM matched) AS matched,
       (SELECT json_agg(json_build_object('id', id, 'org_id', org_id, 'owner_id', owner_id, 'status', status,
                                          'delivery', delivery, 'delivery_at', delivery_at,
                                          'bounce_type', bounce_type, 'delivery_detail', delivery_detail))
          FROM updated) AS changed;

-- suppressed_among --
-- Which of these (lower-cased) addresses the organization, or the operators' global
-- list, suppresses: one probe of suppressions_key per address.
SELECT DISTINCT ON (address) address, reason, org_id
  FROM suppressions
 WHERE address = ANY(%(addresses)s::text[]) AND (org_id = %(org_id)s OR org_id IS NULL)
 ORDER BY address, org_id NULLS LAST;

-- suppression_add --
-- Put an address on a list (the organization's, or NULL: the global one); nothing if it is there.
INSERT INTO suppressions (org_id, address, reason, detail, email_id)
VALUES (%(org_id)s, %(address)s, %(reason)s, %(detail)s, %(email_id)s)
ON CONFLICT (address, org_id) DO NOTHING
RETURNING *;

-- suppression_add_many --
-- An imported list: each address once; those already there are left as they are.
INSERT INTO suppressions (org_id, address, reason, detail)
SELECT DISTINCT ON (a) %(org_id)s, a, %(reason)s, %(detail)s FROM unnest(%(addresses)s::text[]) a
ON CONFLICT (address, org_id) DO NOTHING
RETURNING address;

-- suppression_remove --
DELETE FROM suppressions
 WHERE address = %(address)s AND org_id IS NOT DISTINCT FROM %(org_id)s
RETURNING *;

-- suppression_list --
-- A list, newest first, one page at a time (keyset on id); ``q`` searches the address.
-- The organization's own rows, and the global list's when ``with_global``.
SELECT id, org_id, address, reason, detail, email_id, created_at
  FROM suppressions
 WHERE (org_id IS NOT DISTINCT FROM %(org_id)s OR (%(with_global)s AND org_id IS NULL))
   AND (%(q)s::text IS NULL OR address LIKE '%%' || %(q)s || '%%')
   AND (%(before)s::bigint IS NULL OR id < %(before)s)
 ORDER BY id DESC
 LIMIT %(limit)s;

-- email_recipient --
-- The organization and the one recipient of an email named by a signed unsubscribe link
-- (read by the owner of the tables; NULL address: not one recipient, no link).
SELECT org_id,
       CASE WHEN cardinality(to_addrs) + cardinality(cc_addrs) + cardinality(bcc_addrs) = 1
            THEN lower((to_addrs || cc_addrs || bcc_addrs)[1]) END AS address
  FROM emails WHERE id = %(id)s;

-- prune_feedback_seen --
-- Forget the providers' event ids older than ``before`` (`prune`): redeliveries come within hours.
DELETE FROM feedback_seen WHERE at < %(before)s;

-- webhook_endpoint_insert --
-- Webhooks (tasks/webhooks/): an organization's endpoints, their deliveries and attempts.
-- Every one is scoped by organization (and the web role by row-level security too).
INSERT INTO webhook_endpoints (org_id, created_by, url, description, event_types, enabled, secret)
     VALUES (%(org_id)s, %(created_by)s, %(url)s, %(description)s, %(event_types)s, %(enabled)s, %(secret)s)
  RETURNING *;

-- webhook_endpoints_list --
SELECT w.*,
       (SELECT count(*) FROM webhook_deliveries d
         WHERE d.org_id = w.org_id AND d.endpoint_id = w.id AND d.status = 'pending') AS pending
  FROM webhook_endpoints w
 WHERE w.org_id = %(org_id)s
 ORDER BY w.created_at, w.id;

-- webhook_endpoint_get --
SELECT w.*, 0::bigint AS pending FROM webhook_endpoints w WHERE w.org_id = %(org_id)s AND w.id = %(id)s;

-- webhook_endpoint_update --
-- Enabling an endpoint again starts its run of failures afresh.
UPDATE webhook_endpoints
   SET url = %(url)s, description = %(description)s, event_types = %(event_types)s,
       failing_since = CASE WHEN %(enabled)s AND NOT enabled THEN NULL ELSE failing_since END,
       disabled_reason = CASE WHEN %(enabled)s THEN NULL ELSE disabled_reason END,
       enabled = %(enabled)s, updated_at = now()
 WHERE org_id = %(org_id)s AND id = %(id)s
RETURNING *, 0::bigint AS pending;

-- webhook_endpoint_delete --
DELETE FROM webhook_endpoints WHERE org_id = %(org_id)s AND id = %(id)s RETURNING id;

-- webhook_endpoint_rotate --
-- The new secret signs from now on; the current one too, until %(overlap)s has passed.
UPDATE webhook_endpoints
   SET previous_secret = secret, previous_secret_until = now() + %(overlap)s::interval,
       secret = %(secret)s, updated_at = now()
 WHERE org_id = %(org_id)s AND id = %(id)s
RETURNING *, 0::bigint AS pending;

-- webhook_deliveries_list --
-- An endpoint's deliveries, newest first (keyset: the last one's created_at and id).
SELECT d.id, d.endpoint_id, d.event_type, d.payload, d.created_at, d.status, d.attempts, d.next_attempt_at,
       d.finished_at,
       (SELECT a.status_code FROM webhook_attempts a
         WHERE a.org_id = d.org_id AND a.delivery_id = d.id ORDER BY a.id DESC LIMIT 1) AS last_status_code
  FROM webhook_deliveries d
 WHERE d.org_id = %(org_id)s AND d.endpoint_id = %(endpoint_id)s
   AND (%(before_at)s::timestamptz IS NULL OR (d.created_at, d.id) < (%(before_at)s, %(before_id)s::uuid))
 ORDER BY d.created_at DESC, d.id DESC
 LIMIT %(limit)s;

-- webhook_delivery_get --
SELECT d.id, d.endpoint_id, d.event_type, d.payload, d.created_at, d.status, d.attempts, d.next_attempt_at,
       d.finished_at, NULL::integer AS last_status_code
  FROM webhook_deliveries d
 WHERE d.org_id = %(org_id)s AND d.endpoint_id = %(endpoint_id)s AND d.id = %(id)s;

-- webhook_attempts_list --
SELECT id, at, status_code, latency_ms, response, error
  FROM webhook_attempts
 WHERE org_id = %(org_id)s AND delivery_id = %(delivery_id)s
 ORDER BY id;

-- webhook_delivery_to_send --
-- What an attempt needs (the delivery task, across organizations: the worker's role).
-- The payload's text is the body: jsonb prints the same text every time, so each
-- retry sends the same bytes.
SELECT d.org_id, d.id, d.endpoint_id, d.event_type, d.payload::text AS body, d.status, d.attempts, d.job_id,
       d.retrying_since, w.url, w.enabled, w.secret,
       CASE WHEN w.previous_secret_until > now() THEN w.previous_secret END AS previous_secret,
       w.created_by
  FROM webhook_deliveries d
  JOIN webhook_endpoints w ON w.org_id = d.org_id AND w.id = d.endpoint_id
 WHERE d.id = %(id)s;

-- webhook_delivery_give_up --
-- A pending delivery whose endpoint was disabled: failed without an attempt.
UPDATE webhook_deliveries SET status = 'failed', finished_at = now(), next_attempt_at = NULL, job_id = NULL
 WHERE org_id = %(org_id)s AND id = %(id)s AND status = 'pending' AND job_id = %(job_id)s;

-- batches_completed --
-- Batches none of whose emails waits or is being sent any more: completed now, once.
UPDATE batches b SET completed_at = now()
 WHERE b.completed_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.batch_id = b.id AND e.status IN ('scheduled', 'sending'))
RETURNING b.id, b.org_id, b.owner_id, b.name, b.total, b.completed_at,
          (SELECT jsonb_object_agg(status, n) FROM (SELECT e.status, count(*) AS n FROM emails e
             WHERE e.batch_id = b.id GROUP BY e.status) s) AS counts;

-- webhook_secrets --
-- Every endpoint's secrets, for re-encryption under the first key (keys rotate).
SELECT org_id, id, secret, previous_secret FROM webhook_endpoints FOR UPDATE;

-- webhook_secret_set --
UPDATE webhook_endpoints SET secret = %(secret)s, previous_secret = %(previous_secret)s
 WHERE org_id = %(org_id)s AND id = %(id)s;

-- prune_webhook_deliveries --
-- Finished deliveries made before %(before)s, with their attempts (ON DELETE CASCADE), a
-- batch at a time (tasks/webhooks/deliver.py, prune_webhooks); each endpoint's oldest
-- first, through webhook_deliveries_endpoint_idx.
WITH old AS (
    SELECT d.org_id, d.id
      FROM webhook_endpoints w
     CROSS JOIN LATERAL (
           SELECT x.org_id, x.id FROM webhook_deliveries x
            WHERE x.org_id = w.org_id AND x.endpoint_id = w.id AND x.created_at < %(before)s
              AND x.status IN ('delivered', 'failed')
            ORDER BY x.created_at LIMIT %(batch)s) d
     LIMIT %(batch)s
), gone AS (
    DELETE FROM webhook_deliveries d USING old o WHERE d.org_id = o.org_id AND d.id = o.id
    RETURNING 1
)
SELECT count(*) AS n FROM gone;

-- ---- Bulk actions (tasks/domain/bulk.py, docs/bulk-actions.md) ----

-- bulk_match_counts --
-- How many emails a bulk action's selection matches, by status. {conditions}: the search's,
-- the list's tab and the rows picked (tasks/domain/bulk.py), on emails_search as the list reads it.
SELECT status, count(*) AS n FROM emails_search
 WHERE (%(any_org)s OR org_id = %(org_id)s)
   AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
   AND {conditions}
 GROUP BY status;

-- bulk_match_count --
-- How many emails the selection matches, counted up to %(cap)s (the list's "Select all N").
SELECT count(*) AS n FROM (
    SELECT 1 FROM emails_search
     WHERE (%(any_org)s OR org_id = %(org_id)s)
       AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
       AND {conditions}
     LIMIT %(cap)s
) matches;

-- bulk_match_sample --
-- The newest few of the emails the action applies to.
SELECT e.* FROM emails e
 WHERE e.id = ANY(ARRAY(
        SELECT id FROM emails_search
         WHERE (%(any_org)s OR org_id = %(org_id)s)
           AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
           AND {conditions} AND status = ANY(%(applies)s::text[])
         ORDER BY created_at DESC, id DESC
         LIMIT %(limit)s))
 ORDER BY e.created_at DESC, e.id DESC;

-- bulk_snapshot --
-- Confirming: every email the action applies to, with its status and version now (one
-- statement, so one snapshot of the search). Returns how many.
WITH picked AS (
    INSERT INTO bulk_action_emails (bulk_id, email_id, org_id, status, version, previous_send_at,
                                    previous_next_attempt_at)
    SELECT %(bulk_id)s, e.id, e.org_id, e.status, e.updated_at, e.send_at, e.next_attempt_at
      FROM emails e
     WHERE e.id IN (SELECT id FROM emails_search
                     WHERE (%(any_org)s OR org_id = %(org_id)s)
                       AND (NOT %(mine_only)s OR owner_id = %(owner_id)s)
                       AND {conditions} AND status = ANY(%(applies)s::text[]))
       AND e.org_id = %(bulk_org_id)s AND e.status = ANY(%(applies)s::text[])
    RETURNING previous_send_at
)
SELECT count(*) AS n, min(previous_send_at) AS earliest FROM picked;

-- bulk_insert --
INSERT INTO bulk_actions (org_id, actor_id, action, params, query, view, mine, picked, total)
VALUES (%(org_id)s, %(actor_id)s, %(action)s, %(params)s, %(query)s, %(view)s, %(mine)s, %(picked)s, 0)
RETURNING id;

-- bulk_set_total --
UPDATE bulk_actions SET total = %(total)s WHERE id = %(id)s;

-- bulk_get --
SELECT b.*, u.email AS actor_email FROM bulk_actions b LEFT JOIN users u ON u.id = b.actor_id
 WHERE b.id = %(id)s AND (%(any_org)s OR b.org_id = %(org_id)s);

-- bulk_lock --
SELECT * FROM bulk_actions WHERE id = %(id)s AND (%(any_org)s OR org_id = %(org_id)s) FOR UPDATE;

-- bulk_start --
UPDATE bulk_actions SET state = 'running' WHERE id = %(id)s AND state IN ('pending', 'running')
RETURNING *;

-- bulk_chunk --
-- The next emails of a bulk action still to do, each locked with what it is now (an email's
-- lock, then its job's, as every action on one email takes them).
SELECT b.email_id, b.status AS was, b.version, e.status, e.updated_at, e.job_id, e.send_at, e.next_attempt_at
  FROM bulk_action_emails b JOIN emails e ON e.id = b.email_id
 WHERE b.bulk_id = %(bulk_id)s AND b.outcome IS NULL
 ORDER BY b.email_id
 LIMIT %(limit)s
   FOR UPDATE OF e;

-- bulk_changed_emails --
-- Where the emails a bulk action (or its undo) just changed stand, for the live status.
SELECT id, org_id, status, next_attempt_at FROM emails WHERE id = ANY(%(ids)s::uuid[]);

-- bulk_cancel --
-- Cancel these emails (each still as confirmed: the caller checked it under lock), with their events.
WITH done AS (
    UPDATE emails SET status = 'cancelled', waiting_reason = NULL
     WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('scheduled', 'offline')
    RETURNING id, org_id, job_id, updated_at
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, 'cancelled', job_id, jsonb_build_object('bulk_action_id', %(bulk_id)s::uuid) FROM done
)
SELECT id, job_id, updated_at FROM done;

-- bulk_wait_again --
-- Reschedule, send now, retry (and undoing a reschedule): each email waits again until its
-- next_at, with its new job (NULL beyond the horizon); send_at moves where one is given.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(send_ats)s::timestamptz[], %(next_ats)s::timestamptz[],
                         %(job_ids)s::bigint[]) AS t(id, send_at, next_at, job_id)
), done AS (
    UPDATE emails e
       SET status = 'scheduled', send_at = coalesce(i.send_at, e.send_at), next_attempt_at = i.next_at,
           waiting_reason = NULL, job_id = i.job_id
      FROM input i
     WHERE e.id = i.id
    RETURNING e.id, e.org_id, e.job_id, e.updated_at, e.next_attempt_at
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, %(kind)s, job_id,
           jsonb_build_object('send_at', next_attempt_at, 'bulk_action_id', %(bulk_id)s::uuid, 'undo', %(undo)s::boolean)
      FROM done
)
SELECT id, updated_at FROM done;

-- bulk_uncancel --
-- Undo a bulk cancel: each email back to what it was (scheduled, with its new job, or offline);
-- the caller set reach.bulk_undo (migration 0022) and checked each one under lock.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(statuses)s::text[], %(job_ids)s::bigint[]) AS t(id, status, job_id)
), done AS (
    UPDATE emails e SET status = i.status, job_id = i.job_id, waiting_reason = NULL
      FROM input i
     WHERE e.id = i.id AND e.status = 'cancelled'
    RETURNING e.id, e.org_id, e.job_id, e.status
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, 'uncancelled', job_id, jsonb_build_object('bulk_action_id', %(bulk_id)s::uuid, 'status', status)
      FROM done
)
SELECT id FROM done;

-- bulk_mark --
-- What happened to each email of a chunk: applied (with the version it left) or skipped (why).
UPDATE bulk_action_emails b
   SET outcome = t.outcome, reason = t.reason, applied_version = t.version
  FROM unnest(%(ids)s::uuid[], %(outcomes)s::text[], %(reasons)s::text[], %(versions)s::timestamptz[])
       AS t(id, outcome, reason, version)
 WHERE b.bulk_id = %(bulk_id)s AND b.email_id = t.id;

-- bulk_progress --
UPDATE bulk_actions SET applied = applied + %(applied)s, skipped = skipped + %(skipped)s WHERE id = %(id)s;

-- bulk_finish --
UPDATE bulk_actions
   SET state = 'done', finished_at = now(),
       undo_until = CASE WHEN %(undoable)s THEN clock_timestamp() + %(window)s END
 WHERE id = %(id)s
RETURNING *;

-- bulk_fail --
UPDATE bulk_actions SET state = 'failed', finished_at = now() WHERE id = %(id)s AND state <> 'done';

-- bulk_undo_rows --
-- The emails a bulk action changed, each locked with what it is now (undo).
SELECT b.email_id, b.status AS was, b.applied_version, b.previous_send_at, b.previous_next_attempt_at,
       e.status, e.updated_at, e.job_id, e.next_attempt_at
  FROM bulk_action_emails b JOIN emails e ON e.id = b.email_id
 WHERE b.bulk_id = %(bulk_id)s AND b.outcome = 'applied' AND b.undo IS NULL
 ORDER BY b.email_id
   FOR UPDATE OF e;

-- bulk_mark_undo --
UPDATE bulk_action_emails b SET undo = t.undo, undo_reason = t.reason
  FROM unnest(%(ids)s::uuid[], %(undos)s::text[], %(reasons)s::text[]) AS t(id, undo, reason)
 WHERE b.bulk_id = %(bulk_id)s AND b.email_id = t.id;

-- bulk_undone --
UPDATE bulk_actions SET state = 'undone', undone_at = now(), restored = %(restored)s, undo_skipped = %(skipped)s
 WHERE id = %(id)s
RETURNING *;

-- bulk_skip_reasons --
-- Why emails were skipped, most common first (the action's, then its undo's).
SELECT 'action' AS stage, reason, count(*) AS n FROM bulk_action_emails
 WHERE bulk_id = %(bulk_id)s AND outcome = 'skipped' GROUP BY reason
UNION ALL
SELECT 'undo', undo_reason, count(*) FROM bulk_action_emails
 WHERE bulk_id = %(bulk_id)s AND undo = 'skipped' GROUP BY undo_reason
 ORDER BY stage, n DESC, reason;

-- bulk_skipped_examples --
SELECT b.email_id, b.reason, b.undo_reason, e.subject FROM bulk_action_emails b JOIN emails e ON e.id = b.email_id
 WHERE b.bulk_id = %(bulk_id)s AND (b.outcome = 'skipped' OR b.undo = 'skipped')
 ORDER BY b.email_id LIMIT %(limit)s;
