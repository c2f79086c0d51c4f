-- Each plan says how often its tenants are backed up by the control plane's schedule.
ALTER TABLE plans
    ADD COLUMN backup_interval_hours integer NOT NULL DEFAULT 24
        CHECK (backup_interval_hours BETWEEN 1 AND 8760);
UPDATE plans SET backup_interval_hours = 6 WHERE name = 'enterprise';

-- Tenant backups: `pg_dump` custom-format archives streamed to S3. A row is written before
-- the upload starts (with the multipart upload id, so an interrupted upload can be
-- aborted) and says `complete` only once the object is uploaded and checked: a backup
-- exists only when its row says so.

CREATE TABLE backups (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    server_id      uuid NOT NULL REFERENCES database_servers (id),
    database_name  text NOT NULL,
    schema_version bigint,
    bucket         text NOT NULL,
    -- tenants/<tenant id>/<UTC timestamp>-<backup id>.dump: no customer name.
    object_key     text NOT NULL UNIQUE CHECK (object_key ~ '^tenants/[0-9a-f-]{36}/[0-9TZ]{16}-[0-9a-f-]{36}\.dump$'),
    upload_id      text,
    -- pruned: was complete; its object was deleted by retention.
    status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'complete', 'failed', 'pruned')),
    trigger        text NOT NULL CHECK (trigger IN ('manual', 'scheduled', 'final')),
    requested_by   text NOT NULL,
    bytes          bigint CHECK (bytes >= 0),
    sha256         bytea CHECK (length(sha256) = 32),
    error          text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    pruned_at      timestamptz,
    CHECK (status NOT IN ('complete', 'pruned') OR (completed_at IS NOT NULL AND bytes IS NOT NULL AND sha256 IS NOT NULL)),
    CHECK ((status = 'pruned') = (pruned_at IS NOT NULL))
);
CREATE INDEX backups_tenant_idx ON backups (tenant_id, completed_at DESC) WHERE status = 'complete';
CREATE INDEX backups_running_idx ON backups (started_at) WHERE status = 'running';

-- Restores of a backup into a new database of the tenant. A row is written before the
-- database is created, so the orphan sweep can tell a restore in progress from leftovers.
CREATE TABLE restores (
    id            uuid PRIMARY KEY,
    backup_id     uuid NOT NULL REFERENCES backups (id),
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    server_id     uuid NOT NULL REFERENCES database_servers (id),
    database_name text NOT NULL,
    previous_database text,
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'complete', 'failed')),
    requested_by  text NOT NULL,
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX restores_running_idx ON restores (server_id) WHERE status = 'running';
