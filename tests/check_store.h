/* check_store.h -- the store conformance suite: tests written against the
 * storage interface (store.h) only, run once per backend. Each resource's
 * cases are in tests/check_store_<resource>.c. */
#ifndef CHECK_STORE_H
#define CHECK_STORE_H

#include <check.h>

#include "core.h"

/* The fixture (checked, per test): a fresh database in a temp directory,
 * opened with store->open; st_conn is a write connection. */
extern struct sconn *st_conn;
/* Another write connection (for concurrent tests; caller disconnects). */
struct sconn *st_connect(void);
/* A write transaction on c: begin, with t->now from the store. Asserts. */
void st_begin(struct sconn *c, struct tx *t);
/* Commit (0) or roll back t's transaction and free what t holds. */
int st_commit(struct tx *t);
void st_rollback(struct tx *t);
/* A read on the calling thread's read connection (tx_read). Asserts. */
void st_read(struct tx *t);
/* Close the store and open it again (a restart). */
void st_reopen(void);
/* Race n threads (at most 64): each opens its own write connection, waits
 * for the others, then runs op(t, i, arg) in a transaction of its own,
 * committed when op returns >= 0 and rolled back otherwise. rcs[i] gets
 * op's result, or -2 when thread i could not run or commit. */
void st_race(int n, int (*op)(struct tx *t, int i, void *arg), void *arg, int *rcs);

/* One write in the background: op(t, arg) in a transaction of its own on
 * a new write connection, in a thread, committed when op returns >= 0.
 * st_async_done waits at most ms for it to finish and says whether it
 * has; st_async_join waits for it and frees it: op's result, or -2 when
 * it could not run or commit. */
struct st_async;
struct st_async *st_async_start(int (*op)(struct tx *t, void *arg), void *arg);
bool st_async_done(struct st_async *a, int ms);
int st_async_join(struct st_async *a);

/* Each resource adds its cases. */
void store_cases_jobs(Suite *s, void (*setup)(void), void (*teardown)(void));
void store_cases_leases(Suite *s, void (*setup)(void), void (*teardown)(void));
void store_cases_dedupe(Suite *s, void (*setup)(void), void (*teardown)(void));
void store_cases_sessions(Suite *s, void (*setup)(void), void (*teardown)(void));
void store_cases_messages(Suite *s, void (*setup)(void), void (*teardown)(void));
void store_cases_events(Suite *s, void (*setup)(void), void (*teardown)(void));
void store_cases_queues(Suite *s, void (*setup)(void), void (*teardown)(void));
void store_cases_schedules(Suite *s, void (*setup)(void), void (*teardown)(void));
/* The PostgreSQL backend's own cases (store_pg only). */
void store_cases_pg(Suite *s, void (*setup)(void), void (*teardown)(void));

#endif
