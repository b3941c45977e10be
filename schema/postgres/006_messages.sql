-- 006_messages.sql -- messages: the record of truth of every conversation,
-- with the pending reply of a streaming job (SQLite's 006_messages.sql and
-- 007_streaming.sql in one). An inbound message is written in the same
-- transaction as its dedupe key and its agent job; a reply in the same
-- transaction as the job completion and its outbound job.
--
-- Ids orders a conversation and are the cursor of its listings (id >
-- after): the transaction inserting one holds the stream lock until it
-- commits (store_pg_events.c says why), so ids become visible in order.

CREATE TABLE messages (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- exposed as a string; orders a conversation
    conversation_id    TEXT NOT NULL,   -- telegram:<account>:<chat>, whatsapp:<account>:<number>, web ids
    channel            TEXT NOT NULL,   -- web | telegram | whatsapp | ...
    account_id         TEXT NOT NULL,   -- the bot / phone account it came in on or goes out from
    direction          TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    channel_message_id TEXT,            -- in: the dedupe key (chat:msg, wamid); out: id the channel gave on send
    sender             TEXT,            -- "from": chat id, phone number, web user
    recipient          TEXT,            -- "to": where a reply is delivered
    text               TEXT NOT NULL DEFAULT '',
    payload            TEXT,            -- JSON text: channel details (update kind, names, media), byte for byte
    status             TEXT NOT NULL CHECK (status IN ('received', 'queued', 'sent', 'failed')),
    delivery           TEXT,            -- last delivery report from the channel: sent|delivered|read|failed
    error              TEXT,            -- why a send failed
    job_id             BIGINT,          -- in: the agent job answering it; out: the outbound job sending it
    created_at         BIGINT NOT NULL, -- ms, the database's clock
    sent_at            BIGINT,          -- ms, when the channel accepted an outbound message
    partial            TEXT,            -- the reply so far, as last reported; NULL before any progress
    partial_token      TEXT,            -- claimToken of the claim that reported it: the text is shown only
                                        -- while that claim is the job's current one, so a retried job
                                        -- starts over and a stale worker's text is never shown
    partial_rev        BIGINT NOT NULL DEFAULT 0 -- +1 per progress report, so that a conversation's
                                        -- revision ("rev" of the listing) changes
);
-- conversation listing, oldest first, after a cursor
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
-- delivery reports from webhooks find outbound messages by the channel's id
CREATE INDEX messages_by_channel_id ON messages(channel, channel_message_id);
-- progress reports find the inbound message(s) a job answers
CREATE INDEX messages_by_job ON messages(job_id) WHERE direction = 'in';
