-- Runs belong to the tenant (topic prefix) whose command queued them: a runner takes only its
-- own tenant's runs, so tenants (and test runs) sharing a database never run each other's.
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS sync_runs_tenant_open ON sync_runs (tenant, state)
    WHERE state IN ('queued', 'running');
