/* store.h -- the storage interface of batond.
 *
 * DESIGN
 * Everything batond keeps goes through one table of operations, struct
 * store_ops: one function per operation over typed structs (a job, a lease,
 * a dedupe result, a session entry), the way a driver interface works. A
 * backend owns its SQL, its connections and its clock; nothing above this
 * header knows which database it runs on. The SQLite backend is
 * store_sqlite*.c; a second backend provides another struct store_ops and
 * is chosen at start (store_select).
 *
 * Connections: the writer owns one write connection (connect) and runs
 * every write of a batch inside one transaction (begin .. commit), each
 * write in its own savepoint. Readers use the calling thread's read
 * connection (reader). Every operation takes a struct tx: the connection,
 * the store's clock at the start of the write (`now`: what decides
 * ownership and due times comes from here, never from another clock) and
 * the fault of the last failure.
 *
 * Errors: an operation returns -1 (or another negative documented value)
 * after setting t->err with tx_fail: "unavailable" when the database cannot
 * be used (busy, full, I/O), "internal" otherwise. Results that are not
 * errors (no such row, a token that does not match) are return values or
 * out-parameters, never faults.
 *
 * This header is the bottom of the layers: it includes only base.h.
 */
#ifndef BATON_STORE_H
#define BATON_STORE_H

#include "base.h"

struct sconn;                       /* a backend connection (opaque) */

/* The failure of a write or a read, in the words of SPEC section 2: code
 * is a static snake_case error code ("not_found", "lease_not_held",
 * "unavailable"...), msg a sentence, details (owned, may be NULL) extra
 * members of the error object. The API layer turns it into an answer. */
struct fault {
    const char *code;               /* NULL while nothing failed */
    char msg[512];
    json_t *details;
};

/* One write (inside the writer's batch) or one read. */
struct tx {
    struct sconn *c;                /* the connection it runs on */
    int64_t now;                    /* the store's clock, epoch ms */
    json_t *events;                 /* event lines to print after commit (writes) */
    json_t *notify;                 /* topics to wake after commit (writes) */
    json_t *due;                    /* {topic: ms} due times (writes) */
    struct fault err;
};

