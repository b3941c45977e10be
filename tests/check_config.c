/* check_config.c -- batond's settings: defaults, environment, flags, refusals. */
#include <stdlib.h>
#include <string.h>

#include "batond.h"
#include "harness.h"

static int
load(int argc, char **argv, char *why)
{
    return config_load(&cfg, argc, argv, why, 256);
}

START_TEST(defaults)
{
    char why[256];
    char *argv[] = {"batond", NULL};

    unsetenv("BATON_LISTEN");
    unsetenv("AGENT_SECRET");
    ck_assert_int_eq(load(1, argv, why), 0);
    ck_assert_str_eq(cfg.listen_host, "127.0.0.1");
    ck_assert_int_eq(cfg.listen_port, 3210);
    ck_assert_str_eq(cfg.db_path, "./data/baton.db");
    ck_assert(cfg.sync_full);
    ck_assert(!cfg.production);
    ck_assert_ptr_null(cfg.secret);
    ck_assert_int_eq(cfg.max_body, 1048576);
    ck_assert_int_eq(cfg.sweep_interval_ms, 5000);
    ck_assert_str_eq(cfg.leased_channels, "whatsapp");
    config_free(&cfg);
}
END_TEST

START_TEST(flags_override_environment)
{
    char why[256];
    char *argv[] = {"batond", "--listen", "0.0.0.0:8080", "--sync=normal", NULL};

    setenv("BATON_LISTEN", "127.0.0.1:9000", 1);
    setenv("BATON_SYNC", "full", 1);
    setenv("BATON_SWEEP_INTERVAL_MS", "250", 1);
    ck_assert_int_eq(load(4, argv, why), 0);
    ck_assert_str_eq(cfg.listen_host, "0.0.0.0");
    ck_assert_int_eq(cfg.listen_port, 8080);
    ck_assert(!cfg.sync_full);
    ck_assert_int_eq(cfg.sweep_interval_ms, 250);
    config_free(&cfg);
}
END_TEST

START_TEST(invalid_values_refused)
{
    char why[256];
    char *port[] = {"batond", "--listen", "127.0.0.1:abc", NULL};
    char *neg[] = {"batond", "--sweep-interval-ms", "-5", NULL};
    char *unknown[] = {"batond", "--frobnicate", "1", NULL};
    char *sync[] = {"batond", "--sync", "sometimes", NULL};

    ck_assert_int_eq(load(3, port, why), -1);
    ck_assert_ptr_nonnull(strstr(why, "BATON_LISTEN"));
    config_free(&cfg);
    ck_assert_int_eq(load(3, neg, why), -1);
    ck_assert_ptr_nonnull(strstr(why, "BATON_SWEEP_INTERVAL_MS"));
    config_free(&cfg);
    ck_assert_int_eq(load(3, unknown, why), -1);
    ck_assert_ptr_nonnull(strstr(why, "frobnicate"));
    config_free(&cfg);
    ck_assert_int_eq(load(3, sync, why), -1);
    config_free(&cfg);
    setenv("BATON_MAX_BODY", "lots", 1);
    ck_assert_int_eq(load(1, port, why), -1);
    ck_assert_ptr_nonnull(strstr(why, "BATON_MAX_BODY"));
    config_free(&cfg);
}
END_TEST

START_TEST(production_needs_secret)
{
    char why[256];
    char *argv[] = {"batond", "--env", "production", NULL};

    unsetenv("AGENT_SECRET");
    ck_assert_int_eq(load(3, argv, why), -1);
    ck_assert_ptr_nonnull(strstr(why, "AGENT_SECRET"));
    config_free(&cfg);
    setenv("AGENT_SECRET", "x", 1);
    ck_assert_int_eq(load(3, argv, why), 0);
    ck_assert(cfg.production);
    config_free(&cfg);
}
END_TEST

/* The real binary: exit code 78 and one line naming the problem. */
START_TEST(binary_refuses_with_78)
{
    struct server s = {0};
    char err[512];
    const char *bad_port[] = {"BATON_LISTEN=127.0.0.1:abc", NULL};
    const char *prod[] = {"BATON_ENV=production", "-AGENT_SECRET", NULL};

    ck_assert_int_eq(server_try_start(&s, bad_port, err, sizeof err), 78);
    ck_assert_ptr_nonnull(strstr(err, "BATON_LISTEN"));
    ck_assert_int_eq(server_try_start(&s, prod, err, sizeof err), 78);
    ck_assert_ptr_nonnull(strstr(err, "AGENT_SECRET"));
    server_cleanup(&s);
}
END_TEST

START_TEST(help_and_version)
{
    char cmd[512];
    const char *b = getenv("BATOND") ? getenv("BATOND") : "build/batond";
    FILE *p;
    char out[65536];
    size_t n;

    snprintf(cmd, sizeof cmd, "%s --help", b);
    p = popen(cmd, "r");
    n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    ck_assert_int_eq(pclose(p), 0);
    const char *names[] = {"BATON_LISTEN", "BATON_DB", "AGENT_SECRET", "BATON_ENV", "BATON_MAX_BODY",
                           "BATON_SYNC", "BATON_SWEEP_INTERVAL_MS", "BATON_JOB_LOCK_MS",
                           "BATON_RETENTION_MS", "BATON_DEDUPE_TTL_MS", "BATON_EVENT_RETENTION_MS",
                           "BATON_LEASED_CHANNELS", "BATON_SESSION_KEY", "BATON_SESSION_REQUIRE_LEASE",
                           "TELEGRAM_WEBHOOK_SECRET", "TELEGRAM_ALLOWED_CHAT_IDS", "WHATSAPP_VERIFY_TOKEN",
                           "WHATSAPP_APP_SECRET", "WHATSAPP_ALLOWED_CONTACTS", "127.0.0.1:3210", NULL};
    for (int i = 0; names[i]; i++)
        ck_assert_msg(strstr(out, names[i]), "--help does not mention %s", names[i]);
    snprintf(cmd, sizeof cmd, "%s --version", b);
    p = popen(cmd, "r");
    n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_ptr_nonnull(strstr(out, BATON_VERSION));
}
END_TEST

Suite *
suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, flags_override_environment);
    tcase_add_test(tc, invalid_values_refused);
    tcase_add_test(tc, production_needs_secret);
    tcase_add_test(tc, binary_refuses_with_78);
    tcase_add_test(tc, help_and_version);
    suite_add_tcase(s, tc);
    return s;
}
