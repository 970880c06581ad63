-- Search: before: (the send time) read in the list's order (docs/search.md, "How it is fast").
--
-- A list is newest first by created_at; before: and after: are on send_at. An email is
-- created before it is due (a send time more than a minute in the past is refused), so every
-- email due before a time T was created before T + 1 hour, except those due over an hour
-- before they were created: the application makes none, but a row written straight into the
-- table or restored could be one. This index holds those, in the list's order; a search for
-- before:T reads the newest emails created before T + 1 hour through emails_org_created_idx,
-- and these through this index (sql/queries.sql, search_emails_recent, whose condition is this
-- predicate's text). Without it, before:-20d sorted the 136,000 emails in that range of send
-- times to show 50 of them (108 to 196 ms at 1,000,000 emails; bench/search.py).
--
-- Built plainly, in the migration's transaction (migrations cannot CREATE INDEX CONCURRENTLY,
-- sql/migrations/README.md): it reads the table once and blocks writes to emails meanwhile
-- (about 2 s at 1,000,000 emails).
CREATE INDEX emails_org_backdated_idx ON emails (org_id, created_at DESC, id DESC)
    WHERE created_at - send_at > interval '1 hour';
-- How long before its creation an email is due, so the planner knows how few of them are
-- backdated (without it, a third of the emails: the default for a condition it cannot read).
-- Statistics cost ANALYZE a little, and writes nothing.
CREATE STATISTICS emails_backdated_stats ON (created_at - send_at) FROM emails;
