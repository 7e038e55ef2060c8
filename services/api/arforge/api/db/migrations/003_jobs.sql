-- Jobs: the API inserts them (status queued); the tracker moves them forward from events.
CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    type             text NOT NULL,
    priority         text NOT NULL CHECK (priority IN ('high', 'default', 'low')),
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'started', 'retrying', 'completed', 'failed', 'cancelled')),
    run              integer NOT NULL DEFAULT 1 CHECK (run >= 1),
    attempt          integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    progress         real NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    progress_stage   text,
    params           jsonb NOT NULL DEFAULT '{}'::jsonb,
    inputs           jsonb NOT NULL DEFAULT '[]'::jsonb,
    result           jsonb,
    error_code       text,
    error_message    text,
    idempotency_key  text,
    request_hash     text,                         -- sha256 of the canonical request body
    dead_lettered    boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX jobs_tenant_created ON jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX jobs_type_status ON jobs (type, status);

-- Every lifecycle event the tracker saw, once (id = the event's deterministic id).
CREATE TABLE job_events (
    id        text PRIMARY KEY,
    seq       bigserial NOT NULL,                  -- order the tracker stored them in
    job_id    uuid NOT NULL,
    type      text NOT NULL,
    time      timestamptz NOT NULL,
    source    text NOT NULL DEFAULT '',
    run       integer NOT NULL DEFAULT 1,
    attempt   integer NOT NULL DEFAULT 0,
    data      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX job_events_job ON job_events (job_id, seq);

-- Jobs that ran out of attempts or crash-looped; one row per (job, run).
CREATE TABLE dead_letters (
    job_id       uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    run          integer NOT NULL,
    reason       text NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz,
    PRIMARY KEY (job_id, run)
);
CREATE INDEX dead_letters_created ON dead_letters (created_at DESC);
