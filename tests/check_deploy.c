/* check_deploy.c -- the deploy files and the reference docs: every route and
 * Convex function is in docs/api.md, every setting in the configuration
 * docs, the compose file and the systemd units validate, the man pages
 * format cleanly, and the local stack (deploy/run-local.sh) answers a web
 * chat message and both channels, then stops cleanly. Tools that are not
 * installed (docker-compose, systemd-analyze, groff) and a baton-agent that
 * is not built skip their part with a message on stderr. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "batond.h"
#include "harness.h"

#define FAILS_MAX 4096

/* ---- helpers ------------------------------------------------------------- */

static void
msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* The whole file, NUL-terminated (caller frees); fails the test if absent. */
static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *p;
    long n;

    ck_assert_msg(f != NULL, "cannot open %s (tests run from the repository root): %s", path,
                  strerror(errno));
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc((size_t)n + 1);
    ck_assert(p != NULL);
    ck_assert(fread(p, 1, (size_t)n, f) == (size_t)n);
    p[n] = 0;
    fclose(f);
    return p;
}

static bool
have_cmd(const char *name)
{
    char cmd[256];

    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* Run a shell command; its stdout+stderr into out. Returns the exit status
 * (-1 when it did not exit normally). */
static int
run(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    size_t len = 0;
    int st;

    out[0] = 0;
    if (!p)
        return -1;
    while (len + 1 < n) {
        size_t got = fread(out + len, 1, n - 1 - len, p);
        if (!got)
            break;
        len += got;
    }
    out[len] = 0;
    {
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0)
            ;
    }
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void add_fail(char *fails, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append one finding to fails (a FAILS_MAX buffer). */
static void
add_fail(char *fails, const char *fmt, ...)
{
    size_t len = strlen(fails);
    va_list ap;

    va_start(ap, fmt);
    if (len + 100 < FAILS_MAX)
        vsnprintf(fails + len, FAILS_MAX - len, fmt, ap);
    va_end(ap);
}

static const char *
build_dir(void)
{
    static char dir[256];
    const char *b = getenv("BATOND");

    snprintf(dir, sizeof dir, "%s", b ? b : "build/batond");
    return dirname(dir);
}

/* ---- docs/api.md is complete ------------------------------------------- */

/* The layers of docs/architecture.md hold in the source: only the SQLite
 * store speaks SQLite; only the HTTP layer (http.c, the SSE stream, the
 * WebSocket refusal) calls libmicrohttpd; nothing below the API layer
 * (the files that include core.h or store headers but not batond.h) sees
 * a struct req or answers HTTP; the lower headers include no upper one. */
static bool
ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

START_TEST(layers_call_one_way)
{
    static const char *const http_layer[] = {"http.c", "stream.c", "convex_sync.c", NULL};
    static const char *const must_be_below[] = {"writer.c", "wait.c", "notify.c", "store.c",
                                                "jobs.c", "leases.c", "dedupe.c", "sessions.c",
                                                "messages.c", "events.c", "sweep.c", NULL};
    static const char *const low_headers[] = {"server/base.h", "server/store.h", "server/core.h",
                                              "server/store_sqlite.h", NULL};
    DIR *d = opendir("server");
    struct dirent *e;
    int below = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d))) {
        char path[300], *src;
        bool store_file = !strncmp(e->d_name, "store_sqlite", 12), api, http = false;
        bool pg_file = !strncmp(e->d_name, "store_pg", 8);

        if (!ends_with(e->d_name, ".c"))
            continue;
        snprintf(path, sizeof path, "server/%s", e->d_name);
        src = slurp(path);
        for (const char *const *h = http_layer; *h; h++)
            http = http || !strcmp(e->d_name, *h);
        api = strstr(src, "#include \"batond.h\"") != NULL;
        ck_assert_msg(store_file || !strstr(src, "sqlite3"), "%s speaks SQLite outside the store", path);
        ck_assert_msg(pg_file || (!strstr(src, "libpq-fe.h") && !strstr(src, "store_pg.h") &&
                                  !strstr(src, "PGconn") && !strstr(src, "PGresult") &&
                                  !strstr(src, "PQexec") && !strstr(src, "PQconnect")),
                      "%s calls libpq outside the PostgreSQL store (store_pg*.c)", path);
        ck_assert_msg(http || !strstr(src, "microhttpd.h"), "%s calls libmicrohttpd outside http", path);
        if (!api) {
            below++;
            ck_assert_msg(!strstr(src, "struct req ") && !strstr(src, "struct req*") &&
                          !strstr(src, "req_fail") && !strstr(src, "req_ok("),
                          "%s is below the API layer but sees requests", path);
        }
        for (const char *const *b = must_be_below; *b; b++)
            if (!strcmp(e->d_name, *b))
                ck_assert_msg(!api, "%s is a rules or store file but includes batond.h", path);
        free(src);
    }
    closedir(d);
    ck_assert_int_ge(below, 11);
    for (const char *const *h = low_headers; *h; h++) {
        char *src = slurp(*h);
        ck_assert_msg(!strstr(src, "#include \"batond.h\"") && !strstr(src, "struct req ") &&
                      !strstr(src, "#include <microhttpd.h>"),
                      "%s includes or uses the API layer", *h);
        ck_assert_msg(!strcmp(*h, "server/store_sqlite.h") || !strstr(src, "#include <sqlite3.h>"),
                      "%s includes SQLite", *h);
        ck_assert_msg(!strstr(src, "libpq-fe.h") && !strstr(src, "store_pg.h"), "%s includes libpq", *h);
        free(src);
    }
    {
        char *api = slurp("server/batond.h");
        ck_assert_msg(!strstr(api, "sqlite3") && !strstr(api, "#include \"store_sqlite.h\""),
                      "batond.h includes SQLite");
        ck_assert_msg(!strstr(api, "libpq-fe.h") && !strstr(api, "store_pg.h"), "batond.h includes libpq");
        free(api);
    }
}
END_TEST

