-- Per-organization settings (docs/organizations-settings.md): the sending identity,
-- the operator's daily quota, the organization's own mail transports (their URLs
-- encrypted with SECRET_KEYS), and an append-only audit log. Every table leads with
-- org_id and is under the same row-level security as the other tenant tables.

-- One row per organization that changed anything (none: the deployment's defaults).
CREATE TABLE org_settings (
    org_id bigint PRIMARY KEY REFERENCES organizations ON DELETE CASCADE,
    -- The From header's name and address, and Reply-To (NULL: the deployment's MAIL_FROM,
    -- and the signed-in user as Reply-To).
    from_name text CHECK (char_length(from_name) <= 200 AND from_name !~ '[\r\n]'),
    from_address text CHECK (from_address ~ '^[^@\s]+@[^@\s]+$' AND char_length(from_address) <= 320),
    reply_to text CHECK (reply_to ~ '^[^@\s]+@[^@\s]+$' AND char_length(reply_to) <= 320),
    -- The organization's own transports are tried before the deployment's, or instead of them.
    providers_mode text NOT NULL DEFAULT 'before' CHECK (providers_mode IN ('before', 'instead')),
    -- Set by an operator: most emails sent a UTC day (NULL: no quota).
    daily_quota integer CHECK (daily_quota >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- An organization's own transports, in the order they are tried.
CREATE TABLE org_transports (
    org_id bigint NOT NULL REFERENCES organizations ON DELETE CASCADE,
    label text NOT NULL CHECK (label ~ '^[a-z][a-z0-9_-]{0,19}$'),
    position integer NOT NULL,
    -- The URL as shown back: its password replaced by ****.
    url_masked text NOT NULL,
    -- The whole URL, as a Fernet token (tasks/core/crypto.py): never the text.
    url_secret text NOT NULL,
    -- Its provider's limits ('20/10s,500/hour'; '' none), shared by every member.
    rate_limit text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, label)
);

-- Who did what in an organization. Append-only: a trigger refuses UPDATE and DELETE
-- (only deleting the organization itself takes its log with it).
CREATE TABLE org_audit (
    org_id bigint NOT NULL REFERENCES organizations ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    at timestamptz NOT NULL DEFAULT now(),
    -- NULL: an operator's command (the CLI), not a member.
    actor_id bigint REFERENCES users,
    action text NOT NULL CHECK (action ~ '^[a-z][a-z_.]{0,63}$'),
    target text NOT NULL DEFAULT '' CHECK (char_length(target) <= 500),
    detail jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (org_id, id)
);

CREATE FUNCTION org_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = public, pg_temp
    AS $$
BEGIN
    -- The cascade of deleting the organization itself runs after its row is gone.
    IF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (SELECT 1 FROM organizations WHERE id = OLD.org_id) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'org_audit is append-only' USING ERRCODE = 'check_violation';
END;
$$;
CREATE TRIGGER org_audit_append_only BEFORE UPDATE OR DELETE ON org_audit
    FOR EACH ROW EXECUTE FUNCTION org_audit_append_only();
CREATE TRIGGER org_audit_no_truncate BEFORE TRUNCATE ON org_audit
    FOR EACH STATEMENT EXECUTE FUNCTION org_audit_append_only();

-- The quota's rebuild (quota_entries) and the Operators page: an organization's sends of a day.
CREATE INDEX emails_org_data_started_idx ON emails (org_id, data_started_at)
    WHERE data_started_at IS NOT NULL;

-- The web role: the current organization's rows only (see 0012).
ALTER TABLE org_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_settings_org ON org_settings TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE org_transports ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_transports_org ON org_transports TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE org_audit ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_audit_org ON org_audit TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
