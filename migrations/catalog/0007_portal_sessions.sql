-- The super-admins' portal sessions, kept here rather than in a cookie: signing out, or
-- disabling the admin, ends a session at once on every control plane replica. The cookie
-- holds a random token; only its SHA-256 is stored. Each session has its own CSRF token,
-- which every form and htmx request of the portal must carry. Never edit this file once
-- released.
CREATE TABLE portal_sessions (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    admin_id   uuid NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
    csrf_token text NOT NULL CHECK (length(csrf_token) BETWEEN 32 AND 128),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);
CREATE INDEX portal_sessions_admin_idx ON portal_sessions (admin_id);
CREATE INDEX portal_sessions_expiry_idx ON portal_sessions (expires_at);
