-- Customer webhook endpoints, the deliveries to them (the service's own queue), each attempt,
-- and what the service remembers of each stream it turns into messages.

CREATE TABLE webhooks.endpoints (
    id uuid PRIMARY KEY,
    organization_id text NOT NULL,
    url text NOT NULL,
    description text,
    events text[] NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    -- why it was disabled by the service (failing for too long); NULL when enabled or by hand
    disabled_reason text,
    disabled_at timestamptz,
    -- Fernet-encrypted Standard Webhooks secrets; the previous one signs too until it expires
    secret_sealed text NOT NULL,
    previous_secret_sealed text,
    previous_secret_expires_at timestamptz,
    -- the first failed attempt since the last success (NULL: not failing)
    failing_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX endpoints_by_org ON webhooks.endpoints (organization_id, created_at);

CREATE TABLE webhooks.deliveries (
    id uuid PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES webhooks.endpoints (id) ON DELETE CASCADE,
    organization_id text NOT NULL,
    message_id text NOT NULL,
    event_type text NOT NULL,
    -- deliveries of one sequence (a call's or batch's stream) to one endpoint go out in order
    sequence_key text NOT NULL,
    position bigint NOT NULL,
    call_id uuid,
    batch_id text,
    -- {"id", "type", "created_at", "data"}; data NULL until the call log's view is fetched
    payload jsonb NOT NULL,
    data_pending boolean NOT NULL DEFAULT false,
    -- pending (to send), delivered, failed (given up)
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- a sender holds it until then (one that died loses it when the lease runs out)
    leased_until timestamptz,
    first_attempt_at timestamptz,
    last_attempt_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    UNIQUE (endpoint_id, message_id)
);
-- the head of each sequence, and what is due
CREATE INDEX deliveries_pending_sequence ON webhooks.deliveries (endpoint_id, sequence_key, position)
    WHERE state = 'pending';
CREATE INDEX deliveries_pending_due ON webhooks.deliveries (next_attempt_at) WHERE state = 'pending';
-- the delivery log, newest first
CREATE INDEX deliveries_log ON webhooks.deliveries (endpoint_id, created_at DESC, id);

CREATE TABLE webhooks.attempts (
    delivery_id uuid NOT NULL REFERENCES webhooks.deliveries (id) ON DELETE CASCADE,
    number integer NOT NULL,
    attempted_at timestamptz NOT NULL,
    response_status integer,
    latency_ms integer NOT NULL,
    response_excerpt text,
    error text,
    PRIMARY KEY (delivery_id, number)
);

-- Events are taken strictly in stream order: the next stream version expected, the call's
-- batch, and the once-only types already sent (call.queued, call.answered, ...).
CREATE TABLE webhooks.streams (
    stream_id text PRIMARY KEY,
    next_version integer NOT NULL DEFAULT 1,
    batch_id text,
    sent text[] NOT NULL DEFAULT '{}'
);

-- A batch completes when as many of its calls ended as it had.
CREATE TABLE webhooks.batches (
    batch_id text PRIMARY KEY,
    organization_id text NOT NULL,
    total integer,
    ended integer NOT NULL DEFAULT 0,
    completed boolean NOT NULL DEFAULT false
);
