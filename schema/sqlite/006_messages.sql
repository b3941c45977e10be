-- 006_messages.sql -- messages: the record of truth of every conversation.
-- An inbound message is written in the same transaction as its dedupe key
-- and its agent job; a reply in the same transaction as the job completion
-- and its outbound job.

CREATE TABLE messages (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT, -- exposed as a string; orders a conversation
    conversation_id    TEXT NOT NULL,   -- telegram:<account>:<chat>, whatsapp:<account>:<number>, web ids
    channel            TEXT NOT NULL,   -- web | telegram | whatsapp | ...
    account_id         TEXT NOT NULL,   -- the bot / phone account it came in on or goes out from
    direction          TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    channel_message_id TEXT,            -- in: the dedupe key (chat:msg, wamid); out: id the channel gave on send
    sender             TEXT,            -- "from": chat id, phone number, web user
    recipient          TEXT,            -- "to": where a reply is delivered
    text               TEXT NOT NULL DEFAULT '',
    payload            TEXT,            -- JSON: channel details (update kind, names, media)
    status             TEXT NOT NULL CHECK (status IN ('received', 'queued', 'sent', 'failed')),
    delivery           TEXT,            -- last delivery report from the channel: sent|delivered|read|failed
    error              TEXT,            -- why a send failed
    job_id             INTEGER,         -- in: the agent job answering it; out: the outbound job sending it
    created_at         INTEGER NOT NULL,-- ms, server clock
    sent_at            INTEGER          -- ms, when the channel accepted an outbound message
);
-- conversation listing, oldest first, after a cursor
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
-- delivery reports from webhooks find outbound messages by the channel's id
CREATE INDEX messages_by_channel_id ON messages(channel, channel_message_id);
