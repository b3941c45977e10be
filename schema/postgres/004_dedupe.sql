-- 004_dedupe.sql -- dedupe (inboundDedupe): the inbound message ids already
-- seen per channel, so a webhook delivered twice is processed once, by
-- whichever replica receives it (PostgreSQL). An entry whose expires_at has
-- passed counts as absent (a new registration replaces it) and is deleted
-- by the sweep.
-- Names are COLLATE "C": compared and ordered byte by byte, as in SQLite.

CREATE TABLE dedupe (
    channel            TEXT COLLATE "C" NOT NULL, -- telegram, whatsapp, web, ...
    channel_message_id TEXT COLLATE "C" NOT NULL, -- the channel's own id (wamid, "<chat>:<message_id>")
    first_seen_at      BIGINT NOT NULL, -- ms, database clock, when it was registered
    expires_at         BIGINT NOT NULL, -- ms, database clock; forgotten from then on
    PRIMARY KEY (channel, channel_message_id)
);
-- the sweep deletes expired entries oldest first
CREATE INDEX dedupe_by_expiry ON dedupe(expires_at);
