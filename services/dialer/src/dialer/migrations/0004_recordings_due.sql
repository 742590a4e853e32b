-- A recorded call the watchdog found `completed` by asking the carrier: its recording callback
-- was most likely lost with its status callbacks (Twilio retries neither), so the call's
-- recordings are listed at the carrier from this time on. NULL: nothing to ask.
-- recordings_checks counts the listings (a recording still processing is asked about again).
ALTER TABLE dialer.dials
    ADD COLUMN recordings_due_at timestamptz,
    ADD COLUMN recordings_checks integer NOT NULL DEFAULT 0;
CREATE INDEX dials_recordings_due ON dialer.dials (recordings_due_at)
    WHERE recordings_due_at IS NOT NULL;
