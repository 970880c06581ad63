-- Search: the indexes the query language's qualifiers need, and saved searches
-- (docs/search.md; the language is tasks/domain/search.py).
--
-- 1. pg_trgm, so substring searches (subject:, to:, error:, free text) are answered by an
--    index, not a scan of every email of the organization.
-- 2. Three IMMUTABLE helpers, so a column can hold what they compute: the recipients as one
--    text, the SMTP reply code an email's last reply or error carries, the recipients' domains.
-- 3. Those as stored columns, the indexes, and the view a search reads.
-- 4. saved_searches: each user's named queries in an organization, under RLS.

-- ---- 1. ----
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- ---- 2. ----
-- Every recipient (To, Cc, Bcc), separated by one space (an address holds none).
-- array_to_string is STABLE in general (an element's output function may depend on
-- settings); on text[] it is not.
CREATE FUNCTION email_recipients(to_addrs text[], cc_addrs text[], bcc_addrs text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT array_to_string(to_addrs || cc_addrs || bcc_addrs, ' ') $$;

-- The three-digit SMTP reply code at the start of the last error or reply, or after
-- the step that got it ("RCPT TO: 550 5.1.1 …", "gave up …; last error: DATA: 451 …",
-- "250 OK"); NULL when neither carries one (a connection refused, an email not tried).
CREATE FUNCTION email_reply_code(last_error text, provider_reply text) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT substring(coalesce(last_error, provider_reply) FROM '(?:^|: )([2-5][0-9][0-9])(?:[ -]|$)')::smallint $$;

-- Every recipient's domain, in lower case, once each.
CREATE FUNCTION email_domains(to_addrs text[], cc_addrs text[], bcc_addrs text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(array_agg(DISTINCT lower(split_part(a, '@', 2))), '{}')
            FROM unnest(to_addrs || cc_addrs || bcc_addrs) AS a $$;

-- ---- 3. ----
-- The recipients as a column: a condition on it is checked on many rows (every row a
-- page reads until it has its 50), and calling the function for each cost 5 µs a row.
ALTER TABLE emails
    ADD COLUMN recipients text GENERATED ALWAYS AS (email_recipients(to_addrs, cc_addrs, bcc_addrs)) STORED;
-- Substrings of the subject and of the recipients (free text, subject:, to:, domain:).
CREATE INDEX emails_subject_trgm_idx ON emails USING gin (subject gin_trgm_ops);
CREATE INDEX emails_recipients_trgm_idx ON emails USING gin (recipients gin_trgm_ops);
-- error: only emails that have one (failed, uncertain, retrying).
CREATE INDEX emails_error_trgm_idx ON emails USING gin (last_error gin_trgm_ops)
    WHERE last_error IS NOT NULL;
-- domain: the domains as an array, whose statistics (the most common elements) tell the
-- planner how common each domain is, where trigrams of a domain could not.
ALTER TABLE emails
    ADD COLUMN recipient_domains text[] GENERATED ALWAYS AS (email_domains(to_addrs, cc_addrs, bcc_addrs)) STORED;
CREATE INDEX emails_recipient_domains_idx ON emails USING gin (recipient_domains);
-- code: a column too (its regular expression cost 4 µs a row), set as each outcome is written.
ALTER TABLE emails
    ADD COLUMN reply_code smallint GENERATED ALWAYS AS (email_reply_code(last_error, provider_reply)) STORED;
CREATE INDEX emails_org_reply_code_idx ON emails (org_id, reply_code, created_at DESC) WHERE reply_code IS NOT NULL;
-- before: and after: (the send time), with the list's order: a range of send times
-- that holds many emails is sorted from the index alone, without reading their rows.
CREATE INDEX emails_org_send_at_idx ON emails (org_id, send_at) INCLUDE (created_at, id);
-- status: with the list's order, so a rare status is read newest first without a sort.
CREATE INDEX emails_org_status_created_idx ON emails (org_id, status, created_at DESC, id DESC);
-- batch:, by a batch's name (batches are few per organization; by id, emails_batch_idx).
CREATE INDEX batches_name_trgm_idx ON batches USING gin ((name || ' ' || subject_template) gin_trgm_ops);

-- The rows a search reads, as the web role may see them. Under row-level security a
-- condition is used in an index only when its operator is LEAKPROOF, and ILIKE and ~*
-- are not: every substring search read the whole organization (0.8 to 1.5 s at
-- 1,000,000 emails). This view applies the same rule as the policies (the web role sees
-- its organization's rows; the roles the policies do not apply to, every row) in its
-- own WHERE, where the planner may combine it with the search's conditions and indexes.
-- A search selects ids here and reads the rows from emails itself, under its policy
-- (sql/queries.sql, search_emails), so what a page shows still passes row-level security.
-- Read-only for the web role: it is a simple view, which PostgreSQL would otherwise let
-- it write through, as the view's owner.
CREATE VIEW emails_search AS
SELECT id, org_id, owner_id, from_addr, recipients, recipient_domains, subject, status, send_at, created_at,
       last_error, provider_reply, reply_code, batch_id, recurrence_id, delivery
  FROM emails
 WHERE org_id = current_org_id() OR current_user <> 'reach_web';
REVOKE ALL ON emails_search FROM reach_web;
GRANT SELECT ON emails_search TO reach_web;

-- ---- 4. ----
CREATE TABLE saved_searches (
    org_id bigint NOT NULL REFERENCES organizations ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    user_id bigint NOT NULL REFERENCES users,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    query text NOT NULL CHECK (char_length(query) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CONSTRAINT saved_searches_name_key UNIQUE (org_id, user_id, name)
);

-- A saved search never moves to another organization (org_id_fixed, 0012).
CREATE TRIGGER saved_searches_org_fixed BEFORE UPDATE OF org_id ON saved_searches
    FOR EACH ROW EXECUTE FUNCTION org_id_fixed();

-- The web role: the current organization's rows only (see 0012); each user's own are
-- chosen by the queries (sql/queries.sql, saved_searches_*).
GRANT SELECT, INSERT, UPDATE, DELETE ON saved_searches TO reach_web;
ALTER TABLE saved_searches ENABLE ROW LEVEL SECURITY;
CREATE POLICY saved_searches_org ON saved_searches TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
