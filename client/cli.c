/* cli.c -- baton, the operator's command line over libbaton.
 *
 * DESIGN
 * Global flags (--url, --secret, --json) are taken out of argv wherever
 * they appear; the rest is "<command> [<subcommand>] [options] [args]",
 * dispatched through the command table at the end of the file. Each command
 * parses its own options with opts_parse, makes its calls through call()
 * (which prints "baton: HTTP <status> <code>: <message>" on failure) and
 * prints either a human table or, with --json, the raw answer. Exit codes:
 * 0 ok, 1 error, 2 usage; `alerts check` uses 2 for "alert".
 */
#define _GNU_SOURCE             /* open_memstream, strcasestr */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "baton.h"

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

static baton_client *cli;
static bool json_out;
static const char *cur_usage;   /* the usage text of the running command */

/* ---- output helpers -------------------------------------------------------- */

static int
usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("baton: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", cur_usage);
    return EXIT_USAGE;
}

static int
fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
fail(const char *fmt, ...)
{
    va_list ap;

    fputs("baton: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_ERR;
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
fmt_time(int64_t ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
fmt_duration(int64_t ms, char *buf, size_t n)
{
    if (ms < 0)
        snprintf(buf, n, "-%" PRId64 "ms", -ms);
    else if (ms < 1000)
        snprintf(buf, n, "%" PRId64 "ms", ms);
    else if (ms < 120000)
        snprintf(buf, n, "%.1fs", (double)ms / 1000);
    else if (ms < 7200000)
        snprintf(buf, n, "%" PRId64 "m", ms / 60000);
    else if (ms < 172800000)
        snprintf(buf, n, "%" PRId64 "h", ms / 3600000);
    else
        snprintf(buf, n, "%" PRId64 "d", ms / 86400000);
}

static bool
ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);

    return a >= b && !strcmp(s + a - b, suffix);
}

static bool
is_time_key(const char *k)
{
    return ends_with(k, "At") || ends_with(k, "Until") || !strcmp(k, "time") ||
           !strcmp(k, "firstSeenAt");
}

/* Human text of one value under key; returns a malloc'ed string. */
static char *
cell(const char *key, json_t *v)
{
    char buf[64];

    if (!v || json_is_null(v))
        return strdup("-");
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_integer(v)) {
        int64_t i = json_integer_value(v);
        if (is_time_key(key) && i > 0)
            fmt_time(i, buf, sizeof buf);
        else if (ends_with(key, "Ms"))
            fmt_duration(i, buf, sizeof buf);
        else
            snprintf(buf, sizeof buf, "%" PRId64, i);
        return strdup(buf);
    }
    if (json_is_boolean(v))
        return strdup(json_is_true(v) ? "true" : "false");
    {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        if (s && strlen(s) > 60)
            strcpy(s + 56, "...}");
        return s ? s : strdup("?");
    }
}

static void
print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);

    puts(s ? s : "null");
    free(s);
}

/* "key: value" lines for one object, keys aligned. */
static void
print_object(json_t *o)
{
    const char *k;
    json_t *v;
    int w = 0;

    json_object_foreach(o, k, v)
        if ((int)strlen(k) > w)
            w = (int)strlen(k);
    json_object_foreach(o, k, v) {
        char *c;
        if (json_is_object(v) || json_is_array(v))
            c = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        else
            c = cell(k, v);
        printf("%-*s  %s\n", w + 1, k, c ? c : "?");
        free(c);
    }
}

/* The list in an answer: the answer itself when it is an array, else its
 * member `key`, else its first array member. Borrowed. */
static json_t *
rows_of(json_t *j, const char *key)
{
    const char *k;
    json_t *v;

    if (json_is_array(j))
        return j;
    if (json_is_array(json_object_get(j, key)))
        return json_object_get(j, key);
    json_object_foreach(j, k, v)
        if (json_is_array(v))
            return v;
    return NULL;
}

/* Print rows (array of objects) as a table of cols (NULL-terminated keys);
 * cols NULL: the scalar keys of the first row. */
static void
print_table(json_t *rows, const char *const *cols)
{
    const char *auto_cols[12];
    size_t nrows = json_array_size(rows), ncols = 0;

    if (!cols) {
        const char *k;
        json_t *v;
        json_object_foreach(json_array_get(rows, 0), k, v)
            if (!json_is_object(v) && !json_is_array(v) && ncols < 11)
                auto_cols[ncols++] = k;
        auto_cols[ncols] = NULL;
        cols = auto_cols;
    }
    for (ncols = 0; cols[ncols]; ncols++)
        ;
    if (!nrows) {
        puts("(none)");
        return;
    }
    {
        char **cells = calloc((nrows + 1) * ncols, sizeof *cells);
        int *w = calloc(ncols, sizeof *w);
        if (!cells || !w) {
            free(cells);
            free(w);
            return;
        }
        for (size_t c = 0; c < ncols; c++) {
            char *h = strdup(cols[c]);
            for (char *p = h; p && *p; p++)
                if (*p >= 'a' && *p <= 'z')
                    *p = (char)(*p - 'a' + 'A');
            cells[c] = h;
        }
        for (size_t r = 0; r < nrows; r++)
            for (size_t c = 0; c < ncols; c++)
                cells[(r + 1) * ncols + c] = cell(cols[c], json_object_get(json_array_get(rows, r), cols[c]));
        for (size_t i = 0; i < (nrows + 1) * ncols; i++) {
            int len = cells[i] ? (int)strlen(cells[i]) : 1;
            if (len > w[i % ncols])
                w[i % ncols] = len;
        }
        for (size_t r = 0; r <= nrows; r++) {
            for (size_t c = 0; c < ncols; c++) {
                const char *s = cells[r * ncols + c] ? cells[r * ncols + c] : "?";
                if (c + 1 < ncols)
                    printf("%-*s  ", w[c], s);
                else
                    printf("%s\n", s);
            }
        }
        for (size_t i = 0; i < (nrows + 1) * ncols; i++)
            free(cells[i]);
        free(cells);
        free(w);
    }
}

/* ---- options --------------------------------------------------------------- */

struct opt {
    const char *name;           /* without "--" */
    bool takes_value;
    const char **value;         /* for options with a value */
    bool *flag;                 /* for flags */
};

/* Parse argv[0..argc) (argv[0] is the first argument, not the command) into
 * opts and up to maxpos positional arguments. Returns the number of
 * positionals, -1 after printing a usage error (exit 2), or -2 after
 * printing the help (exit 0). */
static int
opts_parse(int argc, char **argv, const struct opt *opts, char **pos, int maxpos)
{
    int npos = 0;
    bool only_pos = false;

    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        const struct opt *o;
        char *eq;
        size_t len;

        if (only_pos || a[0] != '-' || !a[1] || (a[1] != '-' && strcmp(a, "-h"))) {
            if (npos >= maxpos) {
                usage_error("unexpected argument '%s'", a);
                return -1;
            }
            pos[npos++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(cur_usage, stdout);
            return -2;
        }
        eq = strchr(a, '=');
        len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        for (o = opts; o && o->name; o++)
            if (strlen(o->name) == len && !strncmp(o->name, a + 2, len))
                break;
        if (!o || !o->name) {
            usage_error("unknown option '%s'", a);
            return -1;
        }
        if (!o->takes_value) {
            if (eq) {
                usage_error("option '--%s' takes no value", o->name);
                return -1;
            }
            *o->flag = true;
        } else if (eq)
            *o->value = eq + 1;
        else if (i + 1 < argc)
            *o->value = argv[++i];
        else {
            usage_error("option '--%s' needs a value", o->name);
            return -1;
        }
    }
    return npos;
}

/* Parse opts and demand between lo and hi positionals. Returns the count,
 * or -1 (usage error printed) / -2 (help printed). */
static int
args(int argc, char **argv, const struct opt *opts, char **pos, int lo, int hi)
{
    int n = opts_parse(argc, argv, opts, pos, hi);

    if (n >= 0 && n < lo) {
        usage_error("missing argument");
        return -1;
    }
    return n;
}

