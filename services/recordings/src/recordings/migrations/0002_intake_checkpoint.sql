-- The recordings service's own tail of the event store (recordings.intake): how far it has
-- checked that every RecordingReported older than RECORDINGS_INTAKE_GRACE_SECONDS has its row.
CREATE TABLE recordings.intake_checkpoints (
    name text PRIMARY KEY,
    -- the event store's cursor, (transaction_id, position): see calls_platform.eventstore
    transaction_id xid8 NOT NULL DEFAULT '0',
    position bigint NOT NULL
);
