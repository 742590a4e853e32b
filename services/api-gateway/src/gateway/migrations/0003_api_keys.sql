-- API keys: only a SHA-256 of each key is kept (a key has 256 bits of entropy, so a fast hash
-- cannot be brute-forced; what a database dump reveals is useless for authenticating).
CREATE TABLE gateway.api_keys (
    id              uuid PRIMARY KEY,
    organization_id text NOT NULL,
    name            text NOT NULL,
    -- the first characters of the key, shown in listings so a user can tell keys apart
    prefix          text NOT NULL,
    key_hash        bytea NOT NULL UNIQUE,
    scopes          text[] NOT NULL,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX api_keys_org ON gateway.api_keys (organization_id, created_at, id);

-- Request rate limits: one token bucket per organization and per API key. UNLOGGED: the state
-- is worth nothing after a crash (buckets simply start full again), so it skips the WAL.
CREATE UNLOGGED TABLE gateway.rate_limits (
    bucket     text PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz NOT NULL
);
