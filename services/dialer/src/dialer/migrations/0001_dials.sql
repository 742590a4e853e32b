-- The dialer's own state: every call it was asked to dial, and where each dial stands.
CREATE TABLE dialer.dials (
    call_id          uuid PRIMARY KEY,
    organization_id  text NOT NULL,
    -- fairness lane: one per batch, one per organization for single calls
    lane             text NOT NULL,
    batch_id         text,
    to_number        text NOT NULL,
    from_number      text NOT NULL,
    record           boolean NOT NULL,
    -- pending → dialing → initiated | failed; pending → canceled.
    -- 'dialing' is written and committed BEFORE the carrier is asked, so a crash mid-request
    -- leaves a visible ambiguous attempt that is reconciled, never blindly redialed.
    state            text NOT NULL CHECK (state IN ('pending', 'dialing', 'initiated', 'failed', 'canceled')),
    attempts         integer NOT NULL DEFAULT 0,
    -- set when an ambiguous attempt was found unknown to the carrier and dialed again (once)
    redialed         boolean NOT NULL DEFAULT false,
    not_before       timestamptz NOT NULL DEFAULT now(),
    call_sid         text UNIQUE,
    error_code       integer,
    error_message    text,
    requested_position bigint NOT NULL,
    correlation_id   text,
    requested_event_id uuid NOT NULL,
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    dial_started_at  timestamptz,
    finished_at      timestamptz
);
CREATE INDEX dials_pending ON dialer.dials (lane, requested_position) WHERE state = 'pending';
CREATE INDEX dials_dialing ON dialer.dials (dial_started_at) WHERE state = 'dialing';
CREATE INDEX dials_batch ON dialer.dials (batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE dialer.canceled_batches (
    batch_id        text PRIMARY KEY,
    organization_id text NOT NULL,
    canceled_at     timestamptz NOT NULL DEFAULT now()
);

-- When each organization and each lane was last served, for round-robin fairness.
CREATE TABLE dialer.fairness (
    key         text PRIMARY KEY,
    last_served timestamptz NOT NULL
);
