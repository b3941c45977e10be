-- 007_streaming.sql -- streaming replies: while the agent job answering an
-- inbound message runs, the text its handler has produced so far is kept on
-- that inbound message (the pending reply), not as separate messages. Only
-- server/messages.c writes these columns (POST /v1/jobs/{id}/progress).

ALTER TABLE messages ADD COLUMN partial TEXT;        -- the reply so far, as last reported; NULL before any progress
ALTER TABLE messages ADD COLUMN partial_token TEXT;  -- claimToken of the claim that reported it: the text is shown
                                                     -- only while that claim is the job's current one, so a retried
                                                     -- job starts over and a stale worker's text is never shown
ALTER TABLE messages ADD COLUMN partial_rev INTEGER NOT NULL DEFAULT 0; -- +1 per progress report, so that a
                                                     -- conversation's revision ("rev" of the listing) changes
