-- The app cache of tasks: current fields, last author, source time, and what the collapse
-- must remember across windows and restarts (deleted, last emitted window, field times).
CREATE TABLE IF NOT EXISTS tasks (
    task_id           text PRIMARY KEY,
    source            text NOT NULL,
    source_key        text,
    project           text,
    fields            jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- field name -> source time (epoch seconds) of the value held in `fields`
    field_times       jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- the newest of field_times: an update whose fields are all at least this new can be
    -- merged with a plain `||` instead of field by field
    newest_field_time double precision NOT NULL DEFAULT '-infinity',
    -- the oldest field time of the last update applied (compared with newest_field_time)
    last_update_oldest_time double precision,
    last_author       jsonb,
    source_updated_at timestamptz,
    deleted           boolean NOT NULL DEFAULT false,
    -- end (epoch seconds) of the last window emitted for the task
    closed_until      double precision NOT NULL DEFAULT '-infinity',
    last_update_id    text,
    updates_applied   bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS tasks_project ON tasks (project);

-- Per field, keep the value from the newer source time; a replayed or late (older) value
-- never overwrites a newer one, and applying the same update twice changes nothing.
CREATE OR REPLACE FUNCTION boxsync_merge_fields(old_fields jsonb, old_times jsonb,
                                                new_fields jsonb, new_times jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(jsonb_object_agg(key, value), '{}'::jsonb) FROM (
        SELECT o.key, o.value FROM jsonb_each(old_fields) o
         WHERE NOT (new_fields ? o.key AND (new_times ->> o.key)::float8
                    >= COALESCE((old_times ->> o.key)::float8, '-infinity'))
        UNION ALL
        SELECT n.key, n.value FROM jsonb_each(new_fields) n
         WHERE (new_times ->> n.key)::float8
               >= COALESCE((old_times ->> n.key)::float8, '-infinity')
    ) merged
$$;

CREATE OR REPLACE FUNCTION boxsync_merge_times(old_times jsonb, new_times jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(jsonb_object_agg(key, newest), '{}'::jsonb) FROM (
        SELECT key, max(value::text::float8) AS newest
          FROM (SELECT * FROM jsonb_each(old_times) UNION ALL
                SELECT * FROM jsonb_each(new_times)) both_times
         GROUP BY key
    ) merged
$$;
