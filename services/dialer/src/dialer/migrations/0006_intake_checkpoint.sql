-- The dialer's own tail of the event store (dialer.intake): how far it has checked that every
-- CallRequested older than DIALER_INTAKE_GRACE_SECONDS has its dial row.
CREATE TABLE dialer.intake_checkpoints (
    name text PRIMARY KEY,
    position bigint NOT NULL
);
