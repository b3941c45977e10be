/* cli.h -- the baton CLI: what the command families share. Internal to the
 * CLI; not installed.
 *
 * DESIGN
 * cli.c owns main(), the global flags and the command table; each
 * cli_<family>.c holds the handlers of one family of commands; cli_util.c
 * holds what they share: option parsing, calls through libbaton, tables,
 * time parsing and formatting, JSON output. A handler gets the arguments
 * after its (sub)command and returns an exit code. */
#ifndef CLI_H
#define CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "baton.h"

/* Exit codes; `alerts check` uses CLI_EXIT_USAGE (2) for "alert". */
enum { CLI_EXIT_OK = 0, CLI_EXIT_ERR = 1, CLI_EXIT_USAGE = 2 };

extern baton_client *cli_client;        /* made by main() from --url/--secret */
extern bool cli_json_out;               /* --json: raw answers, no tables */
extern const char *cli_cur_usage;       /* the usage text of the running command */

/* ---- handlers (one per table row in cli.c) -------------------------------- */

/* cli_schedules.c: schedules (and their help, for the command table) */
extern const char cli_schedules_usage[], cli_schedules_add_usage[];
int cli_schedules_list(int argc, char **argv);
int cli_schedules_add(int argc, char **argv);
int cli_schedules_rm(int argc, char **argv);
int cli_schedules_pause(int argc, char **argv);
int cli_schedules_resume(int argc, char **argv);

/* cli_jobs.c: jobs, queues */
int cli_jobs_list(int argc, char **argv);
int cli_jobs_get(int argc, char **argv);
int cli_jobs_pending(int argc, char **argv);
int cli_jobs_retry(int argc, char **argv);
int cli_jobs_fail(int argc, char **argv);
int cli_jobs_cancel(int argc, char **argv);
int cli_jobs_requeue_stale(int argc, char **argv);
int cli_jobs_enqueue(int argc, char **argv);
int cli_jobs_enqueue_batch(int argc, char **argv);
int cli_queues(int argc, char **argv);
/* cli_queues.c: queues pause|resume (cli_queues hands them on) */
int cli_queues_pause(int argc, char **argv);
int cli_queues_resume(int argc, char **argv);
/* queues limits QUEUE [--rate N/MS] [--key-rate N/MS] [--none] [--reset] */
int cli_queues_limits(int argc, char **argv);
/* cli_leases.c: leases, accounts */
int cli_leases_get(int argc, char **argv);
int cli_leases_list(int argc, char **argv);
int cli_leases_force_release(int argc, char **argv);
int cli_accounts_list(int argc, char **argv);
int cli_accounts_set(int argc, char **argv);
int cli_accounts_delete(int argc, char **argv);
/* cli_sessions.c: dedupe, sessions */
int cli_dedupe_check(int argc, char **argv);
int cli_sessions_get(int argc, char **argv);
int cli_sessions_keys(int argc, char **argv);
int cli_sessions_clear(int argc, char **argv);
/* cli_events.c: events, logs */
int cli_events(int argc, char **argv);
int cli_logs(int argc, char **argv);
/* cli_alerts.c: alerts check */
int cli_alerts_check(int argc, char **argv);
/* cli_admin.c: backup, run */
int cli_backup(int argc, char **argv);
int cli_run(int argc, char **argv);

/* ---- cli_util.c: errors ---------------------------------------------------- */

/* "baton: <message>" and the running command's usage on stderr; returns
 * CLI_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "baton: <message>" on stderr; returns CLI_EXIT_ERR. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- options --------------------------------------------------------------- */

struct cli_opt {
    const char *name;           /* without "--" */
    bool takes_value;
    const char **value;         /* for options with a value */
    bool *flag;                 /* for flags */
};

/* Parse argv[0..argc) (argv[0] is the first argument, not the command) into
 * opts (NULL: none; else ended by {0}) and between lo and hi positionals in
 * pos. Returns their count, -1 after printing a usage error (exit 2), or -2
 * after printing the help (exit 0). */
int cli_args(int argc, char **argv, const struct cli_opt *opts, char **pos, int lo, int hi);

