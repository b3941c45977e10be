/* cli.c -- baton, the operator's command line: main(), global flags, the command table.
 *
 * DESIGN
 * Global flags (--url, --secret, --json) are taken out of argv wherever
 * they appear; the rest is "<command> [<subcommand>] [options] [args]",
 * dispatched through the command table below, which names each command's
 * handler (in cli_<family>.c) and its help. Each handler parses its own
 * options with cli_args, makes its calls through cli_call (which prints
 * "baton: HTTP <status> <code>: <message>" on failure) and prints either a
 * human table or, with --json, the raw answer (cli_util.c). Exit codes:
 * 0 ok, 1 error, 2 usage; `alerts check` uses 2 for "alert".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- help -------------------------------------------------------------------- */

static const char main_usage[] =
    "usage: baton [--url URL] [--secret SECRET] [--json] <command> [args]\n"
    "\n"
    "commands:\n"
    "  jobs list|get|pending|retry|fail|cancel|requeue-stale|enqueue|enqueue-batch\n"
    "  queues [pause|resume|limits QUEUE]  per-queue counts; hold or release a queue's claims;\n"
    "                               its rate limits\n"
    "  schedules list|add|rm|pause|resume\n"
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
    "          [--dedupe-key K] [--order-key K] [--rate-key K] [PAYLOAD-JSON]\n"
    "                                           add a job (queue agent by default)\n"
    "  enqueue-batch FILE|-                     add up to 1000 jobs, all or none\n";

static const char queues_usage[] =
    "usage: baton queues\n"
    "       baton queues pause QUEUE [--reason TEXT]\n"
    "       baton queues resume QUEUE\n"
    "       baton queues limits QUEUE [--rate N/MS] [--key-rate N/MS] [--none] [--reset]\n"
    "\n"
    "Per queue: jobs by status, age of the oldest pending job, stale jobs and\n"
    "whether it is paused. pause: the queue still takes jobs and lets running\n"
    "ones finish, but hands out no claims until resume (waiting workers stay\n"
    "parked). Pausing a paused queue changes nothing.\n";

static const char leases_usage[] =
    "usage: baton leases <subcommand>\n"
    "\n"
    "  get CHANNEL ACCOUNT                 the lease of an account\n"
    "  list [--owner O] [--channel C]      leases currently held\n"
    "  force-release CHANNEL ACCOUNT       free a lease whoever holds it\n";

static const char accounts_usage[] =
    "usage: baton accounts <subcommand>\n"
    "\n"
    "  list [--channel C] [--enabled true|false]              the account registry\n"
    "  set CHANNEL ACCOUNT (--enable|--disable) [--config JSON]  add or change an account\n"
    "  delete CHANNEL ACCOUNT                                 remove an account\n";

static const char dedupe_usage[] =
    "usage: baton dedupe check CHANNEL MESSAGE-ID [--ttl DURATION]\n"
    "\n"
    "Check an inbound message id and register it as seen (inboundDedupe):\n"
    "prints \"new\" the first time, \"duplicate\" after.\n";

static const char sessions_usage[] =
    "usage: baton sessions <subcommand>\n"
    "\n"
    "  get CHANNEL ACCOUNT [KEY]    entries (values are credentials: handle with care)\n"
    "  keys CHANNEL ACCOUNT         the entry names only\n"
    "  clear CHANNEL ACCOUNT        delete every entry (forces a new login)\n";

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

static const char alerts_usage[] =
    "usage: baton alerts check [--lookback 24h] [--burst-window 10m] [--threshold 10]\n"
    "                          [--channels whatsapp,telegram]\n"
    "\n"
    "Looks for: lease heartbeat losses, outbound loop errors and send failures\n"
    "within the lookback; THRESHOLD or more reconnects within any burst window;\n"
    "stale processing jobs; jobs that failed within the lookback (measured\n"
    "with this machine's clock).\n"
    "Exit 0 healthy, 2 alert (one finding per line), 1 cannot check.\n";

static const char backup_usage[] =
    "usage: baton backup FILE [--db PATH] [--force]\n"
    "\n"
    "Copy the database (--db, else BATON_DB, else ./data/baton.db) to FILE with\n"
    "SQLite's online backup, a few pages at a time from one consistent snapshot,\n"
    "while batond keeps serving. The copy is checked with PRAGMA integrity_check\n"
    "before it is renamed to FILE. An existing FILE is kept unless --force.\n";

static const char run_usage[] =
    "usage: baton run FUNCTION ['JSON-ARGS']\n"
    "\n"
    "Call a function of the Convex layer (POST /api/function), e.g.\n"
    "  baton run agent.getPendingJobs\n"
    "  baton run whatsappLeases:forceRelease '{\"accountId\":\"default\"}'\n"
    "and print its value as JSON.\n";

/* ---- the help of each subcommand ------------------------------------------------ */

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
    "                          [--max-attempts N] [--dedupe-key K] [--order-key K]\n"
    "                          [--rate-key K]\n"
    "                          [PAYLOAD-JSON]\n\n"
    "Add a job (queue agent by default; payload {} when omitted). With a\n"
    "dedupe key already used by a job of the queue that is not completed, that\n"
    "job is shown instead. The jobs of a queue with the same order key are\n"
    "claimed one at a time, in the order they were added.\n" G;