#define ARGS_OR_EXIT(n) \
    do { \
        if ((n) == -2) \
            return EXIT_OK; \
        if ((n) < 0) \
            return EXIT_USAGE; \
    } while (0)

static int
parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* "24h", "10m", "30s", "500ms", "2d" or plain milliseconds. */
static int
parse_duration(const char *s, int64_t *out)
{
    char *end;
    double v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -1;
    if (!*end || !strcmp(end, "ms"))
        *out = (int64_t)v;
    else if (!strcmp(end, "s"))
        *out = (int64_t)(v * 1000);
    else if (!strcmp(end, "m"))
        *out = (int64_t)(v * 60000);
    else if (!strcmp(end, "h"))
        *out = (int64_t)(v * 3600000);
    else if (!strcmp(end, "d"))
        *out = (int64_t)(v * 86400000);
    else
        return -1;
    return 0;
}

/* A time argument: epoch ms, or a duration meaning "that long ago". */
static int
parse_when(const char *s, int64_t *out)
{
    int64_t d;

    if (parse_int(s, out) == 0 && *out > 100000000000LL)
        return 0;
    if (parse_duration(s, &d) < 0)
        return -1;
    *out = now_ms() - d;
    return 0;
}

/* ---- calls ------------------------------------------------------------------ */

/* Build a path; every %s argument is escaped. Caller frees. */
static char *
path_of(const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);

    if (!f)
        return NULL;
    va_start(ap, fmt);
    for (const char *p = fmt; *p; p++) {
        if (p[0] == '%' && p[1] == 's') {
            char *e = baton_escape(va_arg(ap, const char *));
            fputs(e ? e : "", f);
            free(e);
            p++;
        } else
            fputc(*p, f);
    }
    va_end(ap);
    fclose(f);
    return out;
}

/* Append "?k=v" / "&k=v" to *path (reallocated) when v is not NULL. */
static void
query_add(char **path, const char *k, const char *v)
{
    char *e, *p;

    if (!v || !*path)
        return;
    e = baton_escape(v);
    if (e && asprintf(&p, "%s%c%s=%s", *path, strchr(*path, '?') ? '&' : '?', k, e) >= 0) {
        free(*path);
        *path = p;
    }
    free(e);
}

/* One call; prints the error and returns -1 on failure. body is stolen,
 * path freed. *out gets the answer (may be NULL). */
static int
call(const char *method, char *path, json_t *body, json_t **out)
{
    baton_error e;
    json_t *o = NULL;
    int rc;

    if (!path) {
        json_decref(body);
        fail("out of memory");
        return -1;
    }
    rc = baton_call(cli, method, path, body, &o, &e);
    json_decref(body);
    if (rc < 0) {
        if (e.status == 560)
            fail("function error: %s", e.message);
        else if (!e.status)
            fail("%s", baton_strerror(&e));     /* its message names the request already */
        else
            fail("%s %s: %s", method, path, baton_strerror(&e));
        json_decref(o);
        o = NULL;
    }
    free(path);
    if (out)
        *out = o;
    else
        json_decref(o);
    return rc;
}

/* GET path (freed) and print it: raw with --json, else the rows under key
 * as a table with cols. */
static int
show_list(char *path, const char *key, const char *const *cols)
{
    json_t *j;

    if (call("GET", path, NULL, &j) < 0)
        return EXIT_ERR;
    if (json_out)
        print_json(j);
    else
        print_table(rows_of(j, key), cols);
    json_decref(j);
    return EXIT_OK;
}

static json_t *
unwrap(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);

    return json_is_object(v) ? v : j;
}

/* ---- jobs ----------------------------------------------------------------------- */

static const char jobs_usage[] =
    "usage: baton jobs <subcommand> [options]\n"
    "\n"
    "  list [--queue Q] [--status S] [--limit N] [--cursor C]   jobs, newest first\n"
    "  get ID                                   one job\n"
    "  pending [--queue Q]                      pending and processing jobs (stale marked)\n"
    "  retry ID                                 a failed or processing job back to pending\n"
    "  fail ID [--reason R] [--message M]       fail a job now (its worker gets claim_lost)\n"
    "  cancel ID                                fail a job now with reason cancelled\n"
    "  requeue-stale                            run the stale sweep now\n"
    "  enqueue [--queue Q] [--priority N] [--delay MS] [--max-attempts N]\n"
    "          [--dedupe-key K] [PAYLOAD-JSON]  add a job (queue agent by default)\n";

static const char *const job_cols[] = {"id", "queue", "status", "attempts", "priority",
                                       "updatedAt", "errorReason", NULL};

static int
jobs_list(int argc, char **argv)
{
    const char *queue = NULL, *status = NULL, *limit = NULL, *cursor = NULL;
    struct opt o[] = {{"queue", true, &queue, NULL}, {"status", true, &status, NULL},
                      {"limit", true, &limit, NULL}, {"cursor", true, &cursor, NULL}, {0}};
    char *pos[1], *path = strdup("/v1/jobs");
    int n = args(argc, argv, o, pos, 0, 0);
    json_t *j;
    const char *next;

    if (n < 0)
        free(path);
    ARGS_OR_EXIT(n);
    query_add(&path, "queue", queue);
    query_add(&path, "status", status);
    query_add(&path, "limit", limit);
    query_add(&path, "cursor", cursor);
    if (call("GET", path, NULL, &j) < 0)
        return EXIT_ERR;
    if (json_out)
        print_json(j);
    else {
        print_table(rows_of(j, "jobs"), job_cols);
        if ((next = json_string_value(json_object_get(j, "nextCursor"))))
            printf("more: baton jobs list --cursor %s\n", next);
    }
    json_decref(j);
    return EXIT_OK;
}

static int
jobs_get(int argc, char **argv)
{
    char *pos[1];
    int n = args(argc, argv, NULL, pos, 1, 1);
    json_t *j;

    ARGS_OR_EXIT(n);
    if (call("GET", path_of("/v1/jobs/%s", pos[0]), NULL, &j) < 0)
        return EXIT_ERR;
    if (json_out)
        print_json(j);
    else
        print_object(unwrap(j, "job"));
    json_decref(j);
    return EXIT_OK;
}

static int
jobs_pending(int argc, char **argv)
{
    static const char *const cols[] = {"id", "queue", "status", "attempts", "lockedBy",
                                       "lockedUntil", "stale", NULL};
    const char *queue = NULL;
    struct opt o[] = {{"queue", true, &queue, NULL}, {0}};
    char *pos[1], *path;
    int n = args(argc, argv, o, pos, 0, 0);

    ARGS_OR_EXIT(n);
    path = strdup("/v1/jobs/pending");
    query_add(&path, "queue", queue);
    return show_list(path, "jobs", cols);
}

/* Print the state of a job an operator route answered with. */
static void
print_job_change(json_t *j, const char *id)
{
    json_t *job = unwrap(j, "job");
    const char *st = json_string_value(json_object_get(job, "status"));

    if (json_out)
        print_json(j);
    else
        printf("job %s: %s\n", id, st ? st : "ok");
}

static int
jobs_retry(int argc, char **argv)
{
    char *pos[1];
    int n = args(argc, argv, NULL, pos, 1, 1);
    json_t *j;

    ARGS_OR_EXIT(n);
    if (call("POST", path_of("/v1/jobs/%s/retry", pos[0]), json_object(), &j) < 0)
        return EXIT_ERR;
    print_job_change(j, pos[0]);
    json_decref(j);
    return EXIT_OK;
}

static int
jobs_fail(int argc, char **argv)
{
    const char *reason = "failed_by_operator", *message = "failed by an operator";
    struct opt o[] = {{"reason", true, &reason, NULL}, {"message", true, &message, NULL}, {0}};
    char *pos[1];
    int n = args(argc, argv, o, pos, 1, 1);
    json_t *j;

    ARGS_OR_EXIT(n);
    if (call("POST", path_of("/v1/jobs/%s/fail-now", pos[0]),
             json_pack("{s:s, s:s}", "errorReason", reason, "errorMessage", message), &j) < 0)
        return EXIT_ERR;
    print_job_change(j, pos[0]);
    json_decref(j);
    return EXIT_OK;
}

