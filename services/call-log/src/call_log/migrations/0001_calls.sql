-- Read models of the call log, built from the event store by the projector.
CREATE TABLE call_log.calls (
    call_id         uuid PRIMARY KEY,
    organization_id text NOT NULL,
    call_sid        text,
    direction       text NOT NULL,
    status          text NOT NULL,
    carrier_status  text,
    outcome         text,
    error_code      integer,
    error_reason    text,
    from_number     text NOT NULL,
    to_number       text NOT NULL,
    agent_id        uuid,
    agent_name      text,
    batch_id        text,
    batch_index     integer,
    answered_by     text,
    ended_by        text,
    last_sequence   integer,
    created_at      timestamptz NOT NULL,
    start_time      timestamptz,
    end_time        timestamptz,
    duration        integer,
    transcript      jsonb,
    provider_usage  jsonb,
    recording_url   text,
    -- newest first by start time; calls not yet started sort by creation
    sort_time       timestamptz GENERATED ALWAYS AS (coalesce(start_time, created_at)) STORED,
    last_position   bigint NOT NULL
);

CREATE INDEX calls_org_sort ON call_log.calls (organization_id, sort_time DESC, call_id DESC);
CREATE INDEX calls_batch ON call_log.calls (batch_id, batch_index) WHERE batch_id IS NOT NULL;

CREATE TABLE call_log.batches (
    batch_id          text PRIMARY KEY,
    organization_id   text NOT NULL,
    total             integer NOT NULL,
    from_number       text NOT NULL,
    agent_id          uuid,
    duplicates_dropped integer NOT NULL DEFAULT 0,
    cancel_requested  boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL
);

-- The last event position applied, written in the same transaction as the read models.
CREATE TABLE call_log.checkpoints (
    name     text PRIMARY KEY,
    position bigint NOT NULL
);
INSERT INTO call_log.checkpoints (name, position) VALUES ('calls', 0);
