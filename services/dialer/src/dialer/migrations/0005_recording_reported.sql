-- When a RecordingReported for the call (its recording callback, through the dialer's queue)
-- was seen: a call that has its recording is never made due for listing its recordings.
-- A recorded call that ends `completed` is due after DIALER_RECORDING_GRACE_SECONDS unless
-- this is set by then (the mark is cleared when it is).
ALTER TABLE dialer.dials ADD COLUMN recording_reported_at timestamptz;
