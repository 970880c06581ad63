-- Organizations: teams that share an outbox, with roles, isolated by PostgreSQL
-- itself (docs/organizations.md).
--
-- 1. organizations, memberships, invitations.
-- 2. Every existing user gets a personal organization (owner), and every row they
--    own moves into it: emails, their events, batches, API tokens, chart rollups.
--    A user created later gets one too (trigger users_personal_org).
-- 3. org_id on every tenant-owned table, leading in its keys and indexes, and
--    never changing once written (trigger *_org_fixed).
-- 4. Row-level security: the role reach_web (NOLOGIN; the web app SET ROLEs to it
--    on its connections) sees and writes only the rows of the organization named by
--    the setting app.org_id. The role that owns the tables (workers, the reconciler,
--    the CLI) is not subject to the policies.

-- ---- 1. The model ----

CREATE TABLE organizations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Set by an operator (`python -m tasks org suspend`); NULL: active.
    suspended_at timestamptz,
    suspended_reason text
);

CREATE TABLE memberships (
    org_id bigint NOT NULL REFERENCES organizations ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
-- A user's organizations (the switcher, sign-in).
CREATE INDEX memberships_user_idx ON memberships (user_id, created_at, org_id);

-- An invitation: a link carrying (org_id, id, secret), signed with the app's key;
-- only the secret's sha256 is stored. Single use (accepted_at), 7 days.
CREATE TABLE invitations (
    org_id bigint NOT NULL REFERENCES organizations ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    email text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND char_length(email) <= 320),
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    secret_hash text NOT NULL,
    invited_by bigint NOT NULL REFERENCES users,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL DEFAULT now() + interval '7 days',
    accepted_at timestamptz,
    accepted_by bigint REFERENCES users,
    revoked_at timestamptz,
    PRIMARY KEY (org_id, id),
    CHECK ((accepted_at IS NULL) = (accepted_by IS NULL))
);

-- ---- 2. A personal organization for every user ----

