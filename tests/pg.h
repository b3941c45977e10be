/* pg.h -- a throwaway PostgreSQL for the tests: one server per test run,
 * one fresh schema per test.
 *
 * The runner (run.c) calls pg_test_start once, before the suites run,
 * when a suite needs PostgreSQL. It either uses BATON_TEST_PG_URL (an
 * existing server: its database gets one schema per test, left behind) or
 * starts its own: initdb into a new temp dir (/tmp/baton-pg-XXXXXX; as
 * the postgres user when run as root), a free port on 127.0.0.1, the unix
 * socket inside the temp dir, fsync on. That server is stopped, and its
 * dir removed, by the process that started it when the run ends -- and,
 * should the runner be killed (even with SIGKILL), by a watchdog process
 * that notices the runner is gone. The server's dir holds
 * baton-test-pg.pid (the watchdog's pid) and data/postmaster.pid; see
 * docs/testing.md for cleaning up by hand. */
#ifndef PG_TEST_H
#define PG_TEST_H

#include <stdbool.h>

/* Start (or find, BATON_TEST_PG_URL) the run's PostgreSQL. 0, or -1 with
 * a reason on stderr. Call once, in the runner, before forking tests. */
int pg_test_start(void);
/* Stop the server started by pg_test_start (only in the process that
 * started it: forked test children do nothing). Also run at exit. */
void pg_test_stop(void);
/* Whether a PostgreSQL is available to this run. */
bool pg_test_available(void);
/* The URL of a fresh, empty schema of the run's database (a new one at
 * each call), in a static buffer: postgresql://...?options=-csearch_path%3D<schema>.
 * Fails the calling test when there is no server. */
const char *pg_test_url(void);
/* The run's base URL (no schema selected); NULL when none. */
const char *pg_test_base_url(void);
/* The run's server's data directory and how pg_ctl is run on it, for
 * tests that stop and restart it: pg_test_ctl("stop -m immediate") or
 * pg_test_ctl("start"). 0 on success. Only for the server this run
 * started (not BATON_TEST_PG_URL): -1 then. */
int pg_test_ctl(const char *action);

#endif
