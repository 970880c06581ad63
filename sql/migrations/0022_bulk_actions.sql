-- Bulk actions (tasks/domain/bulk.py, docs/bulk-actions.md): one action (cancel, reschedule,
-- send now, retry) on every email a search matched when the user confirmed, run by a job in
-- chunks, and undone within a few seconds where it can be (cancel, reschedule).

-- ---- 1. The action ----
CREATE TABLE bulk_actions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id bigint NOT NULL REFERENCES organizations ON DELETE CASCADE,
    actor_id bigint REFERENCES users,
    action text NOT NULL CHECK (action IN ('cancel', 'reschedule', 'send_now', 'retry')),
    -- reschedule: {"to": instant} or {"shift_seconds": n, "shift": "+2h"}.
    params jsonb NOT NULL DEFAULT '{}',
    -- The search as it was confirmed: its text, the list's tab, "mine"; picked: rows ticked by hand
    -- (their ids are the snapshot's), else every email the search matched.
    query text NOT NULL DEFAULT '' CHECK (char_length(query) <= 200),
    view text NOT NULL DEFAULT 'all' CHECK (char_length(view) <= 20),
    mine boolean NOT NULL DEFAULT false,
    picked boolean NOT NULL DEFAULT false,
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'running', 'done', 'undone', 'failed')),
    total integer NOT NULL CHECK (total >= 0),
    applied integer NOT NULL DEFAULT 0,
    skipped integer NOT NULL DEFAULT 0,
    restored integer NOT NULL DEFAULT 0,
    undo_skipped integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    undo_until timestamptz,
    undone_at timestamptz
);
CREATE INDEX bulk_actions_org_idx ON bulk_actions (org_id, created_at DESC);

-- ---- 2. Each email it may touch: its state when confirmed, what happened, what undo needs ----
CREATE TABLE bulk_action_emails (
    bulk_id uuid NOT NULL REFERENCES bulk_actions ON DELETE CASCADE,
    email_id uuid NOT NULL REFERENCES emails,
    org_id bigint NOT NULL,
    -- The email when the action was confirmed: its status and its version (emails.updated_at,
    -- which emails_guard_update moves on every change).
    status text NOT NULL,
    version timestamptz NOT NULL,
    outcome text CHECK (outcome IN ('applied', 'skipped')),
    reason text CHECK (char_length(reason) <= 200),
    -- After the action applied: the version it left, and what it changed (for undo).
    applied_version timestamptz,
    previous_send_at timestamptz,
    previous_next_attempt_at timestamptz,
    undo text CHECK (undo IN ('restored', 'skipped')),
    undo_reason text CHECK (char_length(undo_reason) <= 200),
    PRIMARY KEY (bulk_id, email_id)
);
CREATE INDEX bulk_action_emails_pending_idx ON bulk_action_emails (bulk_id) WHERE outcome IS NULL;

ALTER TABLE bulk_actions ENABLE ROW LEVEL SECURITY;
CREATE POLICY bulk_actions_org ON bulk_actions TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE bulk_action_emails ENABLE ROW LEVEL SECURITY;
CREATE POLICY bulk_action_emails_org ON bulk_action_emails TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());

-- ---- 3. Undoing a bulk cancel ----
-- A cancelled email stays cancelled, except in the one statement that undoes a bulk cancel
-- within its window: it says so with SET LOCAL reach.bulk_undo = 'on' (tasks/domain/bulk.py),
-- and the email goes back to what it was (scheduled or offline). Everything else is 0004's.
CREATE OR REPLACE FUNCTION emails_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.owner_id <> OLD.owner_id OR NEW.message_id <> OLD.message_id THEN
        RAISE EXCEPTION 'email % : owner and Message-ID never change', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    -- (The CASE is parenthesised: inside IF, a bare THEN would end the condition.)
    IF NEW.status <> OLD.status AND NOT (CASE OLD.status
        WHEN 'scheduled' THEN NEW.status IN ('sending', 'cancelled')
        WHEN 'sending'   THEN NEW.status IN ('sent', 'failed', 'scheduled', 'uncertain', 'offline')
        WHEN 'failed'    THEN NEW.status IN ('scheduled')
        WHEN 'uncertain' THEN NEW.status IN ('scheduled', 'sent', 'failed')
        WHEN 'offline'   THEN NEW.status IN ('scheduled', 'cancelled')
        WHEN 'cancelled' THEN NEW.status IN ('scheduled', 'offline')
                              AND coalesce(current_setting('reach.bulk_undo', true), '') = 'on'
        ELSE false
    END) THEN
        RAISE EXCEPTION 'email %: status cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
