/* run.c -- the one test runner: every suite, Check's fork mode. Run one
 * suite with CK_RUN_SUITE=name, one case with CK_RUN_CASE=name. */
#include <stdlib.h>

#include <curl/curl.h>

#include "harness.h"

int
main(void)
{
    SRunner *sr;
    int failed;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    sr = srunner_create(suite_config());
    srunner_add_suite(sr, suite_client());  /* libbaton */
    srunner_add_suite(sr, suite_cli());     /* the baton CLI */
    srunner_add_suite(sr, suite_fields());
    srunner_add_suite(sr, suite_db());
    srunner_add_suite(sr, suite_store()); /* the storage interface, per backend */
    srunner_add_suite(sr, suite_http());
    srunner_add_suite(sr, suite_hardening());
    /* jobs */
    srunner_add_suite(sr, suite_jobs());
    srunner_add_suite(sr, suite_queues());  /* queue controls: pause, resume */
    /* leases */
    srunner_add_suite(sr, suite_leases());
    srunner_add_suite(sr, suite_schedules());
    /* dedupe and sessions */
    srunner_add_suite(sr, suite_dedupe());
    srunner_add_suite(sr, suite_sessions());
    /* messages and webhooks */
    srunner_add_suite(sr, suite_messages());
    /* convex compatibility */
    srunner_add_suite(sr, suite_convex());
    /* memory under floods of error paths */
    srunner_add_suite(sr, suite_resources());
    /* deploy files and docs */
    srunner_add_suite(sr, suite_deploy());
    /* durability and performance */
    srunner_add_suite(sr, suite_perf());
    /* baton-agent and the runbook scenarios */
    srunner_add_suite(sr, suite_scenarios());
    /* the web console and the web chat */
    srunner_add_suite(sr, suite_console());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
