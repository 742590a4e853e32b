-- A call's recording is looked up in two ways: GET serves the stored one, DELETE removes the
-- stored one or finishes one whose deletion was cut short (`deleting`). recordings_call was
-- partial on `state = 'stored'`, so DELETE's lookup could not use it and read every recording
-- row of the organization. One index whose predicate covers both serves both (a query's
-- `state = 'stored'` implies `state IN ('stored', 'deleting')`, which PostgreSQL proves).
CREATE INDEX recordings_call_live ON recordings.recordings (organization_id, call_id, stored_at DESC)
    WHERE state IN ('stored', 'deleting');
DROP INDEX recordings.recordings_call;
