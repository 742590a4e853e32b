-- A batch's calls travel in its BatchRequested (session 12): the dialer takes them in as dials
-- from that one event and opens each call's stream (appends its CallRequested) when it first
-- handles the call.

-- the call's CallRequested envelope, to append on the call's stream before anything else is
-- appended on it; NULL: the stream is open (every call not of such a batch)
ALTER TABLE dialer.dials
    ADD COLUMN unopened jsonb,
    -- the call's place in its batch: a batch's calls share one requested_position (their
    -- batch's event), so the pending order is (requested_position, batch_index)
    ADD COLUMN batch_index integer;

DROP INDEX dialer.dials_pending;
CREATE INDEX dials_pending ON dialer.dials (lane, requested_position, batch_index)
    WHERE state = 'pending';
