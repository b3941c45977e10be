/* cli_jobs.c -- baton jobs (list, get, pending, retry, fail, cancel, ...) and baton queues. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- jobs ------------------------------------------------------------------ */

static const char *const job_cols[] = {"id", "queue", "status", "attempts", "priority",
                                       "updatedAt", "errorReason", NULL};

int
cli_jobs_list(int argc, char **argv)
{
    static const struct cli_param params[] = {{"queue", "queue"}, {"status", "status"},
                                              {"limit", "limit"}, {"cursor", "cursor"}, {0}};

    return cli_list(argc, argv, "/v1/jobs", params, "jobs", job_cols, "baton jobs list");
}

int
cli_jobs_get(int argc, char **argv)
{
    char *pos[1];
    int n = cli_args(argc, argv, NULL, pos, 1, 1);
    json_t *j;

    CLI_ARGS_OR_EXIT(n);
    if (cli_call("GET", cli_path_of("/v1/jobs/%s", pos[0]), NULL, &j) < 0)
        return CLI_EXIT_ERR;
    if (cli_json_out)
        cli_print_json(j);
    else
        cli_print_object(cli_unwrap(j, "job"));
    json_decref(j);
    return CLI_EXIT_OK;
}

int
cli_jobs_pending(int argc, char **argv)
{
    static const char *const cols[] = {"id", "queue", "status", "attempts", "lockedBy",
                                       "lockedUntil", "stale", NULL};
    static const struct cli_param params[] = {{"queue", "queue"}, {0}};

    return cli_list(argc, argv, "/v1/jobs/pending", params, "jobs", cols, NULL);
}

/* POST /v1/jobs/ID/<action> with body (stolen) and print the job's new
 * state. Returns an exit code. */
static int
job_change(const char *id, const char *action, json_t *body)
{
    json_t *j;
    const char *st;

    if (cli_call("POST", cli_path_of("/v1/jobs/%s/%s", id, action), body, &j) < 0)
        return CLI_EXIT_ERR;
    st = json_string_value(json_object_get(cli_unwrap(j, "job"), "status"));
    return cli_print_done(j, "job %s: %s", id, st ? st : "ok");
}

/* `jobs <verb> ID` for a change without options. */
static int
job_action(int argc, char **argv, const char *action)
{
    char *pos[1];
    int n = cli_args(argc, argv, NULL, pos, 1, 1);

    CLI_ARGS_OR_EXIT(n);
    return job_change(pos[0], action, json_object());
}

int
cli_jobs_retry(int argc, char **argv)
{
    return job_action(argc, argv, "retry");
}

int
cli_jobs_cancel(int argc, char **argv)
{
    return job_action(argc, argv, "cancel");
}

int
cli_jobs_fail(int argc, char **argv)
{
    const char *reason = "failed_by_operator", *message = "failed by an operator";
    struct cli_opt o[] = {{"reason", true, &reason, NULL}, {"message", true, &message, NULL},
                          {0}};
    char *pos[1];
    int n = cli_args(argc, argv, o, pos, 1, 1);

    CLI_ARGS_OR_EXIT(n);
    return job_change(pos[0], "fail-now", json_pack("{s:s, s:s}", "errorReason", reason,
                                                    "errorMessage", message));
}

/* "label: N (id, id...)" */
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

int
cli_jobs_requeue_stale(int argc, char **argv)
{
    char *pos[1];
    int n = cli_args(argc, argv, NULL, pos, 0, 0);
    json_t *j;

    CLI_ARGS_OR_EXIT(n);
    if (cli_call("POST", strdup("/v1/jobs/requeue-stale"), json_object(), &j) < 0)
        return CLI_EXIT_ERR;
    if (cli_json_out)
        cli_print_json(j);
    else {
        print_ids("requeued", json_object_get(j, "requeued"));
        print_ids("failed", json_object_get(j, "failed"));
    }
    json_decref(j);
    return CLI_EXIT_OK;
}

