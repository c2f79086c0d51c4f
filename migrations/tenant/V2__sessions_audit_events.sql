-- Sign-in sessions with rotating refresh tokens, brute-force counting by e-mail, the audit
-- log's request context, and change events for connected clients. Never edit this file
-- once released.

-- Failed sign-ins are counted per e-mail, whether an account has it or not: an unknown
-- e-mail then behaves exactly like a known one (it locks the same way). The counts the
-- users table kept move over before its columns go, so no lock is lifted by the upgrade.
CREATE TABLE login_failures (
    email        text PRIMARY KEY CHECK (length(email) <= 254),
    failures     integer NOT NULL CHECK (failures >= 0),
    window_start timestamptz NOT NULL,
    locked_until timestamptz
);
INSERT INTO login_failures (email, failures, window_start, locked_until)
SELECT email, failed_logins, COALESCE(first_failed_at, now()), locked_until
FROM users WHERE failed_logins > 0 OR locked_until > now();

ALTER TABLE users
    DROP COLUMN failed_logins,
    DROP COLUMN first_failed_at,
    DROP COLUMN locked_until;

-- A session is one sign-in: the family of refresh tokens rotated from it. Access tokens
-- name their session; a revoked session ends them at once.
CREATE TABLE sessions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text CHECK (length(revoked_reason) <= 100),
    client_ip      inet,
    user_agent     text CHECK (length(user_agent) <= 512)
);
CREATE INDEX sessions_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;

-- Only SHA-256 hashes of refresh tokens are stored. A token is used once: refreshing marks
-- it used and issues its child; presenting a used token again revokes the session.
-- The first schema's table was never written by any release (the router had no sign-in);
-- it is replaced only when it is empty: a database that holds tokens in it stops here,
-- whole (its steps run in one transaction), and its migration is reported failed.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM refresh_tokens) THEN
        RAISE EXCEPTION 'refresh_tokens holds rows; this step replaces that table only when it is empty'
            USING ERRCODE = 'object_in_use';
    END IF;
END;
$$;
DROP TABLE refresh_tokens;
CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- A parent expires before its children: pruning it must not take them along.
    parent_id  uuid REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    token_hash bytea NOT NULL CHECK (length(token_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE UNIQUE INDEX refresh_tokens_hash_key ON refresh_tokens (token_hash);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_parent_idx ON refresh_tokens (parent_id);
CREATE INDEX refresh_tokens_expiry_idx ON refresh_tokens (expires_at);

-- Single-use tickets that let a browser's EventSource (which cannot send headers) open
-- the events stream.
CREATE TABLE event_tickets (
    ticket_hash bytea PRIMARY KEY CHECK (length(ticket_hash) = 32),
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);

-- Who asked, from where, for every audited write.
ALTER TABLE audit_log
    ADD COLUMN request_id text CHECK (length(request_id) <= 100),
    ADD COLUMN client_ip  inet,
    ADD COLUMN user_agent text CHECK (length(user_agent) <= 512);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);
CREATE INDEX audit_log_time_idx ON audit_log (occurred_at);

-- Change events for connected clients, sent on commit by the database itself, whatever
-- code path made the change. Identical payloads in one transaction arrive once.
CREATE FUNCTION notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    payload jsonb;
BEGIN
    -- One branch per table: a record's fields are resolved when an expression is planned.
    IF TG_TABLE_NAME = 'role_permissions' THEN
        payload := jsonb_build_object('type', 'role.permissions_changed',
                                      'role_id', COALESCE(NEW.role_id, OLD.role_id));
    ELSIF TG_TABLE_NAME = 'user_roles' THEN
        payload := jsonb_build_object('type', 'user.roles_changed',
                                      'user_id', COALESCE(NEW.user_id, OLD.user_id));
    ELSIF TG_TABLE_NAME = 'roles' THEN
        payload := jsonb_build_object('type', CASE TG_OP WHEN 'INSERT' THEN 'role.created'
                                                         WHEN 'UPDATE' THEN 'role.updated'
                                                         ELSE 'role.deleted' END,
                                      'role_id', COALESCE(NEW.id, OLD.id));
    ELSIF TG_TABLE_NAME = 'users' AND TG_OP = 'DELETE' THEN
        payload := jsonb_build_object('type', 'user.deleted', 'user_id', OLD.id);
    ELSIF TG_TABLE_NAME = 'users' THEN
        payload := jsonb_build_object('type', CASE WHEN NEW.is_active THEN 'user.enabled'
                                                   ELSE 'user.disabled' END,
                                      'user_id', NEW.id);
    ELSIF TG_TABLE_NAME = 'sessions' THEN
        payload := jsonb_build_object('type', 'session.revoked', 'session_id', NEW.id,
                                      'user_id', NEW.user_id);
    END IF;
    PERFORM pg_notify('tenancy_events', payload::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER role_permissions_notify AFTER INSERT OR DELETE ON role_permissions
FOR EACH ROW EXECUTE FUNCTION notify_change();
CREATE TRIGGER user_roles_notify AFTER INSERT OR DELETE ON user_roles
FOR EACH ROW EXECUTE FUNCTION notify_change();
CREATE TRIGGER roles_notify AFTER INSERT OR UPDATE OR DELETE ON roles
FOR EACH ROW EXECUTE FUNCTION notify_change();
CREATE TRIGGER users_active_notify AFTER UPDATE OF is_active ON users
FOR EACH ROW WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active)
EXECUTE FUNCTION notify_change();
CREATE TRIGGER users_deleted_notify AFTER DELETE ON users
FOR EACH ROW EXECUTE FUNCTION notify_change();
CREATE TRIGGER sessions_revoked_notify AFTER UPDATE OF revoked_at ON sessions
FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
EXECUTE FUNCTION notify_change();
