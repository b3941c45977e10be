/* bench_node.c -- part "node" of the bench: batond, BullMQ and
 * graphile-worker each driven by its own Node client (node_bench.js), the
 * same workloads for the three, in one run.
 *
 * The servers: batond (SQLite, BATON_SYNC=full), redis-server with
 * appendonly and appendfsync always (BullMQ), a throwaway PostgreSQL with
 * its durable defaults (graphile-worker), started with bench_compare.c's
 * helpers. The npm packages (bullmq@5, graphile-worker@0.16, pg@8) are
 * installed once into BENCH_CACHE/node (log: npm.log there); without node
 * and npm the part is skipped, without the packages only batond runs.
 *
 * Each workload is one `node node_bench.js SYSTEM TARGET WORKLOAD N QUEUE`
 * printing one JSON line; the drain runs twice per system, alternating
 * the systems (batond, batond with batch enqueue, BullMQ, graphile-worker,
 * then again), each run on a queue of its own; the table shows both runs
 * and takes the better. Then dispatch latency, once per system. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define NODE_DRAIN_JOBS     4000
#define NODE_DRAIN_RUNS     2

enum nsys { N_BATON, N_BATON_BATCH, N_BULL, N_GRAPHILE, NNSYS };

static const char *const nsys_arg[NNSYS] = {"batond", "batond-batch", "bullmq", "graphile"};
static const char *const nsys_name[NNSYS] = {
    "batond (SQLite FULL)", "batond, batch enqueue", "BullMQ 5 (redis always)", "graphile-worker 0.16 (PG)",
};

struct node_result {
    double drain[NODE_DRAIN_RUNS];      /* jobs/s of each run, 0: failed */
    double client_cpu[NODE_DRAIN_RUNS]; /* % of one core during the drain */
    double server_cpu[NODE_DRAIN_RUNS];
    double ms[NODE_DRAIN_RUNS];         /* the drain's wall time */
    double commits[NODE_DRAIN_RUNS];    /* batond: its /metrics over the drain */
    double writes[NODE_DRAIN_RUNS];
    double commit_ms[NODE_DRAIN_RUNS];
    double requests;                    /* batond: requests of the last drain */
    int drains, errors;
    bool next;                          /* batond answered complete with "next" */
    bool dispatched;
    double p50, p99, p999;
    int derrors;
};

static struct node_result nres[NNSYS];

/* The target argument of node_bench.js for each system, and the server's
 * pid whose CPU it measures; target[0] == 0: not running. */
static char target[NNSYS][200];
static pid_t server_pid[NNSYS];

/* Install the npm packages into dir once; 0 when they are there. */
static int
node_install(const char *dir)
{
    static const char *const pkgs[] = {"bullmq", "graphile-worker", "pg"};
    char path[400];
    bool missing = false;

    for (size_t i = 0; i < sizeof pkgs / sizeof pkgs[0]; i++) {
        snprintf(path, sizeof path, "%s/node_modules/%s/package.json", dir, pkgs[i]);
        if (access(path, R_OK) != 0)
            missing = true;
    }
    if (!missing)
        return 0;
    printf("  (installing bullmq@5 graphile-worker@0.16 pg@8 with npm into %s)\n", dir);
    fflush(stdout);
    if (sh("mkdir -p '%s' && cd '%s' && npm install --no-audit --no-fund --silent bullmq@5 graphile-worker@0.16 pg@8"
           " >npm.log 2>&1", dir, dir) != 0) {
        printf("  npm install failed (see %s/npm.log): BullMQ and graphile-worker skipped\n", dir);
        return -1;
    }
    return 0;
}

/* One node_bench.js run; its JSON line into line. */
static int
node_run(const char *cache, enum nsys s, const char *workload, int n, const char *queue, char *line, size_t cap)
{
    char cmd[1024], buf[2048];
    bool got = false;
    FILE *f;

    snprintf(cmd, sizeof cmd,
             "NODE_PATH='%s/node_modules' NODE_BENCH_SERVER_PID=%d node tests/bench/node_bench.js %s '%s' %s %d %s",
             cache, (int)server_pid[s], nsys_arg[s], target[s], workload, n, queue);
    if (!(f = popen(cmd, "r")))
        return -1;
    while (fgets(buf, sizeof buf, f))
        if (strstr(buf, "\"workload\"")) {
            snprintf(line, cap, "%s", buf);
            got = true;
        }
    if (pclose(f) != 0 || !got) {
        printf("  node_bench.js %s %s failed\n", nsys_arg[s], workload);
        return -1;
    }
    return 0;
}

