/* bench.h -- what the parts of the bench share: the server processes
 * bench_compare.c starts (batond, redis-server, a throwaway PostgreSQL)
 * and its small helpers, used by bench_node.c. */
#ifndef BATON_BENCH_H
#define BATON_BENCH_H

#include <stdbool.h>
#include <sys/types.h>

#define SECRET  "bench-secret"

struct proc {
    pid_t pid;
    int port;
    char dir[64];
    const char *name;
};

int free_port(void);
int mkdir_tmp(struct proc *p);                  /* p->dir: a new /tmp/baton-bench-XXXXXX */
void rmdir_all(const char *dir);                /* kept with BATON_KEEP_BENCH_DIR */
bool have(const char *bin, const char *pkg);    /* installs pkg with apt-get as root */
void proc_stop(struct proc *p);
int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double json_num(const char *line, const char *key);

/* batond on p->dir/baton.db (BATON_SYNC=full unless set); extra: "K=V"
 * settings, NULL-terminated */
int batond_start(struct proc *p, const char *const *extra);
/* redis-server in p->dir (a mkdir_tmp dir) on a free port: appendonly
 * with appendfsync always when fsync, no persistence otherwise */
int redis_start(struct proc *p, bool fsync);
/* a PostgreSQL of the bench's own (fsync, synchronous_commit on) and a
 * new database on it (its URL into url) */
int pg_up(void);
void pg_down(void);
pid_t pg_pid(void);                             /* its server process, 0 when down */
int pg_db(const char *name, char *url, size_t n);

int bench_compare(void);
void bench_node(void);

#endif
