-- schema_migrations.sql -- which migrations of schema/postgres/ were
-- applied: one row per version, written in the migration's transaction.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at BIGINT NOT NULL
);
