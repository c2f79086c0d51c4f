-- The routers cache the tenant directory and drop an entry as soon as the catalog says it
-- changed: every change to a tenant or a plan is announced on `tenancy_directory`.

ALTER TABLE tenants
    -- Set by the control plane's usage sampling: writes are refused while it is true.
    ADD COLUMN storage_exceeded   boolean NOT NULL DEFAULT false,
    ADD COLUMN storage_bytes      bigint,
    ADD COLUMN storage_sampled_at timestamptz;

-- Requests the routers served per tenant and hour (routers add their counts).
CREATE TABLE usage_requests (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    hour      timestamptz NOT NULL CHECK (hour = date_trunc('hour', hour)),
    requests  bigint NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (tenant_id, hour)
);

CREATE FUNCTION notify_tenant_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenancy_directory', 'tenant:' || COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER tenants_notify AFTER INSERT OR DELETE ON tenants
FOR EACH ROW EXECUTE FUNCTION notify_tenant_change();
-- Only changes a router acts on: usage samples update rows all the time.
CREATE TRIGGER tenants_notify_update AFTER UPDATE ON tenants
FOR EACH ROW WHEN (
       OLD.status IS DISTINCT FROM NEW.status
    OR OLD.plan IS DISTINCT FROM NEW.plan
    OR OLD.server_id IS DISTINCT FROM NEW.server_id
    OR OLD.database_name IS DISTINCT FROM NEW.database_name
    OR OLD.app_password IS DISTINCT FROM NEW.app_password
    OR OLD.storage_exceeded IS DISTINCT FROM NEW.storage_exceeded)
EXECUTE FUNCTION notify_tenant_change();

CREATE FUNCTION notify_plan_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenancy_directory', 'plan:' || NEW.name);
    RETURN NULL;
END;
$$;
CREATE TRIGGER plans_notify AFTER UPDATE ON plans
FOR EACH ROW EXECUTE FUNCTION notify_plan_change();

CREATE FUNCTION notify_server_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenancy_directory', 'server:' || NEW.id::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER database_servers_notify AFTER UPDATE ON database_servers
FOR EACH ROW EXECUTE FUNCTION notify_server_change();
