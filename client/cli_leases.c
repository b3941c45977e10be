/* cli_leases.c -- baton leases (get, list, force-release), baton accounts (list, set, delete). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- leases ---------------------------------------------------------------- */

static const char *const lease_cols[] = {"channel", "accountId", "ownerId", "token",
                                         "expiresAt", "transitions", NULL};

int
cli_leases_get(int argc, char **argv)
{
    char *pos[2];
    int n = cli_args(argc, argv, NULL, pos, 2, 2);
    json_t *j, *l;

    CLI_ARGS_OR_EXIT(n);
    if (cli_call("GET", cli_path_of("/v1/leases/%s/%s", pos[0], pos[1]), NULL, &j) < 0)
        return CLI_EXIT_ERR;
    l = json_object_get(j, "lease") ? json_object_get(j, "lease") : j;
    if (cli_json_out)
        cli_print_json(j);
    else if (!l || json_is_null(l))
        printf("no lease on %s/%s\n", pos[0], pos[1]);
    else
        cli_print_object(l);
    json_decref(j);
    return CLI_EXIT_OK;
}

int
cli_leases_list(int argc, char **argv)
{
    static const struct cli_param params[] = {{"owner", "ownerId"}, {"channel", "channel"}, {0}};

    return cli_list(argc, argv, "/v1/leases", params, "leases", lease_cols, NULL);
}

int
cli_leases_force_release(int argc, char **argv)
{
    char *pos[2];
    int n = cli_args(argc, argv, NULL, pos, 2, 2);
    json_t *j;

    CLI_ARGS_OR_EXIT(n);
    if (cli_call("POST", cli_path_of("/v1/leases/%s/%s/force-release", pos[0], pos[1]),
                 json_object(), &j) < 0)
        return CLI_EXIT_ERR;
    /* released:false is no error (the account is free either way): say
     * so, exit 0 as every query whose answer is "nothing" does */
    if (json_is_true(json_object_get(j, "released")))
        return cli_print_done(j, "released %s/%s", pos[0], pos[1]);
    return cli_print_done(j, "not released: nobody held the lease on %s/%s", pos[0], pos[1]);
}

/* ---- accounts -------------------------------------------------------------- */

int
cli_accounts_list(int argc, char **argv)
{
    static const char *const cols[] = {"channel", "accountId", "enabled", "config", "updatedAt",
                                       NULL};
    const char *channel = NULL, *enabled = NULL;
    struct cli_opt o[] = {{"channel", true, &channel, NULL}, {"enabled", true, &enabled, NULL},
                          {0}};
    char *pos[1], *path;
    int n = cli_args(argc, argv, o, pos, 0, 0);

    CLI_ARGS_OR_EXIT(n);
    if (enabled && strcmp(enabled, "true") && strcmp(enabled, "false"))
        return cli_usage_error("--enabled must be true or false");
    path = strdup("/v1/accounts");
    cli_query_add(&path, "channel", channel);
    cli_query_add(&path, "enabled", enabled);
    return cli_show_list(path, "accounts", cols, NULL);
}

int
cli_accounts_set(int argc, char **argv)
{
    bool enable = false, disable = false;
    const char *config = NULL;
    struct cli_opt o[] = {{"enable", false, NULL, &enable}, {"disable", false, NULL, &disable},
                          {"config", true, &config, NULL}, {0}};
    char *pos[2];
    int n = cli_args(argc, argv, o, pos, 2, 2);
    json_t *body, *cfgj = NULL, *j;

    CLI_ARGS_OR_EXIT(n);
    if (enable == disable)
        return cli_usage_error("give exactly one of --enable and --disable");
    if (config && !(cfgj = json_loads(config, JSON_DECODE_ANY, NULL)))
        return cli_usage_error("--config is not valid JSON");
    body = json_pack("{s:b}", "enabled", enable);
    if (cfgj)
        json_object_set_new(body, "config", cfgj);
    if (cli_call("PUT", cli_path_of("/v1/accounts/%s/%s", pos[0], pos[1]), body, &j) < 0)
        return CLI_EXIT_ERR;
    return cli_print_done(j, "account %s/%s %s", pos[0], pos[1],
                          enable ? "enabled" : "disabled");
}

int
cli_accounts_delete(int argc, char **argv)
{
    char *pos[2];
    int n = cli_args(argc, argv, NULL, pos, 2, 2);
    json_t *j;

    CLI_ARGS_OR_EXIT(n);
    if (cli_call("DELETE", cli_path_of("/v1/accounts/%s/%s", pos[0], pos[1]), NULL, &j) < 0)
        return CLI_EXIT_ERR;
    return cli_print_done(j, "account %s/%s deleted", pos[0], pos[1]);
}
