-- The core: users, emails and their append-only timeline.
-- The emails row is the truth; a Procrastinate job is only its trigger.

CREATE TABLE users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    name            text NOT NULL DEFAULT '',
    google_sub      text UNIQUE,
    -- Bumped at sign-out: a session cookie carrying an older version is void.
    session_version integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE emails (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id           bigint NOT NULL REFERENCES users (id),
    from_addr          text NOT NULL,
    reply_to           text,
    to_addrs           text[] NOT NULL DEFAULT '{}',
    cc_addrs           text[] NOT NULL DEFAULT '{}',
    bcc_addrs          text[] NOT NULL DEFAULT '{}',
    subject            text NOT NULL,
    body_text          text NOT NULL,
    body_html          text,
    -- The instant the user asked for, and the zone they chose it in.
    send_at            timestamptz NOT NULL,
    send_tz            text NOT NULL DEFAULT 'UTC',
    status             text NOT NULL DEFAULT 'scheduled',
    attempts           integer NOT NULL DEFAULT 0,
    -- When the next attempt is due: send_at, a backoff, or a rate-limit slot.
    next_attempt_at    timestamptz NOT NULL,
    waiting_reason     text,
    last_error         text,
    -- RFC 5322 Message-ID, fixed at creation and reused on every attempt.
    message_id         text NOT NULL UNIQUE,
    transport          text,
    provider_reply     text,
    refused_recipients jsonb NOT NULL DEFAULT '{}',
    -- The one Procrastinate job currently responsible for this email (NULL while
    -- it is beyond the scheduling horizon or finished).
    job_id             bigint,
    idempotency_key    text,
    request_hash       text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    data_started_at    timestamptz,
    sent_at            timestamptz,
    CONSTRAINT emails_status_check
        CHECK (status IN ('scheduled', 'sending', 'sent', 'failed', 'cancelled', 'uncertain')),
    CONSTRAINT emails_recipients_check
        CHECK (cardinality(to_addrs) + cardinality(cc_addrs) + cardinality(bcc_addrs) BETWEEN 1 AND 50),
    CONSTRAINT emails_subject_check
        CHECK (char_length(subject) <= 998 AND subject !~ '[\r\n]'),
    CONSTRAINT emails_body_check
        CHECK (octet_length(body_text) + coalesce(octet_length(body_html), 0) <= 1048576),
    CONSTRAINT emails_sending_check CHECK (status <> 'sending' OR job_id IS NOT NULL),
    CONSTRAINT emails_sent_check CHECK (status <> 'sent' OR sent_at IS NOT NULL),
    CONSTRAINT emails_uncertain_check CHECK (status <> 'uncertain' OR data_started_at IS NOT NULL),
    CONSTRAINT emails_idempotency_key UNIQUE (owner_id, idempotency_key)
);
-- The promoter and the reconciler look only at scheduled emails near their time.
CREATE INDEX emails_due_idx ON emails (next_attempt_at) WHERE status = 'scheduled';
CREATE INDEX emails_sending_idx ON emails (id) WHERE status = 'sending';
CREATE INDEX emails_owner_created_idx ON emails (owner_id, created_at DESC, id DESC);

-- The status machine (DESIGN.md), enforced for every writer, psql included.
CREATE FUNCTION emails_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.owner_id <> OLD.owner_id OR NEW.message_id <> OLD.message_id THEN
        RAISE EXCEPTION 'email % : owner and Message-ID never change', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    -- (The CASE is parenthesised: inside IF, a bare THEN would end the condition.)
    IF NEW.status <> OLD.status AND NOT (CASE OLD.status
        WHEN 'scheduled' THEN NEW.status IN ('sending', 'cancelled')
        WHEN 'sending'   THEN NEW.status IN ('sent', 'failed', 'scheduled', 'uncertain')
        WHEN 'failed'    THEN NEW.status IN ('scheduled')
        WHEN 'uncertain' THEN NEW.status IN ('scheduled', 'sent', 'failed')
        ELSE false
    END) THEN
        RAISE EXCEPTION 'email %: status cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
CREATE TRIGGER emails_guard_update BEFORE UPDATE ON emails
    FOR EACH ROW EXECUTE FUNCTION emails_guard_update();

CREATE TABLE email_events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email_id uuid NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind     text NOT NULL,
    job_id   bigint,
    detail   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX email_events_email_idx ON email_events (email_id, id);
CREATE INDEX email_events_at_idx ON email_events (at);

CREATE FUNCTION email_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'email_events is append-only' USING ERRCODE = 'check_violation';
END;
$$;
CREATE TRIGGER email_events_append_only BEFORE UPDATE ON email_events
    FOR EACH ROW EXECUTE FUNCTION email_events_append_only();

-- Workers wake at the next due job; this keeps that lookup an index probe.
CREATE INDEX reach_jobs_todo_scheduled_at_idx ON procrastinate_jobs (scheduled_at)
    WHERE status = 'todo';

-- What the built-in dev mailbox (an SMTP sink) received.
CREATE TABLE devmail_messages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    mail_from   text NOT NULL,
    rcpt_tos    text[] NOT NULL,
    message_id  text,
    subject     text,
    raw         bytea NOT NULL
);
CREATE INDEX devmail_messages_received_idx ON devmail_messages (received_at DESC);
