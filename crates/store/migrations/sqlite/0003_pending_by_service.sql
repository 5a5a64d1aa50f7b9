-- Superseding looks up a service's pending builds on every push; without this index it scans
-- every build the service ever had.
CREATE INDEX builds_by_service_state ON builds (service_id, state, id);