static int
jobs_cancel(int argc, char **argv)
{
    char *pos[1];
    int n = args(argc, argv, NULL, pos, 1, 1);
    json_t *j;

    ARGS_OR_EXIT(n);
    if (call("POST", path_of("/v1/jobs/%s/cancel", pos[0]), json_object(), &j) < 0)
        return EXIT_ERR;
    print_job_change(j, pos[0]);
    json_decref(j);
    return EXIT_OK;
}

static void
print_ids(const char *label, json_t *ids)
{
    size_t i;
    json_t *v;

    printf("%s: %zu", label, json_array_size(ids));
    json_array_foreach(ids, i, v)
        printf("%s%s", i ? ", " : " (", json_string_value(v) ? json_string_value(v) : "?");
    puts(json_array_size(ids) ? ")" : "");
}

static int
jobs_requeue_stale(int argc, char **argv)
{
    char *pos[1];
    int n = args(argc, argv, NULL, pos, 0, 0);
    json_t *j;

    ARGS_OR_EXIT(n);
    if (call("POST", strdup("/v1/jobs/requeue-stale"), json_object(), &j) < 0)
        return EXIT_ERR;
    if (json_out)
        print_json(j);
    else {
        print_ids("requeued", json_object_get(j, "requeued"));
        print_ids("failed", json_object_get(j, "failed"));
    }
    json_decref(j);
    return EXIT_OK;
}

static int
jobs_enqueue(int argc, char **argv)
{
    const char *queue = NULL, *prio = NULL, *delay = NULL, *max = NULL, *key = NULL;
    struct opt o[] = {{"queue", true, &queue, NULL},       {"priority", true, &prio, NULL},
                      {"delay", true, &delay, NULL},       {"max-attempts", true, &max, NULL},
                      {"dedupe-key", true, &key, NULL},    {0}};
    char *pos[1];
    int n = args(argc, argv, o, pos, 0, 1), rc;
    json_t *body, *payload = NULL, *j;
    int64_t v;

    ARGS_OR_EXIT(n);
    if (n == 1 && !(payload = json_loads(pos[0], JSON_DECODE_ANY, NULL)))
        return usage_error("PAYLOAD is not valid JSON: %s", pos[0]);
    body = json_pack("{s:s, s:o}", "queue", queue ? queue : "agent", "payload",
                     payload ? payload : json_object());
    if (prio) {
        if (parse_int(prio, &v) < 0)
            return json_decref(body), usage_error("--priority must be an integer");
        json_object_set_new(body, "priority", json_integer(v));
    }
    if (delay) {
        if (parse_duration(delay, &v) < 0)
            return json_decref(body), usage_error("--delay must be a duration (ms, or 10s, 5m...)");
        json_object_set_new(body, "delayMs", json_integer(v));
    }
    if (max) {
        if (parse_int(max, &v) < 0)
            return json_decref(body), usage_error("--max-attempts must be an integer");
        json_object_set_new(body, "maxAttempts", json_integer(v));
    }
    if (key)
        json_object_set_new(body, "dedupeKey", json_string(key));
    if ((rc = call("POST", strdup("/v1/jobs"), body, &j)) < 0)
        return EXIT_ERR;
    if (json_out)
        print_json(j);
    else {
        const char *id = json_string_value(json_object_get(unwrap(j, "job"), "id"));
        printf("%s %s\n", json_is_true(json_object_get(j, "duplicate")) || rc == 200
                              ? "duplicate of job" : "enqueued job", id ? id : "?");
    }
    json_decref(j);
    return EXIT_OK;
}

/* ---- queues ------------------------------------------------------------------- */

static const char queues_usage[] =
    "usage: baton queues\n"
    "\n"
    "Per queue: jobs by status, age of the oldest pending job, stale jobs.\n";

/* Flatten nested objects of a row one level ({counts:{pending:1}} -> pending). */
static json_t *
flatten(json_t *row, const char *name)
{
    json_t *out = json_object(), *v;
    const char *k;

    if (name)
        json_object_set_new(out, "queue", json_string(name));
    json_object_foreach(row, k, v) {
        if (json_is_object(v))
            json_object_update_missing(out, v);
        else
            json_object_set(out, k, v);
    }
    return out;
}

static int
queues(int argc, char **argv)
{
    static const char *const cols[] = {"queue", "pending", "processing", "completed", "failed",
                                       "stale", "oldestPendingAgeMs", NULL};
    char *pos[1];
    int n = args(argc, argv, NULL, pos, 0, 0);
    json_t *j, *rows, *src, *v;
    const char *k;
    size_t i;

    ARGS_OR_EXIT(n);
    if (call("GET", strdup("/v1/queues"), NULL, &j) < 0)
        return EXIT_ERR;
    if (json_out) {
        print_json(j);
        json_decref(j);
        return EXIT_OK;
    }
    rows = json_array();
    if ((src = rows_of(j, "queues")))
        json_array_foreach(src, i, v)
            json_array_append_new(rows, flatten(v, NULL));
    else {
        src = json_is_object(json_object_get(j, "queues")) ? json_object_get(j, "queues") : j;
        json_object_foreach(src, k, v)
            if (json_is_object(v))
                json_array_append_new(rows, flatten(v, k));
    }
    print_table(rows, cols);
    json_decref(rows);
    json_decref(j);
    return EXIT_OK;
}

/* ---- leases and accounts ---------------------------------------------------------- */

static const char leases_usage[] =
    "usage: baton leases <subcommand>\n"
    "\n"
    "  get CHANNEL ACCOUNT                 the lease of an account\n"
    "  list [--owner O] [--channel C]      leases currently held\n"
    "  force-release CHANNEL ACCOUNT       free a lease whoever holds it\n";

static const char *const lease_cols[] = {"channel", "accountId", "ownerId", "token",
                                         "expiresAt", "transitions", NULL};

static int
leases_get(int argc, char **argv)
{
    char *pos[2];
    int n = args(argc, argv, NULL, pos, 2, 2);
    json_t *j, *l;

    ARGS_OR_EXIT(n);
    if (call("GET", path_of("/v1/leases/%s/%s", pos[0], pos[1]), NULL, &j) < 0)
        return EXIT_ERR;
    l = json_object_get(j, "lease") ? json_object_get(j, "lease") : j;
    if (json_out)
        print_json(j);
    else if (!l || json_is_null(l))
        printf("no lease on %s/%s\n", pos[0], pos[1]);
    else
        print_object(l);
    json_decref(j);
    return EXIT_OK;
}

static int
leases_list(int argc, char **argv)
{
    const char *owner = NULL, *channel = NULL;
    struct opt o[] = {{"owner", true, &owner, NULL}, {"channel", true, &channel, NULL}, {0}};
    char *pos[1], *path;
    int n = args(argc, argv, o, pos, 0, 0);

    ARGS_OR_EXIT(n);
    path = strdup("/v1/leases");
    query_add(&path, "ownerId", owner);
    query_add(&path, "channel", channel);
    return show_list(path, "leases", lease_cols);
}

static int
leases_force_release(int argc, char **argv)
{
    char *pos[2];
    int n = args(argc, argv, NULL, pos, 2, 2);
    json_t *j;

    ARGS_OR_EXIT(n);
    if (call("POST", path_of("/v1/leases/%s/%s/force-release", pos[0], pos[1]), json_object(),
             &j) < 0)
        return EXIT_ERR;
    /* released:false is no error (the account is free either way): say
     * so, exit 0 as every query whose answer is "nothing" does */
    if (json_out)
        print_json(j);
    else if (json_is_true(json_object_get(j, "released")))
        printf("released %s/%s\n", pos[0], pos[1]);
    else
        printf("not released: nobody held the lease on %s/%s\n", pos[0], pos[1]);
    json_decref(j);
    return EXIT_OK;
}

