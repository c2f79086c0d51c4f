-- The catalog: what the control plane knows about plans, database servers, tenants and the
-- people who administer them. Never edit this file once released; add a new step instead.

CREATE TABLE plans (
    name                  text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    display_name          text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    max_users             integer NOT NULL CHECK (max_users >= 1),
    max_storage_mb        bigint  NOT NULL CHECK (max_storage_mb >= 1),
    requests_per_minute   integer NOT NULL CHECK (requests_per_minute >= 1),
    max_connections       integer NOT NULL CHECK (max_connections BETWEEN 1 AND 1000),
    statement_timeout_ms  integer NOT NULL CHECK (statement_timeout_ms BETWEEN 100 AND 3600000),
    backup_retention_days integer NOT NULL CHECK (backup_retention_days BETWEEN 1 AND 3650),
    trial_days            integer CHECK (trial_days BETWEEN 1 AND 365),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

INSERT INTO plans (name, display_name, max_users, max_storage_mb, requests_per_minute,
                   max_connections, statement_timeout_ms, backup_retention_days, trial_days)
VALUES ('trial',      'Trial',        5,    512,   600,  3,  5000,  7, 14),
       ('standard',   'Standard',    50,  10240,  6000, 10, 15000, 30, NULL),
       ('enterprise', 'Enterprise', 1000, 102400, 60000, 40, 60000, 90, NULL);

-- PostgreSQL servers that tenant databases are placed on.
CREATE TABLE database_servers (
    id                uuid PRIMARY KEY,
    name              text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9-]{0,62}$'),
    host              text NOT NULL,
    port              integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    -- The role the provisioner connects as; its password is AEAD-encrypted
    -- (nonce || ciphertext) with the catalog key and never leaves the catalog in clear.
    admin_user        text NOT NULL,
    admin_password    bytea NOT NULL,
    max_tenants       integer NOT NULL CHECK (max_tenants >= 1),
    connection_budget integer NOT NULL CHECK (connection_budget >= 1),
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining')),
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    id            uuid PRIMARY KEY,
    slug          text NOT NULL CHECK (slug ~ '^[a-z][a-z0-9-]{1,38}[a-z0-9]$'),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    plan          text NOT NULL REFERENCES plans (name) ON UPDATE CASCADE,
    status        text NOT NULL CHECK (status IN
                      ('provisioning', 'active', 'suspended', 'deleting', 'deleted', 'failed')),
    server_id     uuid REFERENCES database_servers (id),
    -- Opaque, derived from the id: pg_database is visible to every role on a server.
    database_name text UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    trial_ends_at timestamptz,
    deleted_at    timestamptz
);
-- A slug names one live tenant; a deleted tenant's slug may be taken again.
CREATE UNIQUE INDEX tenants_slug_live_key ON tenants (slug) WHERE status <> 'deleted';
CREATE INDEX tenants_status_idx ON tenants (status);

CREATE TABLE admin_users (
    id              uuid PRIMARY KEY,
    email           text NOT NULL CHECK (email = lower(email) AND email LIKE '%_@_%'),
    password_hash   text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz,
    last_login_at   timestamptz,
    -- Brute-force protection: failures within the current window, and a lock.
    failed_logins   integer NOT NULL DEFAULT 0,
    first_failed_at timestamptz,
    locked_until    timestamptz
);
CREATE UNIQUE INDEX admin_users_email_key ON admin_users (email);

-- Who did what, when. Written in the same transaction as the change it describes.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid,
    actor       text NOT NULL,
    action      text NOT NULL,
    entity_type text NOT NULL,
    entity_id   text NOT NULL,
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_entity_idx ON audit_log (entity_type, entity_id);
