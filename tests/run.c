/* run.c -- the one test runner: every suite, Check's fork mode. Run one
 * suite with CK_RUN_SUITE=name, one case with CK_RUN_CASE=name; leave
 * suites out with BATON_SKIP_SUITES=name,name (make sanitize leaves some
 * out: see the Makefile and docs/testing.md), or run only some with
 * BATON_ONLY_SUITES=name,name. BATON_TEST_BACKEND=postgres puts every
 * batond the tests start on PostgreSQL; that and the suites store_pg,
 * replicas and migrate get a throwaway server started here, once per run
 * (pg.h). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "harness.h"
#include "pg.h"

/* true when name is listed in the comma-separated list of variable var */
static bool
listed(const char *var, const char *name)
{
    const char *list = getenv(var), *p;
    size_t n = strlen(name);

    for (p = list; p && *p; p += strcspn(p, ","), p += *p == ',')
        if (strcspn(p, ",") == n && !strncmp(p, name, n))
            return true;
    return false;
}

/* true when name is left out: listed in BATON_SKIP_SUITES, or not listed
 * in BATON_ONLY_SUITES when that is set. store_pg runs only when asked
 * for (CK_RUN_SUITE, BATON_ONLY_SUITES) or with BATON_TEST_BACKEND=postgres:
 * make check runs it in its PostgreSQL pass. */
static bool
skipped(const char *name)
{
    const char *only = getenv("BATON_ONLY_SUITES"), *one = getenv("CK_RUN_SUITE");

    if (listed("BATON_SKIP_SUITES", name))
        return true;
    if (only && *only)
        return !listed("BATON_ONLY_SUITES", name);
    if (!strcmp(name, "store_pg"))
        return !pg_test_backend() && !(one && !strcmp(one, "store_pg"));
    return false;
}

/* Whether this run includes something that needs PostgreSQL. */
static bool
wants_pg(void)
{
    const char *one = getenv("CK_RUN_SUITE");

    if (pg_test_backend())
        return true;
    /* replicas and migrate always run on PostgreSQL, in the default pass too */
    return (!skipped("store_pg") && (!one || !*one || !strcmp(one, "store_pg"))) ||
           (!skipped("replicas") && (!one || !*one || !strcmp(one, "replicas"))) ||
           (!skipped("migrate") && (!one || !*one || !strcmp(one, "migrate")));
}

#define ADD(sr, name) do { if (!skipped(#name)) srunner_add_suite((sr), suite_##name()); } while (0)

int
main(void)
{
    SRunner *sr;
    int failed;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (wants_pg() && pg_test_start() < 0)
        fprintf(stderr, "run_tests: no PostgreSQL: the suites on it fail\n");
    sr = srunner_create(NULL);
    ADD(sr, config);
    ADD(sr, client);  /* libbaton */
    ADD(sr, cli);     /* the baton CLI */
    ADD(sr, fields);
    ADD(sr, db);
    ADD(sr, store); /* the storage interface, per backend */
    ADD(sr, store_pg);
    ADD(sr, http);
    ADD(sr, hardening);
    /* jobs */
    ADD(sr, jobs);
    ADD(sr, queues);  /* queue controls: pause, resume */
    /* leases */
    ADD(sr, leases);
    ADD(sr, schedules);
    /* dedupe and sessions */
    ADD(sr, dedupe);
    ADD(sr, sessions);
    /* messages and webhooks */
    ADD(sr, messages);
    /* convex compatibility */
    ADD(sr, convex);
    /* memory under floods of error paths */
    ADD(sr, resources);
    /* deploy files and docs */
    ADD(sr, deploy);
    ADD(sr, migrate); /* moving a SQLite database to PostgreSQL */
    /* durability and performance */
    ADD(sr, perf);
    /* baton-agent and the runbook scenarios */
    ADD(sr, scenarios);
    /* the web console and the web chat */
    ADD(sr, console);
    /* several batond on one PostgreSQL */
    ADD(sr, replicas);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    pg_test_stop();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
