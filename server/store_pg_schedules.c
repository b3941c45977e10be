/* store_pg_schedules.c -- the schedules operations of the PostgreSQL store
 * (store.h, struct store_schedules).
 *
 * DESIGN
 * Each operation is one statement by primary key, as on SQLite. With
 * several replicas running their maintenance at once, a due time must
 * give one job: advance is conditional on next_run still being the due
 * time fired (the second of two replicas waits for the first's row lock,
 * re-evaluates its WHERE and changes nothing), and due locks the schedule
 * it answers with FOR UPDATE SKIP LOCKED, so that another replica's
 * maintenance passes over a schedule being fired instead of firing it too
 * (and failing on its advance): it sees it again once the firing
 * transaction ends, with its next due time.
 */
#include <string.h>

#include "store_pg.h"

#define SCHED_COLS "name, queue, payload, cron, timezone, every_ms, paused, next_run, last_run," \
                   " last_job_id, runs, created_at, updated_at"

/* Row `row` of r (SCHED_COLS) into *s; copy: the strings into s->mem. -1
 * out of memory. */
static int
sched_fill(const PGresult *r, int row, struct schedule *s, bool copy)
{
    const char **dst[] = {&s->name, &s->queue, &s->payload, &s->cron, &s->timezone};
    size_t len[5];

    s->every_ms = pg_int(r, row, 5, 0);
    s->paused = pg_bool(r, row, 6);
    s->next_run = pg_int(r, row, 7, 0);
    s->last_run = pg_int(r, row, 8, JOB_NONE);
    s->last_job_id = pg_int(r, row, 9, 0);
    s->runs = pg_int(r, row, 10, 0);
    s->created_at = pg_int(r, row, 11, 0);
    s->updated_at = pg_int(r, row, 12, 0);
    s->mem = NULL;
    for (int i = 0; i < 5; i++) {
        *dst[i] = pg_str(r, row, i);
        len[i] = (size_t)PQgetlength(r, row, i);
    }
    return copy ? strings_own(dst, len, 5, &s->mem) : 0;
}

/* The answer of a statement of at most one row into *out; r is cleared.
 * 1, 0, -1. */
static int
take_one(struct tx *t, PGresult *r, struct schedule *out)
{
    int rows;

    memset(out, 0, sizeof *out);
    if (!r)
        return -1;
    rows = PQntuples(r);
    if (rows > 0 && sched_fill(r, 0, out, true) < 0) {
        PQclear(r);
        return tx_fail(t, "unavailable", NULL, "out of memory");
    }
    PQclear(r);
    return rows > 0 ? 1 : 0;
}

/* The result of a change: 1 when it changed a row, 0 not, -1. */
static int
changed(PGresult *r)
{
    int64_t n;

    if (!r)
        return -1;
    n = pg_changes(r);
    PQclear(r);
    return n > 0 ? 1 : 0;
}

static int
pg_sched_insert(struct tx *t, const struct schedule *s)
{
    char every[24], next[24], now[24];
    const char *p[] = {s->name, s->queue, s->payload, s->cron,
                       s->every_ms ? pg_i64(every, s->every_ms) : NULL,
                       s->timezone ? s->timezone : "UTC", s->paused ? "t" : "f",
                       pg_i64(next, s->next_run), pg_i64(now, t->now)};

    return changed(pg_exec(t,
        "INSERT INTO schedules(name, queue, payload, cron, every_ms, timezone, paused, next_run,"
        " created_at, updated_at) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
        " ON CONFLICT(name) DO NOTHING", 9, p));
}

static int
pg_sched_get(struct tx *t, const char *name, struct schedule *out)
{
    const char *p[] = {name};

    return take_one(t, pg_exec(t, "SELECT " SCHED_COLS " FROM schedules WHERE name = $1", 1, p), out);
}

static int
pg_sched_list(struct tx *t, int (*each)(const struct schedule *s, void *arg), void *arg)
{
    PGresult *r = pg_exec(t, "SELECT " SCHED_COLS " FROM schedules ORDER BY name", 0, NULL);
    int stop = 0, rows;

    if (!r)
        return -1;
    rows = PQntuples(r);
    for (int i = 0; i < rows && !stop; i++) {
        struct schedule s;
        sched_fill(r, i, &s, false);
        stop = each(&s, arg);
    }
    PQclear(r);
    return stop;
}

static int
pg_sched_del(struct tx *t, const char *name)
{
    const char *p[] = {name};

    return changed(pg_exec(t, "DELETE FROM schedules WHERE name = $1", 1, p));
}

static int
pg_sched_set_paused(struct tx *t, const char *name, bool paused, int64_t next_run)
{
    char next[24], now[24];
    const char *p[] = {name, paused ? "t" : "f", pg_i64(next, next_run), pg_i64(now, t->now)};

    return changed(pg_exec(t, "UPDATE schedules SET paused = $2, next_run = $3, updated_at = $4"
                              " WHERE name = $1", 4, p));
}

static int
pg_sched_due(struct tx *t, struct schedule *out)
{
    char now[24];
    const char *p[] = {pg_i64(now, t->now)};

    return take_one(t, pg_exec(t, "SELECT " SCHED_COLS " FROM schedules"
                                  " WHERE NOT paused AND next_run <= $1 ORDER BY next_run LIMIT 1"
                                  " FOR UPDATE SKIP LOCKED", 1, p), out);
}

static int
pg_sched_advance(struct tx *t, const char *name, int64_t from, int64_t to, int64_t job_id)
{
    char f[24], to_s[24], job[24], now[24];
    const char *p[] = {name, pg_i64(f, from), pg_i64(to_s, to), pg_i64(job, job_id), pg_i64(now, t->now)};

    return changed(pg_exec(t, "UPDATE schedules SET next_run = $3, last_run = $2, last_job_id = $4,"
                              " runs = runs + 1, updated_at = $5 WHERE name = $1 AND next_run = $2", 5, p));
}

static int
pg_sched_earliest(struct tx *t, int64_t *at)
{
    PGresult *r = pg_exec(t, "SELECT min(next_run) FROM schedules WHERE NOT paused", 0, NULL);

    *at = 0;
    if (!r)
        return -1;
    if (PQntuples(r) > 0)
        *at = pg_int(r, 0, 0, 0);
    PQclear(r);
    return 0;
}

const struct store_schedules pg_schedules_ops = {
    .insert = pg_sched_insert,
    .get = pg_sched_get,
    .list = pg_sched_list,
    .del = pg_sched_del,
    .set_paused = pg_sched_set_paused,
    .due = pg_sched_due,
    .advance = pg_sched_advance,
    .earliest = pg_sched_earliest,
};
