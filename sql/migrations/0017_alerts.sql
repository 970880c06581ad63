-- Alerts for the system itself (docs/alerts.md): what `python -m tasks monitor` saw go
-- wrong, when it told Slack, and when it was over; and an organization's own Slack
-- incoming webhook for its own failures.

-- One row per episode of a condition: from the first time the monitor saw it true to
-- the time it was over. `key` names the condition ('no_worker', 'breaker:primary',
-- 'uncertain:org:12'...); at most one episode per key is open (resolved_at NULL), so two
-- monitors cannot open the same alert twice.
CREATE TABLE alerts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL CHECK (char_length(key) <= 200),
    kind text NOT NULL CHECK (kind ~ '^[a-z][a-z_]{0,39}$'),
    -- The organization whose failure it is (its own transport, its emails); NULL: the deployment's.
    org_id bigint REFERENCES organizations ON DELETE CASCADE,
    -- What, in one line, and what to do.
    summary text NOT NULL CHECK (char_length(summary) <= 2000),
    action text NOT NULL DEFAULT '' CHECK (char_length(action) <= 2000),
    -- Emails affected when last looked at (NULL: unknown).
    affected bigint,
    -- When the condition began (as the monitor knows it), when it was last seen true, and
    -- since when it has not been (NULL: true now).
    since timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    cleared_at timestamptz,
    -- The "raised" message: when Slack took it (NULL: not posted, e.g. held back by the
    -- minimum interval while the condition flapped), and the count it announced.
    raised_at timestamptz,
    announced bigint,
    -- The episode is over: when, and whether Slack was told (resolved_posted).
    resolved_at timestamptz,
    resolved_posted boolean NOT NULL DEFAULT false,
    -- The last message of this episode Slack took (raised, more, resolved).
    posted_at timestamptz,
    -- Times the condition cleared and came back within this episode.
    flaps integer NOT NULL DEFAULT 0,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX alerts_open_key ON alerts (key) WHERE resolved_at IS NULL;
-- The minimum interval: the last message posted for a key.
CREATE INDEX alerts_key_posted_idx ON alerts (key, posted_at DESC);
-- Recently resolved ones (/ops/alerts, the Operators page).
CREATE INDEX alerts_resolved_idx ON alerts (resolved_at DESC) WHERE resolved_at IS NOT NULL;

-- Operators only: the web reads it on the operators' connection (RESET ROLE), never as reach_web.
REVOKE ALL ON alerts FROM reach_web;

-- The monitor counts uncertain emails every few seconds; they are few, the index small.
CREATE INDEX emails_uncertain_idx ON emails (org_id) WHERE status = 'uncertain';

-- An organization's Slack incoming webhook: as a Fernet token (tasks/core/crypto.py), and
-- as shown back (its secret last part replaced by ****).
ALTER TABLE org_settings ADD COLUMN slack_webhook_secret text;
ALTER TABLE org_settings ADD COLUMN slack_webhook_masked text CHECK (char_length(slack_webhook_masked) <= 500);
ALTER TABLE org_settings ADD CONSTRAINT org_settings_slack_both
    CHECK ((slack_webhook_secret IS NULL) = (slack_webhook_masked IS NULL));
