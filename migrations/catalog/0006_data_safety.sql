-- Data safety: who this installation is, which cluster each server is, and what a restore
-- keeps of the database it replaced.

-- The installation: one row, made once. Every database and role the platform creates on a
-- server carries this id in its comment (the ownership mark); nothing without it is ever
-- dropped, so a second installation on the same server is never touched.
CREATE TABLE installation (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO installation DEFAULT VALUES;

-- A server is its cluster: `system_identifier` from pg_control_system(), the same whatever
-- host name reaches it. Servers registered before this step get theirs from the jobs.
ALTER TABLE database_servers ADD COLUMN system_identifier text UNIQUE;

-- A restore keeps the database it replaced (renamed, no CONNECT) until `keep_until`.
ALTER TABLE restores
    ADD COLUMN kept_database text,
    ADD COLUMN keep_until    timestamptz,
    ADD COLUMN kept_dropped_at timestamptz;
CREATE INDEX restores_kept_idx ON restores (keep_until)
    WHERE kept_database IS NOT NULL AND kept_dropped_at IS NULL;

-- A tenant is dropped only after a complete final backup, unless an operator waived it
-- when deleting (recorded here and in the audit log).
ALTER TABLE tenants ADD COLUMN final_backup_waived boolean NOT NULL DEFAULT false;

-- `restoring`: a backup is being restored over the tenant; the routers answer 503
-- tenant_restoring, so no write is acknowledged on the database about to be replaced.
ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check CHECK (status IN
    ('provisioning', 'active', 'suspended', 'restoring', 'deleting', 'deleted', 'failed'));
