/* bench_jobs.c -- figures for the jobs path, not pass/fail: long-poll
 * wake-up latency (enqueue's 201 to the parked claimer's 200) and claim +
 * complete throughput with 8 workers, bulk enqueue (single requests against
 * batches of 100 and 1000), against a batond this program starts
 * on a temporary database. `make bench`; BATOND names the binary. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#define SECRET      "bench-secret"
#define ROUNDS      300
#define JOBS        2000
#define WORKERS     8

int bench_compare(void);     /* bench_compare.c: peers, percentiles, scale */

static int failures;         /* any request that failed: keep the logs */

struct batond {
    pid_t pid;
    char dir[64];
    char base[64];
};

static double
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int
start(struct batond *b, const char *sync)
{
    char log[128], line[4096];
    const char *bin = getenv("BATOND") ? getenv("BATOND") : "build/batond";

    snprintf(b->dir, sizeof b->dir, "/tmp/baton-bench-XXXXXX");
    if (!mkdtemp(b->dir))
        return -1;
    snprintf(log, sizeof log, "%s/batond.log", b->dir);
    b->pid = fork();
    if (b->pid == 0) {
        char db[128], s[32];
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        snprintf(db, sizeof db, "%s/baton.db", b->dir);
        snprintf(s, sizeof s, "%s", sync);
        setenv("BATON_DB", db, 1);
        setenv("BATON_SYNC", s, 1);
        setenv("BATON_LISTEN", "127.0.0.1:0", 1);
        setenv("AGENT_SECRET", SECRET, 1);
        execl(bin, "batond", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1500; i++) {
        FILE *f = fopen(log, "r");
        while (f && fgets(line, sizeof line, f)) {
            char *p = strstr(line, "\"event\":\"server.started\""), *q = strstr(line, "\"port\":");
            if (p && q) {
                fclose(f);
                snprintf(b->base, sizeof b->base, "http://127.0.0.1:%d", atoi(q + 7));
                return 0;
            }
        }
        if (f)
            fclose(f);
        usleep(10000);
    }
    return -1;
}

static void
stop(struct batond *b)
{
    char cmd[128];

    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        waitpid(b->pid, NULL, 0);
    }
    if (failures || getenv("BATON_KEEP_BENCH_DIR")) {
        printf("  (kept %s for inspection)\n", b->dir);
        return;
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", b->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", b->dir);
}

/* ---- a keep-alive HTTP client per thread --------------------------------- */

struct client {
    CURL *c;
    struct curl_slist *h;
    char *buf;
    size_t n;
    const char *base;
};

static size_t
collect(char *d, size_t size, size_t nm, void *arg)
{
    struct client *cl = arg;
    size_t len = size * nm;
    char *p = realloc(cl->buf, cl->n + len + 1);

    if (!p)
        return 0;
    memcpy(p + cl->n, d, len);
    cl->buf = p;
    cl->n += len;
    cl->buf[cl->n] = 0;
    return len;
}