static double
best(const double *v, int n)
{
    double b = 0;

    for (int i = 0; i < n; i++)
        if (v[i] > b)
            b = v[i];
    return b;
}

static void
node_drain(const char *cache, enum nsys s, int run)
{
    struct node_result *r = &nres[s];
    char line[2048], queue[64];

    snprintf(queue, sizeof queue, "drain%d", run);
    printf("  %s: drain %d ...\n", nsys_name[s], run + 1);
    fflush(stdout);
    if (node_run(cache, s, "drain", NODE_DRAIN_JOBS, queue, line, sizeof line) < 0)
        return;
    r->drain[run] = json_num(line, "ops");
    r->client_cpu[run] = json_num(line, "clientCpu");
    r->server_cpu[run] = json_num(line, "serverCpu");
    r->ms[run] = json_num(line, "ms");
    r->commits[run] = json_num(line, "commits");
    r->writes[run] = json_num(line, "writes");
    r->commit_ms[run] = json_num(line, "commitMs");
    r->requests = json_num(line, "requests");
    r->errors += (int)json_num(line, "errors");
    r->next = strstr(line, "\"next\":true") != NULL;
    r->drains++;
}

static void
node_dispatch(const char *cache, enum nsys s, int rounds)
{
    struct node_result *r = &nres[s];
    char line[2048];

    printf("  %s: dispatch ...\n", nsys_name[s]);
    fflush(stdout);
    if (node_run(cache, s, "dispatch", rounds, "dispatch", line, sizeof line) < 0)
        return;
    r->dispatched = true;
    r->p50 = json_num(line, "p50");
    r->p99 = json_num(line, "p99");
    r->p999 = json_num(line, "p999");
    r->derrors = (int)json_num(line, "errors");
}

/* batond's row against peer's: drain ops ratio, dispatch p99 peer/batond */
static void
print_ratio(enum nsys b, enum nsys peer)
{
    struct node_result *x = &nres[b], *y = &nres[peer];
    double bx = best(x->drain, NODE_DRAIN_RUNS), by = best(y->drain, NODE_DRAIN_RUNS);

    if (!x->drains || !y->drains)
        return;
    printf("  %-28s / %-26s drain x%.2f", nsys_name[b], nsys_name[peer], by > 0 ? bx / by : 0);
    if (b == N_BATON && x->dispatched && y->dispatched && x->p99 > 0)
        printf("   dispatch p99 x%.2f", y->p99 / x->p99);
    printf("\n");
}

