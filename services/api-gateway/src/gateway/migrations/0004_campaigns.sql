-- Campaign configuration the gateway owns, each row written in the same transaction as the
-- event that announces it (DoNotCallAdded/Removed, CallingPolicySet: the dialer keeps its own
-- projection of those, since it decides at dial time and reads no table of ours).
CREATE TABLE gateway.do_not_call (
    organization_id text NOT NULL,
    number          text NOT NULL,
    reason          text,
    added_by        text NOT NULL,
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, number)
);
CREATE INDEX do_not_call_page ON gateway.do_not_call (organization_id, added_at DESC, number);

CREATE TABLE gateway.calling_policies (
    organization_id      text PRIMARY KEY,
    -- the CallingWindow (libs/events) of calls that set none, as JSON; NULL: none
    window_rules         jsonb,
    max_concurrency      integer,
    daily_cap_per_number integer,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
