/* pg.c -- a throwaway PostgreSQL for the tests (see pg.h).
 *
 * DESIGN
 * One server per run, because initdb and a start cost a second or two
 * while a schema costs a millisecond: every test that wants an empty
 * database gets a new schema of the run's database and selects it with
 * the URL's options (search_path), so migrations create their tables
 * there and nothing of one test is seen by another.
 *
 * The server must not outlive the run. pg_test_stop (at exit of the
 * process that started it) stops it; a watchdog process, forked at start
 * into its own session, waits for the end of a pipe that only the runner
 * holds (close-on-exec, so batond and the other programs the tests start
 * do not keep it) and stops the server and removes its dir when the pipe
 * closes -- which also happens when the runner is killed with SIGKILL.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <libpq-fe.h>

#include "pg.h"

static char base_url[512];          /* the run's database, no schema selected */
static char dir[64];                /* our server's temp dir ("" when external) */
static char bindir[256];            /* where initdb and pg_ctl are */
static char opts[256];              /* the server's options (pg_ctl -o) */
static bool as_postgres;            /* running as root: run the server as postgres */
static pid_t starter;               /* the process that started the server */
static pid_t watchdog;
static int watch_fd = -1;           /* the runner's end of the watchdog's pipe */

/* Run a shell command built from fmt, as the postgres user when needed. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
run(const char *fmt, ...)
{
    char cmd[2048], inner[1800];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(inner, sizeof inner, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s%s", as_postgres ? "runuser -u postgres -- " : "", inner);
    rc = system(cmd);
    return rc == 0 ? 0 : -1;
}

/* The newest PostgreSQL's bin dir: BATON_TEST_PG_BINDIR, else the highest
 * /usr/lib/postgresql/N/bin holding initdb. */
static int
find_bindir(void)
{
    const char *env = getenv("BATON_TEST_PG_BINDIR");
    glob_t g;
    int best = -1;

    if (env && *env) {
        snprintf(bindir, sizeof bindir, "%s", env);
        return 0;
    }
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0)
        return -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        int v = atoi(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"));
        if (v > best) {
            best = v;
            snprintf(bindir, sizeof bindir, "%.*s", (int)(strlen(g.gl_pathv[i]) - strlen("/initdb")),
                     g.gl_pathv[i]);
        }
    }
    globfree(&g);
    return best >= 0 ? 0 : -1;
}

/* A TCP port on 127.0.0.1 free right now (the server may still lose it
 * to someone else: the caller tries again). */
static int
free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Stop the server and remove its dir (the watchdog, or the starter). */
static void
teardown_server(void)
{
    if (run("%s/pg_ctl -D %s/data -m immediate -w stop >/dev/null 2>&1", bindir, dir) < 0)
        fprintf(stderr, "pg: cannot stop the test PostgreSQL in %s\n", dir);
    as_postgres = false;
    if (run("rm -rf %s", dir) < 0)
        fprintf(stderr, "pg: cannot remove %s\n", dir);
}

/* Fork the watchdog: it stops the server once every copy of the pipe's
 * write end is closed (the runner exited, however it ended). */
