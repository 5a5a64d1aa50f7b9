-- Catching up webhook deliveries GitHub failed to make while Wharf was down.
-- The deliveries Wharf asked GitHub to make again, by the event's delivery id (GitHub's guid,
-- the X-GitHub-Delivery header), so that no delivery is asked for twice. Rows are forgotten
-- once GitHub no longer keeps the delivery.
CREATE TABLE github_redeliveries (
    guid         TEXT    PRIMARY KEY,
    delivery_id  INTEGER NOT NULL,   -- GitHub's id of the failed attempt asked for again
    asked_at     INTEGER NOT NULL    -- milliseconds since the epoch
);
CREATE INDEX github_redeliveries_by_time ON github_redeliveries (asked_at);

-- Periodic work that runs once across server replicas: a replica runs a schedule only after
-- moving its next_at forward from a time already past, which one statement does for one of them.
CREATE TABLE schedules (
    name     TEXT    PRIMARY KEY,
    next_at  INTEGER NOT NULL,   -- when the schedule is due again, milliseconds since the epoch
    ran_at   INTEGER NOT NULL,   -- when a replica last took it
    succeeded_at INTEGER        -- when the last turn that ended well began (NULL: none yet)
);