START_TEST(api_lists_every_route)
{
    char *doc = slurp("docs/api.md");
    char fails[FAILS_MAX] = "", want[300];
    int n = 0;

    for (const struct route *rt = routes; rt->method; rt++, n++) {
        snprintf(want, sizeof want, "`%s %s`", rt->method, rt->pattern);
        if (!strstr(doc, want))
            add_fail(fails, " %s", want);
    }
    ck_assert_int_gt(n, 40);
    ck_assert_msg(!fails[0], "docs/api.md does not document these routes of server/routes.c:%s", fails);
    free(doc);
}
END_TEST

/* Every route says how it is served, and the kind agrees with its section
 * of docs/api.md: a route whose section says it waits (`waitMs`, "waits")
 * is a long-poll (ROUTE_POLL), one that streams (Server-Sent Events, a
 * WebSocket) is ROUTE_STREAM, and a route served by the writer or a read
 * is neither. */
START_TEST(every_route_has_its_documented_kind)
{
    char *doc = slurp("docs/api.md");
    char fails[FAILS_MAX] = "", want[300];
    int polls = 0, streams = 0;

    for (const struct route *rt = routes; rt->method; rt++) {
        char *sec, *end, saved;
        bool waits, streaming;
        if (rt->kind != ROUTE_READ && rt->kind != ROUTE_WRITE && rt->kind != ROUTE_POLL &&
            rt->kind != ROUTE_STREAM) {
            add_fail(fails, " %s %s has no kind;", rt->method, rt->pattern);
            continue;
        }
        snprintf(want, sizeof want, "### `%s %s`", rt->method, rt->pattern);
        if (!(sec = strstr(doc, want)))
            continue;           /* api_lists_every_route names it */
        sec += strlen(want);
        end = strstr(sec, "\n#");
        if (!end)
            end = sec + strlen(sec);
        saved = *end;
        *end = 0;
        waits = strstr(sec, "`waitMs`") || strstr(sec, " waits ");
        streaming = strstr(sec, "Server-Sent Events") || strstr(sec, "WebSocket");
        *end = saved;
        if (waits && rt->kind != ROUTE_POLL)
            add_fail(fails, " %s %s is a long-poll in the docs but not ROUTE_POLL;", rt->method, rt->pattern);
        if (streaming && rt->kind != ROUTE_STREAM)
            add_fail(fails, " %s %s streams in the docs but is not ROUTE_STREAM;", rt->method, rt->pattern);
        if (!waits && !streaming && (rt->kind == ROUTE_STREAM))
            add_fail(fails, " %s %s is ROUTE_STREAM but its docs do not say it streams;", rt->method,
                     rt->pattern);
        polls += waits;
        streams += streaming;
    }
    ck_assert_msg(!fails[0], "server/routes.c:%s", fails);
    /* the claim, both conversation reads and convex logs; the SSE tail and
     * the sync socket */
    ck_assert_int_ge(polls, 4);
    ck_assert_int_ge(streams, 2);
    free(doc);
}
END_TEST

/* The functions[] table of server/convex.c is static, so it is read from
 * the source: every {"module:function", ...} line between "functions[] ="
 * and the table's end. */
START_TEST(api_lists_every_convex_function)
{
    char *src = slurp("server/convex.c"), *doc = slurp("docs/api.md");
    char *p = strstr(src, "functions[] = {"), *end;
    char fails[FAILS_MAX] = "", want[200];
    int n = 0;

    ck_assert_msg(p != NULL, "server/convex.c has no functions[] table");
    end = strstr(p, "{NULL");
    ck_assert(end != NULL);
    while ((p = strstr(p, "{\"")) && p < end) {
        char *q = strchr(p + 2, '"');
        snprintf(want, sizeof want, "`%.*s`", (int)(q - p - 2), p + 2);
        if (!strstr(doc, want))
            add_fail(fails, " %s", want);
        n++;
        p = q;
    }
    ck_assert_int_gt(n, 20);
    ck_assert_msg(!fails[0], "docs/api.md does not document these Convex functions:%s", fails);
    free(src);
    free(doc);
}
END_TEST

/* ---- every setting is documented ----------------------------------------- */

static const char *const agent_vars[] = {
    "AGENT_ROLE", "WORKER_ID", "ENABLE_WHATSAPP", "WHATSAPP_ACCOUNT_ID", "WHATSAPP_LEASE_TTL_MS",
    "WHATSAPP_HEARTBEAT_MS", "TELEGRAM_ACCOUNT_ID", "TELEGRAM_BOT_TOKEN", "AGENT_SECRET", "BATON_URL",
    "AGENT_HANDLER", "AGENT_HANDLER_TIMEOUT_MS", "WHATSAPP_API_BASE", "WHATSAPP_PHONE_NUMBER_ID",
    "WHATSAPP_ACCESS_TOKEN", "TELEGRAM_API_BASE", NULL,
};

