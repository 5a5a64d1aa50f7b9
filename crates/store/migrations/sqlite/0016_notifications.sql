-- Notifications: an outbox of events written in the same transaction as the change that causes
-- them, the sinks they go to (a webhook, Slack, Discord) and one delivery row per message and
-- sink, which the server's delivery loop sends with retries.

-- The outbox. Triggers below write the outcomes of builds and releases; the store's lease
-- expiry and abandoned rollouts write `rollout.stuck`, the agents' triggers `agent.offline`
-- and `agent.online`; a user's test writes `test` for one sink. `disposition` is NULL until
-- the delivery loop fans the event out: `sent`, `suppressed` (a repeated failure inside the
-- hour), `still_failing` (a repeated failure after it) or `recovered` (live after failures).
CREATE TABLE notification_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event        TEXT    NOT NULL,           -- build.failed, release.live, …
    service_id   INTEGER,
    environment  TEXT,
    build_id     INTEGER,
    release_id   INTEGER,
    agent_id     INTEGER,
    reason       TEXT,
    sink_id      INTEGER,                    -- a test goes to this sink only
    dedupe_key   TEXT    UNIQUE,             -- what is reported once (a stuck build or rollout)
    disposition  TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX notification_events_to_fan_out ON notification_events (id) WHERE disposition IS NULL;
CREATE INDEX notification_events_by_service ON notification_events (service_id, environment, id);

CREATE TABLE notification_sinks (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL UNIQUE,
    kind           TEXT    NOT NULL,         -- webhook, slack or discord
    url_shown      TEXT    NOT NULL,         -- the URL without what may hold a token
    url_sealed     TEXT    NOT NULL,         -- the whole URL, sealed by the server
    secret_sealed  TEXT,                     -- a webhook's signing secret, sealed
    events         TEXT    NOT NULL DEFAULT '', -- comma-separated; empty: every event
    services       TEXT    NOT NULL DEFAULT '', -- comma-separated; empty: every service
    created_at     INTEGER NOT NULL
);

-- One message to one sink. `message_id` is its X-Wharf-Delivery, the same on every attempt.
-- `next_at` is when to send it next, or the end of the lease of the server sending it; NULL
-- once delivered or dead.
CREATE TABLE notification_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    sink_id       INTEGER NOT NULL REFERENCES notification_sinks (id) ON DELETE CASCADE,
    event_id      INTEGER NOT NULL REFERENCES notification_events (id),
    message_id    TEXT    NOT NULL UNIQUE DEFAULT (lower(hex(randomblob(16)))),
    disposition   TEXT    NOT NULL,          -- the event's, when it was fanned out
    state         TEXT    NOT NULL,          -- pending, delivered or dead
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER,
    last_status   INTEGER,                   -- the sink's last HTTP status
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    delivered_at  INTEGER
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX notification_deliveries_by_sink ON notification_deliveries (sink_id, id);

-- Since when an agent has been reported offline; NULL while it is heard from.
ALTER TABLE agents ADD COLUMN offline_since INTEGER;

-- Triggers, so that no writer of builds, releases or agents can forget an event, and it commits
-- with the change itself. A release's state is the aggregate of its hosts' rollouts, so each
-- outcome is one event, not one per host.
CREATE TRIGGER builds_notify_failed AFTER UPDATE OF state ON builds
FOR EACH ROW WHEN NEW.state = 'failed' AND OLD.state <> 'failed'
BEGIN
    INSERT INTO notification_events (event, service_id, environment, build_id, reason, created_at)
    VALUES ('build.failed', NEW.service_id, NEW.environment, NEW.id, NEW.reason, NEW.updated_at);
END;

CREATE TRIGGER releases_notify_changed AFTER UPDATE OF state ON releases
FOR EACH ROW WHEN OLD.state <> NEW.state AND NEW.state IN ('live', 'failed', 'rolled_back')
BEGIN
    INSERT INTO notification_events (event, service_id, environment, build_id, release_id, reason, created_at)
    VALUES ('release.' || NEW.state, NEW.service_id, NEW.environment, NEW.build_id, NEW.id,
        NEW.reason, NEW.updated_at);
END;

-- A release no host could take is stored failed at once.
CREATE TRIGGER releases_notify_inserted AFTER INSERT ON releases
FOR EACH ROW WHEN NEW.state IN ('live', 'failed', 'rolled_back')
BEGIN
    INSERT INTO notification_events (event, service_id, environment, build_id, release_id, reason, created_at)
    VALUES ('release.' || NEW.state, NEW.service_id, NEW.environment, NEW.build_id, NEW.id,
        NEW.reason, NEW.updated_at);
END;

CREATE TRIGGER agents_notify_offline AFTER UPDATE OF offline_since ON agents
FOR EACH ROW WHEN OLD.offline_since IS NULL AND NEW.offline_since IS NOT NULL
BEGIN
    INSERT INTO notification_events (event, agent_id, created_at)
    VALUES ('agent.offline', NEW.id, NEW.offline_since);
END;

CREATE TRIGGER agents_notify_online AFTER UPDATE OF last_seen_at ON agents
FOR EACH ROW WHEN OLD.offline_since IS NOT NULL AND NEW.last_seen_at IS NOT NULL
    AND NEW.last_seen_at >= OLD.offline_since
BEGIN
    UPDATE agents SET offline_since = NULL WHERE id = NEW.id;
    INSERT INTO notification_events (event, agent_id, created_at)
    VALUES ('agent.online', NEW.id, NEW.last_seen_at);
END;
