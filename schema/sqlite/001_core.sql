-- 001_core.sql -- the events table: every state change batond makes.
-- Applied once, recorded in schema_migrations (schema_migrations.sql).

CREATE TABLE events (
    id      INTEGER PRIMARY KEY,    -- increasing; the SSE event id
    time    INTEGER NOT NULL,       -- server clock, ms since the epoch
    level   TEXT NOT NULL,          -- debug | info | warn | error
    event   TEXT NOT NULL,          -- dotted name, e.g. agent.job.claimed
    fields  TEXT NOT NULL           -- JSON object: ids and details, never secrets
);
-- newest-first listing and filtering by name (exact or prefix) and time
CREATE INDEX events_by_name ON events(event, time);
-- retention sweep and unfiltered time ranges
CREATE INDEX events_by_time ON events(time);