static void
print_node_table(int rounds)
{
    printf("\n  %-28s %8s %8s %8s %9s %9s %8s %8s %8s %6s\n", "Node view: system", "drain 1", "drain 2", "jobs/s",
           "cpu node", "cpu srv", "p50 ms", "p99 ms", "p99.9 ms", "errors");
    for (int s = 0; s < NNSYS; s++) {
        struct node_result *r = &nres[s];
        int k = r->drain[1] > r->drain[0] ? 1 : 0;     /* the better run's CPU */
        if (!r->drains && !r->dispatched)
            continue;
        printf("  %-28s %8.0f %8.0f %8.0f %8.0f%% ", nsys_name[s], r->drain[0], r->drain[1],
               best(r->drain, NODE_DRAIN_RUNS), r->client_cpu[k]);
        if (server_pid[s])
            printf("%8.0f%% ", r->server_cpu[k]);
        else
            printf("%9s ", "-");
        if (r->dispatched)
            printf("%8.3f %8.3f %8.3f ", r->p50, r->p99, r->p999);
        else
            printf("%8s %8s %8s ", "-", "-", "-");
        printf("%6d\n", r->errors + r->derrors);
    }
    printf("  (drain: %d jobs, 8 producers + 8 consumers, jobs/s = the better of two runs; cpu: %% of one core\n"
           "   during the better run, node = the whole Node client, srv = the server's processes;\n"
           "   dispatch: 8 idle consumers, one add every 5 ms, %d rounds, add call started -> task starts)\n",
           NODE_DRAIN_JOBS, rounds);
    if (nres[N_BATON].drains)
        printf("  batond drain: %.0f requests for %d jobs, %s\n", nres[N_BATON].requests, NODE_DRAIN_JOBS,
               nres[N_BATON].next ? "consumers completed with \"next\" (one request per job)"
                                  : "no \"next\" in complete's answer: consumers claimed separately");
    for (int s = N_BATON; s <= N_BATON_BATCH; s++) {
        struct node_result *r = &nres[s];
        int k = r->drain[1] > r->drain[0] ? 1 : 0;
        if (r->drains && r->commits[k] > 0 && r->ms[k] > 0)
            printf("  %s, better drain: %.0f writes in %.0f commits (%.1f per commit), mean commit %.2f ms,"
                   " the writer in commit %.0f%% of the drain\n", nsys_name[s], r->writes[k], r->commits[k],
                   r->writes[k] / r->commits[k], r->commit_ms[k] / r->commits[k], r->commit_ms[k] / r->ms[k] * 100);
    }
    print_ratio(N_BATON, N_BULL);
    print_ratio(N_BATON, N_GRAPHILE);
    print_ratio(N_BATON_BATCH, N_BULL);
    print_ratio(N_BATON_BATCH, N_GRAPHILE);
    printf("  (drain: batond jobs/s / peer's, above 1 batond is ahead; dispatch: peer's p99 / batond's,\n"
           "   above 1 batond is ahead)\n");
}

void
bench_node(void)
{
    const char *base = getenv("BENCH_CACHE") ? getenv("BENCH_CACHE") : "build/bench-cache";
    bool quick = getenv("BENCH_QUICK") && strcmp(getenv("BENCH_QUICK"), "0");
    int rounds = quick ? 200 : 1000;
    struct proc baton = {0}, redis = {0};
    char cache[300];
    bool pg = false;

    printf("\n  Node view (%s):\n", quick ? "BENCH_QUICK" : "full");
    fflush(stdout);
    if (sh("command -v node >/dev/null && command -v npm >/dev/null") != 0) {
        printf("  node/npm not installed: skipped\n");
        return;
    }
    snprintf(cache, sizeof cache, "%s/node", base);
    memset(target, 0, sizeof target);
    memset(server_pid, 0, sizeof server_pid);
    memset(nres, 0, sizeof nres);
    if (mkdir_tmp(&baton) == 0 && batond_start(&baton, NULL) == 0) {
        snprintf(target[N_BATON], sizeof target[N_BATON], "%d", baton.port);
        snprintf(target[N_BATON_BATCH], sizeof target[N_BATON_BATCH], "%d", baton.port);
        server_pid[N_BATON] = server_pid[N_BATON_BATCH] = baton.pid;
    }
    if (node_install(cache) == 0) {
        if (!have("/usr/bin/redis-server", "redis-server"))
            printf("  redis-server not available: BullMQ skipped\n");
        else if (mkdir_tmp(&redis) == 0 && redis_start(&redis, true) == 0) {
            snprintf(target[N_BULL], sizeof target[N_BULL], "%d", redis.port);
            server_pid[N_BULL] = redis.pid;
        }
        if (pg_up() == 0) {
            pg = true;
            if (pg_db("node", target[N_GRAPHILE], sizeof target[N_GRAPHILE]) != 0)
                target[N_GRAPHILE][0] = 0;
            server_pid[N_GRAPHILE] = pg_pid();
        }
    }
    for (int run = 0; run < NODE_DRAIN_RUNS; run++)
        for (int s = 0; s < NNSYS; s++)
            if (target[s][0])
                node_drain(cache, (enum nsys)s, run);
    for (int s = 0; s < NNSYS; s++)
        if (target[s][0] && s != N_BATON_BATCH)
            node_dispatch(cache, (enum nsys)s, rounds);
    proc_stop(&baton);
    proc_stop(&redis);
    if (baton.dir[0])
        rmdir_all(baton.dir);
    if (redis.dir[0])
        rmdir_all(redis.dir);
    if (pg)
        pg_down();
    print_node_table(rounds);
}
