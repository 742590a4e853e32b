-- The call log in the reference's shape (issue #13): status takes the reference's four values
-- (the carrier's finer lifecycle is carrier_status), call_sid is never null (the `queued-…`
-- placeholder until the carrier gives its SID), duration is fractional seconds, and a call
-- canceled before it was dialed says so.
--
-- Every row's shape changes, so the read models are emptied and the checkpoint put back to
-- 0: the projector replays the whole event store into the new shape (what
-- `callsctl projection rebuild` does). Reads wait for it (bounded) or show the calls
-- replayed so far; see docs/operations.md.
TRUNCATE call_log.calls, call_log.batches, call_log.call_counts;
UPDATE call_log.checkpoints SET position = 0 WHERE name = 'calls';

ALTER TABLE call_log.calls
    ALTER COLUMN call_sid SET NOT NULL,
    ALTER COLUMN duration TYPE double precision,
    ADD COLUMN canceled boolean NOT NULL DEFAULT false;