START_TEST(every_setting_is_documented)
{
    char *conf = slurp("docs/configuration.md"), *envx = slurp("deploy/.env.example");
    char *man8 = slurp("docs/man/batond.8"), *agent8 = slurp("docs/man/baton-agent.8");
    char cmd[512], help[16384], fails[FAILS_MAX] = "", *line, *save = NULL;
    int n = 0;

    snprintf(cmd, sizeof cmd, "%s --help", getenv("BATOND") ? getenv("BATOND") : "build/batond");
    ck_assert_int_eq(run(cmd, help, sizeof help), 0);
    for (line = strtok_r(help, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char flag[64], env[64];
        if (sscanf(line, " --%63s %63s", flag, env) != 2)
            continue;
        n++;
        if (!strstr(conf, env))
            add_fail(fails, " %s (docs/configuration.md)", env);
        if (!strstr(conf, flag))
            add_fail(fails, " --%s (docs/configuration.md)", flag);
        if (!strstr(envx, env))
            add_fail(fails, " %s (deploy/.env.example)", env);
        if (!strstr(man8, env))
            add_fail(fails, " %s (docs/man/batond.8)", env);
    }
    ck_assert_int_gt(n, 20);
    for (int i = 0; agent_vars[i]; i++) {
        if (!strstr(conf, agent_vars[i]))
            add_fail(fails, " %s (docs/configuration.md)", agent_vars[i]);
        if (!strstr(envx, agent_vars[i]))
            add_fail(fails, " %s (deploy/.env.example)", agent_vars[i]);
        if (!strstr(agent8, agent_vars[i]))
            add_fail(fails, " %s (docs/man/baton-agent.8)", agent_vars[i]);
    }
    ck_assert_msg(!fails[0], "settings not documented:%s", fails);
    free(conf);
    free(envx);
    free(man8);
    free(agent8);
}
END_TEST

/* ---- docker-compose.yml ---------------------------------------------------- */

START_TEST(compose_file_validates)
{
    static char out[65536];
    int rc;

    if (!have_cmd("docker-compose")) {
        fprintf(stderr, "deploy: docker-compose is not installed; compose check skipped\n");
        return;
    }
    rc = run("env AGENT_SECRET=check-secret docker-compose -f deploy/docker-compose.yml"
             " --env-file deploy/.env.example config 2>&1", out, sizeof out);
    ck_assert_msg(rc == 0, "docker-compose config failed (%d):\n%s", rc, out);
    for (const char *const *w = (const char *const[]){"batond:", "agent-core:", "agent-whatsapp:",
                                                        "agent-telegram:", "AGENT_ROLE: core",
                                                        "AGENT_ROLE: whatsapp", "AGENT_ROLE: telegram",
                                                        "service_healthy", "BATON_LISTEN: 0.0.0.0:3210",
                                                        "AGENT_SECRET: check-secret", NULL};
         *w; w++)
        ck_assert_msg(strstr(out, *w) != NULL, "docker-compose config lacks '%s':\n%s", *w, out);
    /* without a secret the stack must refuse to start, not run open */
    rc = run("env -u AGENT_SECRET docker-compose -f deploy/docker-compose.yml"
             " --env-file deploy/.env.example config 2>&1", out, sizeof out);
    ck_assert_msg(rc != 0 && strstr(out, "AGENT_SECRET"),
                  "docker-compose config accepted a stack without AGENT_SECRET:\n%s", out);
}
END_TEST

/* The PostgreSQL stack: the database, two batond replicas on it (the same
 * connection string, no SQLite volume), the workers split between the two,
 * the database password reaching batond only as libpq's PGPASSWORD (never
 * inside BATON_DB, which batond may name in its logs), and no start
 * without the password or the agent secret. */
START_TEST(compose_postgres_file_validates)
{
    static char out[65536];
    char *line, *save = NULL;
    int rc, replicas = 0, pg_urls = 0;

    if (!have_cmd("docker-compose")) {
        fprintf(stderr, "deploy: docker-compose is not installed; compose check skipped\n");
        return;
    }
    rc = run("env AGENT_SECRET=check-secret BATON_PG_PASSWORD=check-pg-password docker-compose"
             " -f deploy/docker-compose.postgres.yml --env-file deploy/.env.example config 2>&1", out, sizeof out);
    ck_assert_msg(rc == 0, "docker-compose config failed (%d):\n%.2000s", rc, out);
    for (const char *const *w = (const char *const[]){"postgres:", "batond-a:", "batond-b:", "agent-core:",
                                                        "agent-whatsapp:", "agent-telegram:", "pg_isready",
                                                        "service_healthy", "BATON_URL: http://batond-a:3210",
                                                        "BATON_URL: http://batond-b:3210",
                                                        "PGPASSWORD: check-pg-password",
                                                        "POSTGRES_PASSWORD: check-pg-password",
                                                        "AGENT_SECRET: check-secret", NULL};
         *w; w++)
        ck_assert_msg(strstr(out, *w) != NULL, "docker-compose config lacks '%s':\n%.2000s", *w, out);
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        while (*line == ' ')
            line++;
        if (!strncmp(line, "BATON_DB:", 9)) {
            ck_assert_msg(strstr(line, " postgres://") || strstr(line, " postgresql://"),
                          "a service of the PostgreSQL stack runs on SQLite: %s", line);
            ck_assert_msg(!strstr(line, "check-pg-password"), "the password is inside BATON_DB: %s", line);
            pg_urls++;
        }
        if (!strncmp(line, "- batond", 8))
            continue;
        replicas += !strcmp(line, "dockerfile: deploy/Dockerfile");
    }
    ck_assert_int_eq(pg_urls, 2);
    ck_assert_int_eq(replicas, 2);
    for (const char *const *v = (const char *const[]){"BATON_PG_PASSWORD", "AGENT_SECRET", NULL}; *v; v++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "env -u AGENT_SECRET -u BATON_PG_PASSWORD %s docker-compose"
                 " -f deploy/docker-compose.postgres.yml --env-file deploy/.env.example config 2>&1",
                 !strcmp(*v, "AGENT_SECRET") ? "BATON_PG_PASSWORD=check-pg-password" : "AGENT_SECRET=check-secret");
        rc = run(cmd, out, sizeof out);
        ck_assert_msg(rc != 0 && strstr(out, *v), "docker-compose config accepted a stack without %s:\n%.2000s", *v,
                      out);
    }
}
END_TEST

/* ---- secrets stay out of git and out of images ------------------------------- */

