-- The customer a failing record belongs to (its subscriptions, invoices, charges): when the
-- customer's own record syncs again, its other open failures are retried by themselves.
ALTER TABLE sync_failures ADD COLUMN customer_id TEXT;
UPDATE sync_failures SET customer_id = event->>'customer_id';
CREATE INDEX sync_failures_open_by_customer
    ON sync_failures (destination_connection, source_connection, customer_id)
    WHERE status = 'open';
