#!/bin/sh
# sqlite-to-postgres.sh --from SQLITE_FILE --to POSTGRES_URL
#
# Copies every row of a stopped batond's SQLite database into a new
# PostgreSQL database of batond (docs/scaling.md, "Moving from SQLite"):
# jobs, leases with their fencing tokens, accounts, dedupe entries,
# sessions (the stored bytes as they are: run PostgreSQL's batond with the
# same BATON_SESSION_KEY), messages, events, queue settings and schedules.
# Needs the sqlite3 and psql command-line tools.
#
#   1. stop batond (the copy reads one consistent snapshot of the file, but
#      what batond writes after it is not copied);
#   2. start batond once with BATON_DB=<the PostgreSQL URL> and stop it:
#      it creates its tables (its migrations);
#   3. sh deploy/sqlite-to-postgres.sh --from data/baton.db --to postgres://...
#   4. start batond (any number of replicas) on the PostgreSQL URL.
#
# DESIGN
# Tables and columns are matched by name: each table of the SQLite file
# (but its migrations table) goes into the PostgreSQL table of the same
# name, each column into the column of the same name, converted by the
# target column's type (bytea from the stored bytes, boolean from 0/1,
# everything else as text in COPY's text format, escaped, NULL as \N). A
# table or column with rows that has no place in the target is refused,
# never dropped silently. The copy is one psql transaction: it takes an
# exclusive lock on every target table, refuses if any of them holds a
# row (the copy only fills a new database; the events batond logged about
# its own start and stop there, server.* and db.*, are replaced by the
# copied history), COPYs, and sets each identity
# sequence past the highest copied id and past SQLite's AUTOINCREMENT
# counter (ids are never reused, even those retention deleted), so either
# everything is copied or nothing. The SQLite side is read in one read
# transaction (one snapshot). The connection string is never printed: it
# may hold a password (libpq's PGPASSWORD or ~/.pgpass keep it out).
set -eu

me=sqlite-to-postgres
from= to=
while [ $# -gt 0 ]; do
    case "$1" in
    --from) from=${2:-}; shift 2 || break ;;
    --to) to=${2:-}; shift 2 || break ;;
    -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$me: unknown argument '$1' (usage: --from SQLITE_FILE --to POSTGRES_URL)" >&2; exit 2 ;;
    esac
done
if [ -z "$from" ] || [ -z "$to" ]; then
    echo "$me: usage: $0 --from SQLITE_FILE --to POSTGRES_URL" >&2
    exit 2
fi
case "$to" in
postgres://*|postgresql://*) ;;
*) echo "$me: --to must be a postgres:// or postgresql:// connection string" >&2; exit 2 ;;
esac
for t in sqlite3 psql; do
    command -v $t >/dev/null 2>&1 || { echo "$me: the $t command-line tool is needed" >&2; exit 1; }
