/* harness.h -- what the tests share: a real batond process on a free port
 * with a temporary database, and an HTTP client over libcurl. */
#ifndef HARNESS_H
#define HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#include <check.h>
#include <jansson.h>

#define TEST_SECRET "test-secret-0123456789"

struct server {
    pid_t pid;
    int port;
    char dir[256];          /* temp dir holding baton.db and the logs */
    char db[640];           /* BATON_DB when not dir/baton.db: on the PostgreSQL
                             * backend (BATON_TEST_BACKEND=postgres) a fresh
                             * schema's URL unless set before the first
                             * start; kept across restarts */
    char url[64];
    char log[300];          /* batond's stdout (JSON lines) */
    const char *env[32];    /* extra KEY=VALUE settings, NULL-terminated */
};

/* Start batond in a fresh temp dir (or s->dir when already set, to restart
 * on the same database). extra: NULL-terminated KEY=VALUE list, may be
 * NULL. Fails the test on error. */
void server_start(struct server *s, const char *const *extra);
/* Start and return the exit status instead of failing when batond exits
 * before serving (for start-up refusal tests). -1 when it did start. */
int server_try_start(struct server *s, const char *const *extra, char *err, size_t n);
int server_stop(struct server *s);      /* SIGTERM; returns exit status */
void server_kill(struct server *s);     /* SIGKILL and reap */
void server_restart(struct server *s);  /* SIGTERM, start again, same dir */
void server_cleanup(struct server *s);  /* stop if running, remove dir */
/* The whole file at path as a new string ("" when it cannot be read). */
char *file_text(const char *path);
/* Sort the claim times v (ms, the store's clock) and check a rate limit
 * of limit claims per period: no window of period ms holds limit + 1 of
 * them, and the first `windows` windows from the first claim hold
 * limit * windows of them, within 10 %. */
void assert_paced(int64_t *v, int n, int limit, int64_t period, int windows);
/* count of lines in batond's stdout containing needle */
int server_log_count(struct server *s, const char *needle);
/* A sample of GET /metrics, series exact ("name{labels}"); -1 when absent. */
double server_metric(struct server *s, const char *series);
/* One integer answer of sql (-1 when no row) on s's database, whichever
 * backend it runs on: for tests that read how a result is stored. Fails
 * the test on error. */
long long server_sql(struct server *s, const char *sql);
/* true (and a one-line reason on stderr) when the run is on PostgreSQL:
 * for the parts of tests that look at SQLite's files. */
bool sqlite_only(const char *why);

struct resp {
    long status;
    json_t *json;           /* parsed body, or NULL */
    char *body;             /* raw body, NUL-terminated */
};

/* One HTTP request. auth: NULL for "Bearer TEST_SECRET", "" for none, else
 * the whole Authorization value. body may be NULL. Returns 0 or -1 on a
 * transport error. Free with resp_free. */
int http_req(struct server *s, const char *method, const char *path, const char *body,
             size_t len, const char *auth, const char *content_type, struct resp *out);
/* The same without Authorization and with one header of the caller's
 * (omitted when value is NULL): for webhooks and their own secrets. */
int http_req_h(struct server *s, const char *method, const char *path, const char *body,
               size_t len, const char *name, const char *value, struct resp *out);
void resp_free(struct resp *r);

/* Convenience: request with a JSON body (stolen, may be NULL), assert the
 * status, return the parsed body (caller decrefs; may be NULL). */
json_t *call(struct server *s, const char *method, const char *path, json_t *body,
             long expect_status);
#define CALL(s, m, p, b, st) call((s), (m), (p), (b), (st))

/* Databases for the migration tests (schema/sqlite, server/store_sqlite.c). These
 * write the database file with SQL because the migration tests need files
 * no route can make: older schemas, rows in them from before an upgrade, a
 * schema_migrations table from a newer batond. Every other test makes its
 * state through the routes (reading the file to check a result is fine). */
/* Make the database at path the way batond made it before the
 * schema_migrations table existed: the first k embedded migrations, each in
 * its own transaction, counted in PRAGMA user_version. Fails the test on
 * error. */
void db_make_counted(const char *path, int k);
/* Into buf: "1:001_core.sql 2:..." -- the rows of schema_migrations in
 * version order ("" when there are none, "(no table)" without the table). */
void db_recorded(const char *path, char *buf, size_t n);
/* The same string for the first k embedded migrations; k < 0 for all. */
void db_known(int k, char *buf, size_t n);
int db_known_count(void);               /* how many migrations are embedded */
/* One integer answer of sql on the database at path (-1 when no row). */
long long db_int(const char *path, const char *sql);
/* Run sql on the database at path; fails the test on error. For the
 * migration tests only (see above). */
void db_exec(const char *path, const char *sql);

/* Path of a program built beside batond (BATOND's directory, so the
 * sanitizer build finds its own baton-agent), into buf. Returns buf. */
const char *harness_bin(const char *name, char *buf, size_t n);

/* Suites */
Suite *suite_config(void);
Suite *suite_client(void);      /* libbaton (client/) */
Suite *suite_cli(void);         /* the baton CLI */
Suite *suite_fields(void);
Suite *suite_db(void);
Suite *suite_store(void);
Suite *suite_store_pg(void);
Suite *suite_http(void);
/* jobs */
Suite *suite_jobs(void);
/* queue controls (pause, resume) */
Suite *suite_queues(void);
/* leases */
Suite *suite_leases(void);
/* schedules and the cron parser */
Suite *suite_schedules(void);
/* dedupe and sessions */
Suite *suite_dedupe(void);
Suite *suite_sessions(void);
/* messages and webhooks */
Suite *suite_messages(void);
/* convex compatibility */
Suite *suite_convex(void);
/* memory under floods of error paths */
Suite *suite_resources(void);
/* deploy files and docs */
Suite *suite_deploy(void);
/* moving a SQLite database to PostgreSQL (deploy/sqlite-to-postgres.sh) */
Suite *suite_migrate(void);
/* durability and performance */
Suite *suite_perf(void);
/* baton-agent and the runbook scenarios */
Suite *suite_scenarios(void);
/* hostile clients: slow connections, URLs, limits */
Suite *suite_hardening(void);
/* the web console and the web chat (HTTP and browser tests) */
Suite *suite_console(void);
/* several batond on one PostgreSQL database */
Suite *suite_replicas(void);

#endif
