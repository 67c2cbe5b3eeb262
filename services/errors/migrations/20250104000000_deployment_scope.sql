-- Failures and runs belong to one deployment, named by its NATS prefix (`nats.prefix`), so
-- deployments sharing one database keep their own lists. Rows from before this migration
-- have deployment '' until the first errors service to start takes them over for its prefix.
ALTER TABLE sync_failures ADD COLUMN deployment TEXT NOT NULL DEFAULT '';
ALTER TABLE sync_failures DROP CONSTRAINT sync_failures_record;
ALTER TABLE sync_failures ADD CONSTRAINT sync_failures_record
    UNIQUE (deployment, destination_connection, source_connection, record_key);
DROP INDEX sync_failures_by_status_last_seen;
CREATE INDEX sync_failures_by_status_last_seen
    ON sync_failures (deployment, status, last_seen DESC, id DESC);
DROP INDEX sync_failures_open_by_customer;
CREATE INDEX sync_failures_open_by_customer
    ON sync_failures (deployment, destination_connection, source_connection, customer_id)
    WHERE status = 'open';

ALTER TABLE sync_runs ADD COLUMN deployment TEXT NOT NULL DEFAULT '';
ALTER TABLE sync_run_records ADD COLUMN deployment TEXT NOT NULL DEFAULT '';
ALTER TABLE sync_run_records DROP CONSTRAINT sync_run_records_run_id_fkey;
ALTER TABLE sync_run_records DROP CONSTRAINT sync_run_records_record;
ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_pkey;
ALTER TABLE sync_runs ADD PRIMARY KEY (deployment, run_id);
ALTER TABLE sync_run_records ADD CONSTRAINT sync_run_records_run
    FOREIGN KEY (deployment, run_id) REFERENCES sync_runs (deployment, run_id)
    ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE sync_run_records ADD CONSTRAINT sync_run_records_record
    UNIQUE (deployment, run_id, destination_connection, source_connection, record_key);
DROP INDEX sync_runs_by_start;
CREATE INDEX sync_runs_by_start ON sync_runs (deployment, started_at DESC, run_id DESC);