static int
start_watchdog(void)
{
    int fds[2];
    char pidfile[128], pid[32];
    FILE *f;

    if (pipe(fds) < 0)
        return -1;
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    watchdog = fork();
    if (watchdog < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (watchdog == 0) {
        char c;

        close(fds[1]);
        setsid();                   /* out of the runner's terminal signals */
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        while (read(fds[0], &c, 1) < 0 && errno == EINTR)
            ;
        teardown_server();
        _exit(0);
    }
    close(fds[0]);
    watch_fd = fds[1];
    snprintf(pidfile, sizeof pidfile, "%s/baton-test-pg.pid", dir);
    snprintf(pid, sizeof pid, "%d\n", (int)watchdog);
    if ((f = fopen(pidfile, "w"))) {
        fputs(pid, f);
        fclose(f);
    }
    return 0;
}

/* Run sql on url (one statement, no result wanted). 0 or -1 (why on
 * stderr). */
static int
exec_on(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = NULL;
    int rc = -1;

    if (PQstatus(c) == CONNECTION_OK) {
        r = PQexec(c, sql);
        rc = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;
    }
    if (rc < 0)
        fprintf(stderr, "pg: %s: %s", sql, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return rc;
}

int
pg_test_start(void)
{
    const char *ext = getenv("BATON_TEST_PG_URL");
    char url[512];
    int port = -1;

    if (base_url[0])
        return 0;
    if (ext && *ext) {
        snprintf(base_url, sizeof base_url, "%s", ext);
        return exec_on(base_url, "SELECT 1");
    }
    if (find_bindir() < 0) {
        fprintf(stderr, "pg: no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin: install "
                "postgresql (deploy/install-deps.sh --test) or set BATON_TEST_PG_URL\n");
        return -1;
    }
    strcpy(dir, "/tmp/baton-pg-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("pg: mkdtemp");
        dir[0] = 0;
        return -1;
    }
    as_postgres = geteuid() == 0;
    if (as_postgres) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw || chown(dir, pw->pw_uid, pw->pw_gid) < 0) {
            fprintf(stderr, "pg: running as root needs the postgres user to own %s\n", dir);
            goto failed;
        }
    }
    /* from here on the watchdog removes the dir (and stops the server)
     * however the runner ends */
    starter = getpid();
    if (start_watchdog() < 0) {
        fprintf(stderr, "pg: cannot start the watchdog\n");
        goto failed;
    }
    atexit(pg_test_stop);
    /* --no-sync: initdb's files are throwaway; the server itself runs with
     * fsync on, as in production */
    if (run("%s/initdb -D %s/data -A trust -U baton -E UTF8 --locale=C --no-sync >%s/initdb.log 2>&1",
            bindir, dir, dir) < 0) {
        fprintf(stderr, "pg: initdb failed: see %s/initdb.log\n", dir);
        goto failed;
    }
    for (int attempt = 0; attempt < 5 && port < 0; attempt++) {
        int p = free_port();

        snprintf(opts, sizeof opts, "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=on "
                 "-c max_connections=400", p, dir);
        if (p > 0 && run("%s/pg_ctl -D %s/data -l %s/server.log -w -t 60 -o '%s' start >/dev/null 2>&1",
                         bindir, dir, dir, opts) == 0)
            port = p;
    }
    if (port < 0) {
        fprintf(stderr, "pg: cannot start PostgreSQL: see %s/server.log\n", dir);
        goto failed;
    }
    snprintf(url, sizeof url, "postgresql://baton@127.0.0.1:%d/postgres", port);
    if (exec_on(url, "CREATE DATABASE baton") < 0)
        goto failed;
    snprintf(base_url, sizeof base_url, "postgresql://baton@127.0.0.1:%d/baton", port);
    return 0;

failed:
    if (starter) {
        pg_test_stop();             /* the watchdog removes the dir */
    } else {
        as_postgres = false;
        if (run("rm -rf %s", dir) < 0)
            fprintf(stderr, "pg: cannot remove %s\n", dir);
    }
    dir[0] = 0;
    return -1;
}

void
pg_test_stop(void)
{
    if (!starter || getpid() != starter)
        return;
    starter = 0;
    /* the watchdog does the stopping: its pipe closes here */
    close(watch_fd);
    watch_fd = -1;
    while (waitpid(watchdog, NULL, 0) < 0 && errno == EINTR)
        ;
    base_url[0] = 0;
}

bool
pg_test_available(void)
{
    return base_url[0] != 0;
}

const char *
pg_test_base_url(void)
{
    return base_url[0] ? base_url : NULL;
}

const char *
pg_test_url(void)
{
    static char url[640];
    static int n;
    char schema[64], sql[96];

    ck_assert_msg(base_url[0], "no PostgreSQL for this run (see the runner's stderr; BATON_TEST_PG_URL)");
    snprintf(schema, sizeof schema, "t_%d_%d", (int)getpid(), n++);
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", schema);
    ck_assert_msg(exec_on(base_url, sql) == 0, "cannot create schema %s", schema);
    snprintf(url, sizeof url, "%s%soptions=-csearch_path%%3D%s", base_url, strchr(base_url, '?') ? "&" : "?",
             schema);
    return url;
}

int
pg_test_ctl(const char *action)
{
    if (!dir[0] || !bindir[0])
        return -1;
    return run("%s/pg_ctl -D %s/data -l %s/server.log -w -t 60 -o '%s' %s >/dev/null 2>&1",
               bindir, dir, dir, opts, action);
}
