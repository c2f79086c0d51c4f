-- Provisioning: where each tenant is in its creation, its role's sealed password, the
-- idempotency keys of create requests, and the warm pool of pre-cloned databases.

ALTER TABLE database_servers
    -- The tenant schema version of the server's template database.
    ADD COLUMN schema_version bigint;

ALTER TABLE tenants
    ADD COLUMN app_role          text UNIQUE,
    -- Sealed (AEAD) with the catalog key; context "tenant:<id>:app_password".
    ADD COLUMN app_password      bytea,
    -- The last provisioning step done: reserved -> role -> database -> configured.
    ADD COLUMN provisioning_step text CHECK (provisioning_step IN ('reserved', 'role', 'database', 'configured')),
    ADD COLUMN failure_reason    text,
    ADD COLUMN schema_version    bigint,
    -- Kept until the first admin exists in the tenant database, then cleared.
    ADD COLUMN first_admin_email text,
    ADD COLUMN first_admin_password_hash text,
    ADD COLUMN suspended_at      timestamptz,
    ADD COLUMN delete_after      timestamptz;
CREATE INDEX tenants_server_idx ON tenants (server_id) WHERE status <> 'deleted';
CREATE INDEX tenants_page_idx ON tenants (created_at, id);

-- A create request retried with the same Idempotency-Key gets the same tenant.
CREATE TABLE idempotency_keys (
    admin_id     uuid NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_hash bytea NOT NULL,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (admin_id, key)
);

-- Databases cloned ahead of demand; a new tenant takes one by renaming it. A row is written
-- before its database is created (ready = false) so the catalog knows every database.
CREATE TABLE warm_databases (
    name           text PRIMARY KEY CHECK (name ~ '^tenancy_warm_[0-9a-f]{32}$'),
    server_id      uuid NOT NULL REFERENCES database_servers (id),
    schema_version bigint,
    ready          boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX warm_databases_server_idx ON warm_databases (server_id) WHERE ready;