-- SECURITY DEFINER: a user's first sign-in on the web (as reach_web, before it has
-- any organization) creates it.
CREATE FUNCTION create_personal_org(p_user_id bigint, p_name text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
DECLARE
    _org_id bigint;
BEGIN
    INSERT INTO organizations (name) VALUES (left(p_name, 200)) RETURNING id INTO _org_id;
    INSERT INTO memberships (org_id, user_id, role) VALUES (_org_id, p_user_id, 'owner');
    RETURN _org_id;
END;
$$;

DO $$
DECLARE
    u record;
BEGIN
    FOR u IN SELECT id, name, email FROM users ORDER BY id LOOP
        PERFORM create_personal_org(u.id, coalesce(nullif(u.name, ''), u.email));
    END LOOP;
END;
$$;

CREATE FUNCTION users_personal_org() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = public, pg_temp
    AS $$
BEGIN
    PERFORM create_personal_org(NEW.id, coalesce(nullif(NEW.name, ''), NEW.email));
    RETURN NULL;
END;
$$;
CREATE TRIGGER users_personal_org AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION users_personal_org();

-- ---- 3. org_id on every tenant-owned table ----
-- The backfill must not touch anything else: updated_at (emails_guard_update) and
-- the append-only rule of email_events stay off while it runs.

ALTER TABLE emails DISABLE TRIGGER emails_guard_update;
ALTER TABLE email_events DISABLE TRIGGER email_events_append_only;

ALTER TABLE emails ADD COLUMN org_id bigint;
UPDATE emails e SET org_id = m.org_id FROM memberships m WHERE m.user_id = e.owner_id;
ALTER TABLE emails ALTER COLUMN org_id SET NOT NULL,
    ADD CONSTRAINT emails_org_id_fkey FOREIGN KEY (org_id) REFERENCES organizations;

ALTER TABLE email_events ADD COLUMN org_id bigint;
UPDATE email_events ev SET org_id = e.org_id FROM emails e WHERE e.id = ev.email_id;
ALTER TABLE email_events ALTER COLUMN org_id SET NOT NULL,
    ADD CONSTRAINT email_events_org_id_fkey FOREIGN KEY (org_id) REFERENCES organizations;

ALTER TABLE emails ENABLE TRIGGER emails_guard_update;
ALTER TABLE email_events ENABLE TRIGGER email_events_append_only;

ALTER TABLE batches ADD COLUMN org_id bigint;
UPDATE batches b SET org_id = m.org_id FROM memberships m WHERE m.user_id = b.owner_id;
ALTER TABLE batches ALTER COLUMN org_id SET NOT NULL,
    ADD CONSTRAINT batches_org_id_fkey FOREIGN KEY (org_id) REFERENCES organizations;

ALTER TABLE api_tokens ADD COLUMN org_id bigint,
    -- What the token may do (its user's role still applies): send, read, admin.
    -- Tokens made before organizations could do all their user could: they keep it.
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{send,read}'
        CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY['send', 'read', 'admin']);
UPDATE api_tokens t SET org_id = m.org_id, scopes = '{send,read,admin}'
  FROM memberships m WHERE m.user_id = t.user_id;
ALTER TABLE api_tokens ALTER COLUMN org_id SET NOT NULL,
    ADD CONSTRAINT api_tokens_org_id_fkey FOREIGN KEY (org_id) REFERENCES organizations;

ALTER TABLE chart_owner_minutes ADD COLUMN org_id bigint;
UPDATE chart_owner_minutes c SET org_id = m.org_id FROM memberships m WHERE m.user_id = c.owner_id;
ALTER TABLE chart_owner_minutes ALTER COLUMN org_id SET NOT NULL;

-- Keys and indexes: org_id first.
ALTER TABLE emails DROP CONSTRAINT emails_idempotency_key,
    ADD CONSTRAINT emails_idempotency_key UNIQUE (org_id, owner_id, idempotency_key);
DROP INDEX emails_owner_created_idx;
CREATE INDEX emails_org_created_idx ON emails (org_id, created_at DESC, id DESC);
CREATE INDEX emails_org_owner_created_idx ON emails (org_id, owner_id, created_at DESC, id DESC);
DROP INDEX emails_owner_status_idx;
CREATE INDEX emails_org_status_idx ON emails (org_id, status);

DROP INDEX email_events_email_idx;
CREATE INDEX email_events_email_idx ON email_events (org_id, email_id, id);
-- Deleting an email (never done by the product, but by the FK's cascade) finds its events.
CREATE INDEX email_events_email_id_idx ON email_events (email_id);

ALTER TABLE batches DROP CONSTRAINT batches_idempotency_key,
    ADD CONSTRAINT batches_idempotency_key UNIQUE (org_id, owner_id, idempotency_key);
DROP INDEX batches_owner_created_idx;
CREATE INDEX batches_org_created_idx ON batches (org_id, created_at DESC, id DESC);

DROP INDEX api_tokens_user_idx;
CREATE INDEX api_tokens_org_user_idx ON api_tokens (org_id, user_id, id DESC);

ALTER TABLE chart_owner_minutes DROP CONSTRAINT chart_owner_minutes_pkey,
    ADD PRIMARY KEY (org_id, owner_id, minute, kind);
DROP INDEX chart_owner_minutes_owner_idx;
-- The rollup clears and prunes by minute, across organizations.
CREATE INDEX chart_owner_minutes_minute_idx ON chart_owner_minutes (minute);

-- A row never moves to another organization.
CREATE FUNCTION org_id_fixed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.org_id <> OLD.org_id THEN
        RAISE EXCEPTION '%: a row never moves to another organization', TG_TABLE_NAME
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER emails_org_fixed BEFORE UPDATE OF org_id ON emails
    FOR EACH ROW EXECUTE FUNCTION org_id_fixed();
CREATE TRIGGER batches_org_fixed BEFORE UPDATE OF org_id ON batches
    FOR EACH ROW EXECUTE FUNCTION org_id_fixed();
CREATE TRIGGER api_tokens_org_fixed BEFORE UPDATE OF org_id ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION org_id_fixed();
CREATE TRIGGER invitations_org_fixed BEFORE UPDATE OF org_id ON invitations
    FOR EACH ROW EXECUTE FUNCTION org_id_fixed();

-- ---- 4. Row-level security ----
-- Roles belong to the whole server, not to one database: created once, granted here.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reach_web') THEN
        BEGIN
            CREATE ROLE reach_web NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database of this server created it meanwhile
        END;
    END IF;
    -- The connecting role (the one that runs this) may become reach_web.
    IF NOT pg_has_role(current_user, 'reach_web', 'MEMBER') THEN
        EXECUTE format('GRANT reach_web TO %I', current_user);
    END IF;
END;
$$;

GRANT USAGE ON SCHEMA public TO reach_web;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO reach_web;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO reach_web;
-- Tables that later migrations add: the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO reach_web;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO reach_web;

-- The current organization of the web request: '' or unset means none, and then
-- no tenant row is visible.
CREATE FUNCTION current_org_id() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('app.org_id', true), '')::bigint $$;

ALTER TABLE emails ENABLE ROW LEVEL SECURITY;
CREATE POLICY emails_org ON emails TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE email_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY email_events_org ON email_events TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE batches ENABLE ROW LEVEL SECURITY;
CREATE POLICY batches_org ON batches TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_tokens_org ON api_tokens TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE chart_owner_minutes ENABLE ROW LEVEL SECURITY;
CREATE POLICY chart_owner_minutes_org ON chart_owner_minutes TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
CREATE POLICY invitations_org ON invitations TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
CREATE POLICY memberships_org ON memberships TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
-- Organizations: the current one only (a user's list of theirs is web_user_orgs).
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY organizations_org ON organizations TO reach_web
    USING (id = current_org_id()) WITH CHECK (id = current_org_id());

-- Who a request is, before it has an organization: looked up by the owner of the
-- tables (SECURITY DEFINER), so the web role needs no policy that shows another
-- organization's rows. An API token: its user, organization and scopes, only while
-- the user is still a member of the organization.
CREATE FUNCTION web_token_identity(p_token_hash text)
    RETURNS TABLE (token_id bigint, user_id bigint, org_id bigint, role text, scopes text[],
                   last_used_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
    SELECT t.id, t.user_id, t.org_id, m.role, t.scopes, t.last_used_at
      FROM api_tokens t
      JOIN memberships m ON m.org_id = t.org_id AND m.user_id = t.user_id
     WHERE t.token_hash = p_token_hash AND t.revoked_at IS NULL
$$;
-- A signed-in user's organizations (the switcher): few rows, the user's own.
CREATE FUNCTION web_user_orgs(p_user_id bigint)
    RETURNS TABLE (org_id bigint, name text, role text, suspended_at timestamptz, joined_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
    SELECT o.id, o.name, m.role, o.suspended_at, m.created_at
      FROM memberships m JOIN organizations o ON o.id = m.org_id
     WHERE m.user_id = p_user_id
     ORDER BY m.created_at, o.id
$$;
REVOKE ALL ON FUNCTION web_token_identity(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION web_user_orgs(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION web_token_identity(text) TO reach_web;
GRANT EXECUTE ON FUNCTION web_user_orgs(bigint) TO reach_web;