static const char accounts_usage[] =
    "usage: baton accounts <subcommand>\n"
    "\n"
    "  list [--channel C] [--enabled true|false]              the account registry\n"
    "  set CHANNEL ACCOUNT (--enable|--disable) [--config JSON]  add or change an account\n"
    "  delete CHANNEL ACCOUNT                                 remove an account\n";

static int
accounts_list(int argc, char **argv)
{
    static const char *const cols[] = {"channel", "accountId", "enabled", "config", "updatedAt",
                                       NULL};
    const char *channel = NULL, *enabled = NULL;
    struct opt o[] = {{"channel", true, &channel, NULL}, {"enabled", true, &enabled, NULL}, {0}};
    char *pos[1], *path;
    int n = args(argc, argv, o, pos, 0, 0);

    ARGS_OR_EXIT(n);
    if (enabled && strcmp(enabled, "true") && strcmp(enabled, "false"))
        return usage_error("--enabled must be true or false");
    path = strdup("/v1/accounts");
    query_add(&path, "channel", channel);
    query_add(&path, "enabled", enabled);
    return show_list(path, "accounts", cols);
}

static int
accounts_set(int argc, char **argv)
{
    bool enable = false, disable = false;
    const char *config = NULL;
    struct opt o[] = {{"enable", false, NULL, &enable}, {"disable", false, NULL, &disable},
                      {"config", true, &config, NULL}, {0}};
    char *pos[2];
    int n = args(argc, argv, o, pos, 2, 2);
    json_t *body, *cfgj = NULL, *j;

    ARGS_OR_EXIT(n);
    if (enable == disable)
        return usage_error("give exactly one of --enable and --disable");
    if (config && !(cfgj = json_loads(config, JSON_DECODE_ANY, NULL)))
        return usage_error("--config is not valid JSON");
    body = json_pack("{s:b}", "enabled", enable);
    if (cfgj)
        json_object_set_new(body, "config", cfgj);
    if (call("PUT", path_of("/v1/accounts/%s/%s", pos[0], pos[1]), body, &j) < 0)
        return EXIT_ERR;
    if (json_out)
        print_json(j);
    else
        printf("account %s/%s %s\n", pos[0], pos[1], enable ? "enabled" : "disabled");
    json_decref(j);
    return EXIT_OK;
}

static int
accounts_delete(int argc, char **argv)
{
    char *pos[2];
    int n = args(argc, argv, NULL, pos, 2, 2);
    json_t *j;

    ARGS_OR_EXIT(n);
    if (call("DELETE", path_of("/v1/accounts/%s/%s", pos[0], pos[1]), NULL, &j) < 0)
        return EXIT_ERR;
    if (json_out)
        print_json(j);
    else
        printf("account %s/%s deleted\n", pos[0], pos[1]);
    json_decref(j);
    return EXIT_OK;
}

/* ---- dedupe, sessions -------------------------------------------------------------- */

static const char dedupe_usage[] =
    "usage: baton dedupe check CHANNEL MESSAGE-ID [--ttl DURATION]\n"
    "\n"
    "Check an inbound message id and register it as seen (inboundDedupe):\n"
    "prints \"new\" the first time, \"duplicate\" after.\n";

static int
dedupe_check(int argc, char **argv)
{
    const char *ttl = NULL;
    struct opt o[] = {{"ttl", true, &ttl, NULL}, {0}};
    char *pos[2];
    int n = args(argc, argv, o, pos, 2, 2);
    json_t *body, *j;
    int64_t v;

    ARGS_OR_EXIT(n);
    body = json_pack("{s:s, s:s}", "channel", pos[0], "channelMessageId", pos[1]);
    if (ttl) {
        if (parse_duration(ttl, &v) < 0)
            return json_decref(body), usage_error("--ttl must be a duration");
        json_object_set_new(body, "ttlMs", json_integer(v));
    }
    if (call("POST", strdup("/v1/dedupe"), body, &j) < 0)
        return EXIT_ERR;
    if (json_out)
        print_json(j);
    else if (json_is_true(json_object_get(j, "duplicate"))) {
        char *t = cell("firstSeenAt", json_object_get(j, "firstSeenAt"));
        printf("duplicate (first seen %s)\n", t ? t : "?");
        free(t);
    } else
        puts("new");
    json_decref(j);
    return EXIT_OK;
}

static const char sessions_usage[] =
    "usage: baton sessions <subcommand>\n"
    "\n"
    "  get CHANNEL ACCOUNT [KEY]    entries (values are credentials: handle with care)\n"
    "  keys CHANNEL ACCOUNT         the entry names only\n"
    "  clear CHANNEL ACCOUNT        delete every entry (forces a new login)\n";

static int
sessions_get(int argc, char **argv)
{
    char *pos[3];
    int n = args(argc, argv, NULL, pos, 2, 3);
    json_t *j, *entries, *v;
    const char *k;

    ARGS_OR_EXIT(n);
    if (n == 3) {
        if (call("GET", path_of("/v1/sessions/%s/%s/keys/%s", pos[0], pos[1], pos[2]), NULL, &j) < 0)
            return EXIT_ERR;
        v = json_object_get(j, "value");
        print_json(json_out || !v ? j : v);
        json_decref(j);
        return EXIT_OK;
    }
    if (call("GET", path_of("/v1/sessions/%s/%s", pos[0], pos[1]), NULL, &j) < 0)
        return EXIT_ERR;
    entries = json_object_get(j, "entries");
    if (json_out)
        print_json(j);
    else if (!json_object_size(entries))
        puts("(no entries)");
    else
        json_object_foreach(entries, k, v) {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            printf("%s  %s\n", k, s ? s : "?");
            free(s);
        }
    json_decref(j);
    return EXIT_OK;
}

static int
sessions_keys(int argc, char **argv)
{
    char *pos[2];
    int n = args(argc, argv, NULL, pos, 2, 2);
    json_t *j, *v;
    size_t i;

    ARGS_OR_EXIT(n);
    /* the names only: values (credentials) never leave the server here */
    if (call("GET", path_of("/v1/sessions/%s/%s/keys", pos[0], pos[1]), NULL, &j) < 0)
        return EXIT_ERR;
    if (json_out)
        print_json(j);
    else if (!json_array_size(rows_of(j, "keys")))
        puts("(none)");
    else
        json_array_foreach(rows_of(j, "keys"), i, v)
            puts(json_string_value(v) ? json_string_value(v) : "?");
    json_decref(j);
    return EXIT_OK;
}

static int
sessions_clear(int argc, char **argv)
{
    char *pos[2];
    int n = args(argc, argv, NULL, pos, 2, 2);
    json_t *j;

    ARGS_OR_EXIT(n);
    if (call("DELETE", path_of("/v1/sessions/%s/%s", pos[0], pos[1]), NULL, &j) < 0)
        return EXIT_ERR;
    if (json_out)
        print_json(j ? j : json_object());
    else
        printf("cleared the session of %s/%s\n", pos[0], pos[1]);
    json_decref(j);
    return EXIT_OK;
}

/* ---- events and logs ------------------------------------------------------------------- */

static const char events_usage[] =
    "usage: baton events [--event NAME|PREFIX.*] [--since WHEN] [--until WHEN] [--limit N]\n"
    "                    [--where FIELD=VALUE]\n"
    "\n"
    "Recorded events, newest first. WHEN is epoch milliseconds or a duration\n"
    "meaning that long ago (30s, 10m, 24h, 7d).\n";

static const char logs_usage[] =
    "usage: baton logs [--event NAME|PREFIX.*] [--since WHEN] [--limit N] [--follow]\n"
    "\n"
    "Events as log lines, oldest first. --follow keeps printing new events as\n"
    "they happen (Server-Sent Events; reconnects by itself), after the\n"
    "history asked for with --since/--limit if any. With --json the lines are\n"
    "the JSON objects.\n";

