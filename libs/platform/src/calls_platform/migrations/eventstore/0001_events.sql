-- The event store: one append-only log of every event, in global commit order.
CREATE TABLE eventstore.events (
    -- Assigned under a transaction-level advisory lock, so positions commit in order and a
    -- reader that has seen position N will never later find a committed event below N.
    position        bigint PRIMARY KEY,
    event_id        uuid NOT NULL UNIQUE,
    stream_id       text NOT NULL,
    stream_version  integer NOT NULL,
    event_type      text NOT NULL,
    event_version   integer NOT NULL,
    organization_id text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    correlation_id  text,
    causation_id    text,
    data            jsonb NOT NULL,
    UNIQUE (stream_id, stream_version)
);

-- Positions of the event store's own subscribers (the outbox relay to RabbitMQ).
CREATE TABLE eventstore.checkpoints (
    name     text PRIMARY KEY,
    position bigint NOT NULL
);

-- Events may never be changed or removed.
CREATE FUNCTION eventstore.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'eventstore.events is append-only';
END $$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON eventstore.events
    FOR EACH ROW EXECUTE FUNCTION eventstore.forbid_change();
