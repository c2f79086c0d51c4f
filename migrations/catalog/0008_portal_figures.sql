-- Figures the portal shows for every tenant without opening its database: how many users it
-- has (set when it becomes active, restored or adopted, then by the routers whenever a user
-- is created or deleted) and its size day by day (the
-- storage sampling keeps the day's latest sample, 90 days). Never edit this file once
-- released.
ALTER TABLE tenants
    ADD COLUMN users_count      integer CHECK (users_count >= 0),
    ADD COLUMN users_counted_at timestamptz;

CREATE TABLE usage_storage (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day       date NOT NULL,
    bytes     bigint NOT NULL CHECK (bytes >= 0),
    PRIMARY KEY (tenant_id, day)
);
CREATE INDEX usage_storage_day_idx ON usage_storage (day);

-- The fleet's backups page: the newest attempts, failed ones first.
CREATE INDEX backups_started_idx ON backups (started_at DESC);
-- A tenant's page shows its latest restore.
CREATE INDEX restores_tenant_idx ON restores (tenant_id, started_at DESC);
-- The audit log of a tenant, by slug, finds deleted tenants that had it too.
CREATE INDEX tenants_slug_idx ON tenants (slug);
-- The routers pre-warm the tenants with the most requests in the last hours.
CREATE INDEX usage_requests_hour_idx ON usage_requests (hour);