/* Record a failure in t (details stolen). Returns -1. */
int tx_fail(struct tx *t, const char *code, json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Forget t's failure (after a caller handled it). */
void tx_clear_fault(struct tx *t);
/* Move t's failure into f (f's old details are dropped). */
void fault_move(struct fault *f, struct tx *t);

/* A read: t gets the calling thread's read connection and the store's
 * clock. -1 with t->err set when no connection could be opened. Call
 * tx_read_end when done (it releases the snapshot and the fault). */
int tx_read(struct tx *t);
void tx_read_end(struct tx *t);

/* ---- migrations: each backend's schema/<backend>/NNN_*.sql ------------- */

struct migration {
    const char *name;               /* "001_core.sql" */
    const char *sql;
};

/* ---- resource operations: typed rows ------------------------------------
 * Each resource's operations are a table of their own, filled by the
 * backend; the sections below are in the order of the layers above them. */

/* ---- jobs ---------------------------------------------------------------- */

struct store_jobs;

/* ---- end of jobs ---- */

/* ---- leases ---------------------------------------------------------------- */

#define LEASE_KEY_MAX 100           /* channel and accountId (ID_MAX) */
#define LEASE_OWNER_MAX 200         /* ownerId */

/* A lease of (channel, account): created by the first grant, never
 * deleted, so its token never goes back. Held while owner is set and
 * now < expires_at; expiry is never written, it is judged with the
 * store's clock. */
struct lease {
    char channel[LEASE_KEY_MAX + 1];
    char account[LEASE_KEY_MAX + 1];
    char owner[LEASE_OWNER_MAX + 1];    /* "" when released */
    int64_t token;                      /* fencing token of the latest grant */
    int64_t acquired_at;                /* ms, the latest grant */
    int64_t renewed_at;                 /* ms, the last grant or renewal */
    int64_t expires_at;                 /* ms; the release time once released */
    int64_t ttl_ms;                     /* of the last grant or renewal */
    int64_t transitions;                /* grants with a new token so far */
};

/* An entry of the accounts registry. */
struct account {
    char channel[LEASE_KEY_MAX + 1];
    char account[LEASE_KEY_MAX + 1];
    bool enabled;
    json_t *config;                     /* an object, owned: account_clear */
    int64_t created_at, updated_at;     /* ms, first and latest put */
};

/* Drop what a filled struct account owns. */
static inline void
account_clear(struct account *a)
{
    json_decref(a->config);
    a->config = NULL;
}

/* Listings call each once per row, in order; a row is borrowed for the
 * call. each returns 0 to go on, -1 to stop (the listing then returns -1
 * with whatever each put in t->err). */
typedef int (*lease_each_fn)(struct tx *t, const struct lease *l, void *arg);
typedef int (*account_each_fn)(struct tx *t, const struct account *a, void *arg);

/* Every operation that changes a lease is conditional, so that of
 * concurrent callers on separate connections exactly one succeeds; they
 * return 1 when they changed the lease (*l: the lease after), 0 when their
 * condition did not hold (nothing changed, *l untouched), -1 on error. */
struct store_leases {
    /* The lease of (channel, account): 1 with *l, 0 when never granted. */
    int (*get)(struct tx *t, const char *channel, const char *account, struct lease *l);
    /* A new grant to owner for ttl_ms from t->now, with the next token
     * (1 for the first grant) and transitions + 1 -- only when the lease
     * is not held at t->now (never granted, released, force-released or
     * expired). Tokens come from the lease row, which is never deleted:
     * they never go back, across releases and restarts. */
    int (*grant)(struct tx *t, const char *channel, const char *account, const char *owner,
                 int64_t ttl_ms, struct lease *l);
    /* Renew the grant `token` of owner as long as it is still the latest
     * grant and not released -- and, when while_held, only if it has not
     * expired at t->now: renewed_at = t->now, expires_at = t->now + ttl,
     * ttl_ms = ttl where ttl is ttl_ms, or the stored ttl_ms when ttl_ms
     * is 0. */
    int (*renew)(struct tx *t, const char *channel, const char *account, const char *owner,
                 int64_t token, int64_t ttl_ms, bool while_held, struct lease *l);
    /* Release the grant `token` of owner: owner cleared, expires_at =
     * t->now; the token stays. */
    int (*release)(struct tx *t, const char *channel, const char *account, const char *owner,
                   int64_t token, struct lease *l);
    /* Release the lease whoever holds it (an owner is set, expired or
     * not): as release. */
    int (*force_release)(struct tx *t, const char *channel, const char *account, struct lease *l);
    /* The leases held at t->now (owner set, not expired), by channel then
     * account; owner and channel (NULL: any) narrow it. 0 or -1. */
    int (*list_held)(struct tx *t, const char *owner, const char *channel, lease_each_fn each, void *arg);

    /* The account: 1 with *a (account_clear it), 0 when absent. */
    int (*account_get)(struct tx *t, const char *channel, const char *account, struct account *a);
    /* Create or update the account at t->now: enabled, and config when not
     * NULL (an object, borrowed; a new account without one gets {}).
     * *created says whether it was new. 0 with *a (the account after;
     * account_clear it) or -1. */
    int (*account_put)(struct tx *t, const char *channel, const char *account, bool enabled,
                       json_t *config, struct account *a, bool *created);
    /* Accounts by channel then account id; channel NULL: every channel;
     * enabled -1: both, 0 or 1: only those. 0 or -1. */
    int (*account_list)(struct tx *t, const char *channel, int enabled, account_each_fn each, void *arg);
    /* 1 deleted, 0 absent, -1 error. The account's lease is kept. */
    int (*account_delete)(struct tx *t, const char *channel, const char *account);
};

/* ---- end of leases ---- */

/* ---- dedupe ---------------------------------------------------------------- */

/* The live entry of a message id after a check-and-register. */
struct dedupe_result {
    bool duplicate;                     /* false for the call that registered it */
    int64_t first_seen_at;              /* ms, when the live entry was registered */
    int64_t expires_at;                 /* ms, when it is forgotten */
};

struct store_dedupe {
    /* Check-and-register (channel, id) at t->now for ttl_ms: insert it, or
     * replace an entry that has expired at t->now (it counts as absent),
     * and leave a live entry alone. Of concurrent callers on separate
     * connections exactly one sees duplicate false. 0 with *res, or -1. */
    int (*check_register)(struct tx *t, const char *channel, const char *id, int64_t ttl_ms,
                          struct dedupe_result *res);
    /* Delete up to limit entries expired at t->now, oldest expiry first;
     * *deleted says how many. 0 or -1. */
    int (*prune)(struct tx *t, int64_t limit, int64_t *deleted);
};

/* ---- end of dedupe ---- */

/* ---- sessions ---------------------------------------------------------------- */

struct store_sessions;

/* ---- end of sessions ---- */

/* ---- messages ---------------------------------------------------------------- */

struct store_messages;

/* ---- end of messages ---- */

/* ---- events ---------------------------------------------------------------- */

struct store_events;

/* ---- end of events ---- */


/* ---- the backend --------------------------------------------------------- */

struct store_ops {
    const char *name;               /* "sqlite" */

    /* Open the database named by cfg.db_path (creating it), lock it for
     * this process and apply the missing migrations. 0; -1 on error, -2
     * when another batond holds it, -3 when it is newer than this binary.
     * why gets a one-line reason. */
    int (*open)(char *why, size_t n);
    /* After the last connection is gone: checkpoint, unlock, close. */
    void (*close)(void);

    /* A write connection (the writer's; tests open several). */
    int (*connect)(struct sconn **c, char *why, size_t n);
    void (*disconnect)(struct sconn *c);
    /* The calling thread's read connection, opened on first use, closed
     * when the thread ends; NULL when it cannot be opened. */
    struct sconn *(*reader)(void);
    /* A read on c is over: release what it holds (statements, snapshot). */
    void (*read_done)(struct sconn *c);

    /* The clock every write uses (epoch ms). */
    int64_t (*now)(struct sconn *c);

    /* The writer's transaction: begin, one savepoint per write (release
     * keeps it, rollback_to undoes it), commit or rollback. aborted says
     * whether the backend rolled the whole transaction back by itself
     * (disk full, I/O error, a lost connection): nothing of the batch
     * is kept and no more of it may run. begin and commit set f on
     * failure. */
    int (*begin)(struct sconn *c, struct fault *f);
    int (*savepoint)(struct sconn *c);
    int (*release)(struct sconn *c);
    int (*rollback_to)(struct sconn *c);
    bool (*aborted)(struct sconn *c);
    int (*commit)(struct sconn *c, struct fault *f);
    void (*rollback)(struct sconn *c);

    const struct store_jobs *jobs;
    const struct store_leases *leases;
    const struct store_dedupe *dedupe;
    const struct store_sessions *sessions;
    const struct store_messages *messages;
    const struct store_events *events;
};

/* The backend in use (set by store_select before anything else). */
extern const struct store_ops *store;
extern const struct store_ops store_sqlite;
/* Choose the backend for cfg.db_path: SQLite for a path. -1 with a reason
 * when the path names a backend this build does not have. */
int store_select(char *why, size_t n);

#endif
