-- The routers cache the tenant directory and drop an entry as soon as the catalog says it
-- changed: every change to a tenant or a plan is announced on `tenancy_directory`.

ALTER TABLE tenants
    -- Set by the control plane's usage sampling: writes are refused while it is true.
    ADD COLUMN storage_exceeded boolean NOT NULL DEFAULT false;

CREATE FUNCTION notify_tenant_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenancy_directory', 'tenant:' || COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE ON tenants
FOR EACH ROW EXECUTE FUNCTION notify_tenant_change();

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
