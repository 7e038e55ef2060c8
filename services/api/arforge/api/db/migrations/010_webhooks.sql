-- Webhooks: subscriptions, one message per (event, subscription), every delivery attempt.
-- Owned by the webhooks service (arforge.webhooks); the API's routes read and write them.
CREATE TABLE webhook_subscriptions (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id                   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url                         text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    event_types                 text[] NOT NULL CHECK (cardinality(event_types) >= 1),
    description                 text NOT NULL DEFAULT '',
    enabled                     boolean NOT NULL DEFAULT true,
    secret                      text NOT NULL,          -- whsec_...; HMAC needs the plain key
    previous_secret             text,                   -- still signed with during rotation
    previous_secret_expires_at  timestamptz,
    consecutive_failures        integer NOT NULL DEFAULT 0,
    failing_since               timestamptz,            -- first failure of the current run
    disabled_reason             text,                   -- gone | consecutive_failures | manual
    disabled_at                 timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_subscriptions_tenant ON webhook_subscriptions (tenant_id, created_at, id);

CREATE TABLE webhook_messages (
    id                text PRIMARY KEY,                 -- the webhook-id header, msg_<hex>
    event_id          text NOT NULL,
    subscription_id   uuid NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
    tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    event_type        text NOT NULL,                    -- public name, e.g. processing.completed
    body              bytea NOT NULL,                   -- the exact bytes signed and sent
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    next_attempt_at   timestamptz,                      -- due time while pending
    claim_token       bigint NOT NULL DEFAULT 0,        -- fences a dispatcher's lease
    last_status_code  integer,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX webhook_messages_due ON webhook_messages (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_messages_tenant ON webhook_messages (tenant_id, created_at DESC, id DESC);
CREATE INDEX webhook_messages_subscription
    ON webhook_messages (subscription_id, status, created_at);

CREATE TABLE webhook_attempts (
    id                bigserial PRIMARY KEY,
    message_id        text NOT NULL REFERENCES webhook_messages(id) ON DELETE CASCADE,
    attempt           integer NOT NULL,                 -- 1-based, keeps counting on redeliver
    started_at        timestamptz NOT NULL,
    status_code       integer,                          -- NULL when no response head arrived
    error_class       text,                             -- NULL on success; timeout, redirect, ...
    latency_ms        integer NOT NULL,
    response_excerpt  text NOT NULL DEFAULT '',
    succeeded         boolean NOT NULL,
    next_retry_at     timestamptz,                      -- NULL when no retry follows
    UNIQUE (message_id, attempt)
);