/* deploy/.env is where the docs tell users to put their secrets. */
START_TEST(env_file_is_git_ignored)
{
    char out[1024];

    if (!have_cmd("git") || run("git rev-parse --is-inside-work-tree 2>&1", out, sizeof out) != 0) {
        fprintf(stderr, "deploy: not a git work tree; .gitignore check skipped\n");
        return;
    }
    ck_assert_msg(run("git check-ignore -q deploy/.env", out, sizeof out) == 0,
                  "git does not ignore deploy/.env (the secrets file of docs/operations.md)");
    ck_assert_msg(run("git check-ignore -q .env", out, sizeof out) == 0, "git does not ignore .env");
    ck_assert_msg(run("git check-ignore -q deploy/.env.example", out, sizeof out) == 1,
                  "git ignores deploy/.env.example, which must stay in the repository");
}
END_TEST

/* true when the path (a COPY source, "./" and trailing "/" stripped) is or
 * lies under one of what a build must never see */
static bool
forbidden_source(const char *src)
{
    static const char *const bad[] = {".env", "data", "build", "build-san", ".git", NULL};
    char p[512], *c;

    while (!strncmp(src, "./", 2))
        src += 2;
    snprintf(p, sizeof p, "%s", src);
    for (size_t n = strlen(p); n > 1 && p[n - 1] == '/'; n--)
        p[n - 1] = 0;
    if (!*p || !strcmp(p, ".") || !strcmp(p, "/") || strchr(p, '*') || strchr(p, '?'))
        return true;        /* the whole context, or a glob that may match anything */
    for (char *save = NULL, *part = strtok_r(p, "/", &save); part; part = strtok_r(NULL, "/", &save))
        for (int i = 0; bad[i]; i++)
            if (!strcmp(part, bad[i]) || ((c = strstr(part, ".env")) && c[4] == 0))
                return true;
    return false;
}

/* The build stage copies sources by name: no `COPY . .` that would put
 * deploy/.env, data/ or build/ into a layer, whatever the builder does
 * with ignore files; and both ignore files (the legacy builder reads only
 * the one at the context root) keep them out of the context. */
