-- Issue 18: webhooks registered and kept alive, failed deliveries recovered.

-- The webhooks boxsync registered at the sources (`boxsync webhooks sync`): Jira dynamic
-- webhooks (they expire 30 days after registration or their last refresh) and Trello
-- webhooks per board. `target` is what one watches: the JQL filter, or the board id.
CREATE TABLE source_webhooks (
    source text NOT NULL,
    site text NOT NULL,
    webhook_id text NOT NULL,
    target text NOT NULL,
    events text[] NOT NULL DEFAULT '{}',
    callback_url text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    refreshed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    PRIMARY KEY (source, site, webhook_id)
);

-- Small named marks of the source upkeep: where the failed-webhook poll of a site got to,
-- when a site was last heard from.
CREATE TABLE source_marks (
    name text PRIMARY KEY,
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
