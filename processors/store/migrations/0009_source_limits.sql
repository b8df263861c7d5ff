-- Issue 18: talking to Jira and Trello as they expect.

-- The client-side limiter's token buckets (processors.sources.limits), shared by every stage
-- process and worker of the tenant: one row per bucket, named
-- `<source>:<site or api>:<credential fingerprint>:<bucket>` (never the credential itself).
-- `tokens` NULL: not used yet (full). Times are epoch seconds of the database's clock, so
-- that workers on several hosts agree on them.
CREATE TABLE source_limits (
    bucket text PRIMARY KEY,
    tokens double precision,
    at double precision NOT NULL DEFAULT 0,
    blocked_until double precision NOT NULL DEFAULT 0,
    reason text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
