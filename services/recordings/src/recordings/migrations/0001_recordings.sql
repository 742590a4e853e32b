-- The recordings service's own state: every recording the carrier reported, and where it stands.
CREATE TABLE recordings.recordings (
    -- the carrier's RE… SID: a recording reported twice is recorded (and stored) once
    recording_sid      text PRIMARY KEY,
    call_id            uuid NOT NULL,
    organization_id    text NOT NULL,
    call_sid           text NOT NULL,
    -- pending → stored | failed; absent and failed (by the carrier) are final from the start;
    -- stored → deleted. Only 'pending' is ever worked on.
    state              text NOT NULL
                       CHECK (state IN ('pending', 'stored', 'absent', 'failed', 'deleted')),
    recording_url      text,
    duration_seconds   integer,
    channels           integer,
    attempts           integer NOT NULL DEFAULT 0,
    failure_reason     text,
    -- built by the service from the ids above (never from request data)
    storage_key        text,
    size_bytes         bigint,
    content_type       text,
    correlation_id     text,
    reported_event_id  uuid NOT NULL,
    reported_at        timestamptz NOT NULL DEFAULT now(),
    stored_at          timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (state <> 'stored' OR (storage_key IS NOT NULL AND size_bytes IS NOT NULL))
);
-- What the API serves: a call's stored recording, by organization.
CREATE INDEX recordings_call ON recordings.recordings (organization_id, call_id, stored_at DESC)
    WHERE state = 'stored';
