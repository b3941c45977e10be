/* harness.c -- start and stop real batond processes; talk HTTP to them. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "batond.h"
#include "store_sqlite.h"   /* the migration helpers build old database files */
#include "harness.h"
#include "pg.h"

static const char *
batond_path(void)
{
    const char *p = getenv("BATOND");
    return p ? p : "build/batond";
}

static void
msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

char *
file_text(const char *path)
{
    FILE *f = fopen(path, "r");
    char *s = NULL;
    size_t n = 0;

    if (!f)
        return strdup("");
    if (getdelim(&s, &n, 0, f) < 0) {
        free(s);
        s = strdup("");
    }
    fclose(f);
    return s;
}

static int
cmp_ms(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

void
assert_paced(int64_t *v, int n, int limit, int64_t period, int windows)
{
    int in = 0, want = limit * windows;

    ck_assert_int_gt(n, 0);
    qsort(v, (size_t)n, sizeof *v, cmp_ms);
    for (int i = 0; i + limit < n; i++)
        ck_assert_msg(v[i + limit] - v[i] >= period, "%d claims within %lld ms (claims %d..%d)", limit + 1,
                      (long long)(v[i + limit] - v[i]), i, i + limit);
    for (int i = 0; i < n; i++)
        in += v[i] < v[0] + period * windows;
    ck_assert_msg(in * 10 >= want * 9 && in * 10 <= want * 11,
                  "%d claims in %d windows of %lld ms, limit %d a window", in, windows, (long long)period,
                  limit);
}

/* Wait for the server.started line; return its port or -1 if batond died. */
static int
wait_started(struct server *s, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        FILE *f = fopen(s->log, "r");
        char line[4096];
        int status;

        if (f) {
            while (fgets(line, sizeof line, f)) {
                char *p = strstr(line, "\"event\":\"server.started\"");
                char *q = strstr(line, "\"port\":");
                if (p && q) {
                    fclose(f);
                    return atoi(q + 7);
                }
            }
            fclose(f);
        }
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(status) ? -100 - WEXITSTATUS(status) : -2;
        }
        msleep(10);
    }
    return -1;
}

int
server_try_start(struct server *s, const char *const *extra, char *err, size_t n)
{
    char errlog[300], db[700];
    int port;

    if (!s->dir[0]) {
        snprintf(s->dir, sizeof s->dir, "/tmp/baton-test-XXXXXX");
        if (!mkdtemp(s->dir))
            return -2;
        if (pg_test_backend() && !s->db[0])
            snprintf(s->db, sizeof s->db, "%s", pg_test_url());
    }
    if (extra) {
        int i = 0;
        for (; extra[i] && i < 31; i++)
            s->env[i] = extra[i];
        s->env[i] = NULL;
    }
    snprintf(s->log, sizeof s->log, "%s/batond.log", s->dir);
    snprintf(errlog, sizeof errlog, "%s/batond.err", s->dir);
    if (s->db[0])
        snprintf(db, sizeof db, "BATON_DB=%s", s->db);
    else
        snprintf(db, sizeof db, "BATON_DB=%s/baton.db", s->dir);
    unlink(s->log);
    s->pid = fork();
    if (s->pid == 0) {
        int out = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int er = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(out, 1);
        dup2(er, 2);
        setenv("BATON_LISTEN", "127.0.0.1:0", 1);
        setenv("AGENT_SECRET", TEST_SECRET, 1);
        setenv("BATON_SWEEP_INTERVAL_MS", "200", 1);
        putenv(strdup(db));
        for (int i = 0; s->env[i]; i++) {
            if (!strncmp(s->env[i], "-", 1))
                unsetenv(s->env[i] + 1);     /* "-NAME" removes a variable */
            else
                putenv(strdup(s->env[i]));
        }
        execl(batond_path(), "batond", (char *)NULL);
        _exit(127);
    }
    port = wait_started(s, 15000);
    if (port < 0) {
        FILE *f = fopen(errlog, "r");
        if (err && n) {
            err[0] = 0;
            if (f && fgets(err, (int)n, f))
                err[strcspn(err, "\n")] = 0;
        }
        if (f)
            fclose(f);
        if (s->pid)
            server_kill(s);
        return port <= -100 ? -100 - port : 255;
    }
    s->port = port;
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", port);
    return -1;
}