int
cli_jobs_enqueue(int argc, char **argv)
{
    const char *queue = NULL, *prio = NULL, *delay = NULL, *max = NULL, *key = NULL, *order = NULL,
               *rate = NULL;
    struct cli_opt o[] = {{"queue", true, &queue, NULL},    {"priority", true, &prio, NULL},
                          {"delay", true, &delay, NULL},    {"max-attempts", true, &max, NULL},
                          {"dedupe-key", true, &key, NULL}, {"order-key", true, &order, NULL},
                          {"rate-key", true, &rate, NULL},  {0}};
    char *pos[1];
    int n = cli_args(argc, argv, o, pos, 0, 1), rc;
    json_t *body, *payload = NULL, *j;
    const char *id;

    CLI_ARGS_OR_EXIT(n);
    if (n == 1 && !(payload = json_loads(pos[0], JSON_DECODE_ANY, NULL)))
        return cli_usage_error("PAYLOAD is not valid JSON: %s", pos[0]);
    body = json_pack("{s:s, s:o}", "queue", queue ? queue : "agent", "payload",
                     payload ? payload : json_object());
    if (cli_set_number(body, "priority", prio, cli_parse_int) < 0)
        return json_decref(body), cli_usage_error("--priority must be an integer");
    if (cli_set_number(body, "delayMs", delay, cli_parse_duration) < 0)
        return json_decref(body),
               cli_usage_error("--delay must be a duration (ms, or 10s, 5m...)");
    if (cli_set_number(body, "maxAttempts", max, cli_parse_int) < 0)
        return json_decref(body), cli_usage_error("--max-attempts must be an integer");
    if (key)
        json_object_set_new(body, "dedupeKey", json_string(key));
    if (order)
        json_object_set_new(body, "orderKey", json_string(order));
    if (rate)
        json_object_set_new(body, "rateKey", json_string(rate));
    if ((rc = cli_call("POST", strdup("/v1/jobs"), body, &j)) < 0)
        return CLI_EXIT_ERR;
    id = json_string_value(json_object_get(cli_unwrap(j, "job"), "id"));
    return cli_print_done(j, "%s %s",
                          json_is_true(json_object_get(j, "duplicate")) || rc == 200
                              ? "duplicate of job" : "enqueued job",
                          id ? id : "?");
}

/* baton jobs enqueue-batch FILE|-: a JSON array of POST /v1/jobs bodies
 * (or {jobs: [...]}) in one POST /v1/jobs/batch. */
int
cli_jobs_enqueue_batch(int argc, char **argv)
{
    struct cli_opt o[] = {{0}};
    char *pos[1];
    int n = cli_args(argc, argv, o, pos, 1, 1);
    json_error_t je;
    json_t *in, *body, *j, *e;
    size_t i, dups = 0;

    CLI_ARGS_OR_EXIT(n);
    in = !strcmp(pos[0], "-") ? json_loadf(stdin, 0, &je) : json_load_file(pos[0], 0, &je);
    if (!in && je.line > 0)
        return cli_usage_error("%s: not valid JSON: %s (line %d)", pos[0], je.text, je.line);
    if (!in)
        return cli_usage_error("%s: %s", pos[0], je.text);
    if (json_is_array(in))
        body = json_pack("{s:o}", "jobs", in);
    else if (json_is_array(json_object_get(in, "jobs")))
        body = in;
    else {
        json_decref(in);
        return cli_usage_error("%s: expected a JSON array of jobs (or {\"jobs\": [...]})", pos[0]);
    }
    if (cli_call("POST", strdup("/v1/jobs/batch"), body, &j) < 0)
        return CLI_EXIT_ERR;
    if (cli_json_out) {
        cli_print_json(j);
        json_decref(j);
        return CLI_EXIT_OK;
    }
    json_array_foreach(json_object_get(j, "jobs"), i, e) {
        const char *id = json_string_value(json_object_get(json_object_get(e, "job"), "id"));
        bool dup = json_is_true(json_object_get(e, "duplicate"));
        dups += dup;
        printf("%s %s\n", dup ? "duplicate of job" : "enqueued job", id ? id : "?");
    }
    return cli_print_done(j, "%zu jobs: %zu enqueued, %zu duplicates",
                          json_array_size(json_object_get(j, "jobs")),
                          json_array_size(json_object_get(j, "jobs")) - dups, dups);
}

/* ---- queues ---------------------------------------------------------------- */

/* Flatten nested objects of a row one level ({counts:{pending:1}} -> pending);
 * name, when given, becomes its "queue". */
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

int
cli_queues(int argc, char **argv)
{
    static const char *const cols[] = {"queue", "pending", "processing", "completed", "failed",
                                       "stale", "oldestPendingAgeMs", "paused", NULL};
    char *pos[1];
    int n;
    json_t *j, *rows, *src, *v;
    const char *k;
    size_t i;

    if (argc > 0 && !strcmp(argv[0], "pause"))
        return cli_queues_pause(argc - 1, argv + 1);
    if (argc > 0 && !strcmp(argv[0], "resume"))
        return cli_queues_resume(argc - 1, argv + 1);
    if (argc > 0 && !strcmp(argv[0], "limits"))
        return cli_queues_limits(argc - 1, argv + 1);
    n = cli_args(argc, argv, NULL, pos, 0, 0);
    CLI_ARGS_OR_EXIT(n);
    if (cli_call("GET", strdup("/v1/queues"), NULL, &j) < 0)
        return CLI_EXIT_ERR;
    if (cli_json_out) {
        cli_print_json(j);
        json_decref(j);
        return CLI_EXIT_OK;
    }
    rows = json_array();
    if ((src = cli_rows_of(j, "queues")))
        json_array_foreach(src, i, v)
            json_array_append_new(rows, flatten(v, NULL));
    else {
        src = json_is_object(json_object_get(j, "queues")) ? json_object_get(j, "queues") : j;
        json_object_foreach(src, k, v)
            if (json_is_object(v))
                json_array_append_new(rows, flatten(v, k));
    }
    cli_print_table(rows, cols);
    json_decref(rows);
    json_decref(j);
    return CLI_EXIT_OK;
}
