/* cli_sessions.c -- baton dedupe check and baton sessions (get, keys, clear). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- dedupe ---------------------------------------------------------------- */

int
cli_dedupe_check(int argc, char **argv)
{
    const char *ttl = NULL;
    struct cli_opt o[] = {{"ttl", true, &ttl, NULL}, {0}};
    char *pos[2];
    int n = cli_args(argc, argv, o, pos, 2, 2);
    json_t *body, *j;

    CLI_ARGS_OR_EXIT(n);
    body = json_pack("{s:s, s:s}", "channel", pos[0], "channelMessageId", pos[1]);
    if (cli_set_number(body, "ttlMs", ttl, cli_parse_duration) < 0)
        return json_decref(body), cli_usage_error("--ttl must be a duration");
    if (cli_call("POST", strdup("/v1/dedupe"), body, &j) < 0)
        return CLI_EXIT_ERR;
    if (cli_json_out)
        cli_print_json(j);
    else if (json_is_true(json_object_get(j, "duplicate"))) {
        char *t = cli_cell("firstSeenAt", json_object_get(j, "firstSeenAt"));
        printf("duplicate (first seen %s)\n", t ? t : "?");
        free(t);
    } else
        puts("new");
    json_decref(j);
    return CLI_EXIT_OK;
}

/* ---- sessions -------------------------------------------------------------- */

int
cli_sessions_get(int argc, char **argv)
{
    char *pos[3];
    int n = cli_args(argc, argv, NULL, pos, 2, 3);
    json_t *j, *entries, *v;
    const char *k;

    CLI_ARGS_OR_EXIT(n);
    if (n == 3) {
        if (cli_call("GET", cli_path_of("/v1/sessions/%s/%s/keys/%s", pos[0], pos[1], pos[2]),
                     NULL, &j) < 0)
            return CLI_EXIT_ERR;
        v = json_object_get(j, "value");
        cli_print_json(cli_json_out || !v ? j : v);
        json_decref(j);
        return CLI_EXIT_OK;
    }
    if (cli_call("GET", cli_path_of("/v1/sessions/%s/%s", pos[0], pos[1]), NULL, &j) < 0)
        return CLI_EXIT_ERR;
    entries = json_object_get(j, "entries");
    if (cli_json_out)
        cli_print_json(j);
    else if (!json_object_size(entries))
        puts("(no entries)");
    else
        json_object_foreach(entries, k, v) {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            printf("%s  %s\n", k, s ? s : "?");
            free(s);
        }
    json_decref(j);
    return CLI_EXIT_OK;
}

int
cli_sessions_keys(int argc, char **argv)
{
    char *pos[2];
    int n = cli_args(argc, argv, NULL, pos, 2, 2);
    json_t *j, *v;
    size_t i;

    CLI_ARGS_OR_EXIT(n);
    /* the names only: values (credentials) never leave the server here */
    if (cli_call("GET", cli_path_of("/v1/sessions/%s/%s/keys", pos[0], pos[1]), NULL, &j) < 0)
        return CLI_EXIT_ERR;
    if (cli_json_out)
        cli_print_json(j);
    else if (!json_array_size(cli_rows_of(j, "keys")))
        puts("(none)");
    else
        json_array_foreach(cli_rows_of(j, "keys"), i, v)
            puts(json_string_value(v) ? json_string_value(v) : "?");
    json_decref(j);
    return CLI_EXIT_OK;
}

int
cli_sessions_clear(int argc, char **argv)
{
    char *pos[2];
    int n = cli_args(argc, argv, NULL, pos, 2, 2);
    json_t *j;

    CLI_ARGS_OR_EXIT(n);
    if (cli_call("DELETE", cli_path_of("/v1/sessions/%s/%s", pos[0], pos[1]), NULL, &j) < 0)
        return CLI_EXIT_ERR;
    if (!j)
        j = json_object();      /* an empty answer prints as {} */
    return cli_print_done(j, "cleared the session of %s/%s", pos[0], pos[1]);
}
