-- Finished deliveries (delivered or given up) are kept for WEBHOOKS_DELIVERY_RETENTION_DAYS
-- after they finished, then deleted with their attempts (webhooks.retention): this index finds
-- the oldest of them without reading the pending ones.
CREATE INDEX deliveries_finished ON webhooks.deliveries (completed_at) WHERE state <> 'pending';
