-- Work is keyed by a service *and* its environment (the deploy identity): a build names the
-- environment it is for, so that superseding cancels only that environment's work. A service's
-- environment is a column of its own, copied from its settings, so SQL can read it.
ALTER TABLE services ADD COLUMN environment TEXT NOT NULL DEFAULT 'production';
UPDATE services SET environment = COALESCE(deploy::json ->> 'environment', 'production')
    WHERE deploy IS NOT NULL;

ALTER TABLE builds ADD COLUMN environment TEXT NOT NULL DEFAULT 'production';
UPDATE builds SET environment = (SELECT environment FROM services WHERE services.id = builds.service_id);

DROP INDEX builds_by_service_state;
CREATE INDEX builds_by_service_state ON builds (service_id, environment, state, id);
