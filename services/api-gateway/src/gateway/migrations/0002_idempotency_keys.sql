-- Responses to POSTs sent with an Idempotency-Key, so a retried request is answered the same way
-- and queues nothing twice. Written in the same transaction as the request's events.
CREATE TABLE gateway.idempotency_keys (
    organization_id text NOT NULL,
    key             text NOT NULL,
    fingerprint     text NOT NULL,
    status          integer,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, key)
);
CREATE INDEX idempotency_keys_created ON gateway.idempotency_keys (created_at);
