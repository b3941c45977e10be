/* cli_util.c -- what the baton CLI's command families share: errors, options, calls, output. */
#define _GNU_SOURCE             /* open_memstream, asprintf */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

baton_client *cli_client;
bool cli_json_out;
const char *cli_cur_usage;

/* ---- errors ---------------------------------------------------------------- */

static void
say(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* "baton: <message>" on stderr, without a newline. */
static void
say(const char *fmt, va_list ap)
{
    fputs("baton: ", stderr);
    vfprintf(stderr, fmt, ap);
}

int
cli_usage_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", cli_cur_usage);
    return CLI_EXIT_USAGE;
}

int
cli_fail(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_EXIT_ERR;
}

/* ---- time ------------------------------------------------------------------ */

int64_t
cli_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
cli_fmt_time(int64_t ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void
cli_fmt_duration(int64_t ms, char *buf, size_t n)
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

bool
cli_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);

    return a >= b && !strcmp(s + a - b, suffix);
}

/* ---- output ---------------------------------------------------------------- */

static bool
is_time_key(const char *k)
{
    return cli_ends_with(k, "At") || cli_ends_with(k, "Until") || !strcmp(k, "time") ||
           !strcmp(k, "firstSeenAt");
}

char *
cli_cell(const char *key, json_t *v)
{
    char buf[64];

    if (!v || json_is_null(v))
        return strdup("-");
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_integer(v)) {
        int64_t i = json_integer_value(v);
        if (is_time_key(key) && i > 0)
            cli_fmt_time(i, buf, sizeof buf);
        else if (cli_ends_with(key, "Ms"))
            cli_fmt_duration(i, buf, sizeof buf);
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

void
cli_print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);

    puts(s ? s : "null");
    free(s);
}

void
cli_print_object(json_t *o)
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
            c = cli_cell(k, v);
        printf("%-*s  %s\n", w + 1, k, c ? c : "?");
        free(c);
    }
}

json_t *
cli_rows_of(json_t *j, const char *key)
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

json_t *
cli_unwrap(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);

    return json_is_object(v) ? v : j;
}

void
cli_print_table(json_t *rows, const char *const *cols)
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
                cells[(r + 1) * ncols + c] =
                    cli_cell(cols[c], json_object_get(json_array_get(rows, r), cols[c]));
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

/* cli_args without the minimum: up to maxpos positionals. */
static int
opts_parse(int argc, char **argv, const struct cli_opt *opts, char **pos, int maxpos)
{
    int npos = 0;
    bool only_pos = false;

    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        const struct cli_opt *o;
        char *eq;
        size_t len;

        if (only_pos || a[0] != '-' || !a[1] || (a[1] != '-' && strcmp(a, "-h"))) {
            if (npos >= maxpos) {
                cli_usage_error("unexpected argument '%s'", a);
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
            fputs(cli_cur_usage, stdout);
            return -2;
        }
        eq = strchr(a, '=');
        len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        for (o = opts; o && o->name; o++)
            if (strlen(o->name) == len && !strncmp(o->name, a + 2, len))
                break;
        if (!o || !o->name) {
            cli_usage_error("unknown option '%s'", a);
            return -1;
        }
        if (!o->takes_value) {
            if (eq) {
                cli_usage_error("option '--%s' takes no value", o->name);
                return -1;
            }
            *o->flag = true;
        } else if (eq)
            *o->value = eq + 1;
        else if (i + 1 < argc)
            *o->value = argv[++i];
        else {
            cli_usage_error("option '--%s' needs a value", o->name);
            return -1;
        }
    }
    return npos;
}

int
cli_args(int argc, char **argv, const struct cli_opt *opts, char **pos, int lo, int hi)
{
    int n = opts_parse(argc, argv, opts, pos, hi);

    if (n >= 0 && n < lo) {
        cli_usage_error("missing argument");
        return -1;
    }
    return n;
}

int
cli_parse_int(const char *s, int64_t *out)
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

int
cli_parse_duration(const char *s, int64_t *out)
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

int
cli_parse_when(const char *s, int64_t *out)
{
    int64_t d;

    if (cli_parse_int(s, out) == 0 && *out > 100000000000LL)
        return 0;
    if (cli_parse_duration(s, &d) < 0)
        return -1;
    *out = cli_now_ms() - d;
    return 0;
}

int
cli_set_number(json_t *body, const char *field, const char *s,
               int (*parse)(const char *s, int64_t *out))
{
    int64_t v;

    if (!s)
        return 0;
    if (parse(s, &v) < 0)
        return -1;
    json_object_set_new(body, field, json_integer(v));
    return 0;
}

/* ---- calls ----------------------------------------------------------------- */

char *
cli_path_of(const char *fmt, ...)
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

void
cli_query_add(char **path, const char *k, const char *v)
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

void
cli_query_add_int(char **path, const char *k, int64_t v)
{
    char num[32];

    snprintf(num, sizeof num, "%" PRId64, v);
    cli_query_add(path, k, num);
}

int
cli_call(const char *method, char *path, json_t *body, json_t **out)
{
    baton_error e;
    json_t *o = NULL;
    int rc;

    if (!path) {
        json_decref(body);
        cli_fail("out of memory");
        return -1;
    }
    rc = baton_call(cli_client, method, path, body, &o, &e);
    json_decref(body);
    if (rc < 0) {
        if (e.status == 560)
            cli_fail("function error: %s", e.message);
        else if (!e.status)
            cli_fail("%s", baton_strerror(&e));     /* its message names the request already */
        else
            cli_fail("%s %s: %s", method, path, baton_strerror(&e));
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

int
cli_show_list(char *path, const char *key, const char *const *cols, const char *more)
{
    json_t *j;
    const char *next;

    if (cli_call("GET", path, NULL, &j) < 0)
        return CLI_EXIT_ERR;
    if (cli_json_out)
        cli_print_json(j);
    else {
        cli_print_table(cli_rows_of(j, key), cols);
        if (more && (next = json_string_value(json_object_get(j, "nextCursor"))))
            printf("more: %s --cursor %s\n", more, next);
    }
    json_decref(j);
    return CLI_EXIT_OK;
}

int
cli_list(int argc, char **argv, const char *path, const struct cli_param *params,
         const char *key, const char *const *cols, const char *more)
{
    const char *values[CLI_MAX_PARAMS] = {0};
    struct cli_opt o[CLI_MAX_PARAMS + 1] = {{0}};
    char *pos[1], *p;
    int n;

    for (size_t i = 0; params[i].opt; i++) {
        assert(i < CLI_MAX_PARAMS);
        o[i] = (struct cli_opt){params[i].opt, true, &values[i], NULL};
    }
    n = cli_args(argc, argv, o, pos, 0, 0);
    CLI_ARGS_OR_EXIT(n);
    p = strdup(path);
    for (size_t i = 0; params[i].opt; i++)
        cli_query_add(&p, params[i].query, values[i]);
    return cli_show_list(p, key, cols, more);
}

int
cli_print_done(json_t *j, const char *fmt, ...)
{
    va_list ap;

    if (cli_json_out)
        cli_print_json(j);
    else {
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
    }
    json_decref(j);
    return CLI_EXIT_OK;
}
