-- 004_dedupe.sql -- dedupe (inboundDedupe): the inbound message ids already
-- seen per channel, so a webhook delivered twice is processed once. An
-- entry whose expires_at has passed counts as absent (a new registration
-- replaces it) and is deleted by the sweep.

CREATE TABLE dedupe (
    channel            TEXT NOT NULL,    -- telegram, whatsapp, web, ...
    channel_message_id TEXT NOT NULL,    -- the channel's own id (wamid, "<chat>:<message_id>")
    first_seen_at      INTEGER NOT NULL, -- ms, server clock, when it was registered
    expires_at         INTEGER NOT NULL, -- ms, server clock; forgotten from then on
    PRIMARY KEY (channel, channel_message_id)
) WITHOUT ROWID;
-- the sweep deletes expired entries oldest first
CREATE INDEX dedupe_by_expiry ON dedupe(expires_at);
