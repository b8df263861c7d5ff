-- Event ids each task emitted within the dedupe retention, with the raw record each came
-- from: {"<event id>": [<source time, epoch seconds>, "<topic:partition:offset>"], ...}.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS recent_events jsonb NOT NULL DEFAULT '{}'::jsonb;
