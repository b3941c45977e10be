/* ratelimit.c -- token buckets keyed by a string (a client address, a
 * conversation id), in bounded memory.
 *
 * DESIGN
 * A limit is `rate` tokens per second with a bucket of `burst`. Buckets
 * live in a fixed table of slots found by a keyed hash (so a client cannot
 * aim collisions at another); a key looks at a window of WINDOW slots and
 * takes the first free or matching one. When the window is full the bucket
 * that would be fullest now (the most idle client) is evicted: forgetting a
 * full bucket changes nothing, so eviction only ever favours a flood a
 * little, never blocks an innocent key. Each limit has its own mutex; the
 * work under it is a few comparisons. Counts of refusals are kept per limit
 * for /metrics.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "base.h"

#define NSLOTS 4096
#define WINDOW 8
#define KEY_MAX 64              /* longer keys are hashed: 2 keys could share */

struct rl_slot {
    char key[KEY_MAX];          /* "" = free */
    double tokens;
    int64_t at;                 /* ms of the last refill */
};

static unsigned char hash_key[crypto_shorthash_KEYBYTES];
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;
static struct ratelimit *all;   /* every initialised limit, for /metrics */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;

static void
hash_init(void)
{
    randombytes_buf(hash_key, sizeof hash_key);
}

int
ratelimit_init(struct ratelimit *rl, const char *name, double rate, double burst)
{
    pthread_once(&hash_once, hash_init);
    memset(rl, 0, sizeof *rl);
    rl->name = name;
    rl->rate = rate;
    rl->burst = burst < 1 ? 1 : burst;
    rl->slots = calloc(NSLOTS, sizeof *rl->slots);
    if (!rl->slots)
        return -1;
    pthread_mutex_init(&rl->lock, NULL);
    pthread_mutex_lock(&all_lock);
    rl->next = all;
    all = rl;
    pthread_mutex_unlock(&all_lock);
    return 0;
}

void
ratelimit_free(struct ratelimit *rl)
{
    struct ratelimit **p;

    if (!rl->slots)
        return;
    pthread_mutex_lock(&all_lock);
    for (p = &all; *p; p = &(*p)->next)
        if (*p == rl) {
            *p = rl->next;
            break;
        }
    pthread_mutex_unlock(&all_lock);
    pthread_mutex_destroy(&rl->lock);
    free(rl->slots);
    rl->slots = NULL;
}

/* The key as stored: itself when short, else a prefix plus its hash. */
static void
slot_key(const char *key, char *out)
{
    size_t n = strlen(key);

    if (n < KEY_MAX) {
        memcpy(out, key, n + 1);
        return;
    }
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)key, n, hash_key);
    memcpy(out, key, KEY_MAX - 2 * sizeof h - 2);
    out[KEY_MAX - 2 * sizeof h - 2] = '#';
    sodium_bin2hex(out + KEY_MAX - 2 * sizeof h - 1, 2 * sizeof h + 1, h, sizeof h);
}

static double
refilled(const struct ratelimit *rl, const struct rl_slot *s, int64_t now)
{
    double t = s->tokens + (double)(now > s->at ? now - s->at : 0) * rl->rate / 1000.0;
    return t > rl->burst ? rl->burst : t;
}

/* The bucket of key, found or made (under rl->lock). */
static struct rl_slot *
find(struct ratelimit *rl, const char *key, int64_t now)
{
    char k[KEY_MAX];
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t idx;
    struct rl_slot *victim = NULL, *s;
    double best = -1;

    slot_key(key, k);
    crypto_shorthash(h, (const unsigned char *)k, strlen(k), hash_key);
    memcpy(&idx, h, sizeof idx);
    for (int i = 0; i < WINDOW; i++) {
        s = &rl->slots[(idx + (uint64_t)i) % NSLOTS];
        if (!strcmp(s->key, k))
            return s;
        double t = s->key[0] ? refilled(rl, s, now) : INFINITY;
        if (t > best) {
            best = t;
            victim = s;
        }
    }
    memcpy(victim->key, k, sizeof k);
    victim->tokens = rl->burst;
    victim->at = now;
    return victim;
}

/* The wait before key's bucket holds a token (0: now), taking it when
 * take is set and it is there. */
static int64_t
bucket(struct ratelimit *rl, const char *key, int64_t now, bool take)
{
    struct rl_slot *s;
    double t;
    int64_t wait = 0;

    if (!rl->slots || rl->rate <= 0)
        return 0;
    pthread_mutex_lock(&rl->lock);
    s = find(rl, key, now);
    t = refilled(rl, s, now);
    if (t >= 1) {
        if (take) {
            s->tokens = t - 1;
            s->at = now;
        }
    } else {
        wait = (int64_t)ceil((1 - t) * 1000.0 / rl->rate);
        rl->refused++;
    }
    pthread_mutex_unlock(&rl->lock);
    return wait;
}

int64_t
ratelimit_take(struct ratelimit *rl, const char *key, int64_t now)
{
    return bucket(rl, key, now, true);
}

int64_t
ratelimit_peek(struct ratelimit *rl, const char *key, int64_t now)
{
    return bucket(rl, key, now, false);
}

void
ratelimit_foreach(void (*fn)(const char *name, uint64_t refused, void *arg), void *arg)
{
    pthread_mutex_lock(&all_lock);
    for (struct ratelimit *rl = all; rl; rl = rl->next) {
        pthread_mutex_lock(&rl->lock);
        uint64_t n = rl->refused;
        pthread_mutex_unlock(&rl->lock);
        fn(rl->name, n, arg);
    }
    pthread_mutex_unlock(&all_lock);
}
