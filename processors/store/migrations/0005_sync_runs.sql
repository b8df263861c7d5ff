-- Issue 5: full and incremental sync runs, queued by commands, executed by the sync runner.
CREATE TABLE IF NOT EXISTS sync_runs (
    run_id           text PRIMARY KEY,
    command_id       text,
    box_id           text,               -- null for a tenant-wide incremental run
    sync_type        text NOT NULL,      -- full | incremental
    state            text NOT NULL,      -- queued | running | completed | failed
    reason           text,               -- why it failed
    requested_by     jsonb,
    author           jsonb,              -- whom its updates name
    forced           boolean NOT NULL DEFAULT false,
    box_ids          text[] NOT NULL DEFAULT '{}',  -- incremental: the eligible boxes
    processed        bigint NOT NULL DEFAULT 0,
    total            bigint,
    emitted          bigint NOT NULL DEFAULT 0,
    left_count       bigint NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    owner            text,               -- the runner that claimed it
    heartbeat_at     timestamptz,
    queued_at        timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
);
CREATE INDEX IF NOT EXISTS sync_runs_box ON sync_runs (box_id, queued_at);
CREATE INDEX IF NOT EXISTS sync_runs_open ON sync_runs (state) WHERE state IN ('queued', 'running');
-- One full sync per box at a time.
CREATE UNIQUE INDEX IF NOT EXISTS sync_runs_one_running_per_box ON sync_runs (box_id)
    WHERE state = 'running' AND box_id IS NOT NULL;
