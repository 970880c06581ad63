-- A user's due emails without a rate-limit slot, in due order: the rest of a
-- burst that the send task queues at their turns in bulk (queries.sql,
-- spread_candidates) — found without sorting the user's whole backlog.
CREATE INDEX emails_owner_unslotted_due_idx ON emails (owner_id, next_attempt_at, id)
    WHERE status = 'scheduled' AND rate_slot IS NULL;