done
[ -f "$from" ] || { echo "$me: no SQLite database at $from" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/baton-copy-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

sq() { sqlite3 -batch -bail -readonly "$from" "$@"; }
pq() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$to" "$@"; }
die() { echo "$me: $*" >&2; exit 1; }

if ! sq "SELECT count(*) FROM schema_migrations" >/dev/null 2>"$work/err"; then
    die "$from is not a batond SQLite database ($(cat "$work/err"))"
fi
# the connection's own error text names host and user, never the password
if ! pq -c "SELECT 1" >/dev/null 2>"$work/err"; then
    die "cannot connect to the PostgreSQL database: $(sed -n 1p "$work/err")"
fi
if [ "$(pq -c "SELECT to_regclass('schema_migrations') IS NOT NULL")" != t ]; then
    die "the PostgreSQL database has no batond tables: start batond once with BATON_DB set to it, stop it, and run this again"
fi

# the SQLite tables: all but SQLite's own and the migrations record
sq "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
    AND name <> 'schema_migrations' ORDER BY name" > "$work/tables"

# the target's columns: table|column|type|identity (1 when an identity or
# serial column, whose sequence is set past the copied ids)
pq -F '|' -c "SELECT table_name, column_name, data_type,
                     CASE WHEN is_identity = 'YES' OR column_default LIKE 'nextval(%' THEN 1 ELSE 0 END
              FROM information_schema.columns WHERE table_schema = current_schema()
              ORDER BY table_name, ordinal_position" > "$work/pgcols"

has_seq=$(sq "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'")
: > "$work/copied"
{
    echo "BEGIN;"
    echo ".headers off"
    echo ".mode list"
} > "$work/read.sql"
{
    echo "SET client_min_messages = warning;"
} > "$work/head.sql"
: > "$work/tail.sql"
locks=
while read -r tbl; do
    rows=$(sq "SELECT count(*) FROM \"$tbl\"")
    if ! grep -q "^$tbl|" "$work/pgcols"; then
        [ "$rows" -eq 0 ] && { echo "$me: $tbl: empty, and not in the PostgreSQL schema: skipped" >&2; continue; }
        die "table $tbl ($rows rows) has no table of that name in the PostgreSQL database: is it batond's, of the same version?"
    fi
    expr= cols=
    for col in $(sq "SELECT name FROM pragma_table_info('$tbl') ORDER BY cid"); do
        type=$(awk -F'|' -v t="$tbl" -v c="$col" '$1 == t && $2 == c { print $3 }' "$work/pgcols")
        if [ -z "$type" ]; then
            n=$(sq "SELECT count(*) FROM \"$tbl\" WHERE \"$col\" IS NOT NULL")
            [ "$n" -eq 0 ] && continue
            die "column $tbl.$col ($n values) has no column of that name in the PostgreSQL table"
        fi
        q="\"$col\""
        case "$type" in
        bytea) e="CASE WHEN $q IS NULL THEN '\\N' ELSE '\\\\x' || hex(CAST($q AS BLOB)) END" ;;
        boolean) e="CASE WHEN $q IS NULL THEN '\\N' WHEN $q THEN 't' ELSE 'f' END" ;;
        *) e="CASE WHEN $q IS NULL THEN '\\N' ELSE replace(replace(replace(replace(CAST($q AS TEXT),
                 '\\', '\\\\'), char(10), '\\n'), char(13), '\\r'), char(9), '\\t') END" ;;
        esac
        expr="${expr:+$expr || char(9) || }$e"
        cols="${cols:+$cols, }$q"
    done
    [ -n "$cols" ] || die "table $tbl has no column in common with the PostgreSQL table"
    locks="${locks:+$locks, }\"$tbl\""
    echo "$tbl $rows" >> "$work/copied"
    {
        printf '%s\n' "SELECT 'COPY \"$tbl\" ($cols) FROM STDIN;';" \
            "SELECT $expr FROM \"$tbl\";" "SELECT '\\.';"
    } >> "$work/read.sql"
    # identity columns: past the highest id copied and past SQLite's
    # AUTOINCREMENT counter (the ids of rows deleted since)
    awk -F'|' -v t="$tbl" '$1 == t && $4 == 1 { print $2 }' "$work/pgcols" | while read -r idc; do
        seq=0
        [ "$has_seq" -eq 1 ] && seq=$(sq "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = '$tbl'")
        echo "SELECT setval(pg_get_serial_sequence('\"$tbl\"', '$idc'),
                  greatest($seq, (SELECT coalesce(max(\"$idc\"), 0) FROM \"$tbl\"), 1),
                  greatest($seq, (SELECT coalesce(max(\"$idc\"), 0) FROM \"$tbl\")) > 0);" >> "$work/tail.sql"
    done
done < "$work/tables"
echo "COMMIT;" >> "$work/read.sql"
[ -n "$locks" ] || die "nothing to copy in $from"

# refuse a target that holds rows, inside the copy's transaction and under
# its locks (nothing can slip in between the check and the copy)
{
    echo "LOCK TABLE $locks IN ACCESS EXCLUSIVE MODE;"
    echo "DO \$\$ BEGIN"
    while read -r tbl rows; do
        # batond's start on the new database logged its own start and stop
        # (server.*, db.*): that history gives way to the copied one
        only=
        [ "$tbl" = events ] && only=" WHERE event NOT LIKE 'server.%' AND event NOT LIKE 'db.%'"
        echo "  IF EXISTS (SELECT 1 FROM \"$tbl\"$only) THEN"
        echo "    RAISE EXCEPTION 'table $tbl of the target is not empty: the copy goes only into a new database';"
        echo "  END IF;"
        [ -n "$only" ] && echo "  DELETE FROM \"$tbl\";"
    done < "$work/copied"
    echo "END \$\$;"
} >> "$work/head.sql"
while read -r tbl rows; do
    echo "ANALYZE \"$tbl\";" >> "$work/tail.sql"
done < "$work/copied"

# one PostgreSQL transaction fed by one SQLite read transaction
if ! { cat "$work/head.sql"; sq < "$work/read.sql"; cat "$work/tail.sql"; } |
        pq --single-transaction -f - >/dev/null 2>"$work/err"; then
    die "copy failed, nothing was written: $(grep -m 1 -v "^$" "$work/err" | sed "s/^psql:[^ ]* //")"
fi

# what arrived: each table's row count, on both sides
status=0
while read -r tbl rows; do
    got=$(pq -c "SELECT count(*) FROM \"$tbl\"")
    printf '%s: %s rows copied\n' "$tbl" "$got"
    [ "$got" -eq "$rows" ] || { echo "$me: $tbl has $got rows in PostgreSQL, $rows in SQLite" >&2; status=1; }
done < "$work/copied"
exit $status