void
server_start(struct server *s, const char *const *extra)
{
    char err[512];
    int rc = server_try_start(s, extra, err, sizeof err);

    ck_assert_msg(rc == -1, "batond did not start (exit %d): %s", rc, err);
}

int
server_stop(struct server *s)
{
    int status = -1;

    if (!s->pid)
        return -1;
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 3000; i++) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        msleep(10);
    }
    server_kill(s);
    return -1;
}

void
server_kill(struct server *s)
{
    int status;

    if (!s->pid)
        return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
}

void
server_restart(struct server *s)
{
    ck_assert_int_eq(server_stop(s), 0);
    server_start(s, NULL);
}

void
server_cleanup(struct server *s)
{
    char cmd[300];

    server_kill(s);
    if (s->dir[0] && !getenv("BATON_KEEP_TEST_DIRS")) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", s->dir);
    }
    s->dir[0] = 0;
    s->db[0] = 0;
}

static sqlite3 *db_at(const char *path);

long long
server_sql(struct server *s, const char *sql)
{
    char path[300];
    long long v = -1;

    if (!s->db[0]) {
        sqlite3 *db;
        sqlite3_stmt *st;
        int rc;

        snprintf(path, sizeof path, "%s/baton.db", s->dir);
        db = db_at(path);
        sqlite3_busy_timeout(db, 10000);
        ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
        rc = sqlite3_step(st);
        ck_assert_msg(rc == SQLITE_ROW || rc == SQLITE_DONE, "%s: %s", sql, sqlite3_errmsg(db));
        if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
    } else {
        PGconn *c = PQconnectdb(s->db);
        PGresult *r = PQexec(c, sql);

        ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK,
                      "%s: %s", sql, PQresultErrorMessage(r));
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
            v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        PQfinish(c);
    }
    return v;
}

bool
sqlite_only(const char *why)
{
    if (!pg_test_backend())
        return false;
    fprintf(stderr, "skipped on postgres: %s\n", why);
    return true;
}

