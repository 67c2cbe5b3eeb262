-- The fingerprint of the failing event's data, taken before secrets were scrubbed from it:
-- an ignore records it, and a worker lifts the ignore only for an event whose data differs.
ALTER TABLE sync_failures ADD COLUMN data_fingerprint TEXT;