static const char jobs_enqueue_batch_usage[] =
    "usage: baton jobs enqueue-batch FILE|-\n\n"
    "Add 1 to 1000 jobs in one request, all or none: FILE (- for standard\n"
    "input) holds a JSON array of jobs, each with the fields of POST /v1/jobs\n"
    "(queue, payload, priority, delayMs, maxAttempts, dedupeKey, orderKey).\n"
    "Prints each job's id in order, or the job a dedupe key matched.\n" G;
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

/* ---- dispatch ---------------------------------------------------------------- */

struct cmd {
    const char *name, *sub;         /* sub NULL: a command without subcommands */
    int (*fn)(int argc, char **argv);
    const char *usage;              /* the command's: every subcommand in one line */
    const char *sub_usage;          /* the subcommand's own help (NULL: usage) */
};

static const struct cmd cmds[] = {
    {"jobs", "list", cli_jobs_list, jobs_usage, jobs_list_usage},
    {"jobs", "get", cli_jobs_get, jobs_usage, jobs_get_usage},
    {"jobs", "pending", cli_jobs_pending, jobs_usage, jobs_pending_usage},
    {"jobs", "retry", cli_jobs_retry, jobs_usage, jobs_retry_usage},
    {"jobs", "fail", cli_jobs_fail, jobs_usage, jobs_fail_usage},
    {"jobs", "cancel", cli_jobs_cancel, jobs_usage, jobs_cancel_usage},
    {"jobs", "requeue-stale", cli_jobs_requeue_stale, jobs_usage, jobs_requeue_usage},
    {"jobs", "enqueue", cli_jobs_enqueue, jobs_usage, jobs_enqueue_usage},
    {"jobs", "enqueue-batch", cli_jobs_enqueue_batch, jobs_usage, jobs_enqueue_batch_usage},
    {"queues", NULL, cli_queues, queues_usage, NULL},
    {"schedules", "list", cli_schedules_list, cli_schedules_usage, NULL},
    {"schedules", "add", cli_schedules_add, cli_schedules_usage, cli_schedules_add_usage},
    {"schedules", "rm", cli_schedules_rm, cli_schedules_usage, NULL},
    {"schedules", "pause", cli_schedules_pause, cli_schedules_usage, NULL},
    {"schedules", "resume", cli_schedules_resume, cli_schedules_usage, NULL},
    {"leases", "get", cli_leases_get, leases_usage, leases_get_usage},
    {"leases", "list", cli_leases_list, leases_usage, leases_list_usage},
    {"leases", "force-release", cli_leases_force_release, leases_usage, leases_force_usage},
    {"accounts", "list", cli_accounts_list, accounts_usage, accounts_list_usage},
    {"accounts", "set", cli_accounts_set, accounts_usage, accounts_set_usage},
    {"accounts", "delete", cli_accounts_delete, accounts_usage, accounts_delete_usage},
    {"dedupe", "check", cli_dedupe_check, dedupe_usage, NULL},
    {"sessions", "get", cli_sessions_get, sessions_usage, sessions_get_usage},
    {"sessions", "keys", cli_sessions_keys, sessions_usage, sessions_keys_usage},
    {"sessions", "clear", cli_sessions_clear, sessions_usage, sessions_clear_usage},
    {"events", NULL, cli_events, events_usage, NULL},
    {"logs", NULL, cli_logs, logs_usage, NULL},
    {"alerts", "check", cli_alerts_check, alerts_usage, NULL},
    {"backup", NULL, cli_backup, backup_usage, NULL},
    {"run", NULL, cli_run, run_usage, NULL},
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
            cli_json_out = true;
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
                cli_cur_usage = main_usage;
                cli_usage_error("option '%s' needs a value", a);
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
    cli_cur_usage = main_usage;
    if ((argc = global_flags(argc, argv, &url, &secret)) < 0)
        return CLI_EXIT_USAGE;
    if (argc < 2)
        return cli_usage_error("no command given");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(main_usage, stdout);
        return CLI_EXIT_OK;
    }
    for (c = cmds; c->name; c++) {
        if (strcmp(c->name, argv[1]))
            continue;
        known = true;
        cli_cur_usage = c->usage;
        if (!c->sub)
            break;
        if (argc < 3)
            return cli_usage_error("%s needs a subcommand", c->name);
        if (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) {
            fputs(c->usage, stdout);
            return CLI_EXIT_OK;
        }
        if (!strcmp(c->sub, argv[2]))
            break;
    }
    if (!known)
        return cli_usage_error("unknown command '%s'", argv[1]);
    if (!c->name)
        return cli_usage_error("unknown subcommand '%s %s'", argv[1], argv[2]);
    if (c->sub_usage)
        cli_cur_usage = c->sub_usage;   /* `baton jobs retry --help`: retry's own help */
    first = c->sub ? 3 : 2;
    if (!url || !*url)
        url = BATON_DEFAULT_URL;
    if (!(cli_client = baton_new(url, secret && *secret ? secret : NULL)))
        return cli_fail("cannot create a client for %s", url);
    rc = c->fn(argc - first, argv + first);
    baton_free(cli_client);
    return rc;
}
