-- Call history at a million calls per organization: counters for exact, cheap totals; indexes
-- for each filter in the documented sort order; trigram indexes for number search.

-- Trusted extension (PostgreSQL 13+): a database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

CREATE INDEX calls_to_trgm ON call_log.calls USING gin (to_number public.gin_trgm_ops);
CREATE INDEX calls_from_trgm ON call_log.calls USING gin (from_number public.gin_trgm_ops);
CREATE INDEX calls_org_status_sort
    ON call_log.calls (organization_id, status, sort_time DESC, call_id DESC);
CREATE INDEX calls_org_outcome_sort
    ON call_log.calls (organization_id, outcome, sort_time DESC, call_id DESC)
    WHERE outcome IS NOT NULL;
CREATE INDEX calls_org_direction_sort
    ON call_log.calls (organization_id, direction, sort_time DESC, call_id DESC);

-- How many calls each organization has in each (direction, status, outcome), kept by the
-- projector in the same transaction as the rows it counts. '' stands for "no outcome yet".
CREATE TABLE call_log.call_counts (
    organization_id text NOT NULL,
    direction       text NOT NULL,
    status          text NOT NULL,
    outcome         text NOT NULL,
    calls           bigint NOT NULL,
    PRIMARY KEY (organization_id, direction, status, outcome)
);

INSERT INTO call_log.call_counts (organization_id, direction, status, outcome, calls)
SELECT organization_id, direction, status, coalesce(outcome, ''), count(*)
FROM call_log.calls GROUP BY 1, 2, 3, 4;
