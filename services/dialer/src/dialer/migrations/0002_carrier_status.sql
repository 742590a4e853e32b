-- What the carrier last told us about each dialed call, so calls whose callbacks were lost
-- can be found and asked about (the stale-call watchdog).
ALTER TABLE dialer.dials ADD COLUMN carrier_status text;
ALTER TABLE dialer.dials ADD COLUMN carrier_news_at timestamptz;
CREATE INDEX dials_unfinished ON dialer.dials (coalesce(carrier_news_at, finished_at))
    WHERE state = 'initiated'
      AND (carrier_status IS NULL
           OR carrier_status NOT IN ('completed', 'busy', 'failed', 'no-answer', 'canceled'));