static void
client_init(struct client *cl, const char *base)
{
    memset(cl, 0, sizeof *cl);
    cl->base = base;
    cl->c = curl_easy_init();
    cl->h = curl_slist_append(NULL, "Authorization: Bearer " SECRET);
    cl->h = curl_slist_append(cl->h, "Content-Type: application/json");
    cl->h = curl_slist_append(cl->h, "Expect:");
    curl_easy_setopt(cl->c, CURLOPT_HTTPHEADER, cl->h);
    curl_easy_setopt(cl->c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(cl->c, CURLOPT_WRITEDATA, cl);
    curl_easy_setopt(cl->c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cl->c, CURLOPT_TIMEOUT, 120L);
}

static void
client_free(struct client *cl)
{
    curl_slist_free_all(cl->h);
    curl_easy_cleanup(cl->c);
    free(cl->buf);
}

/* POST path body; returns the status (0 on transport error), body in cl->buf. */
static long
post(struct client *cl, const char *path, const char *body)
{
    char url[256];
    long status = 0;

    snprintf(url, sizeof url, "%s%s", cl->base, path);
    cl->n = 0;
    if (cl->buf)
        cl->buf[0] = 0;
    curl_easy_setopt(cl->c, CURLOPT_URL, url);
    curl_easy_setopt(cl->c, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(cl->c) != CURLE_OK)
        return 0;
    curl_easy_getinfo(cl->c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* ---- 1. long-poll wake-up latency --------------------------------------------- */

struct lat {
    struct client cl;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int round, done;
    double got_at;
    long status;
};

static void *
lat_claimer(void *arg)
{
    struct lat *l = arg;

    for (int r = 1; r <= ROUNDS; r++) {
        pthread_mutex_lock(&l->m);
        while (l->round < r)
            pthread_cond_wait(&l->cv, &l->m);
        pthread_mutex_unlock(&l->m);
        long st = post(&l->cl, "/v1/jobs/claim", "{\"workerId\":\"lat\",\"queue\":\"lat\",\"waitMs\":30000}");
        double t = mono_ms();
        pthread_mutex_lock(&l->m);
        l->status = st;
        l->got_at = t;
        l->done = r;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->m);
    }
    return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void
bench_latency(const char *base)
{
    struct lat l;
    struct client cl;
    pthread_t th;
    double *lat = calloc(ROUNDS, sizeof *lat), *rtt = calloc(ROUNDS, sizeof *rtt);
    double *full = calloc(ROUNDS, sizeof *full);
    int bad = 0;

    memset(&l, 0, sizeof l);
    pthread_mutex_init(&l.m, NULL);
    pthread_cond_init(&l.cv, NULL);
    client_init(&l.cl, base);
    client_init(&cl, base);
    pthread_create(&th, NULL, lat_claimer, &l);
    for (int r = 1; r <= ROUNDS; r++) {
        double t0, t1;
        pthread_mutex_lock(&l.m);
        l.round = r;
        pthread_cond_broadcast(&l.cv);
        pthread_mutex_unlock(&l.m);
        usleep(20000);      /* let the claim find nothing and park */
        t0 = mono_ms();
        if (post(&cl, "/v1/jobs", "{\"queue\":\"lat\",\"payload\":{}}") != 201)
            bad++;
        t1 = mono_ms();
        pthread_mutex_lock(&l.m);
        while (l.done < r)
            pthread_cond_wait(&l.cv, &l.m);
        if (l.status != 200)
            bad++;
        lat[r - 1] = l.got_at - t1;   /* < 0 when the claimer was answered first */
        full[r - 1] = l.got_at - t0;
        rtt[r - 1] = t1 - t0;
        pthread_mutex_unlock(&l.m);
    }
    pthread_join(th, NULL);
    failures += bad;
    qsort(lat, ROUNDS, sizeof *lat, cmp_double);
    qsort(rtt, ROUNDS, sizeof *rtt, cmp_double);
    qsort(full, ROUNDS, sizeof *full, cmp_double);
    printf("  long-poll wake-up (enqueue 201 -> parked claimer 200), %d rounds:\n", ROUNDS);
    printf("    p50 %.2f ms   p99 %.2f ms   max %.2f ms\n", lat[ROUNDS / 2],
           lat[ROUNDS * 99 / 100], lat[ROUNDS - 1]);
    printf("    (negative: the claimer had its job before the enqueuer had its 201)\n");
    printf("  enqueue sent -> parked claimer 200: p50 %.2f ms   p99 %.2f ms\n", full[ROUNDS / 2],
           full[ROUNDS * 99 / 100]);
    printf("  enqueue round trip: p50 %.2f ms   p99 %.2f ms%s\n", rtt[ROUNDS / 2],
           rtt[ROUNDS * 99 / 100], bad ? "  SOME REQUESTS FAILED" : "");
    client_free(&l.cl);
    client_free(&cl);
    free(lat);
    free(rtt);
    free(full);
}

/* ---- 2. claim + complete throughput ------------------------------------------ */

struct worker {
    const char *base;
    int id, done, errors;
};

static void *
enqueuer(void *arg)
{
    struct worker *w = arg;
    struct client cl;

    client_init(&cl, w->base);
    for (int i = w->id; i < JOBS; i += WORKERS)
        if (post(&cl, "/v1/jobs", "{\"queue\":\"tp\",\"payload\":{\"n\":1}}") != 201)
            w->errors++;
    client_free(&cl);
    return NULL;
}

static void *
processor(void *arg)
{
    struct worker *w = arg;
    struct client cl;
    char worker[32], body[256], path[64];

    snprintf(worker, sizeof worker, "tp-%d", w->id);
    snprintf(body, sizeof body, "{\"workerId\":\"%s\",\"queue\":\"tp\"}", worker);
    client_init(&cl, w->base);
    for (;;) {
        long st = post(&cl, "/v1/jobs/claim", body);
        json_t *j, *job;
        char done[256];
        if (st == 204)
            break;
        if (st != 200) {
            w->errors++;
            break;
        }
        j = json_loads(cl.buf, 0, NULL);
        job = json_object_get(j, "job");
        snprintf(path, sizeof path, "/v1/jobs/%s/complete", json_string_value(json_object_get(job, "id")));
        snprintf(done, sizeof done, "{\"workerId\":\"%s\",\"claimToken\":\"%s\",\"result\":{\"ok\":true}}",
                 worker, json_string_value(json_object_get(job, "claimToken")));
        json_decref(j);
        if (post(&cl, path, done) != 200)
            w->errors++;
        else
            w->done++;
    }
    client_free(&cl);
    return NULL;
}

static void
bench_throughput(const char *base)
{
    struct worker w[WORKERS];
    pthread_t th[WORKERS];
    double t0, t1, t2;
    int done = 0, errors = 0;

    memset(w, 0, sizeof w);
    for (int i = 0; i < WORKERS; i++) {
        w[i].base = base;
        w[i].id = i;
    }
    t0 = mono_ms();
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&th[i], NULL, enqueuer, &w[i]);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    t1 = mono_ms();
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&th[i], NULL, processor, &w[i]);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    t2 = mono_ms();
    for (int i = 0; i < WORKERS; i++) {
        done += w[i].done;
        errors += w[i].errors;
    }
    failures += errors;
    printf("  enqueue %d jobs with %d threads: %.0f jobs/s\n", JOBS, WORKERS, JOBS / ((t1 - t0) / 1000.0));
    printf("  claim + complete with %d threads: %d jobs in %.0f ms = %.0f jobs/s%s\n", WORKERS, done,
           t2 - t1, done / ((t2 - t1) / 1000.0), errors || done != JOBS ? "  (ERRORS)" : "");
}

/* ---- 3. bulk enqueue: one client, single enqueues against batches ------------ */

#define BATCH_JOBS  5000

/* BATCH_JOBS jobs from one client in requests of `per` jobs (1: POST
 * /v1/jobs, else POST /v1/jobs/batch); jobs/s. */
static double
enqueue_rate(const char *base, int per)
{
    struct client cl;
    size_t cap = (size_t)per * 64 + 64, len;
    char *body = malloc(cap);
    double t0, ms;
    int errors = 0;

    client_init(&cl, base);
    t0 = mono_ms();
    for (int i = 0; i < BATCH_JOBS; i += per) {
        if (per == 1) {
            snprintf(body, cap, "{\"queue\":\"bulk1\",\"payload\":{\"n\":%d}}", i);
            errors += post(&cl, "/v1/jobs", body) != 201;
            continue;
        }
        len = (size_t)snprintf(body, cap, "{\"jobs\":[");
        for (int k = 0; k < per; k++)
            len += (size_t)snprintf(body + len, cap - len, "%s{\"queue\":\"bulk%d\",\"payload\":{\"n\":%d}}",
                                    k ? "," : "", per, i + k);
        snprintf(body + len, cap - len, "]}");
        errors += post(&cl, "/v1/jobs/batch", body) != 201;
    }
    ms = mono_ms() - t0;
    client_free(&cl);
    free(body);
    failures += errors;
    return errors ? 0 : BATCH_JOBS / (ms / 1000.0);
}

static void
bench_batch(const char *base)
{
    static const int per[] = {1, 100, 1000};

    printf("  enqueue %d jobs from one client:", BATCH_JOBS);
    for (size_t i = 0; i < sizeof per / sizeof per[0]; i++)
        printf("%s %d per request %.0f jobs/s", i ? ";" : "", per[i], enqueue_rate(base, per[i]));
    printf("\n");
}

int
main(void)
{
    static const char *const syncs[] = {"full", "normal"};

    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (size_t i = 0; i < sizeof syncs / sizeof syncs[0]; i++) {
        struct batond b = {0};
        if (start(&b, syncs[i]) < 0) {
            fprintf(stderr, "bench: batond did not start (see %s)\n", b.dir);
            return 1;
        }
        printf("batond BATON_SYNC=%s (%s)\n", syncs[i], b.base);
        bench_latency(b.base);
        bench_throughput(b.base);
        bench_batch(b.base);
        stop(&b);
    }
    bench_compare();
    curl_global_cleanup();
    return 0;
}
