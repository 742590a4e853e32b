-- Campaigns: per-call variables and metadata, attempts at a recipient (a retry is a new call
-- linked to the ones before), why the dialer ended a call it never placed, paused batches.
ALTER TABLE call_log.calls
    ADD COLUMN variables        jsonb,
    ADD COLUMN metadata         jsonb,
    ADD COLUMN attempt          integer NOT NULL DEFAULT 1,
    ADD COLUMN previous_call_id uuid,
    ADD COLUMN first_call_id    uuid,
    ADD COLUMN next_call_id     uuid,
    -- the dialer put the call off until then (window, start_at, daily cap)
    ADD COLUMN not_before       timestamptz,
    -- do_not_call or expired: the dialer ended the call without placing it
    ADD COLUMN dial_outcome     text;
ALTER TABLE call_log.batches ADD COLUMN paused boolean NOT NULL DEFAULT false;
