/* cli_queues.c -- baton queues pause|resume: hold a queue's claims and let
 * them go again (POST /v1/queues/{queue}/pause|resume); baton queues
 * limits: read or set its rate limits (/v1/queues/{queue}/limits). The
 * listing, `baton queues`, is in cli_jobs.c and shows the paused column. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int
queue_control(int argc, char **argv, const char *verb)
{
    const char *reason = NULL;
    struct cli_opt o[] = {{"reason", true, &reason, NULL}, {0}};
    char *pos[1];
    int n = cli_args(argc, argv, o, pos, 1, 1);
    json_t *body, *j;
    bool changed;

    CLI_ARGS_OR_EXIT(n);
    body = reason ? json_pack("{s:s}", "reason", reason) : json_object();
    if (cli_call("POST", cli_path_of("/v1/queues/%s/%s", pos[0], verb), body, &j) < 0)
        return CLI_EXIT_ERR;
    changed = json_is_true(json_object_get(j, "changed"));
    return cli_print_done(j, "queue %s %s%s", pos[0], !strcmp(verb, "pause") ? "paused" : "resumed",
                          changed ? "" : !strcmp(verb, "pause") ? " (it already was)"
                                                                 : " (it was not paused)");
}

int
cli_queues_pause(int argc, char **argv)
{
    return queue_control(argc, argv, "pause");
}

int
cli_queues_resume(int argc, char **argv)
{
    return queue_control(argc, argv, "resume");
}

/* "N/MS" (N claims per MS milliseconds) into a limit object; NULL when
 * malformed. */
static json_t *
limit_of(const char *v, bool by_key)
{
    char *end;
    long long n = strtoll(v, &end, 10), ms;

    if (end == v || *end != '/')
        return NULL;
    v = end + 1;
    ms = strtoll(v, &end, 10);
    if (end == v || *end)
        return NULL;
    return json_pack("{s:I, s:I, s:b}", "limit", n, "periodMs", ms, "byKey", by_key);
}

static void
print_limits(json_t *j)
{
    json_t *l;
    size_t i;

    printf("%s%s\n", json_string_value(json_object_get(j, "queue")),
           json_is_true(json_object_get(j, "default")) ? " (defaults)" : "");
    if (!json_array_size(json_object_get(j, "rate")))
        printf("  no rate limit\n");
    json_array_foreach(json_object_get(j, "rate"), i, l)
        printf("  %lld claims per %lld ms%s\n", (long long)json_integer_value(json_object_get(l, "limit")),
               (long long)json_integer_value(json_object_get(l, "periodMs")),
               json_is_true(json_object_get(l, "byKey")) ? " for each rateKey" : "");
}

int
cli_queues_limits(int argc, char **argv)
{
    const char *rate = NULL, *key_rate = NULL;
    bool none = false, reset = false;
    struct cli_opt o[] = {{"rate", true, &rate, NULL}, {"key-rate", true, &key_rate, NULL},
                          {"none", false, NULL, &none}, {"reset", false, NULL, &reset}, {0}};
    char *pos[1];
    int n = cli_args(argc, argv, o, pos, 1, 1);
    json_t *body = NULL, *list, *l, *j;
    const char *method = "GET";

    CLI_ARGS_OR_EXIT(n);
    if ((rate || key_rate || none) + reset > 1 || (none && (rate || key_rate)))
        return cli_usage_error("give either --rate/--key-rate, --none or --reset");
    if (reset)
        method = "DELETE";
    else if (rate || key_rate || none) {
        method = "PUT";
        if (!(list = json_array()))
            return cli_fail("out of memory");
        for (int i = 0; i < 2; i++) {
            const char *v = i ? key_rate : rate;
            if (!v)
                continue;
            if (!(l = limit_of(v, i))) {
                json_decref(list);
                return cli_usage_error("--%s takes N/MS: at most N claims in any MS milliseconds",
                                       i ? "key-rate" : "rate");
            }
            json_array_append_new(list, l);
        }
        body = json_pack("{s:o}", "rate", list);
    }
    if (cli_call(method, cli_path_of("/v1/queues/%s/limits", pos[0]), body, &j) < 0)
        return CLI_EXIT_ERR;
    if (cli_json_out)
        cli_print_json(j);
    else
        print_limits(j);
    json_decref(j);
    return CLI_EXIT_OK;
}
