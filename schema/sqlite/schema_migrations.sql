-- schema_migrations.sql -- which numbered migrations of this directory have
-- been applied to the database. Not a migration itself: batond creates it
-- before applying the first one (server/db.c: db_migrate). Each migration
-- runs in its own transaction together with the INSERT of its row, so a row
-- is there exactly when the migration's changes are.
-- A database made before this table existed recorded only a count in
-- PRAGMA user_version; on the first start of a batond that knows this table,
-- versions 1..user_version are recorded as applied in one transaction (log
-- line db.migrations_adopted). PRAGMA user_version is still set to the
-- highest applied version, for tools; this table is what batond reads.

CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY, -- the NNN of NNN_name.sql: 1, 2, ...
    name       TEXT NOT NULL,       -- the file name, e.g. 001_core.sql
    applied_at INTEGER NOT NULL     -- ms since the epoch, server clock; for adopted
                                    -- versions the time of the adoption
);