START_TEST(dockerfile_copies_no_secrets)
{
    char *df = slurp("deploy/Dockerfile");
    char fails[FAILS_MAX] = "", *save = NULL;
    int copies = 0;

    /* join continuation lines */
    for (char *c = df; (c = strstr(c, "\\\n")); )
        c[0] = c[1] = ' ';
    for (char *line = strtok_r(df, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tok[32], *tsave = NULL;
        int n = 0;

        while (*line == ' ' || *line == '\t')
            line++;
        if (strncasecmp(line, "COPY ", 5) && strncasecmp(line, "ADD ", 4))
            continue;
        for (char *t = strtok_r(line, " \t", &tsave); t && n < 32; t = strtok_r(NULL, " \t", &tsave))
            tok[n++] = t;
        if (n >= 2 && !strncmp(tok[1], "--from", 6))
            continue;       /* from another stage, not from the context */
        copies++;
        for (int i = 1; i < n - 1; i++) {
            struct stat sb;
            if (!strncmp(tok[i], "--", 2))
                continue;
            if (forbidden_source(tok[i]))
                add_fail(fails, " '%s' (may carry .env, data/ or build/)", tok[i]);
            else if (stat(tok[i], &sb) != 0)
                add_fail(fails, " '%s' (no such path in the repository)", tok[i]);
        }
    }
    ck_assert_int_gt(copies, 0);
    ck_assert_msg(!fails[0], "deploy/Dockerfile copies from the build context:%s", fails);
    free(df);

    for (const char *const *f = (const char *const[]){".dockerignore", "deploy/Dockerfile.dockerignore", NULL};
         *f; f++) {
        char *ig = slurp(*f), *l, *lsave = NULL;
        bool env = false, data = false, build = false;

        for (l = strtok_r(ig, "\n", &lsave); l; l = strtok_r(NULL, "\n", &lsave)) {
            env |= !strcmp(l, "**/.env") || !strcmp(l, "deploy/.env");
            data |= !strcmp(l, "data") || !strcmp(l, "data/") || !strcmp(l, "/data");
            build |= !strcmp(l, "build") || !strcmp(l, "build/") || !strcmp(l, "/build");
        }
        ck_assert_msg(env && data && build, "%s does not exclude%s%s%s", *f, env ? "" : " deploy/.env",
                      data ? "" : " data", build ? "" : " build");
        free(ig);
    }
}
END_TEST

/* A sentence of text (from after the previous '.', ':' or blank line to
 * the next '.' followed by a space or newline) that holds every word. */
static bool
sentence_with(const char *text, const char *const *words, char *out, size_t n)
{
    const char *start = text;

    for (const char *p = text;; p++) {
        bool end = !*p || (*p == '.' && (p[1] == ' ' || p[1] == '\n' || !p[1])) ||
                   (*p == '\n' && p[1] == '\n');
        if (!end)
            continue;
        {
            size_t len = (size_t)(p - start);
            char *s = strndup(start, len);
            bool all = true;
            for (int i = 0; words[i]; i++)
                all &= strstr(s, words[i]) != NULL;
            if (all) {
                snprintf(out, n, "%s", s);
                free(s);
                return true;
            }
            free(s);
        }
        if (!*p)
            return false;
        start = p + 1;
    }
}

/* What the docs say compose does with exit 78 matches the restart policy
 * of docker-compose.yml: a policy that restarts (always, unless-stopped,
 * on-failure) restarts on 78 too, since none can exclude one status. */
START_TEST(compose_restart_policy_matches_docs)
{
    bool restarts = false;
    int policies = 0;

    for (const char *const *f = (const char *const[]){"deploy/docker-compose.yml", "deploy/docker-compose.postgres.yml",
                                                        NULL};
         *f; f++) {
        char *yml = slurp(*f), *save = NULL;
        for (char *line = strtok_r(yml, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char pol[64];
            if (sscanf(line, " restart: %63s", pol) != 1)
                continue;
            policies++;
            if (!strcmp(pol, "always") || !strcmp(pol, "unless-stopped") || !strncmp(pol, "on-failure", 10))
                restarts = true;
            else
                ck_assert_msg(!strcmp(pol, "no") || !strcmp(pol, "\"no\""), "unknown restart policy %s in %s", pol,
                              *f);
        }
        free(yml);
    }
    ck_assert_int_gt(policies, 1);

    for (const char *const *f = (const char *const[]){"docs/configuration.md", "docs/operations.md", NULL}; *f;
         f++) {
        char *doc = slurp(*f), s[2048];
        const char *p = doc;

        /* every sentence about compose and exit 78 */
        while (*p) {
            if (!sentence_with(p, (const char *const[]){"ompose", "78", NULL}, s, sizeof s))
                break;
            if (restarts)
                ck_assert_msg(!strstr(s, "not restart") && !strstr(s, "not restarted") &&
                              !strstr(s, "never restart") && !strstr(s, "no restart"),
                              "%s says compose does not restart on 78, but its policy restarts:\n%s", *f, s);
            p = strstr(p, s) + strlen(s);
        }
        free(doc);
    }
    if (restarts) {
        char *doc = slurp("docs/configuration.md"), s[2048];
        ck_assert_msg(sentence_with(doc, (const char *const[]){"ompose", "78", "restart", NULL}, s, sizeof s),
                      "docs/configuration.md does not say that compose restarts a service that exits 78");
        free(doc);
    }
}
END_TEST

/* ---- the docs can be followed -------------------------------------------------- */

/* The docs that give `baton ...` commands say how baton gets on the PATH:
 * `make run` builds it into build/ and installs nothing. */
START_TEST(docs_say_where_baton_is)
{
    static const char *const docs[] = {"README.md", "docs/operations.md", "docs/incidents.md", "docs/api.md", NULL};
    char fails[FAILS_MAX] = "";

    for (int i = 0; docs[i]; i++) {
        char *d = slurp(docs[i]);
        bool uses = strstr(d, "\n    baton ") || strstr(d, "`baton ");
        bool says = strstr(d, "build/baton") || strstr(d, "PATH=$PWD/build") || strstr(d, "make install");
        if (uses && !says)
            add_fail(fails, " %s", docs[i]);
        free(d);
    }
    ck_assert_msg(!fails[0], "these docs use baton without saying it is build/baton or how to install it:%s",
                  fails);
}
END_TEST

/* Every $VARIABLE the examples of docs/api.md use is set before it is used:
 * by the "examples assume" block (an export line) or by an earlier example
 * that keeps an answer's id in a variable (JOB=$(...)), so that they run as
 * written, in order. */
static size_t
var_name(const char *q, char *name, size_t cap)
{
    size_t n = 0;

    while (n < cap - 1 && ((q[n] >= 'A' && q[n] <= 'Z') || q[n] == '_' || (n && q[n] >= '0' && q[n] <= '9')))
        n++;
    memcpy(name, q, n);
    name[n] = 0;
    return n;
}

START_TEST(api_examples_set_their_variables)
{
    char *d = slurp("docs/api.md"), fails[FAILS_MAX] = "", *set = calloc(1, strlen(d) + 2);
    char *save = NULL, *copy = strdup(d);

    ck_assert(set && copy);
    strcpy(set, " ");
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char name[64], want[70];
        if (strncmp(l, "    ", 4))
            continue;               /* only the examples */
        for (const char *p = l; (p = strchr(p, '$')); p++) {
            size_t n = var_name(p + 1 + (p[1] == '{'), name, sizeof name);
            if (n < 3 || !strcmp(name, "PATH") || !strcmp(name, "PWD"))
                continue;
            snprintf(want, sizeof want, " %s ", name);
            if (!strstr(set, want) && !strstr(fails, name))
                add_fail(fails, " $%s", name);
        }
        /* assignments of this line: after the indent, "export ", or a space */
        for (const char *p = l + 4; *p; p++) {
            size_t n;
            if (p > l + 4 && p[-1] != ' ')
                continue;
            if ((n = var_name(p, name, sizeof name)) >= 3 && p[n] == '=') {
                strcat(set, name);
                strcat(set, " ");
            }
        }
    }
    ck_assert_msg(!fails[0], "docs/api.md examples use variables not set before:%s", fails);
    free(set);
    free(copy);
    free(d);
}
END_TEST

/* ---- systemd units ------------------------------------------------------------ */

START_TEST(systemd_units_verify)
{
    char dir[] = "/tmp/baton-units-XXXXXX", cmd[2048];
    static char out[16384];
    int rc;

    if (!have_cmd("systemd-analyze")) {
        fprintf(stderr, "deploy: systemd-analyze is not installed; unit check skipped\n");
        return;
    }
    ck_assert(mkdtemp(dir) != NULL);
    /* the binaries are not installed here: point ExecStart at stand-ins
     * so that verify checks everything else */
    snprintf(cmd, sizeof cmd,
             "set -e; d=%s; mkdir -p $d/bin; for b in batond baton baton-agent; do ln -s /bin/true $d/bin/$b; done;"
             " sed \"s|/usr/local/bin/|$d/bin/|g\" deploy/systemd/batond.service > $d/batond.service;"
             " sed \"s|/usr/local/bin/|$d/bin/|g\" deploy/systemd/baton-agent@.service > $d/baton-agent@.service;"
             " ln -s baton-agent@.service $d/baton-agent@core.service;"
             " SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no $d/batond.service $d/baton-agent@core.service 2>&1",
             dir);
    rc = run(cmd, out, sizeof out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    if (rc != 0 && (strstr(out, "System has not been booted with systemd") ||
                    strstr(out, "Failed to initialize manager") || strstr(out, "Failed to connect to bus") ||
                    strstr(out, "Failed to setup working directory") || strstr(out, "Operation not permitted"))) {
        fprintf(stderr, "deploy: systemd-analyze cannot run here; unit check skipped:\n%s\n", out);
        return;
    }
    ck_assert_msg(rc == 0, "systemd-analyze verify failed (%d):\n%s", rc, out);
    ck_assert_msg(!strstr(out, "Unknown key") && !strstr(out, "Unknown section") &&
                  !strstr(out, "Failed to parse") && !strstr(out, "Invalid"),
                  "systemd-analyze verify warns:\n%s", out);
}
END_TEST

/* ---- man pages ----------------------------------------------------------------- */

START_TEST(man_pages_format_cleanly)
{
    static const char *const pages[] = {"docs/man/batond.8", "docs/man/baton.1", "docs/man/baton-agent.8", NULL};
    static char out[65536];
    char cmd[512];

    if (!have_cmd("groff")) {
        fprintf(stderr, "deploy: groff is not installed; man page check skipped\n");
        return;
    }
    for (int i = 0; pages[i]; i++) {
        struct stat sb;
        ck_assert_msg(stat(pages[i], &sb) == 0, "%s is missing", pages[i]);
        snprintf(cmd, sizeof cmd, "groff -man -Tutf8 -ww -z %s 2>&1", pages[i]);
        ck_assert_msg(run(cmd, out, sizeof out) == 0 && !out[0], "groff warns about %s:\n%s", pages[i], out);
        snprintf(cmd, sizeof cmd, "groff -man -Tutf8 %s 2>/dev/null | grep -c .", pages[i]);
        ck_assert_int_eq(run(cmd, out, sizeof out), 0);
        ck_assert_msg(atoi(out) > 40, "%s renders to only %s lines", pages[i], out);
    }
}
END_TEST

/* ---- the local stack -------------------------------------------------------------- */

struct stack {
    char dir[64];
    pid_t pid;
    struct server s;        /* only url is used, for the harness's HTTP calls */
};

static pid_t
stack_spawn(struct stack *st, const char *agent)
{
    char out[128], dir[80];
    pid_t pid;

    snprintf(out, sizeof out, "%s/run.out", st->dir);
    snprintf(dir, sizeof dir, "%s/demo", st->dir);
    pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setpgid(0, 0);
        setenv("B", build_dir(), 1);
        setenv("DEMO_DIR", dir, 1);
        setenv("BATON_PORT", "0", 1);
        setenv("FAKE_API_PORT", "0", 1);
        setenv("AGENT_SECRET", TEST_SECRET, 1);
        unsetenv("TELEGRAM_WEBHOOK_SECRET");
        unsetenv("WHATSAPP_APP_SECRET");
        unsetenv("WHATSAPP_VERIFY_TOKEN");
        if (agent)
            setenv("BATON_AGENT", agent, 1);
        execl("/bin/sh", "sh", "deploy/run-local.sh", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Wait up to ms for pid; its exit status, or -1 when still running. */
static int
wait_exit(pid_t pid, int ms)
{
    int status;

    for (int waited = 0; waited <= ms; waited += 50) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        msleep(50);
    }
    return -1;
}

/* The pids run-local.sh recorded (until it removes the file). */
static int
stack_pids(struct stack *st, pid_t *pids, int max)
{
    char path[128], name[64];
    int n = 0, pid;
    FILE *f;

    snprintf(path, sizeof path, "%s/demo/pids", st->dir);
    if (!(f = fopen(path, "r")))
        return 0;
    while (n < max && fscanf(f, "%63s %d", name, &pid) == 2)
        pids[n++] = pid;
    fclose(f);
    return n;
}

/* pid runs: exists and is not a zombie waiting for its new parent to reap
 * it. */
static bool
pid_alive(pid_t pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    bool alive = false;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r")))
        return false;
    if (fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')))
        alive = p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
    fclose(f);
    return alive;
}

static bool file_has(const char *path, const char *needle);

/* Stop the running stack with sig -- sent to the script's whole process
 * group when group is true (what a terminal's Ctrl-C does), else to the
 * script alone (kill, systemd, make's shell going away) -- and check what
 * the user relies on: the script exits 0, the WhatsApp worker released its
 * lease while batond still served (not a 503 of a server shutting down),
 * and no process of the stack is left. A sentence in fail (when empty) on
 * the first problem. */
static void
stack_stop(struct stack *st, int sig, bool group, char *fail, size_t n)
{
    char path[160];
    pid_t pids[16];
    int npids = stack_pids(st, pids, 16), rc;
    const char *how = sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "SIGTERM";

    if (!st->pid)
        return;
    kill(group ? -st->pid : st->pid, sig);
    rc = wait_exit(st->pid, 90000);
    if (rc < 0) {
        kill(-st->pid, SIGKILL);
        waitpid(st->pid, NULL, 0);
        if (!fail[0])
            snprintf(fail, n, "run-local.sh did not stop within 90 s of %s", how);
    } else if (rc != 0 && !fail[0])
        snprintf(fail, n, "run-local.sh exited %d after %s%s (a process did not stop cleanly; see %s/run.out)",
                 rc, how, group ? " to its group" : "", st->dir);
    st->pid = 0;
    for (int waited = 0; waited < 5000; waited += 100) {
        bool any = false;
        for (int i = 0; i < npids; i++)
            any |= pid_alive(pids[i]);
        if (!any)
            break;
        msleep(100);
    }
    for (int i = 0; i < npids; i++)
        if (pid_alive(pids[i])) {
            kill(pids[i], SIGKILL);
            if (!fail[0])
                snprintf(fail, n, "process %d of the stack outlived run-local.sh (%s%s)", (int)pids[i], how,
                         group ? " to its group" : "");
        }
    if (npids != 5 && !fail[0])
        snprintf(fail, n, "run-local.sh recorded %d processes, expected 5", npids);
    snprintf(path, sizeof path, "%s/demo/logs/agent-whatsapp.log", st->dir);
    if (!fail[0] && (!file_has(path, "Lease released for account 'default'") ||
                     file_has(path, "could not release the lease")))
        snprintf(fail, n, "after %s%s the WhatsApp worker did not release its lease (see %s)", how,
                 group ? " to the group" : "", path);
    snprintf(path, sizeof path, "%s/demo/logs/batond.log", st->dir);
    if (!fail[0] && !file_has(path, "\"event\":\"whatsapp.lease.released\""))
        snprintf(fail, n, "after %s batond recorded no whatsapp.lease.released (see %s)", how, path);
}

/* Poll a conversation until an outbound message with this text exists
 * whose status is want_status. true when seen within ms. */
static bool
await_reply(struct stack *st, const char *conv, const char *text, const char *want_status, int ms)
{
    char path[256];

    snprintf(path, sizeof path, "/v1/conversations/%s/messages", conv);
    for (int waited = 0; waited < ms; waited += 1000) {
        struct resp r;
        json_t *m;
        size_t i;
        bool found = false;

        if (http_req(&st->s, "GET", path, NULL, 0, NULL, NULL, &r) == 0 && r.status == 200) {
            json_array_foreach(json_object_get(r.json, "messages"), i, m) {
                const char *dir = json_string_value(json_object_get(m, "direction"));
                const char *t = json_string_value(json_object_get(m, "text"));
                const char *status = json_string_value(json_object_get(m, "status"));
                if (dir && t && status && !strcmp(dir, "out") && !strcmp(t, text) && !strcmp(status, want_status))
                    found = true;
            }
            resp_free(&r);
            if (found)
                return true;
        } else
            resp_free(&r);
        msleep(1000);
    }
    return false;
}

static bool
file_has(const char *path, const char *needle)
{
    char *p;
    bool yes;
    FILE *f = fopen(path, "rb");

    if (!f)
        return false;
    fclose(f);
    p = slurp(path);
    yes = strstr(p, needle) != NULL;
    free(p);
    return yes;
}

static const char wa_body[] =
    "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":[{\"field\":\"messages\","
    "\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{\"phone_number_id\":\"demo-phone-number-id\"},"
    "\"messages\":[{\"from\":\"4915550001\",\"id\":\"wamid.deploy-test-1\",\"timestamp\":\"1700000000\","
    "\"type\":\"text\",\"text\":{\"body\":\"hello from whatsapp\"}}]}}]}]}";

static const char web_body[] = "{\"text\":\"hello from the deploy test\"}";

static const char tg_body[] =
    "{\"message\":{\"message_id\":100,\"date\":1700000000,\"text\":\"hello from integration test\","
    "\"chat\":{\"id\":123456789}}}";

/* Drive the running stack; a sentence in fail on the first problem. */
static void
stack_exercise(struct stack *st, char *fail, size_t n)
{
    char path[160], url[64] = "", sig[80] = "sha256=";
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    struct resp r;
    FILE *f;

    /* the script writes its env file once every process is started */
    snprintf(path, sizeof path, "%s/demo/env", st->dir);
    for (int waited = 0; waited < 60000 && !url[0]; waited += 100) {
        char line[256];
        if ((f = fopen(path, "r"))) {
            while (fgets(line, sizeof line, f))
                if (!strncmp(line, "BATON_URL=", 10))
                    sscanf(line + 10, "%63s", url);
            fclose(f);
        }
        if (!url[0])
            msleep(100);
        if (wait_exit(st->pid, 0) >= 0) {
            st->pid = 0;
            snprintf(fail, n, "run-local.sh exited before the stack was up (see %s/run.out)", st->dir);
            return;
        }
    }
    if (!url[0]) {
        snprintf(fail, n, "the stack did not come up within 60 s");
        return;
    }
    snprintf(st->s.url, sizeof st->s.url, "%s", url);

    /* A. web chat: the core worker's echo handler answers */
    if (http_req(&st->s, "POST", "/v1/conversations/deploy-test/messages", web_body, strlen(web_body), NULL,
                 NULL, &r) < 0 || r.status != 201) {
        snprintf(fail, n, "web chat post answered %ld: %s", r.status, r.body ? r.body : "");
        resp_free(&r);
        return;
    }
    resp_free(&r);
    if (!await_reply(st, "deploy-test", "echo: hello from the deploy test", "sent", 60000)) {
        snprintf(fail, n, "no echo reply to the web chat message within 60 s");
        return;
    }

    /* B. Telegram webhook -> core -> telegram sender -> fake Bot API */
    if (http_req_h(&st->s, "POST", "/telegram/webhook", tg_body, strlen(tg_body),
                   "x-telegram-bot-api-secret-token", "demo-telegram-secret", &r) < 0 || r.status != 200) {
        snprintf(fail, n, "telegram webhook answered %ld: %s", r.status, r.body ? r.body : "");
        resp_free(&r);
        return;
    }
    resp_free(&r);
    if (!await_reply(st, "telegram:default:123456789", "echo: hello from integration test", "sent", 60000)) {
        snprintf(fail, n, "the Telegram reply was not sent within 60 s");
        return;
    }

    /* C. signed WhatsApp webhook -> core -> whatsapp sender (lease) -> fake Cloud API */
    crypto_auth_hmacsha256_state hs;
    crypto_auth_hmacsha256_init(&hs, (const unsigned char *)"demo-app-secret", 15);
    crypto_auth_hmacsha256_update(&hs, (const unsigned char *)wa_body, strlen(wa_body));
    crypto_auth_hmacsha256_final(&hs, mac);
    sodium_bin2hex(sig + 7, sizeof sig - 7, mac, sizeof mac);
    if (http_req_h(&st->s, "POST", "/whatsapp/webhook", wa_body, strlen(wa_body), "X-Hub-Signature-256", sig,
                   &r) < 0 || r.status != 200) {
        snprintf(fail, n, "whatsapp webhook answered %ld: %s", r.status, r.body ? r.body : "");
        resp_free(&r);
        return;
    }
    resp_free(&r);
    if (!await_reply(st, "whatsapp:default:4915550001", "echo: hello from whatsapp", "sent", 60000)) {
        snprintf(fail, n, "the WhatsApp reply was not sent within 60 s");
        return;
    }
    snprintf(path, sizeof path, "%s/demo/logs/fakeapi.log", st->dir);
    if (!file_has(path, "/sendMessage") || !file_has(path, "/demo-phone-number-id/messages"))
        snprintf(fail, n, "the fake API did not see both sends (see %s)", path);
}

START_TEST(local_stack_echoes_and_stops)
{
    struct stack st = {0};
    char agent[300], path[160], fail[512] = "";
    const char *env_agent = getenv("BATON_AGENT");
    int rc;

    snprintf(agent, sizeof agent, "%s/baton-agent", build_dir());
    if (env_agent && *env_agent)
        snprintf(agent, sizeof agent, "%s", env_agent);
    snprintf(st.dir, sizeof st.dir, "/tmp/baton-stack-XXXXXX");
    ck_assert(mkdtemp(st.dir) != NULL);

    if (access(agent, X_OK) != 0) {
        /* the script must refuse clearly, having started nothing */
        st.pid = stack_spawn(&st, NULL);
        rc = wait_exit(st.pid, 20000);
        if (rc < 0) {
            kill(-st.pid, SIGKILL);
            waitpid(st.pid, NULL, 0);
        }
        snprintf(path, sizeof path, "%s/run.out", st.dir);
        ck_assert_msg(rc == 1 && file_has(path, "baton-agent"),
                      "run-local.sh without baton-agent: exit %d, expected 1 naming baton-agent", rc);
        snprintf(path, sizeof path, "rm -rf %s", st.dir);
        ck_assert_int_eq(system(path), 0);
        fprintf(stderr, "deploy: %s is not built; local stack test skipped (run-local.sh refused as it should)\n",
                agent);
        return;
    }

    st.pid = stack_spawn(&st, agent);
    ck_assert(st.pid > 0);
    stack_exercise(&st, fail, sizeof fail);
    /* stop: SIGTERM to the script alone, as `kill` or systemd would */
    stack_stop(&st, SIGTERM, false, fail, sizeof fail);
    ck_assert_msg(!fail[0], "%s", fail);
    snprintf(path, sizeof path, "rm -rf %s", st.dir);
    ck_assert_int_eq(system(path), 0);
}
END_TEST

/* Ctrl-C on `make demo` (SIGINT to the whole foreground process group) and
 * a terminal or make's shell going away (SIGHUP to the script): the stack
 * stops in order -- workers first, so the WhatsApp worker's release is
 * answered by a batond that still serves -- and leaves no process behind. */
static const struct {
    int sig;
    bool group;
} stop_ways[] = {{SIGINT, true}, {SIGHUP, false}};

START_TEST(local_stack_stops_in_order)
{
    struct stack st = {0};
    char agent[300], path[160], fail[512] = "";
    const char *env_agent = getenv("BATON_AGENT");

    snprintf(agent, sizeof agent, "%s/baton-agent", build_dir());
    if (env_agent && *env_agent)
        snprintf(agent, sizeof agent, "%s", env_agent);
    if (access(agent, X_OK) != 0) {
        fprintf(stderr, "deploy: %s is not built; local stack stop test skipped\n", agent);
        return;
    }
    snprintf(st.dir, sizeof st.dir, "/tmp/baton-stack-XXXXXX");
    ck_assert(mkdtemp(st.dir) != NULL);
    st.pid = stack_spawn(&st, agent);
    ck_assert(st.pid > 0);
    /* up: the env file is written once every process started; then wait
     * for the WhatsApp worker to hold its lease */
    snprintf(path, sizeof path, "%s/demo/env", st.dir);
    for (int waited = 0; waited < 60000 && !file_has(path, "BATON_URL="); waited += 100)
        msleep(100);
    snprintf(path, sizeof path, "%s/demo/logs/agent-whatsapp.log", st.dir);
    for (int waited = 0; waited < 60000 && !file_has(path, "Lease acquired for account 'default'"); waited += 100)
        msleep(100);
    if (!file_has(path, "Lease acquired for account 'default'"))
        snprintf(fail, sizeof fail, "the WhatsApp worker did not take its lease within 60 s (see %s)", path);
    stack_stop(&st, stop_ways[_i].sig, stop_ways[_i].group, fail, sizeof fail);
    ck_assert_msg(!fail[0], "%s", fail);
    snprintf(path, sizeof path, "rm -rf %s", st.dir);
    ck_assert_int_eq(system(path), 0);
}
END_TEST

Suite *
suite_deploy(void)
{
    Suite *s = suite_create("deploy");
    TCase *tc = tcase_create("docs");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, api_lists_every_route);
    tcase_add_test(tc, every_route_has_its_documented_kind);
    tcase_add_test(tc, api_lists_every_convex_function);
    tcase_add_test(tc, every_setting_is_documented);
    tcase_add_test(tc, man_pages_format_cleanly);
    tcase_add_test(tc, docs_say_where_baton_is);
    tcase_add_test(tc, api_examples_set_their_variables);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, compose_file_validates);
    tcase_add_test(tc, compose_postgres_file_validates);
    tcase_add_test(tc, systemd_units_verify);
    tcase_add_test(tc, env_file_is_git_ignored);
    tcase_add_test(tc, dockerfile_copies_no_secrets);
    tcase_add_test(tc, layers_call_one_way);
    tcase_add_test(tc, compose_restart_policy_matches_docs);
    suite_add_tcase(s, tc);

    tc = tcase_create("stack");
    tcase_set_timeout(tc, 400);
    tcase_add_test(tc, local_stack_echoes_and_stops);
    tcase_add_loop_test(tc, local_stack_stops_in_order, 0, (int)(sizeof stop_ways / sizeof stop_ways[0]));
    suite_add_tcase(s, tc);
    return s;
}
