-- Commit-ordered reads without a global append lock (docs/architecture.md, "Ordering").
--
-- Appends no longer serialize on an advisory lock: positions come from a sequence (so they
-- are unique but may commit out of order), and each row records the transaction that wrote
-- it. Readers read in (transaction_id, position) order, only below the oldest transaction
-- still running (pg_snapshot_xmin), so nothing can commit behind a reader's checkpoint.
--
-- Rows stored before this migration were appended one at a time under the lock: their
-- position order is their commit order. They get transaction_id 0, which sorts them first,
-- in position order, exactly as before; every checkpoint n becomes (0, n), the same point.

-- a constant default: no table rewrite, existing rows read 0
ALTER TABLE eventstore.events ADD COLUMN transaction_id xid8 NOT NULL DEFAULT '0';
-- new rows: the appending transaction (append() may record a later one, never an earlier one)
ALTER TABLE eventstore.events ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id();

CREATE SEQUENCE eventstore.events_position_seq OWNED BY eventstore.events.position;
SELECT setval(
    'eventstore.events_position_seq',
    coalesce((SELECT max(position) FROM eventstore.events), 0) + 1,
    false
);
ALTER TABLE eventstore.events
    ALTER COLUMN position SET DEFAULT nextval('eventstore.events_position_seq');

-- the readers' order
CREATE INDEX events_read_order ON eventstore.events (transaction_id, position);

ALTER TABLE eventstore.checkpoints ADD COLUMN transaction_id xid8 NOT NULL DEFAULT '0';

COMMENT ON COLUMN eventstore.events.position IS
    'Unique, from a sequence; NOT commit order. Read in (transaction_id, position) order.';
COMMENT ON COLUMN eventstore.events.transaction_id IS
    'The appending transaction (or its stream predecessor''s, if later); 0 before 0002.';
