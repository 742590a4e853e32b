-- What the carrier answered when asked to cancel a placed call (its batch was canceled, or it
-- sat queued at the carrier too long): 'canceled', or 'refused' (it had moved on). A call is
-- asked once; a request that failed (timeout, 5xx) leaves this NULL and is asked again.
ALTER TABLE dialer.dials ADD COLUMN carrier_cancel text;
-- placed calls whose batch may be canceled, found by batch (dials_batch covers it) or by age
CREATE INDEX dials_cancel_candidates ON dialer.dials (finished_at)
    WHERE state = 'initiated' AND carrier_cancel IS NULL
      AND (carrier_status IS NULL OR carrier_status IN ('queued', 'initiated', 'ringing'));
