-- Recurring emails: a rule (5-field cron in an IANA zone) whose occurrences become
-- ordinary emails rows, created ahead of time within the schedule horizon by the
-- reconciler (tasks/queue/occurrences.py). docs/recurring.md has the semantics.
-- A recurrence belongs to an organization, like an email (0012): org_id leads its
-- keys and indexes, its occurrences are the organization's emails, and the web role
-- sees only the current organization's recurrences (row-level security).

CREATE TABLE recurrences (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id            bigint NOT NULL REFERENCES organizations,
    owner_id          bigint NOT NULL REFERENCES users (id),
    to_addrs          text[] NOT NULL DEFAULT '{}',
    cc_addrs          text[] NOT NULL DEFAULT '{}',
    bcc_addrs         text[] NOT NULL DEFAULT '{}',
    subject           text NOT NULL,
    body_text         text NOT NULL,
    body_html         text,
    -- The rule: always a 5-field cron expression; preset is the form it was
    -- given in (NULL for a raw cron), kept to show and edit it in those words.
    cron              text NOT NULL,
    preset            jsonb,
    time_zone         text NOT NULL,
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz,
    max_count         integer CHECK (max_count IS NULL OR max_count > 0),
    -- active: occurrences are being created; paused: by its owner or after too
    -- many failures in a row (paused_reason says which); ended: no occurrence
    -- left; deleted: gone from every list, its emails kept.
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'paused', 'ended', 'deleted')),
    paused_reason     text,
    -- The next occurrence to create (NULL once there is none): the cursor the
    -- reconciler advances in the transaction that creates the occurrences.
    next_at           timestamptz,
    -- Occurrences that became emails (those cancelled by a pause or an edit
    -- are given back); max_count bounds it.
    made              integer NOT NULL DEFAULT 0,
    -- Permanent failures of its occurrences in a row (a sent one resets it),
    -- kept by the trigger below.
    failures_in_row   integer NOT NULL DEFAULT 0,
    idempotency_key   text,
    request_hash      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT recurrences_subject_check CHECK (char_length(subject) <= 998 AND subject !~ '[\r\n]'),
    CONSTRAINT recurrences_recipients_check
        CHECK (cardinality(to_addrs) + cardinality(cc_addrs) + cardinality(bcc_addrs) BETWEEN 1 AND 50),
    CONSTRAINT recurrences_ends_check CHECK (ends_at IS NULL OR ends_at > starts_at),
    CONSTRAINT recurrences_idempotency_key UNIQUE (org_id, owner_id, idempotency_key)
);
-- The reconciler reads only active recurrences whose next occurrence is near.
CREATE INDEX recurrences_due_idx ON recurrences (next_at) WHERE status = 'active';
CREATE INDEX recurrences_org_created_idx ON recurrences (org_id, created_at DESC, id DESC);
CREATE INDEX recurrences_org_owner_created_idx ON recurrences (org_id, owner_id, created_at DESC, id DESC);
-- Active recurrences that have failed lately (few): the reconciler pauses those at the limit.
CREATE INDEX recurrences_failing_idx ON recurrences (failures_in_row)
    WHERE status = 'active' AND failures_in_row > 0;

-- What a recurrence did not send: occurrences missed while the system was down,
-- one row per run of them, with the reason.
CREATE TABLE recurrence_skips (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id        bigint NOT NULL REFERENCES organizations,
    recurrence_id uuid NOT NULL REFERENCES recurrences (id),
    first_at      timestamptz NOT NULL,
    last_at       timestamptz NOT NULL,
    -- How many occurrences from first_at to last_at (NULL: more than were counted).
    n             integer,
    reason        text NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (last_at >= first_at)
);
CREATE INDEX recurrence_skips_recurrence_idx ON recurrence_skips (org_id, recurrence_id, first_at DESC);

-- Each occurrence is one emails row tied to its recurrence and its instant. At
-- most one that is not cancelled per occurrence (a pause or an edit cancels the
-- occurrence created ahead; resuming before its time creates it again).
ALTER TABLE emails ADD COLUMN recurrence_id uuid REFERENCES recurrences (id);
ALTER TABLE emails ADD COLUMN occurrence_at timestamptz;
ALTER TABLE emails ADD CONSTRAINT emails_occurrence_check CHECK ((recurrence_id IS NULL) = (occurrence_at IS NULL));
CREATE UNIQUE INDEX emails_occurrence_key ON emails (recurrence_id, occurrence_at)
    WHERE recurrence_id IS NOT NULL AND status <> 'cancelled';
-- A recurrence's history, newest first.
CREATE INDEX emails_recurrence_idx ON emails (recurrence_id, occurrence_at DESC) WHERE recurrence_id IS NOT NULL;

-- Count permanent failures in a row, for the reconciler's pause after
-- RECURRENCE_PAUSE_AFTER_FAILURES; a sent occurrence resets it. Fires only for
-- occurrences that end (the WHEN clause), so one-off mail pays nothing.
CREATE FUNCTION emails_recurrence_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE recurrences
       SET failures_in_row = CASE WHEN NEW.status = 'failed' THEN failures_in_row + 1 ELSE 0 END
     WHERE id = NEW.recurrence_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER emails_recurrence_outcome AFTER UPDATE OF status ON emails
    FOR EACH ROW
    WHEN (NEW.recurrence_id IS NOT NULL AND NEW.status IS DISTINCT FROM OLD.status
          AND NEW.status IN ('sent', 'failed'))
    EXECUTE FUNCTION emails_recurrence_outcome();

-- A recurrence never moves to another organization (org_id_fixed, 0012).
CREATE TRIGGER recurrences_org_fixed BEFORE UPDATE OF org_id ON recurrences
    FOR EACH ROW EXECUTE FUNCTION org_id_fixed();

-- The web role: the current organization's rows only (see 0012).
GRANT SELECT, INSERT, UPDATE, DELETE ON recurrences, recurrence_skips TO reach_web;
GRANT USAGE, SELECT ON SEQUENCE recurrence_skips_id_seq TO reach_web;
ALTER TABLE recurrences ENABLE ROW LEVEL SECURITY;
CREATE POLICY recurrences_org ON recurrences TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE recurrence_skips ENABLE ROW LEVEL SECURITY;
CREATE POLICY recurrence_skips_org ON recurrence_skips TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
