/* cli_events.c -- baton events (a table) and baton logs (log lines; --follow tails them). */
#define _GNU_SOURCE             /* strndup */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* GET /v1/events with the usual filters into *out (array, newest first).
 * Returns an exit code; *out is set only on CLI_EXIT_OK. */
static int
events_fetch(const char *event, const char *since, const char *until, const char *limit,
             const char *where, json_t **out)
{
    char *path = strdup("/v1/events");
    int64_t t;
    json_t *j;

    cli_query_add(&path, "event", event);
    if (since) {
        if (cli_parse_when(since, &t) < 0)
            return free(path), cli_usage_error("--since must be epoch ms or a duration like 24h");
        cli_query_add_int(&path, "since", t);
    }
    if (until) {
        if (cli_parse_when(until, &t) < 0)
            return free(path), cli_usage_error("--until must be epoch ms or a duration like 1h");
        cli_query_add_int(&path, "until", t);
    }
    cli_query_add(&path, "limit", limit);
    if (where) {
        const char *eq = strchr(where, '=');
        char *k;
        if (!eq || eq == where)
            return free(path), cli_usage_error("--where must be FIELD=VALUE");
        k = strndup(where, (size_t)(eq - where));
        cli_query_add(&path, k, eq + 1);
        free(k);
    }
    if (cli_call("GET", path, NULL, &j) < 0)
        return CLI_EXIT_ERR;
    *out = j;
    return CLI_EXIT_OK;
}

/* ---- events ---------------------------------------------------------------- */

int
cli_events(int argc, char **argv)
{
    static const char *const cols[] = {"time", "level", "event", "fields", NULL};
    const char *event = NULL, *since = NULL, *until = NULL, *limit = NULL, *where = NULL;
    struct cli_opt o[] = {{"event", true, &event, NULL}, {"since", true, &since, NULL},
                          {"until", true, &until, NULL}, {"limit", true, &limit, NULL},
                          {"where", true, &where, NULL}, {0}};
    char *pos[1];
    int n = cli_args(argc, argv, o, pos, 0, 0), rc;
    json_t *j, *rows, *e;
    size_t i;

    CLI_ARGS_OR_EXIT(n);
    if ((rc = events_fetch(event, since, until, limit, where, &j)) != CLI_EXIT_OK)
        return rc;
    if (cli_json_out) {
        cli_print_json(j);
        json_decref(j);
        return CLI_EXIT_OK;
    }
    rows = json_array();
    json_array_foreach(cli_rows_of(j, "events"), i, e) {
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
    cli_print_table(rows, cols);
    json_decref(rows);
    json_decref(j);
    return CLI_EXIT_OK;
}

/* ---- logs ------------------------------------------------------------------ */

/* One event as a log line: JSON with --json, else "time level event k=v...". */
static void
print_log_line(json_t *e)
{
    const char *k;
    json_t *v;
    char ts[40] = "-";

    if (cli_json_out) {
        char *s = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        puts(s ? s : "null");
        free(s);
        fflush(stdout);
        return;
    }
    if (json_is_string(json_object_get(e, "_time")))
        snprintf(ts, sizeof ts, "%s", json_string_value(json_object_get(e, "_time")));
    else if (json_is_integer(json_object_get(e, "time")))
        cli_fmt_time(json_integer_value(json_object_get(e, "time")), ts, sizeof ts);
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

/* baton_events_follow callback: one streamed event as a log line. */
static int
on_stream_event(void *arg, const char *id, const char *event, json_t *data, const char *raw)
{
    (void)arg;
    (void)id;
    if (json_is_object(data)) {
        if (event && !json_object_get(data, "event"))
            json_object_set_new(data, "event", json_string(event));
        print_log_line(data);
    } else if (cli_json_out) {
        json_t *o = json_pack("{s:s?, s:s}", "event", event, "data", raw);
        print_log_line(o);
        json_decref(o);
    } else {
        printf("%s %s\n", event ? event : "message", raw);
        fflush(stdout);
    }
    return 0;
}

int
cli_logs(int argc, char **argv)
{
    const char *event = NULL, *since = NULL, *limit = NULL;
    bool follow = false;
    struct cli_opt o[] = {{"event", true, &event, NULL}, {"since", true, &since, NULL},
                          {"limit", true, &limit, NULL}, {"follow", false, NULL, &follow}, {0}};
    char *pos[1], last[32] = "";
    int n = cli_args(argc, argv, o, pos, 0, 0), rc;
    json_t *j = NULL, *rows;
    baton_error e;

    CLI_ARGS_OR_EXIT(n);
    if (!follow || since || limit) {
        if ((rc = events_fetch(event, since, NULL, limit, NULL, &j)) != CLI_EXIT_OK)
            return rc;
        rows = cli_rows_of(j, "events");
        for (size_t i = json_array_size(rows); i-- > 0;)
            print_log_line(json_array_get(rows, i));
        if (json_array_size(rows))
            snprintf(last, sizeof last, "%s",
                     json_string_value(json_object_get(json_array_get(rows, 0), "id")) ?: "");
        json_decref(j);
    }
    if (!follow)
        return CLI_EXIT_OK;
    /* a tail survives server restarts: keep reconnecting for a while */
    baton_set_retry(cli_client, 200, 5000, 120000);
    if (baton_events_follow(cli_client, event, last[0] ? last : NULL, on_stream_event, NULL, &e) < 0)
        return cli_fail("following events: %s", baton_strerror(&e));
    return CLI_EXIT_OK;
}
