-- Offline mode (a new status) and the transports' circuit breakers.

-- 'offline': written to the offline log (jsonl://) while every real transport was
-- down; not sent. `python -m tasks replay-offline` hands it back to the real ones.
ALTER TABLE emails ADD COLUMN offline_at timestamptz;
ALTER TABLE emails DROP CONSTRAINT emails_status_check;
ALTER TABLE emails ADD CONSTRAINT emails_status_check
    CHECK (status IN ('scheduled', 'sending', 'sent', 'failed', 'cancelled', 'uncertain', 'offline'));
ALTER TABLE emails ADD CONSTRAINT emails_offline_check CHECK (status <> 'offline' OR offline_at IS NOT NULL);
CREATE INDEX emails_offline_idx ON emails (offline_at, id) WHERE status = 'offline';

-- The status machine of 0001, plus: sending -> offline -> scheduled (replay) | cancelled.
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
        ELSE false
    END) THEN
        RAISE EXCEPTION 'email %: status cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- One circuit breaker per transport label, shared by every worker process.
-- Written only on failures and state changes (never on a healthy send), so a
-- busy transport does not turn this row into a hot spot.
CREATE TABLE transport_breakers (
    label            text PRIMARY KEY,
    state            text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    -- Consecutive connection failures/timeouts (reset by a success).
    failures         integer NOT NULL DEFAULT 0,
    -- While open: when one trial send may decide whether it closes.
    retry_at         timestamptz,
    -- While half-open: the one trial in flight.
    trial_token      uuid,
    trial_by         text,
    trial_started_at timestamptz,
    opened_count     bigint NOT NULL DEFAULT 0,
    last_error       text,
    last_failure_at  timestamptz,
    changed_at       timestamptz NOT NULL DEFAULT now()
);
