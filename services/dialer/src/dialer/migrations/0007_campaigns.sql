-- Campaigns: what the dialer needs to decide, at dial time, whether a call may ring now.

-- The call's request as the gateway recorded it (CallRequested data) when it carries
-- campaign rules: variables for the agent, schedule and calling window, retry policy. NULL:
-- none (dialed as soon as its turn comes, as before).
ALTER TABLE dialer.dials
    ADD COLUMN request jsonb,
    -- at most this many calls of the call's lane (its batch) in flight at once
    ADD COLUMN max_concurrency integer;

-- skipped: the number is on the do-not-call list; expired: not placed by its end_at
ALTER TABLE dialer.dials DROP CONSTRAINT dials_state_check;
ALTER TABLE dialer.dials ADD CONSTRAINT dials_state_check
    CHECK (state IN ('pending', 'dialing', 'initiated', 'failed', 'canceled', 'skipped', 'expired'));

-- Calls placed and not yet ended (slots of max_concurrency, one call per number at a time).
CREATE INDEX dials_in_flight ON dialer.dials (organization_id, to_number)
    WHERE state = 'dialing'
       OR (state = 'initiated'
           AND (carrier_status IS NULL
                OR carrier_status NOT IN ('completed', 'busy', 'failed', 'no-answer', 'canceled')));
-- recent dials of a number, for the per-number daily cap
CREATE INDEX dials_number_recent ON dialer.dials (organization_id, to_number, dial_started_at)
    WHERE dial_started_at IS NOT NULL;

-- Projections of the campaign events the dialer consumes (rebuildable from the event store).
-- Each keeps the position of the last event applied to its row: an older event redelivered
-- late changes nothing.
CREATE TABLE dialer.batch_pauses (
    batch_id        text PRIMARY KEY,
    organization_id text NOT NULL,
    paused          boolean NOT NULL,
    last_position   bigint NOT NULL
);
CREATE TABLE dialer.do_not_call (
    organization_id text NOT NULL,
    number          text NOT NULL,
    listed          boolean NOT NULL,
    last_position   bigint NOT NULL,
    PRIMARY KEY (organization_id, number)
);
CREATE TABLE dialer.calling_policies (
    organization_id      text PRIMARY KEY,
    max_concurrency      integer,
    daily_cap_per_number integer,
    last_position        bigint NOT NULL
);
