-- The dialer's own tail of the event store (dialer.intake): how far it has checked that every
-- CallRequested older than DIALER_INTAKE_GRACE_SECONDS has its dial row.
CREATE TABLE dialer.intake_checkpoints (
    name text PRIMARY KEY,
    -- the event store's cursor, (transaction_id, position): see calls_platform.eventstore
    transaction_id xid8 NOT NULL DEFAULT '0',
    position bigint NOT NULL
);
