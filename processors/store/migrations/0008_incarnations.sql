-- Issue 12: offsets are comparable only within one incarnation of a topic (the broker's topic
-- id). A reference row remembers the incarnation it was read from: a record of another
-- incarnation always replaces it; within one, only a higher offset does. '' marks rows
-- written before ids were kept (adopted by the incarnation found at the next start).
ALTER TABLE reference_records ADD COLUMN IF NOT EXISTS incarnation text NOT NULL DEFAULT '';

-- The incarnation of every topic of the tenant as the worker last found it at start-up, so
-- that a re-created topic is noticed, logged and shown by /readyz.
CREATE TABLE IF NOT EXISTS topic_incarnations (
    topic             text PRIMARY KEY,   -- the registry name (`box.definitions`)
    topic_id          text NOT NULL,
    previous_topic_id text,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    changed_at        timestamptz
);
