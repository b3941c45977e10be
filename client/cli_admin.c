/* cli_admin.c -- baton backup (online copy of the database) and baton run (a function). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cli.h"

/* ---- backup ---------------------------------------------------------------- */

/* Run sql on db; on failure print "<what>: <error>" and return -1. */
static int
sql_exec(sqlite3 *db, const char *sql, const char *what)
{
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cli_fail("%s: %s", what, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int
cli_backup(int argc, char **argv)
{
    const char *db = getenv("BATON_DB"), *file;
    bool force = false;
    struct cli_opt o[] = {{"db", true, &db, NULL}, {"force", false, NULL, &force}, {0}};
    char *pos[1], tmp[4096];
    int n = cli_args(argc, argv, o, pos, 1, 1), rc;
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *bk;
    sqlite3_stmt *st = NULL;
    struct stat sb;
    bool ok = false;
    int pages = 0;

    CLI_ARGS_OR_EXIT(n);
    file = pos[0];
    if (!db || !*db)
        db = "./data/baton.db";
    if (stat(file, &sb) == 0 && !force)
        return cli_fail("%s exists; use --force to overwrite it", file);
    if (stat(db, &sb) != 0)
        return cli_fail("cannot read database %s: %s", db, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s.partial", file);
    unlink(tmp);
    if (sqlite3_open_v2(db, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        cli_fail("cannot open %s: %s", db, src ? sqlite3_errmsg(src) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(src, 10000);
    /* One read transaction for the whole copy: every step reads the same
     * snapshot, and in WAL mode it does not stop batond from writing. */
    if (sql_exec(src, "BEGIN; SELECT count(*) FROM sqlite_master;", db) < 0)
        goto out;
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        cli_fail("cannot create %s: %s", tmp, dst ? sqlite3_errmsg(dst) : "out of memory");
        goto out;
    }
    if (!(bk = sqlite3_backup_init(dst, "main", src, "main"))) {
        cli_fail("backup of %s: %s", db, sqlite3_errmsg(dst));
        goto out;
    }
    do {
        rc = sqlite3_backup_step(bk, 128);
        if (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
            sqlite3_sleep(rc == SQLITE_OK ? 1 : 20);
    } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
    pages = sqlite3_backup_pagecount(bk);
    sqlite3_backup_finish(bk);
    if (rc != SQLITE_DONE) {
        cli_fail("backup of %s: %s", db, sqlite3_errstr(rc));
        goto out;
    }
    sql_exec(src, "COMMIT", db);
    /* a standalone file: no -wal beside the copy */
    if (sql_exec(dst, "PRAGMA journal_mode=DELETE", tmp) < 0)
        goto out;
    if (sqlite3_prepare_v2(dst, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        cli_fail("integrity check of %s: %s", tmp, sqlite3_errmsg(dst));
        goto out;
    }
    if (strcmp((const char *)sqlite3_column_text(st, 0), "ok")) {
        cli_fail("integrity check of the copy failed: %s", sqlite3_column_text(st, 0));
        goto out;
    }
    ok = true;
out:
    sqlite3_finalize(st);
    sqlite3_close(src);
    if (dst && sqlite3_close(dst) != SQLITE_OK)
        ok = false;
    if (ok && rename(tmp, file) != 0) {
        cli_fail("cannot rename %s to %s: %s", tmp, file, strerror(errno));
        ok = false;
    }
    if (!ok) {
        unlink(tmp);
        return CLI_EXIT_ERR;
    }
    if (cli_json_out) {
        json_t *j = json_pack("{s:s, s:s, s:i, s:s}", "db", db, "file", file, "pages", pages,
                              "integrity", "ok");
        cli_print_json(j);
        json_decref(j);
    } else
        printf("backed up %s to %s (%d pages, integrity ok)\n", db, file, pages);
    return CLI_EXIT_OK;
}

/* ---- run (Convex functions) ---------------------------------------------- */

int
cli_run(int argc, char **argv)
{
    char *pos[2];
    int n = cli_args(argc, argv, NULL, pos, 1, 2);
    json_t *fargs, *j, *v;

    CLI_ARGS_OR_EXIT(n);
    fargs = n == 2 ? json_loads(pos[1], JSON_DECODE_ANY, NULL) : json_object();
    if (!fargs)
        return cli_usage_error("ARGS is not valid JSON: %s", pos[1]);
    if (cli_call("POST", strdup("/api/function"),
                 json_pack("{s:s, s:o, s:s}", "path", pos[0], "args", fargs, "format", "json"),
                 &j) < 0)
        return CLI_EXIT_ERR;
    if (json_is_string(json_object_get(j, "status")) &&
        strcmp(json_string_value(json_object_get(j, "status")), "success")) {
        cli_fail("function error: %s", json_string_value(json_object_get(j, "errorMessage")) ?: "?");
        json_decref(j);
        return CLI_EXIT_ERR;
    }
    v = json_object_get(j, "value");
    cli_print_json(v ? v : json_null());
    json_decref(j);
    return CLI_EXIT_OK;
}

