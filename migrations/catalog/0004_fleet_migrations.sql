-- Fleet migrations (`tenantctl migrate run`): one row per run, and a ledger of what each run
-- did to each database (template, warm-pool database or tenant), so that a run with nothing
-- to do, `migrate status` and `GET /v1/migrations` answer without opening tenant databases.

CREATE TABLE migration_runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target_version bigint NOT NULL,
    -- Who ran it: user@host and process id.
    started_by     text NOT NULL,
    options        jsonb NOT NULL DEFAULT '{}',
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    -- running: in progress (or its process died: the next run marks it interrupted).
    outcome        text NOT NULL DEFAULT 'running'
                   CHECK (outcome IN ('running', 'succeeded', 'failed', 'stopped', 'interrupted')),
    CHECK ((outcome = 'running') = (finished_at IS NULL))
);

CREATE TABLE migration_ledger (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        bigint NOT NULL REFERENCES migration_runs (id),
    kind          text NOT NULL CHECK (kind IN ('template', 'warm', 'tenant')),
    tenant_id     uuid REFERENCES tenants (id) ON DELETE CASCADE,
    server_id     uuid NOT NULL REFERENCES database_servers (id),
    database_name text NOT NULL,
    from_version  bigint,
    to_version    bigint,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    outcome       text NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running', 'succeeded', 'failed', 'interrupted')),
    error         text,
    CHECK ((kind = 'tenant') = (tenant_id IS NOT NULL)),
    CHECK ((outcome = 'running') = (finished_at IS NULL))
);
CREATE INDEX migration_ledger_tenant_idx ON migration_ledger (tenant_id, id DESC) WHERE tenant_id IS NOT NULL;
CREATE INDEX migration_ledger_run_idx ON migration_ledger (run_id);

ALTER TABLE tenants
    -- Set while a run migrates the tenant's database: routers answer 503 tenant_migrating.
    ADD COLUMN migrating_run bigint REFERENCES migration_runs (id);

-- Routers must hear when a tenant starts or stops migrating.
DROP TRIGGER tenants_notify_update ON tenants;
CREATE TRIGGER tenants_notify_update AFTER UPDATE ON tenants
FOR EACH ROW WHEN (
       OLD.status IS DISTINCT FROM NEW.status
    OR OLD.plan IS DISTINCT FROM NEW.plan
    OR OLD.server_id IS DISTINCT FROM NEW.server_id
    OR OLD.database_name IS DISTINCT FROM NEW.database_name
    OR OLD.app_password IS DISTINCT FROM NEW.app_password
    OR OLD.storage_exceeded IS DISTINCT FROM NEW.storage_exceeded
    OR OLD.migrating_run IS DISTINCT FROM NEW.migrating_run)
EXECUTE FUNCTION notify_tenant_change();
