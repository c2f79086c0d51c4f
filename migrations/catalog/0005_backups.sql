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
    status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'complete', 'failed')),
    trigger        text NOT NULL CHECK (trigger IN ('manual', 'scheduled', 'final')),
    requested_by   text NOT NULL,
    bytes          bigint CHECK (bytes >= 0),
    sha256         bytea CHECK (length(sha256) = 32),
    error          text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    CHECK ((status = 'complete') = (completed_at IS NOT NULL AND bytes IS NOT NULL AND sha256 IS NOT NULL))
);
CREATE INDEX backups_tenant_idx ON backups (tenant_id, completed_at DESC) WHERE status = 'complete';
CREATE INDEX backups_running_idx ON backups (started_at) WHERE status = 'running';