int
server_log_count(struct server *s, const char *needle)
{
    FILE *f = fopen(s->log, "r");
    char line[8192];
    int n = 0;

    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

double
server_metric(struct server *s, const char *series)
{
    struct resp r;
    const char *p;
    size_t n = strlen(series);
    double v = -1;

    ck_assert_int_eq(http_req(s, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    for (p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    resp_free(&r);
    return v;
}

/* ---- HTTP --------------------------------------------------------------- */

struct buf {
    char *p;
    size_t n;
};

static size_t
collect(char *data, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t len = size * nmemb;
    char *p = realloc(b->p, b->n + len + 1);

    if (!p)
        return 0;
    memcpy(p + b->n, data, len);
    b->p = p;
    b->n += len;
    b->p[b->n] = 0;
    return len;
}

static int
request(struct server *s, const char *method, const char *path, const char *body, size_t len,
        const char *auth, const char *content_type, const char *extra, struct resp *out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct buf b = {calloc(1, 1), 0};
    char url[1024], hdr[512];
    CURLcode rc;

    memset(out, 0, sizeof *out);
    snprintf(url, sizeof url, "%s%s", s->url, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (!auth)
        h = curl_slist_append(h, "Authorization: Bearer " TEST_SECRET);
    else if (*auth) {
        snprintf(hdr, sizeof hdr, "Authorization: %s", auth);
        h = curl_slist_append(h, hdr);
    }
    if (body) {
        snprintf(hdr, sizeof hdr, "Content-Type: %s", content_type ? content_type : "application/json");
        h = curl_slist_append(h, hdr);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (extra)
        h = curl_slist_append(h, extra);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        out->body = b.p;
        out->json = b.n ? json_loadb(b.p, b.n, JSON_DECODE_ANY, NULL) : NULL;
    } else
        free(b.p);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? 0 : -1;
}

int
http_req(struct server *s, const char *method, const char *path, const char *body, size_t len,
         const char *auth, const char *content_type, struct resp *out)
{
    return request(s, method, path, body, len, auth, content_type, NULL, out);
}

int
http_req_h(struct server *s, const char *method, const char *path, const char *body, size_t len,
           const char *name, const char *value, struct resp *out)
{
    char hdr[1024];

    snprintf(hdr, sizeof hdr, "%s: %s", name, value ? value : "");
    return request(s, method, path, body, len, "", NULL, value ? hdr : NULL, out);
}

void
resp_free(struct resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

json_t *
call(struct server *s, const char *method, const char *path, json_t *body, long expect)
{
    struct resp r;
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_t *out;

    json_decref(body);
    ck_assert_msg(http_req(s, method, path, text, text ? strlen(text) : 0, NULL, NULL, &r) == 0,
                  "%s %s: no answer", method, path);
    ck_assert_msg(r.status == expect, "%s %s %s: status %ld, expected %ld: %s", method, path,
                  text ? text : "", r.status, expect, r.body ? r.body : "");
    free(text);
    out = r.json;
    r.json = NULL;
    resp_free(&r);
    return out;
}

/* ---- databases for the migration tests ----------------------------------- */

static sqlite3 *
db_at(const char *path)
{
    sqlite3 *db = NULL;

    ck_assert_msg(sqlite3_open(path, &db) == SQLITE_OK, "cannot open %s", path);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

void
db_exec(const char *path, const char *sql)
{
    sqlite3 *db = db_at(path);
    char *err = NULL;

    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql, err ? err : "?");
    sqlite3_close(db);
}

long long
db_int(const char *path, const char *sql)
{
    sqlite3 *db = db_at(path);
    sqlite3_stmt *st;
    long long v = -1;

    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

void
db_make_counted(const char *path, int k)
{
    sqlite3 *db = db_at(path);

    ck_assert_int_le(k, db_known_count());
    sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    for (int i = 0; i < k; i++) {
        char *err = NULL, set[64];

        snprintf(set, sizeof set, "PRAGMA user_version=%d", i + 1);
        ck_assert_msg(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &err) == SQLITE_OK &&
                      sqlite3_exec(db, migrations[i].sql, NULL, NULL, &err) == SQLITE_OK &&
                      sqlite3_exec(db, set, NULL, NULL, &err) == SQLITE_OK &&
                      sqlite3_exec(db, "COMMIT", NULL, NULL, &err) == SQLITE_OK,
                      "%s: %s", migrations[i].name, err ? err : "?");
    }
    sqlite3_close(db);
}

void
db_recorded(const char *path, char *buf, size_t n)
{
    sqlite3 *db = db_at(path);
    sqlite3_stmt *st;
    size_t len = 0;

    buf[0] = 0;
    if (sqlite3_prepare_v2(db, "SELECT version, name FROM schema_migrations ORDER BY version", -1, &st, NULL)
        != SQLITE_OK) {
        snprintf(buf, n, "(no table)");
        sqlite3_close(db);
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW && len < n)
        len += (size_t)snprintf(buf + len, n - len, "%s%d:%s", len ? " " : "", sqlite3_column_int(st, 0),
                                (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

int
db_known_count(void)
{
    int k = 0;

    while (migrations[k].name)
        k++;
    return k;
}

void
db_known(int k, char *buf, size_t n)
{
    size_t len = 0;

    buf[0] = 0;
    if (k < 0)
        k = db_known_count();
    for (int i = 0; i < k && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%d:%s", len ? " " : "", i + 1, migrations[i].name);
}

const char *
harness_bin(const char *name, char *buf, size_t n)
{
    const char *d = getenv("BATOND");
    char dir[512];

    if (!d)
        snprintf(buf, n, "build/%s", name);
    else {
        snprintf(dir, sizeof dir, "%s", d);
        snprintf(buf, n, "%s/%s", dirname(dir), name);
    }
    return buf;
}
