/* cli_queues.c -- baton queues pause|resume: hold a queue's claims and let
 * them go again (POST /v1/queues/{queue}/pause|resume). The listing,
 * `baton queues`, is in cli_jobs.c and shows the paused column. */
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
