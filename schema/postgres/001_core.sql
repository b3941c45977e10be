-- 001_core.sql -- the events table: every state change batond makes.
-- Applied once, recorded in schema_migrations (schema_migrations.sql).
-- Times are BIGINT milliseconds since the epoch, from the database's clock.

CREATE TABLE events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                    -- increasing; the SSE event id
    time    BIGINT NOT NULL,        -- database clock, ms since the epoch
    level   TEXT NOT NULL,          -- debug | info | warn | error
    event   TEXT COLLATE "C" NOT NULL,
                                    -- dotted name, e.g. agent.job.claimed; byte
                                    -- order, as SQLite's, for prefix ranges
    fields  TEXT NOT NULL           -- JSON object (text, kept byte for byte): ids and details, never secrets
);
-- newest-first listing and filtering by name (exact or prefix range) and time
CREATE INDEX events_by_name ON events(event, time);
-- retention sweep and unfiltered time ranges
CREATE INDEX events_by_time ON events(time);