/* GET /v1/events with the usual filters into *out (array, newest first). */
static int
events_fetch(const char *event, const char *since, const char *until, const char *limit,
             const char *where, json_t **out)
{
    char *path = strdup("/v1/events"), num[32];
    int64_t t;
    json_t *j;

    query_add(&path, "event", event);
    if (since) {
        if (parse_when(since, &t) < 0)
            return free(path), usage_error("--since must be epoch ms or a duration like 24h");
        snprintf(num, sizeof num, "%" PRId64, t);
        query_add(&path, "since", num);
    }
    if (until) {
        if (parse_when(until, &t) < 0)
            return free(path), usage_error("--until must be epoch ms or a duration like 1h");
        snprintf(num, sizeof num, "%" PRId64, t);
        query_add(&path, "until", num);
    }
    query_add(&path, "limit", limit);
    if (where) {
        const char *eq = strchr(where, '=');
        char *k;
        if (!eq || eq == where)
            return free(path), usage_error("--where must be FIELD=VALUE");
        k = strndup(where, (size_t)(eq - where));
        query_add(&path, k, eq + 1);
        free(k);
    }
    if (call("GET", path, NULL, &j) < 0)
        return EXIT_ERR;
    *out = j;
    return EXIT_OK;
}

static int
events_cmd(int argc, char **argv)
{
    static const char *const cols[] = {"time", "level", "event", "fields", NULL};
    const char *event = NULL, *since = NULL, *until = NULL, *limit = NULL, *where = NULL;
    struct opt o[] = {{"event", true, &event, NULL}, {"since", true, &since, NULL},
                      {"until", true, &until, NULL}, {"limit", true, &limit, NULL},
                      {"where", true, &where, NULL}, {0}};
    char *pos[1];
    int n = args(argc, argv, o, pos, 0, 0), rc;
    json_t *j, *rows, *e;
    size_t i;

    ARGS_OR_EXIT(n);
    if ((rc = events_fetch(event, since, until, limit, where, &j)) != EXIT_OK)
        return rc;
    if (json_out) {
        print_json(j);
        json_decref(j);
        return EXIT_OK;
    }
    rows = json_array();
    json_array_foreach(rows_of(j, "events"), i, e) {
        json_t *fields = json_deep_copy(e);
        json_t *row = json_pack("{s:O?, s:O?, s:O?}", "time", json_object_get(e, "time"), "level",
                                json_object_get(e, "level"), "event", json_object_get(e, "event"));
        char *f;
        json_object_del(fields, "id");
        json_object_del(fields, "time");
        json_object_del(fields, "_time");
        json_object_del(fields, "level");
        json_object_del(fields, "event");
        f = json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS);
        json_object_set_new(row, "fields", json_string(f ? f : ""));
        free(f);
        json_decref(fields);
        json_array_append_new(rows, row);
    }
    print_table(rows, cols);
    json_decref(rows);
    json_decref(j);
    return EXIT_OK;
}

/* One event as a log line: JSON with --json, else "time level event k=v...". */
static void
print_log_line(json_t *e)
{
    const char *k;
    json_t *v;
    char ts[40] = "-";

    if (json_out) {
        char *s = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        puts(s ? s : "null");
        free(s);
        fflush(stdout);
        return;
    }
    if (json_is_string(json_object_get(e, "_time")))
        snprintf(ts, sizeof ts, "%s", json_string_value(json_object_get(e, "_time")));
    else if (json_is_integer(json_object_get(e, "time")))
        fmt_time(json_integer_value(json_object_get(e, "time")), ts, sizeof ts);
    printf("%s %-5s %s", ts, json_string_value(json_object_get(e, "level")) ?: "-",
           json_string_value(json_object_get(e, "event")) ?: "-");
    json_object_foreach(e, k, v) {
        char *c;
        if (!strcmp(k, "_time") || !strcmp(k, "time") || !strcmp(k, "level") ||
            !strcmp(k, "event") || !strcmp(k, "id"))
            continue;
        c = json_is_string(v) ? strdup(json_string_value(v))
                              : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        printf(" %s=%s", k, c ? c : "?");
        free(c);
    }
    putchar('\n');
    fflush(stdout);
}

static int
on_stream_event(void *arg, const char *id, const char *event, json_t *data, const char *raw)
{
    (void)arg;
    (void)id;
    if (json_is_object(data)) {
        if (event && !json_object_get(data, "event"))
            json_object_set_new(data, "event", json_string(event));
        print_log_line(data);
    } else if (json_out) {
        json_t *o = json_pack("{s:s?, s:s}", "event", event, "data", raw);
        print_log_line(o);
        json_decref(o);
    } else {
        printf("%s %s\n", event ? event : "message", raw);
        fflush(stdout);
    }
    return 0;
}

static int
logs_cmd(int argc, char **argv)
{
    const char *event = NULL, *since = NULL, *limit = NULL;
    bool follow = false;
    struct opt o[] = {{"event", true, &event, NULL}, {"since", true, &since, NULL},
                      {"limit", true, &limit, NULL}, {"follow", false, NULL, &follow}, {0}};
    char *pos[1], last[32] = "";
    int n = args(argc, argv, o, pos, 0, 0), rc;
    json_t *j = NULL, *rows;
    baton_error e;

    ARGS_OR_EXIT(n);
    if (!follow || since || limit) {
        if ((rc = events_fetch(event, since, NULL, limit, NULL, &j)) != EXIT_OK)
            return rc;
        rows = rows_of(j, "events");
        for (size_t i = json_array_size(rows); i-- > 0;)
            print_log_line(json_array_get(rows, i));
        if (json_array_size(rows))
            snprintf(last, sizeof last, "%" JSON_INTEGER_FORMAT,
                     json_integer_value(json_object_get(json_array_get(rows, 0), "id")));
        json_decref(j);
    }
    if (!follow)
        return EXIT_OK;
    /* a tail survives server restarts: keep reconnecting for a while */
    baton_set_retry(cli, 200, 5000, 120000);
    if (baton_events_follow(cli, event, last[0] ? last : NULL, on_stream_event, NULL, &e) < 0)
        return fail("following events: %s", baton_strerror(&e));
    return EXIT_OK;
}

/* ---- alerts ------------------------------------------------------------------------------ */

static const char alerts_usage[] =
    "usage: baton alerts check [--lookback 24h] [--burst-window 10m] [--threshold 10]\n"
    "                          [--channels whatsapp,telegram]\n"
    "\n"
    "Looks for: lease heartbeat losses, outbound loop errors and send failures\n"
    "within the lookback; THRESHOLD or more reconnects within any burst window;\n"
    "stale processing jobs; jobs that failed within the lookback (measured\n"
    "with this machine's clock).\n"
    "Exit 0 healthy, 2 alert (one finding per line), 1 cannot check.\n";

#define MAX_PAGES 100
#define MAX_LISTED 20

/* Every event matching filter since `since` (server paging is newest first
 * with a limit, so page back with until= and drop ids already seen). */
