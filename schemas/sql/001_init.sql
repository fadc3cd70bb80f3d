-- membersync schema, version 1.  Applied by `membersync migrate` inside one
-- transaction under an advisory lock; never edited once released: later
-- changes get a new numbered file.
CREATE SCHEMA IF NOT EXISTS membersync;

-- Which member system each organization uses.  Credentials are never stored
-- here: credentials_ref names an environment variable (env:NAME) or a secret
-- file (file:/path) that the connector reads.
CREATE TABLE membersync.integrations (
    org_id          text NOT NULL,
    integration     text NOT NULL CHECK (integration IN ('CORNERSTONE', 'CONSIO')),
    base_url        text NOT NULL,
    credentials_ref text NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    page_size       integer NOT NULL DEFAULT 500 CHECK (page_size BETWEEN 1 AND 1000),
    max_rps         double precision NOT NULL DEFAULT 20,
    display_name    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, integration)
);

-- One row per trigger the rate limiter has decided: replays of a request_id
-- find their decision here and get the same answer, never a second job.
CREATE TABLE membersync.sync_requests (
    request_id      uuid PRIMARY KEY,
    org_id          text NOT NULL,
    integration     text NOT NULL,
    trigger         text NOT NULL,
    requested_by    jsonb NOT NULL,
    requested_at    timestamptz,
    decision        text NOT NULL,           -- QUEUED or a SyncRejected reason
    message         text,
    job_id          uuid,
    next_allowed_at timestamptz,
    existing_job_id uuid,
    decided_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE membersync.sync_jobs (
    job_id            uuid PRIMARY KEY,
    request_id        uuid NOT NULL,
    org_id            text NOT NULL,
    integration       text NOT NULL,
    trigger           text NOT NULL,
    mode              text NOT NULL DEFAULT 'FULL',
    state             text NOT NULL CHECK (state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'PARTIAL', 'FAILED')),
    requested_by      jsonb NOT NULL,
    queued_at         timestamptz NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz,
    heartbeat_at      timestamptz,
    owner             text,                  -- connector instance working on it (fencing)
    checkpoint        text,                  -- position of the next page to fetch
    pages_done        integer NOT NULL DEFAULT 0,
    fetch_complete    boolean NOT NULL DEFAULT false,
    total_estimate    bigint,
    source_total      bigint,
    seq               bigint NOT NULL DEFAULT 0, -- last SyncEvent seq emitted for the job
    records_processed bigint NOT NULL DEFAULT 0,
    created           bigint NOT NULL DEFAULT 0,
    updated           bigint NOT NULL DEFAULT 0,
    unchanged         bigint NOT NULL DEFAULT 0,
    deactivated       bigint NOT NULL DEFAULT 0,
    error_count       bigint NOT NULL DEFAULT 0,
    warning_count     bigint NOT NULL DEFAULT 0,
    rate_ewma         double precision,
    failure_reason    text
);
CREATE INDEX sync_jobs_recent ON membersync.sync_jobs (org_id, integration, queued_at DESC);
-- At most one live job per org and integration, whatever the code does.
CREATE UNIQUE INDEX sync_jobs_one_live ON membersync.sync_jobs (org_id, integration)
    WHERE state IN ('QUEUED', 'RUNNING');

-- The manual-trigger window per org and integration (DESIGN 5).
CREATE TABLE membersync.manual_windows (
    org_id          text NOT NULL,
    integration     text NOT NULL,
    next_allowed_at timestamptz NOT NULL,
    request_id      uuid NOT NULL,
    PRIMARY KEY (org_id, integration)
);

-- The Member Sync Repository: canonical members per org and integration.
CREATE TABLE membersync.members (
    org_id          text NOT NULL,
    integration     text NOT NULL,
    external_id     text NOT NULL,
    data            jsonb NOT NULL,          -- canonical Member (Avro JSON shape)
    content_hash    bigint NOT NULL,         -- over every field but source_updated_at
    active          boolean NOT NULL DEFAULT true,
    last_job_id     uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deactivated_at  timestamptz,
    PRIMARY KEY (org_id, integration, external_id)
) WITH (fillfactor = 90);

-- External ids a running job has seen (duplicate detection across pages and
-- deletion detection).  Rows of a job are deleted when it finishes.
CREATE TABLE membersync.job_seen (
    job_id      uuid NOT NULL,
    external_id text NOT NULL,
    PRIMARY KEY (job_id, external_id)
);

-- Record errors and warnings: codes, field names and the external id only,
-- never member data.
CREATE TABLE membersync.sync_errors (
    job_id       uuid NOT NULL,
    seq          bigint NOT NULL,            -- order within the job
    severity     text NOT NULL CHECK (severity IN ('ERROR', 'WARNING')),
    code         text NOT NULL,
    external_id  text,
    field        text,
    message      text NOT NULL,
    record_index bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);

-- What the widget shows, written only by the projector.
CREATE TABLE membersync.sync_status (
    org_id                 text NOT NULL,
    integration            text NOT NULL,
    state                  text NOT NULL DEFAULT 'IDLE',
    active_job_id          uuid,
    active_job_queued_at   timestamptz,
    active_seq             bigint NOT NULL DEFAULT -1,
    trigger                text,
    started_at             timestamptz,
    records_processed      bigint NOT NULL DEFAULT 0,
    total_estimate         bigint,
    errors_so_far          bigint NOT NULL DEFAULT 0,
    eta_at                 timestamptz,
    last_job_id            uuid,
    last_job_queued_at     timestamptz,
    last_outcome           text,
    last_sync_at           timestamptz,
    last_records_processed bigint,
    records_synced         bigint,
    created                bigint,
    updated                bigint,
    deactivated            bigint,
    unchanged              bigint,
    error_count            bigint,
    warning_count          bigint,
    failure_reason         text,
    next_manual_allowed_at timestamptz,
    last_rejection         jsonb,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, integration)
);

-- Consumed offsets, written in the same transaction as a consumer's effects.
CREATE TABLE membersync.consumer_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Transactional outbox: events written with the effects that caused them and
-- published in id order by the relay.
CREATE TABLE membersync.outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        text NOT NULL,
    value      bytea NOT NULL,
    headers    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
