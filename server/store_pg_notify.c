/* store_pg_notify.c -- several batond on one PostgreSQL database: wake-ups
 * between the processes over LISTEN/NOTIFY, and the election of the one
 * process that runs the periodic maintenance (store.h, struct
 * store_replicas).
 *
 * DESIGN
 * Publishing. The writer hands the batch's wake-ups -- {topic: due}, one
 * entry per topic, duplicates already collapsed -- to publish inside the
 * batch's transaction, just before COMMIT: one statement that calls
 * pg_notify once per topic. PostgreSQL delivers notifications at commit
 * and only if the transaction commits, so a wake-up never announces a
 * write that was rolled back and is never lost after one that committed
 * (a crash between COMMIT and a later NOTIFY would lose it). Sending them
 * right after COMMIT on the writer connection would also cost a second
 * transaction -- NOTIFY takes a transaction id, so a second commit record
 * and its fsync -- for every batch. The price of doing it inside: the
 * commit takes PostgreSQL's notification queue lock, which orders the
 * commits of batches that notify across replicas (one short critical
 * section per batch, not per write). A payload is "<replica> <due>
 * <topic>": the replica's random id, the due time in ms of the database's
 * clock (0: now) and the topic (queue and conversation names are bounded
 * far below NOTIFY's 8000 bytes; a longer topic is not sent and its waits
 * end at their deadline).
 *
 * Listening. Each process has one more connection of its own, held by a
 * thread: LISTEN on the channel (named after the schema), then every notification of another replica
 * is delivered (those of this replica are skipped: the writer delivered
 * them in-process when its batch committed, before any NOTIFY could
 * arrive). Correctness never depends on it: while that connection is
 * down (PostgreSQL restarted, the network cut) the thread delivers "look
 * again" (deliver(NULL, 0)) every RECHECK_MS, so every parked wait runs
 * again, and once more when it is back (what was sent meanwhile is lost).
 * BATON_PG_POLL_ONLY=1 (a pooler such as PgBouncer in transaction mode,
 * which cannot LISTEN) uses only that re-check and opens no connection.
 *
 * Electing the maintainer. The listening connection also holds a
 * session-level advisory lock (MAINTENANCE_KEY); a replica that does not
 * hold it tries pg_try_advisory_lock every RETRY_MS. Only the holder runs
 * the stale sweep, retention, dedupe and event pruning (sweep.c asks
 * maintainer()). When the holder dies its backend ends with its socket and
 * PostgreSQL releases the lock: another replica takes it within about a
 * second. A holder that loses its connection stops maintaining at once.
 * Two maintainers for a moment (a half-open connection the server has not
 * yet noticed) only duplicate work: every maintenance statement decides
 * and writes in one conditional statement, safe on several replicas. In
 * poll-only mode there is no session to hold a lock through a pooler, so
 * every replica maintains (the same argument).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "store_pg.h"

/* Channel and lock are per schema: deployments (and tests) that share a
 * database in schemas of their own neither wake nor elect each other. */
#define CHANNEL "('baton_' || left(md5(current_schema()), 24))"
#define MAINTENANCE_KEY "hashtextextended('baton maintenance ' || current_schema(), 0)"
#define PAYLOAD_MAX 7999                        /* NOTIFY's limit is 8000 bytes */
#define RECHECK_MS 250                          /* look again while not listening */
#define RETRY_MS 1000                           /* reconnect, try the election */

static struct {
    void (*deliver)(const char *topic, int64_t due);
    pthread_t thread;
    bool started;
    bool poll_only;
    int wake[2];                    /* a pipe: stop() writes, the thread polls */
    char replica[17];               /* this process's id in payloads */
    _Atomic bool maintainer;        /* this process holds the lock */
    _Atomic bool elected;           /* took it since maintainer() last said so */
} L = {.wake = {-1, -1}};

