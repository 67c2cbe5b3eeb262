-- Sync errors, one row per record and destination connection, and the history of sync runs.

CREATE TABLE sync_failures (
    id                      BIGSERIAL PRIMARY KEY,
    destination             TEXT        NOT NULL,
    destination_connection  TEXT        NOT NULL,
    source                  TEXT        NOT NULL,
    source_connection       TEXT        NOT NULL,
    record_key              TEXT        NOT NULL,
    status                  TEXT        NOT NULL DEFAULT 'open'
                            CHECK (status IN ('open', 'ignored', 'resolved')),
    error_class             TEXT        NOT NULL,
    message                 TEXT        NOT NULL,
    http_status             INTEGER,
    vendor_detail           JSONB       NOT NULL DEFAULT 'null'::jsonb,
    attempts                INTEGER     NOT NULL DEFAULT 0,
    -- The latest failing event and its type; `event` is the BillingEvent a retry replays.
    event_id                TEXT        NOT NULL,
    event_type              TEXT        NOT NULL,
    event                   JSONB       NOT NULL,
    run_id                  TEXT,
    -- Distinct failing deliveries in the current episode (reset when a resolved or
    -- ignored record fails again after a change).
    count                   BIGINT      NOT NULL DEFAULT 1,
    first_seen              TIMESTAMPTZ NOT NULL,
    last_seen               TIMESTAMPTZ NOT NULL,
    -- Identity of the last outcome message counted, so a redelivered message is not
    -- counted twice.
    last_event_id           TEXT        NOT NULL,
    last_at                 TIMESTAMPTZ NOT NULL,
    resolved_at             TIMESTAMPTZ,
    ignored_at              TIMESTAMPTZ,
    -- Never reset: it makes every retry's Nats-Msg-Id unique.
    retry_count             INTEGER     NOT NULL DEFAULT 0,
    last_retry_at           TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT sync_failures_record UNIQUE (destination_connection, source_connection, record_key)
);

CREATE INDEX sync_failures_by_status_last_seen ON sync_failures (status, last_seen DESC, id DESC);

CREATE TABLE sync_runs (
    run_id           TEXT        PRIMARY KEY,
    started_at       TIMESTAMPTZ NOT NULL,
    last_outcome_at  TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX sync_runs_by_start ON sync_runs (started_at DESC, run_id DESC);

CREATE TABLE sync_run_records (
    id                      BIGSERIAL   PRIMARY KEY,
    run_id                  TEXT        NOT NULL REFERENCES sync_runs (run_id) ON DELETE CASCADE,
    destination             TEXT        NOT NULL,
    destination_connection  TEXT        NOT NULL,
    source_connection       TEXT        NOT NULL,
    record_key              TEXT        NOT NULL,
    event_id                TEXT        NOT NULL,
    status                  TEXT        NOT NULL CHECK (status IN ('synced', 'failed', 'skipped')),
    reason                  TEXT,
    at                      TIMESTAMPTZ NOT NULL,
    CONSTRAINT sync_run_records_record
        UNIQUE (run_id, destination_connection, source_connection, record_key)
);