static int
events_since(const char *filter, int64_t since, json_t *acc)
{
    json_t *seen = json_object();
    int64_t until = INT64_MAX;
    int rc = 0;

    for (int page = 0; page < MAX_PAGES; page++) {
        char *path = path_of("/v1/events?event=%s&limit=1000", filter), num[32];
        json_t *j, *rows, *e;
        size_t i, fresh = 0;

        snprintf(num, sizeof num, "%" PRId64, since);
        query_add(&path, "since", num);
        if (until != INT64_MAX) {
            snprintf(num, sizeof num, "%" PRId64, until);
            query_add(&path, "until", num);
        }
        if (call("GET", path, NULL, &j) < 0) {
            rc = -1;
            break;
        }
        rows = rows_of(j, "events");
        json_array_foreach(rows, i, e) {
            char id[32];
            snprintf(id, sizeof id, "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(e, "id")));
            if (json_object_get(seen, id))
                continue;
            json_object_set_new(seen, id, json_true());
            json_array_append(acc, e);
            fresh++;
            if (json_integer_value(json_object_get(e, "time")) < until)
                until = json_integer_value(json_object_get(e, "time"));
        }
        i = json_array_size(rows);
        json_decref(j);
        if (i < 1000 || !fresh)
            break;
    }
    json_decref(seen);
    return rc;
}

static int
cmp_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* A short "k=v" summary of an event's identifying fields. */
static void
event_summary(json_t *e, char *buf, size_t n)
{
    static const char *const keys[] = {"accountId", "ownerId", "workerId", "jobId", "error",
                                       "message", "errorMessage", NULL};
    size_t used = 0;

    buf[0] = 0;
    for (const char *const *k = keys; *k && used < n; k++) {
        json_t *v = json_object_get(e, *k);
        char *c;
        if (!v)
            continue;
        c = cell(*k, v);
        used += (size_t)snprintf(buf + used, n - used, "%s%s=%.80s", used ? " " : "", *k, c ? c : "?");
        free(c);
    }
}

static void
finding(json_t *findings, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
finding(json_t *findings, const char *fmt, ...)
{
    va_list ap;
    char buf[1024];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_array_append_new(findings, json_string(buf));
}

/* Event findings for one channel's events (newest first). */
static void
check_channel_events(json_t *events, const char *lookback, int64_t burst_ms, int64_t threshold,
                     json_t *findings)
{
    static const char *const bad[] = {".lease.heartbeat.lost", ".outbound.loop.error",
                                      ".send.failed", NULL};
    json_t *by_name = json_object(), *v;
    const char *name;
    size_t i;
    json_t *e;

    /* group the events worth an alert by name: {name: [events newest first]} */
    json_array_foreach(events, i, e) {
        const char *ev = json_string_value(json_object_get(e, "event"));
        bool keep = false;
        if (!ev)
            continue;
        for (const char *const *s = bad; *s; s++)
            keep |= ends_with(ev, *s);
        keep |= ends_with(ev, ".reconnect");
        if (!keep)
            continue;
        if (!json_object_get(by_name, ev))
            json_object_set_new(by_name, ev, json_array());
        json_array_append(json_object_get(by_name, ev), e);
    }
    json_object_foreach(by_name, name, v) {
        json_t *latest = json_array_get(v, 0);
        char ts[40], sum[400];
        size_t count = json_array_size(v);

        fmt_time(json_integer_value(json_object_get(latest, "time")), ts, sizeof ts);
        event_summary(latest, sum, sizeof sum);
        if (!ends_with(name, ".reconnect")) {
            finding(findings, "%s: %zu within %s (latest %s%s%s)", name, count, lookback, ts,
                    sum[0] ? " " : "", sum);
            continue;
        }
        {
            int64_t *t = calloc(count, sizeof *t);
            size_t lo = 0, best = 0, best_lo = 0, best_hi = 0;
            if (!t)
                continue;
            for (size_t x = 0; x < count; x++)
                t[x] = json_integer_value(json_object_get(json_array_get(v, x), "time"));
            qsort(t, count, sizeof *t, cmp_int64);
            for (size_t hi = 0; hi < count; hi++) {
                while (t[hi] - t[lo] > burst_ms)
                    lo++;
                if (hi - lo + 1 > best) {
                    best = hi - lo + 1;
                    best_lo = lo;
                    best_hi = hi;
                }
            }
            if ((int64_t)best >= threshold) {
                char a[40], b[40], w[32];
                fmt_time(t[best_lo], a, sizeof a);
                fmt_time(t[best_hi], b, sizeof b);
                fmt_duration(burst_ms, w, sizeof w);
                finding(findings, "%s: burst of %zu reconnects within %s (%s to %s)", name, best,
                        w, a, b);
            }
            free(t);
        }
    }
    json_decref(by_name);
}

static int
check_jobs(int64_t since, const char *lookback, json_t *findings)
{
    json_t *j, *rows, *job;
    size_t i, stale = 0, failed = 0;
    char *cursor = NULL;

    if (call("GET", strdup("/v1/jobs/pending"), NULL, &j) < 0)
        return -1;
    rows = rows_of(j, "jobs");
    json_array_foreach(rows, i, job) {
        char *until;
        if (!json_is_true(json_object_get(job, "stale")))
            continue;
        if (++stale > MAX_LISTED)
            continue;
        until = cell("lockedUntil", json_object_get(job, "lockedUntil"));
        finding(findings, "stale job %s on %s: processing by %s, lock expired %s",
                json_string_value(json_object_get(job, "id")) ?: "?",
                json_string_value(json_object_get(job, "queue")) ?: "?",
                json_string_value(json_object_get(job, "lockedBy")) ?: "?", until ? until : "?");
        free(until);
    }
    if (stale > MAX_LISTED)
        finding(findings, "... %zu stale jobs in all", stale);
    json_decref(j);

    for (int page = 0; page < MAX_PAGES; page++) {
        char *path = strdup("/v1/jobs?status=failed&limit=100");
        const char *next;
        query_add(&path, "cursor", cursor);
        if (call("GET", path, NULL, &j) < 0) {
            free(cursor);
            return -1;
        }
        json_array_foreach(rows_of(j, "jobs"), i, job) {
            json_t *u = json_object_get(job, "updatedAt");
            char ts[40];
            if (json_integer_value(u) < since)
                continue;
            if (++failed > MAX_LISTED)
                continue;
            fmt_time(json_integer_value(u), ts, sizeof ts);
            finding(findings, "failed job %s on %s at %s: %s%s%s",
                    json_string_value(json_object_get(job, "id")) ?: "?",
                    json_string_value(json_object_get(job, "queue")) ?: "?", ts,
                    json_string_value(json_object_get(job, "errorReason")) ?: "?",
                    json_string_value(json_object_get(job, "errorMessage")) ? ": " : "",
                    json_string_value(json_object_get(job, "errorMessage")) ?: "");
        }
        free(cursor);
        next = json_string_value(json_object_get(j, "nextCursor"));
        cursor = next ? strdup(next) : NULL;
        json_decref(j);
        if (!cursor)
            break;
    }
    free(cursor);
    if (failed > MAX_LISTED)
        finding(findings, "... %zu jobs failed within %s in all", failed, lookback);
    return 0;
}

static int
alerts_check(int argc, char **argv)
{
    const char *lookback = "24h", *window = "10m", *thr = "10", *channels = "whatsapp,telegram";
    struct opt o[] = {{"lookback", true, &lookback, NULL}, {"burst-window", true, &window, NULL},
                      {"threshold", true, &thr, NULL}, {"channels", true, &channels, NULL}, {0}};
    char *pos[1], *list, *save = NULL;
    int n = args(argc, argv, o, pos, 0, 0);
    int64_t look_ms, burst_ms, threshold, since;
    json_t *findings;
    bool broken = false;

    ARGS_OR_EXIT(n);
    if (parse_duration(lookback, &look_ms) < 0 || look_ms <= 0)
        return usage_error("--lookback must be a duration like 24h");
    if (parse_duration(window, &burst_ms) < 0 || burst_ms <= 0)
        return usage_error("--burst-window must be a duration like 10m");
    if (parse_int(thr, &threshold) < 0 || threshold < 1)
        return usage_error("--threshold must be a positive integer");
    since = now_ms() - look_ms;
    findings = json_array();
    list = strdup(channels);
    for (char *ch = strtok_r(list, ",", &save); ch && !broken; ch = strtok_r(NULL, ",", &save)) {
        char filter[160];
        json_t *events = json_array();
        snprintf(filter, sizeof filter, "%s.*", ch);
        if (events_since(filter, since, events) < 0)
            broken = true;
        else
            check_channel_events(events, lookback, burst_ms, threshold, findings);
        json_decref(events);
    }
    free(list);
    if (!broken && check_jobs(since, lookback, findings) < 0)
        broken = true;
    if (broken) {
        json_decref(findings);
        return fail("cannot check alerts");
    }
    if (json_out) {
        json_t *o2 = json_pack("{s:b, s:O}", "healthy", !json_array_size(findings), "findings",
                               findings);
        print_json(o2);
        json_decref(o2);
    } else if (!json_array_size(findings))
        puts("healthy");
    else {
        size_t i;
        json_t *f;
        json_array_foreach(findings, i, f)
            puts(json_string_value(f));
    }
    n = json_array_size(findings) ? EXIT_USAGE : EXIT_OK;    /* 2 = alert */
    json_decref(findings);
    return n;
}

/* ---- backup ----------------------------------------------------------------------------- */

static const char backup_usage[] =
    "usage: baton backup FILE [--db PATH] [--force]\n"
    "\n"
    "Copy the database (--db, else BATON_DB, else ./data/baton.db) to FILE with\n"
    "SQLite's online backup, a few pages at a time from one consistent snapshot,\n"
    "while batond keeps serving. The copy is checked with PRAGMA integrity_check\n"
    "before it is renamed to FILE. An existing FILE is kept unless --force.\n";

static int
sql_exec(sqlite3 *db, const char *sql, const char *what)
{
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fail("%s: %s", what, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int
backup_cmd(int argc, char **argv)
{
    const char *db = getenv("BATON_DB"), *file;
    bool force = false;
    struct opt o[] = {{"db", true, &db, NULL}, {"force", false, NULL, &force}, {0}};
    char *pos[1], tmp[4096];
    int n = args(argc, argv, o, pos, 1, 1), rc;
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *bk;
    sqlite3_stmt *st = NULL;
    struct stat sb;
    bool ok = false;
    int pages = 0;

    ARGS_OR_EXIT(n);
    file = pos[0];
    if (!db || !*db)
        db = "./data/baton.db";
    if (stat(file, &sb) == 0 && !force)
        return fail("%s exists; use --force to overwrite it", file);
    if (stat(db, &sb) != 0)
        return fail("cannot read database %s: %s", db, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s.partial", file);
    unlink(tmp);
    if (sqlite3_open_v2(db, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fail("cannot open %s: %s", db, src ? sqlite3_errmsg(src) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(src, 10000);
    /* One read transaction for the whole copy: every step reads the same
     * snapshot, and in WAL mode it does not stop batond from writing. */
    if (sql_exec(src, "BEGIN; SELECT count(*) FROM sqlite_master;", db) < 0)
        goto out;
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        fail("cannot create %s: %s", tmp, dst ? sqlite3_errmsg(dst) : "out of memory");
        goto out;
    }
    if (!(bk = sqlite3_backup_init(dst, "main", src, "main"))) {
        fail("backup of %s: %s", db, sqlite3_errmsg(dst));
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
        fail("backup of %s: %s", db, sqlite3_errstr(rc));
        goto out;
    }
    sql_exec(src, "COMMIT", db);
    /* a standalone file: no -wal beside the copy */
    if (sql_exec(dst, "PRAGMA journal_mode=DELETE", tmp) < 0)
        goto out;
    if (sqlite3_prepare_v2(dst, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        fail("integrity check of %s: %s", tmp, sqlite3_errmsg(dst));
        goto out;
    }
    if (strcmp((const char *)sqlite3_column_text(st, 0), "ok")) {
        fail("integrity check of the copy failed: %s", sqlite3_column_text(st, 0));
        goto out;
    }
    ok = true;
out:
    sqlite3_finalize(st);
    sqlite3_close(src);
    if (dst && sqlite3_close(dst) != SQLITE_OK)
        ok = false;
    if (ok && rename(tmp, file) != 0) {
        fail("cannot rename %s to %s: %s", tmp, file, strerror(errno));
        ok = false;
    }
    if (!ok) {
        unlink(tmp);
        return EXIT_ERR;
    }
    if (json_out) {
        json_t *j = json_pack("{s:s, s:s, s:i, s:s}", "db", db, "file", file, "pages", pages,
                              "integrity", "ok");
        print_json(j);
        json_decref(j);
    } else
        printf("backed up %s to %s (%d pages, integrity ok)\n", db, file, pages);
    return EXIT_OK;
}

/* ---- run (Convex functions) ---------------------------------------------------------------- */

static const char run_usage[] =
    "usage: baton run FUNCTION ['JSON-ARGS']\n"
    "\n"
    "Call a function of the Convex layer (POST /api/function), e.g.\n"
    "  baton run agent.getPendingJobs\n"
    "  baton run whatsappLeases:forceRelease '{\"accountId\":\"default\"}'\n"
    "and print its value as JSON.\n";

static int
run_cmd(int argc, char **argv)
{
    char *pos[2];
    int n = args(argc, argv, NULL, pos, 1, 2);
    json_t *fargs, *j, *v;

    ARGS_OR_EXIT(n);
    fargs = n == 2 ? json_loads(pos[1], JSON_DECODE_ANY, NULL) : json_object();
    if (!fargs)
        return usage_error("ARGS is not valid JSON: %s", pos[1]);
    if (call("POST", strdup("/api/function"),
             json_pack("{s:s, s:o, s:s}", "path", pos[0], "args", fargs, "format", "json"), &j) < 0)
        return EXIT_ERR;
    if (json_is_string(json_object_get(j, "status")) &&
        strcmp(json_string_value(json_object_get(j, "status")), "success")) {
        fail("function error: %s", json_string_value(json_object_get(j, "errorMessage")) ?: "?");
        json_decref(j);
        return EXIT_ERR;
    }
    v = json_object_get(j, "value");
    print_json(v ? v : json_null());
    json_decref(j);
    return EXIT_OK;
}

/* ---- dispatch ------------------------------------------------------------------------------- */

static const char main_usage[] =
    "usage: baton [--url URL] [--secret SECRET] [--json] <command> [args]\n"
    "\n"
    "commands:\n"
    "  jobs list|get|pending|retry|fail|cancel|requeue-stale|enqueue\n"
    "  queues                       per-queue counts\n"
    "  leases get|list|force-release\n"
    "  accounts list|set|delete\n"
    "  dedupe check CHANNEL ID\n"
    "  sessions get|keys|clear\n"
    "  events                       recorded events, newest first\n"
    "  logs [--follow]              events as log lines; --follow tails them\n"
    "  alerts check                 exit 0 healthy, 2 alert, 1 cannot check\n"
    "  backup FILE                  online copy of the database\n"
    "  run FUNCTION ['JSON']        call a Convex-compatible function\n"
    "\n"
    "--json prints the raw JSON answers instead of tables.\n"
    "environment: BATON_URL (default " BATON_DEFAULT_URL "), AGENT_SECRET, BATON_DB.\n"
    "'baton <command> --help' describes a command. Exit status: 0 ok, 1 error,\n"
    "2 usage.\n";

struct cmd {
    const char *name, *sub;         /* sub NULL: a command without subcommands */
    int (*fn)(int argc, char **argv);
    const char *usage;              /* the command's: every subcommand in one line */
    const char *sub_usage;          /* the subcommand's own help (NULL: usage) */
};

/* ---- the help of each subcommand ------------------------------------------------------ */

#define G "global options: --url URL, --secret SECRET, --json (raw answers).\n"

static const char jobs_list_usage[] =
    "usage: baton jobs list [--queue Q] [--status S] [--limit N] [--cursor C]\n\n"
    "Jobs, newest first, one page (--limit, default 50, at most 1000). When more remain the\n"
    "last line names the --cursor of the next page. --status: pending,\n"
    "processing, completed or failed.\n" G;
static const char jobs_get_usage[] =
    "usage: baton jobs get ID\n\n"
    "One job with every field. Exit 1 when there is no such job (404) or ID is\n"
    "not a job id (400).\n" G;
static const char jobs_pending_usage[] =
    "usage: baton jobs pending [--queue Q]\n\n"
    "Pending and processing jobs (agent.getPendingJobs); STALE marks a\n"
    "processing job whose lock has expired.\n" G;
static const char jobs_retry_usage[] =
    "usage: baton jobs retry ID\n\n"
    "A failed or processing job back to pending now (attempts kept,\n"
    "maxAttempts raised when exhausted). Exit 1 (409) for a pending or\n"
    "completed job.\n" G;
static const char jobs_fail_usage[] =
    "usage: baton jobs fail ID [--reason R] [--message M]\n\n"
    "Fail a pending or processing job now (agent.failJob); its worker's later\n"
    "calls get claim_lost. Defaults: --reason failed_by_operator.\n" G;
static const char jobs_cancel_usage[] =
    "usage: baton jobs cancel ID\n\n"
    "Cancel a pending or processing job: it becomes failed with errorReason\n"
    "cancelled; its worker's later calls get claim_lost. Exit 1 (409) for a\n"
    "job that is already completed or failed.\n" G;
static const char jobs_requeue_usage[] =
    "usage: baton jobs requeue-stale\n\n"
    "Run the stale sweep now: processing jobs whose lock expired go back to\n"
    "pending (or fail with lock_expired when no attempt is left). Prints the\n"
    "ids of both.\n" G;
static const char jobs_enqueue_usage[] =
    "usage: baton jobs enqueue [--queue Q] [--priority N] [--delay DURATION]\n"
    "                          [--max-attempts N] [--dedupe-key K] [PAYLOAD-JSON]\n\n"
    "Add a job (queue agent by default; payload {} when omitted). With a\n"
    "dedupe key already used by a job of the queue that is not completed, that\n"
    "job is shown instead.\n" G;
static const char leases_get_usage[] =
    "usage: baton leases get CHANNEL ACCOUNT\n\n"
    "The lease of an account (\"no lease\" when there has never been one).\n" G;
static const char leases_list_usage[] =
    "usage: baton leases list [--owner O] [--channel C]\n\n"
    "Leases currently held (whatsappLeases.listOwnedAccounts).\n" G;
static const char leases_force_usage[] =
    "usage: baton leases force-release CHANNEL ACCOUNT\n\n"
    "Free a lease whoever holds it (whatsappLeases.forceRelease). Prints\n"
    "\"released\" when it was held, \"not released\" when nobody held it; both\n"
    "exit 0 (the account is free either way).\n" G;
static const char accounts_list_usage[] =
    "usage: baton accounts list [--channel C] [--enabled true|false]\n\n"
    "The account registry.\n" G;
static const char accounts_set_usage[] =
    "usage: baton accounts set CHANNEL ACCOUNT (--enable|--disable) [--config JSON]\n\n"
    "Add or change an account.\n" G;
static const char accounts_delete_usage[] =
    "usage: baton accounts delete CHANNEL ACCOUNT\n\n"
    "Remove an account; exit 1 (404) when there is none.\n" G;
static const char sessions_get_usage[] =
    "usage: baton sessions get CHANNEL ACCOUNT [KEY]\n\n"
    "Every entry of a session, or one (its value). Values are credentials:\n"
    "handle the output with care.\n" G;
static const char sessions_keys_usage[] =
    "usage: baton sessions keys CHANNEL ACCOUNT\n\n"
    "The entry names of a session, one per line ((none) when empty); values\n"
    "never leave the server.\n" G;
static const char sessions_clear_usage[] =
    "usage: baton sessions clear CHANNEL ACCOUNT\n\n"
    "Delete every entry of a session (whatsappSession.clearAll): the channel\n"
    "must log in again.\n" G;

#undef G

static const struct cmd cmds[] = {
    {"jobs", "list", jobs_list, jobs_usage, jobs_list_usage},
    {"jobs", "get", jobs_get, jobs_usage, jobs_get_usage},
    {"jobs", "pending", jobs_pending, jobs_usage, jobs_pending_usage},
    {"jobs", "retry", jobs_retry, jobs_usage, jobs_retry_usage},
    {"jobs", "fail", jobs_fail, jobs_usage, jobs_fail_usage},
    {"jobs", "cancel", jobs_cancel, jobs_usage, jobs_cancel_usage},
    {"jobs", "requeue-stale", jobs_requeue_stale, jobs_usage, jobs_requeue_usage},
    {"jobs", "enqueue", jobs_enqueue, jobs_usage, jobs_enqueue_usage},
    {"queues", NULL, queues, queues_usage, NULL},
    {"leases", "get", leases_get, leases_usage, leases_get_usage},
    {"leases", "list", leases_list, leases_usage, leases_list_usage},
    {"leases", "force-release", leases_force_release, leases_usage, leases_force_usage},
    {"accounts", "list", accounts_list, accounts_usage, accounts_list_usage},
    {"accounts", "set", accounts_set, accounts_usage, accounts_set_usage},
    {"accounts", "delete", accounts_delete, accounts_usage, accounts_delete_usage},
    {"dedupe", "check", dedupe_check, dedupe_usage, NULL},
    {"sessions", "get", sessions_get, sessions_usage, sessions_get_usage},
    {"sessions", "keys", sessions_keys, sessions_usage, sessions_keys_usage},
    {"sessions", "clear", sessions_clear, sessions_usage, sessions_clear_usage},
    {"events", NULL, events_cmd, events_usage, NULL},
    {"logs", NULL, logs_cmd, logs_usage, NULL},
    {"alerts", "check", alerts_check, alerts_usage, NULL},
    {"backup", NULL, backup_cmd, backup_usage, NULL},
    {"run", NULL, run_cmd, run_usage, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* Take --url, --secret and --json out of argv wherever they are (before a
 * "--"). Returns the new argc, or -1 after a usage error. */
static int
global_flags(int argc, char **argv, const char **url, const char **secret)
{
    int out = 1;

    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        const char **dst = NULL;
        size_t len = 0;

        if (!strcmp(a, "--")) {
            while (i < argc)
                argv[out++] = argv[i++];
            break;
        }
        if (!strcmp(a, "--json")) {
            json_out = true;
            continue;
        }
        if (!strncmp(a, "--url", 5))
            dst = url, len = 5;
        else if (!strncmp(a, "--secret", 8))
            dst = secret, len = 8;
        if (dst && a[len] == '=') {
            *dst = a + len + 1;
            continue;
        }
        if (dst && !a[len]) {
            if (i + 1 >= argc) {
                cur_usage = main_usage;
                usage_error("option '%s' needs a value", a);
                return -1;
            }
            *dst = argv[++i];
            continue;
        }
        argv[out++] = a;
    }
    argv[out] = NULL;
    return out;
}

int
main(int argc, char **argv)
{
    const char *url = getenv("BATON_URL"), *secret = getenv("AGENT_SECRET");
    const struct cmd *c;
    bool known = false;
    int rc, first;

    signal(SIGPIPE, SIG_IGN);
    cur_usage = main_usage;
    if ((argc = global_flags(argc, argv, &url, &secret)) < 0)
        return EXIT_USAGE;
    if (argc < 2)
        return usage_error("no command given");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(main_usage, stdout);
        return EXIT_OK;
    }
    for (c = cmds; c->name; c++) {
        if (strcmp(c->name, argv[1]))
            continue;
        known = true;
        cur_usage = c->usage;
        if (!c->sub)
            break;
        if (argc < 3)
            return usage_error("%s needs a subcommand", c->name);
        if (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) {
            fputs(c->usage, stdout);
            return EXIT_OK;
        }
        if (!strcmp(c->sub, argv[2]))
            break;
    }
    if (!known)
        return usage_error("unknown command '%s'", argv[1]);
    if (!c->name)
        return usage_error("unknown subcommand '%s %s'", argv[1], argv[2]);
    if (c->sub_usage)
        cur_usage = c->sub_usage;   /* `baton jobs retry --help`: retry's own help */
    first = c->sub ? 3 : 2;
    if (!url || !*url)
        url = BATON_DEFAULT_URL;
    if (!(cli = baton_new(url, secret && *secret ? secret : NULL)))
        return fail("cannot create a client for %s", url);
    rc = c->fn(argc - first, argv + first);
    baton_free(cli);
    return rc;
}