static int
pgr_publish(struct tx *t, json_t *wakes)
{
    json_t *list = json_array(), *v;
    const char *topic, *params[1];
    char *text;
    PGresult *r;

    if (!list)
        return tx_fail(t, "internal", NULL, "out of memory");
    json_object_foreach(wakes, topic, v) {
        char p[PAYLOAD_MAX + 1];
        int len = snprintf(p, sizeof p, "%s %lld %s", L.replica, (long long)json_integer_value(v),
                           topic);

        if (len > 0 && len <= PAYLOAD_MAX)
            json_array_append_new(list, json_string(p));
    }
    if (!json_array_size(list)) {
        json_decref(list);
        return 0;
    }
    text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    if (!text)
        return tx_fail(t, "internal", NULL, "out of memory");
    params[0] = text;
    r = pg_exec(t, "SELECT pg_notify(" CHANNEL ", p) FROM json_array_elements_text($1::json) AS p",
                1, params);
    free(text);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

/* A notification's payload: deliver it unless this replica sent it. */
static void
received(const char *payload)
{
    const char *sp = strchr(payload, ' '), *topic;
    char *end;
    long long due;

    if (!sp || sp - payload != (ptrdiff_t)strlen(L.replica) ||
        !strncmp(payload, L.replica, (size_t)(sp - payload)))
        return;
    due = strtoll(sp + 1, &end, 10);
    if (*end != ' ' || due < 0)
        return;
    topic = end + 1;
    if (*topic)
        L.deliver(topic, (int64_t)due);
}

/* The listening connection: keepalives so that a silent network loss is
 * noticed, LISTEN. NULL when it cannot be opened (the reason is not
 * logged: libpq's message may quote the connection string). */
static PGconn *
listen_connect(void)
{
    static const char *const keys[] = {"dbname", "application_name", "connect_timeout",
                                       "keepalives_idle", "keepalives_interval",
                                       "keepalives_count", NULL};
    const char *vals[] = {cfg.db_path, "batond-listener", "5", "5", "2", "3", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    PGresult *r;
    char sql[128];
    bool ok;

    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        return NULL;
    }
    /* the channel's name is hex: no quoting needed */
    r = PQexec(c, "SELECT " CHANNEL);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (ok)
        snprintf(sql, sizeof sql, "LISTEN %s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (ok) {
        r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* Try to become the maintainer on c (a short query; notifications that
 * arrive meanwhile stay queued in c). */
static void
elect(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT pg_try_advisory_lock(" MAINTENANCE_KEY ")");

    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
        !strcmp(PQgetvalue(r, 0, 0), "t")) {
        L.maintainer = true;
        L.elected = true;
    }
    PQclear(r);
}

/* Deliver every notification c has read. */
static void
drain(PGconn *c)
{
    PGnotify *n;

    while ((n = PQnotifies(c))) {
        received(n->extra);
        PQfreemem(n);
    }
}

static void *
listen_main(void *arg)
{
    PGconn *c = NULL;
    double next_connect = 0, next_elect = 0, next_recheck = 0;
    bool lost = false;

    (void)arg;
    for (;;) {
        struct pollfd fds[2] = {{L.wake[0], POLLIN, 0}, {-1, POLLIN, 0}};
        double now = mono_ms(), until;

        if (!c && !L.poll_only && now >= next_connect) {
            next_connect = now + RETRY_MS;
            if ((c = listen_connect())) {
                if (lost)
                    log_event("info", "db.listener.connected", NULL);
                lost = false;
                next_elect = now;
                L.deliver(NULL, 0);     /* what was published while it was down */
            }
        }
        if (c && !L.maintainer && now >= next_elect) {
            next_elect = now + RETRY_MS;
            elect(c);
        }
        if (c)
            drain(c);
        if (!c && now >= next_recheck) {
            next_recheck = now + RECHECK_MS;
            L.deliver(NULL, 0);
        }
        until = c ? (L.maintainer ? now + 60000 : next_elect) : next_recheck;
        if (!c && !L.poll_only && next_connect < until)
            until = next_connect;
        fds[1].fd = c ? PQsocket(c) : -1;
        if (poll(fds, 2, until > now ? (int)(until - now) + 1 : 0) < 0 && errno != EINTR)
            sleep_ms(10);
        if (fds[0].revents)
            break;
        if (c && (fds[1].revents || PQstatus(c) != CONNECTION_OK)) {
            if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK) {
                /* lost: the lock went with it; look again until it is back */
                PQfinish(c);
                c = NULL;
                L.maintainer = false;
                lost = true;
                next_recheck = 0;
                log_event("warn", "db.listener.lost",
                          json_pack("{s:i}", "recheckMs", RECHECK_MS));
            } else
                drain(c);
        }
    }
    if (c)
        PQfinish(c);
    L.maintainer = false;
    return NULL;
}

static int
pgr_start(void (*deliver)(const char *topic, int64_t due), char *why, size_t n)
{
    unsigned char id[8];

    L.deliver = deliver;
    L.poll_only = cfg.pg_poll_only;
    L.maintainer = L.poll_only;     /* see DESIGN: nothing to elect through a pooler */
    L.elected = L.poll_only;
    randombytes_buf(id, sizeof id);
    sodium_bin2hex(L.replica, sizeof L.replica, id, sizeof id);
    if (pipe(L.wake) < 0) {
        snprintf(why, n, "cannot create a pipe: %s", strerror(errno));
        return -1;
    }
    if (pthread_create(&L.thread, NULL, listen_main, NULL)) {
        close(L.wake[0]);
        close(L.wake[1]);
        L.wake[0] = L.wake[1] = -1;
        snprintf(why, n, "cannot start the listening thread");
        return -1;
    }
    L.started = true;
    if (L.poll_only)
        log_event("info", "db.listener.poll_only", json_pack("{s:i}", "recheckMs", RECHECK_MS));
    return 0;
}

static bool
pgr_maintainer(bool *elected)
{
    bool m = L.maintainer;

    if (elected)
        *elected = m && atomic_exchange(&L.elected, false);
    return m;
}

static void
pgr_stop(void)
{
    if (!L.started)
        return;
    if (write(L.wake[1], "x", 1) < 0)
        log_event("warn", "db.listener.stop_failed", NULL);
    pthread_join(L.thread, NULL);
    close(L.wake[0]);
    close(L.wake[1]);
    L.wake[0] = L.wake[1] = -1;
    L.started = false;
}

const struct store_replicas pg_replicas_ops = {
    .start = pgr_start,
    .publish = pgr_publish,
    .maintainer = pgr_maintainer,
    .stop = pgr_stop,
};
