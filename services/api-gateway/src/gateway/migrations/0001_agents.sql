-- Configuration the gateway owns: agents (caller-ID numbers) and each organization's SIP default.
CREATE TABLE gateway.agents (
    id                uuid PRIMARY KEY,
    organization_id   text NOT NULL,
    name              text NOT NULL,
    -- a number rings one agent of one organization (inbound calls are routed by it)
    phone_number      text NOT NULL UNIQUE,
    recording_enabled boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agents_org ON gateway.agents (organization_id, created_at, id);

CREATE TABLE gateway.sip_config (
    organization_id     text PRIMARY KEY,
    default_from_number text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
