/* cli_schedules.c -- baton schedules list|add|rm|pause|resume. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define G "global options: --url URL, --secret SECRET, --json (raw answers).\n"

const char cli_schedules_usage[] =
    "usage: baton schedules <subcommand> [options]\n"
    "\n"
    "  list                                     every schedule\n"
    "  add NAME --queue Q (--cron EXPR | --every MS) [PAYLOAD-JSON]\n"
    "                                           a job at each due time\n"
    "  rm NAME                                  delete a schedule\n"
    "  pause NAME | resume NAME                 stop or restart enqueueing\n" G;
const char cli_schedules_add_usage[] =
    "usage: baton schedules add NAME --queue Q (--cron \"EXPR\" | --every MS) [PAYLOAD-JSON]\n\n"
    "Enqueue a job of queue Q with PAYLOAD (default {}) at each due time of a\n"
    "five-field cron expression (minute hour day-of-month month day-of-week,\n"
    "UTC) or every MS milliseconds (at least 1000; 10s, 5m... also work).\n" G;

static const char *const cols[] = {"name", "queue", "cron", "everyMs", "paused", "nextRunAt", "runs", NULL};

int
cli_schedules_list(int argc, char **argv)
{
    static const struct cli_param params[] = {{0}};

    return cli_list(argc, argv, "/v1/schedules", params, "schedules", cols, NULL);
}

int
cli_schedules_add(int argc, char **argv)
{
    const char *queue = NULL, *cron = NULL, *every = NULL;
    struct cli_opt o[] = {{"queue", true, &queue, NULL}, {"cron", true, &cron, NULL},
                          {"every", true, &every, NULL}, {0}};
    char *pos[2];
    int n = cli_args(argc, argv, o, pos, 1, 2);
    json_t *body, *payload = NULL, *j;

    CLI_ARGS_OR_EXIT(n);
    if (!queue)
        return cli_usage_error("--queue is required");
    if (!cron == !every)
        return cli_usage_error("give one of --cron and --every");
    if (n == 2 && !(payload = json_loads(pos[1], JSON_DECODE_ANY, NULL)))
        return cli_usage_error("PAYLOAD is not valid JSON: %s", pos[1]);
    body = json_pack("{s:s, s:s, s:o}", "name", pos[0], "queue", queue, "payload",
                     payload ? payload : json_object());
    if (cron)
        json_object_set_new(body, "cron", json_string(cron));
    if (cli_set_number(body, "everyMs", every, cli_parse_duration) < 0)
        return json_decref(body), cli_usage_error("--every must be a duration (ms, or 10s, 5m...)");
    if (cli_call("POST", strdup("/v1/schedules"), body, &j) < 0)
        return CLI_EXIT_ERR;
    return cli_print_done(j, "schedule %s: next run at %lld", pos[0],
                          (long long)json_integer_value(json_object_get(cli_unwrap(j, "schedule"),
                                                                        "nextRunAt")));
}

/* `schedules <verb> NAME`: method on /v1/schedules/NAME[/action]. */
static int
action(int argc, char **argv, const char *method, const char *what, const char *done)
{
    char *pos[1];
    int n = cli_args(argc, argv, NULL, pos, 1, 1);
    json_t *j;

    CLI_ARGS_OR_EXIT(n);
    if (cli_call(method, what ? cli_path_of("/v1/schedules/%s/%s", pos[0], what)
                              : cli_path_of("/v1/schedules/%s", pos[0]),
                 strcmp(method, "DELETE") ? json_object() : NULL, &j) < 0)
        return CLI_EXIT_ERR;
    return cli_print_done(j, "schedule %s: %s", pos[0], done);
}

int
cli_schedules_rm(int argc, char **argv)
{
    return action(argc, argv, "DELETE", NULL, "deleted");
}

int
cli_schedules_pause(int argc, char **argv)
{
    return action(argc, argv, "POST", "pause", "paused");
}

int
cli_schedules_resume(int argc, char **argv)
{
    return action(argc, argv, "POST", "resume", "resumed");
}
