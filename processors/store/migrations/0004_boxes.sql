-- Issue 4: reference data, box state, corrupted-scope warnings, scope membership, commands.

-- Box membership follows the tasks: the boxes whose scope holds the task after its last update.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS box_ids text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS tasks_box_ids ON tasks USING gin (box_ids);

-- The last record per key of box.definitions, jira.permissions and okr.links (a tombstone
-- marks the key deleted); `kafka_offset` guards against a replayed older record.
CREATE TABLE IF NOT EXISTS reference_records (
    topic        text NOT NULL,
    key          text NOT NULL,
    value        jsonb,
    deleted      boolean NOT NULL DEFAULT false,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, key)
);
CREATE INDEX IF NOT EXISTS reference_records_value ON reference_records USING gin (value);

CREATE SEQUENCE IF NOT EXISTS box_state_seq;

-- What boxsync knows about a box beyond its definition; `seq` grows on every change so that
-- the collapse processes read only what changed since their last look.
CREATE TABLE IF NOT EXISTS box_state (
    box_id            text PRIMARY KEY,
    corrupted         boolean NOT NULL DEFAULT false,
    waiting_full_sync boolean NOT NULL DEFAULT false,
    last_full_sync_at timestamptz,
    last_visit_at     timestamptz,
    seq               bigint NOT NULL DEFAULT nextval('box_state_seq')
);

-- Corrupted-scope warnings: one per cause (an upstream event or a permission tombstone, by its
-- id, so a replay raises nothing twice and never re-raises a cleared one).
CREATE TABLE IF NOT EXISTS box_warnings (
    box_id     text NOT NULL,
    cause_id   text NOT NULL,
    kind       text NOT NULL,
    message    text NOT NULL,
    raised_at  timestamptz NOT NULL DEFAULT now(),
    cleared_at timestamptz,
    cleared_by text,
    PRIMARY KEY (box_id, cause_id)
);

-- The audit log of commands, one row per command id (a command is handled once); `statuses`
-- are the SyncStatus messages it produced, published again as they were on a replay.
CREATE TABLE IF NOT EXISTS command_log (
    command_id   text PRIMARY KEY,
    type         text NOT NULL,
    box_id       text,
    requested_by jsonb,
    requested_at timestamptz,
    outcome      text NOT NULL,
    reason       text,
    force        boolean NOT NULL DEFAULT false,
    statuses     jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- the record it was read from (topic:partition:offset): the same record read again after
    -- a crash republishes `statuses`; another record with the same id is a duplicate
    origin       text NOT NULL,
    handled_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS command_log_box ON command_log (box_id, handled_at);

-- Tenant-wide state set by commands (the Jira index state of `jira_index_status`).
CREATE TABLE IF NOT EXISTS tenant_state (
    name       text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
