-- Replays as rows, so that one cut short (the replica stopped, a deploy) goes on where it was:
-- any replica leases a running replay (leased_until, like a delivery), folds the store from the
-- start (once-only message types need every stream from its first event) and queues again the
-- messages past its cursor, saving the cursor with each page's deliveries in one commit.
CREATE TABLE webhooks.replays (
    id uuid PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES webhooks.endpoints (id) ON DELETE CASCADE,
    organization_id text NOT NULL,
    since timestamptz NOT NULL,
    -- running (to do or under way), done
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done')),
    -- the store's cursor past the last page whose messages were queued
    cursor_transaction_id xid8 NOT NULL DEFAULT '0',
    cursor_position bigint NOT NULL DEFAULT 0,
    -- the store's last event when the replay was asked for: what it replays ends there (later
    -- events reach the endpoint as they happen)
    until_transaction_id xid8 NOT NULL,
    until_position bigint NOT NULL,
    queued integer NOT NULL DEFAULT 0,
    -- the replica running it holds it until then, under this token (a replica whose lease ran
    -- out and was taken over can save nothing more)
    leased_until timestamptz,
    lease_token uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX replays_running ON webhooks.replays (created_at) WHERE state = 'running';
CREATE INDEX replays_of_endpoint ON webhooks.replays (endpoint_id, created_at DESC);