/* Return from a handler when cli_args did not give its arguments. */
#define CLI_ARGS_OR_EXIT(n) \
    do { \
        if ((n) == -2) \
            return CLI_EXIT_OK; \
        if ((n) < 0) \
            return CLI_EXIT_USAGE; \
    } while (0)

/* A whole decimal integer. Returns 0, or -1 (out untouched). */
int cli_parse_int(const char *s, int64_t *out);
/* "24h", "10m", "30s", "500ms", "2d" or plain milliseconds. Returns 0 or -1. */
int cli_parse_duration(const char *s, int64_t *out);
/* A time argument: epoch ms, or a duration meaning "that long ago". */
int cli_parse_when(const char *s, int64_t *out);
/* When s is given, set body[field] to the number parse reads from it.
 * Returns 0, or -1 when s does not parse (body untouched). */
int cli_set_number(json_t *body, const char *field, const char *s,
                   int (*parse)(const char *s, int64_t *out));

/* ---- time ------------------------------------------------------------------ */

int64_t cli_now_ms(void);
/* Epoch ms as "2024-01-02T03:04:05Z". */
void cli_fmt_time(int64_t ms, char *buf, size_t n);
/* A duration as "250ms", "1.5s", "10m", "3h" or "2d". */
void cli_fmt_duration(int64_t ms, char *buf, size_t n);
bool cli_ends_with(const char *s, const char *suffix);

/* ---- calls ----------------------------------------------------------------- */

/* Build a path; every %s argument is escaped. Caller frees; NULL when out
 * of memory. */
char *cli_path_of(const char *fmt, ...);
/* Append "?k=v" / "&k=v" (v escaped) to *path (reallocated) when v is not
 * NULL. */
void cli_query_add(char **path, const char *k, const char *v);
/* The same for a number. */
void cli_query_add_int(char **path, const char *k, int64_t v);
/* One call; prints the error and returns -1 on failure, else the HTTP
 * status. body is stolen, path freed (NULL: out of memory). *out gets the
 * answer (may be NULL), the caller's to free. */
int cli_call(const char *method, char *path, json_t *body, json_t **out);
/* GET path (freed) and print it: raw with --json, else the rows under key
 * as a table with cols; when more is given and the answer has a
 * nextCursor, a last line "more: <more> --cursor <next>". Returns an exit
 * code. */
int cli_show_list(char *path, const char *key, const char *const *cols, const char *more);
/* A list command's option that becomes a query parameter of its GET. */
struct cli_param {
    const char *opt;            /* --opt VALUE (without "--") */
    const char *query;          /* ...?query=VALUE */
};
#define CLI_MAX_PARAMS 8

/* A list command without positionals: parse argv for the options of params
 * (at most CLI_MAX_PARAMS, ended by {0}), GET path with a query parameter
 * for each one given and show the answer as cli_show_list does. Returns an
 * exit code. */
int cli_list(int argc, char **argv, const char *path, const struct cli_param *params,
             const char *key, const char *const *cols, const char *more);
/* Print the answer j of a change and free it: raw with --json, else the
 * line fmt makes. Returns CLI_EXIT_OK. */
int cli_print_done(json_t *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- output ---------------------------------------------------------------- */

/* Human text of one value under key (times and durations by the key's
 * name); returns a malloc'ed string. */
char *cli_cell(const char *key, json_t *v);
/* Indented JSON; "null" for NULL. */
void cli_print_json(json_t *j);
/* "key: value" lines for one object, keys aligned. */
void cli_print_object(json_t *o);
/* Print rows (array of objects) as a table of cols (NULL-terminated keys;
 * NULL: the scalar keys of the first row); "(none)" when there are none. */
void cli_print_table(json_t *rows, const char *const *cols);
/* The list in an answer: the answer itself when it is an array, else its
 * member key, else its first array member. Borrowed. */
json_t *cli_rows_of(json_t *j, const char *key);
/* j's member key when that is an object, else j. Borrowed. */
json_t *cli_unwrap(json_t *j, const char *key);

#endif
