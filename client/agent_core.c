/* agent_core.c -- the core role: claims jobs on queue "agent", runs
 * AGENT_HANDLER for each and completes the job with the handler's reply.
 *
 * THE HANDLER CONTRACT
 * AGENT_HANDLER is a command line run with /bin/sh -c in its own process
 * group, which dies with the worker: a watchdog process leads the group and
 * kills it when the worker exits or is killed (even by SIGKILL). stdin: one JSON object {"job":{...},"messages":[...]} (the job as
 * claimed, the conversation's messages oldest first, the last 50 at most),
 * then EOF. stdout: the reply text (trailing whitespace trimmed; empty: no
 * reply). Exit 0: the job completes with reply {text}. Exit 75: retryable
 * failure, errorReason = the first line of stderr (else "handler_retry").
 * Any other exit or a signal: permanent failure "handler_failed". Running
 * longer than AGENT_HANDLER_TIMEOUT_MS: the group is killed, permanent
 * failure "handler_timeout". The job's lock is heartbeated (every lockMs/3)
 * while the handler runs; if batond says the claim was lost the handler
 * is killed and nothing is reported. AGENT_HANDLER=echo is built in and
 * replies "echo: <text>".
 *
 * STREAMING
 * For a job answering a web chat message the handler's stdout is read as
 * it comes and the text so far is reported to batond (POST
 * /v1/jobs/{id}/progress, fenced by the claim) at most every
 * CORE_PROGRESS_MS, so the visitor sees the reply grow; the completion
 * then makes it final. Other channels get only the final text.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

#define CORE_LOCK_MS 30000L
#define CORE_HISTORY 50
#define CORE_MAX_OUTPUT (1 << 20)
#define CORE_SHUTDOWN_GRACE_MS 10000L
#define CORE_PROGRESS_MS 250L          /* at most one progress report per this */
#define CORE_PROGRESS_MAX 65536        /* batond's limit on the partial text */

enum outcome { RUN_OK, RUN_RETRY, RUN_FAILED, RUN_TIMEOUT, RUN_LOST, RUN_SHUTDOWN };

struct out {
    char *p;
    size_t n;
};

static void
append(struct out *o, const char *data, size_t len, size_t cap)
{
    char *p;

    if (o->n + len > cap)
        len = cap > o->n ? cap - o->n : 0;
    if (!len || !(p = realloc(o->p, o->n + len + 1)))
        return;
    memcpy(p + o->n, data, len);
    o->p = p;
    o->n += len;
    o->p[o->n] = 0;
}

/* The conversation's last CORE_HISTORY messages, oldest first (batond
 * lists oldest first: page through with after= and keep the tail). */
static json_t *
history(baton_client *b, const char *conversation)
{
    json_t *all = json_array();
    char *conv = baton_escape(conversation), after[64] = "";

    for (int page = 0; conv && page < 200; page++) {
        char path[1200];
        json_t *ans = NULL, *msgs, *m;
        size_t i;

        snprintf(path, sizeof path, "/v1/conversations/%s/messages?limit=%d%s%s", conv,
                 CORE_HISTORY, after[0] ? "&after=" : "", after);
        if (baton_call(b, "GET", path, NULL, &ans, NULL) < 0) {
            json_decref(ans);
            break;
        }
        msgs = json_object_get(ans, "messages");
        json_array_foreach(msgs, i, m) json_array_append(all, m);
        while (json_array_size(all) > CORE_HISTORY)
            json_array_remove(all, 0);
        i = json_array_size(msgs);
        m = json_array_get(msgs, i ? i - 1 : 0);
        snprintf(after, sizeof after, "%s", i ? json_string_value(json_object_get(m, "id")) ?: "" : "");
        json_decref(ans);
        if (i < CORE_HISTORY || !after[0])
            break;
    }
    free(conv);
    return all;
}

static void
nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* The watchdog of one handler run: a forked copy of the worker that leads
 * the handler's process group and does nothing but wait for SIGTERM, which
 * the kernel sends it when the worker dies, however it dies
 * (PR_SET_PDEATHSIG); it then SIGKILLs the whole group: the shell of
 * AGENT_HANDLER, its pipelines and background children. It holds no
 * descriptor, so it never keeps the handler's pipes open. Returns the
 * group id (the watchdog's pid) or -1. */
static pid_t
spawn_watchdog(void)
{
    pid_t parent = getpid(), pid;
    sigset_t term;

    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pid = fork();
    if (pid == 0) {
        int sig;
        setpgid(0, 0);
        sigprocmask(SIG_BLOCK, &term, NULL);
        signal(SIGINT, SIG_IGN);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        for (int fd = 0; fd < 1024; fd++)
            close(fd);
        if (getppid() == parent)    /* else the worker died before prctl */
            sigwait(&term, &sig);
        kill(-getpid(), SIGKILL);
        _exit(0);
    }
    if (pid > 0)
        setpgid(pid, pid);          /* before the handler joins the group */
    return pid;
}

/* End a handler run's process group (watchdog included) and reap the
 * watchdog. */
static void
stop_group(pid_t group)
{
    kill(-group, SIGKILL);
    waitpid(group, NULL, 0);
}

/* Report the text so far (up to its last whole UTF-8 character).
 * Returns false when batond says the claim is gone. */
static bool
report_progress(baton_client *b, const char *id, const char *token, const struct out *out)
{
    size_t n = out->n > CORE_PROGRESS_MAX ? CORE_PROGRESS_MAX : out->n, k = n;
    baton_error e;
    char *text;
    bool ok = true;

    /* step back over a character cut by the read */
    while (k && ((unsigned char)out->p[k - 1] & 0xC0) == 0x80)
        k--;
    if (k && ((unsigned char)out->p[k - 1] & 0x80)) {
        unsigned char lead = (unsigned char)out->p[k - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        n = (n - (k - 1) >= need) ? k - 1 + need : k - 1;
    }
    if (!(text = strndup(out->p, n)))
        return true;
    if (baton_job_progress(b, id, acfg.worker_id, token, text, &e) < 0 && e.status == 409) {
        agent_log("[agent] progress of job %s refused: %s", id, baton_strerror(&e));
        ok = false;
    }
    free(text);
    return ok;
}

/* Run the handler on input; heartbeats the job meanwhile and, when stream
 * is set, reports its stdout as it comes. *out / *err get its stdout and
 * stderr, *status its wait status. */
static enum outcome
run_handler(baton_client *b, const char *id, const char *token, const char *input, bool stream,
            struct out *out, struct out *err, int *status)
{
    long next_progress = 0;
    size_t reported = 0;
    int in[2], op[2], ep[2];
    size_t in_len = strlen(input), in_off = 0;
    long start = agent_now_ms(), deadline = start + acfg.handler_timeout_ms;
    long next_hb = start + CORE_LOCK_MS / 3, stop_at = 0;
    enum outcome res = RUN_OK;
    bool exited = false;
    pid_t pid, group, parent = getpid();

    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(op, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0)
        return RUN_RETRY;
    if ((group = spawn_watchdog()) < 0) {
        for (int *fd = (int[]){in[0], in[1], op[0], op[1], ep[0], ep[1]}, k = 0; k < 6; k++)
            close(fd[k]);
        return RUN_RETRY;
    }
    pid = fork();
    if (pid == 0) {
        sigset_t none;
        setpgid(0, group);
        /* the shell itself dies with the worker even before the watchdog
         * has noticed; its children are the watchdog's business */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(in[0], 0);
        dup2(op[1], 1);
        dup2(ep[1], 2);
        execl("/bin/sh", "sh", "-c", acfg.handler, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(op[1]);
    close(ep[1]);
    if (pid < 0) {
        close(in[1]);
        close(op[0]);
        close(ep[0]);
        stop_group(group);
        return RUN_RETRY;
    }
    setpgid(pid, group);
    nonblock(in[1]);
    nonblock(op[0]);
    nonblock(ep[0]);
    if (!in_len) {
        close(in[1]);
        in[1] = -1;
    }
    while (!exited || op[0] >= 0 || ep[0] >= 0) {
        struct pollfd p[3] = {{op[0], POLLIN, 0}, {ep[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
        long now = agent_now_ms();
        char buf[8192];

        if (!exited) {
            pid_t w = waitpid(pid, status, WNOHANG);
            if (w == pid)
                exited = true;
        }
        if (exited) {
            /* whatever it wrote is in the pipes: drain them without waiting
             * for descendants that may keep them open */
            for (int k = 0; k < 2; k++) {
                int *fd = k ? &ep[0] : &op[0];
                ssize_t got;
                while (*fd >= 0 && (got = read(*fd, buf, sizeof buf)) > 0)
                    append(k ? err : out, buf, (size_t)got, k ? 8192 : CORE_MAX_OUTPUT);
                if (*fd >= 0) {
                    close(*fd);
                    *fd = -1;
                }
            }
            break;
        }
        if (atomic_load(&agent_stopping) && !stop_at) {
            stop_at = now + CORE_SHUTDOWN_GRACE_MS;
            agent_log("[agent] stopping: waiting up to %ld ms for the handler of job %s",
                      CORE_SHUTDOWN_GRACE_MS, id);
        }
        if (now >= deadline || (stop_at && now >= stop_at)) {
            res = now >= deadline ? RUN_TIMEOUT : RUN_SHUTDOWN;
            break;
        }
        if (now >= next_hb) {
            baton_error e;
            if (baton_heartbeat_job(b, id, acfg.worker_id, token, CORE_LOCK_MS, 0, NULL, &e) < 0) {
                agent_log("[agent] heartbeat of job %s failed: %s", id, baton_strerror(&e));
                if (e.status == 409) {
                    res = RUN_LOST;
                    break;
                }
            }
            next_hb = agent_now_ms() + CORE_LOCK_MS / 3;
        }
        if (stream && out->n != reported && now >= next_progress) {
            if (!report_progress(b, id, token, out)) {
                res = RUN_LOST;
                break;
            }
            reported = out->n;
            next_progress = agent_now_ms() + CORE_PROGRESS_MS;
        }
        if (poll(p, 3, 50) <= 0)
            continue;
        for (int k = 0; k < 2; k++) {
            int *fd = k ? &ep[0] : &op[0];
            ssize_t got;
            if (*fd < 0 || !(p[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            got = read(*fd, buf, sizeof buf);
            if (got > 0)
                append(k ? err : out, buf, (size_t)got, k ? 8192 : CORE_MAX_OUTPUT);
            else if (got == 0 || errno != EAGAIN) {
                close(*fd);
                *fd = -1;
            }
        }
        if (in[1] >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t put = write(in[1], input + in_off, in_len - in_off);
            if (put > 0)
                in_off += (size_t)put;
            if ((put < 0 && errno != EAGAIN) || in_off >= in_len) {
                close(in[1]);
                in[1] = -1;
            }
        }
    }
    if (!exited) {
        kill(-group, SIGKILL);
        waitpid(pid, status, 0);
    }
    stop_group(group);              /* leftovers of the handler's group, and the watchdog */
    for (int *fd = (int[]){in[1], op[0], ep[0]}, k = 0; k < 3; k++)
        if (fd[k] >= 0)
            close(fd[k]);
    if (res != RUN_OK)
        return res;
    if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        return RUN_OK;
    if (WIFEXITED(*status) && WEXITSTATUS(*status) == 75)
        return RUN_RETRY;
    return RUN_FAILED;
}

/* The first line of s, trimmed, at most n-1 bytes, cut at a character
 * boundary. */
static void
first_line(const char *s, char *dst, size_t n)
{
    size_t len;

    while (s && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
        s++;
    len = s ? strcspn(s, "\r\n") : 0;
    if (len >= n)
        len = n - 1;
    while (len && ((unsigned char)s[len] & 0xC0) == 0x80)
        len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    memcpy(dst, s ? s : "", len);
    dst[len] = 0;
}

/* Report the job's end; unless the agent is stopping, the same request
 * claims the next job, without waiting, into *next (complete-and-next:
 * one request per job while jobs are waiting). */
static void
finish(baton_client *b, json_t **next, const char *id, const char *token, const char *reply_text,
       const char *reason, const char *message, bool retryable)
{
    const baton_next after = {"agent", CORE_LOCK_MS, 0};
    const baton_next *ask = atomic_load(&agent_stopping) ? NULL : &after;
    baton_error e;
    int rc;

    if (!reason) {
        json_t *reply = reply_text && *reply_text ? json_pack("{s:s}", "text", reply_text) : NULL;
        if (reply_text && *reply_text && !reply) {
            finish(b, next, id, token, NULL, "handler_bad_output", "the reply is not valid UTF-8", false);
            return;
        }
        rc = baton_complete_next(b, id, acfg.worker_id, token, NULL, reply, 0, ask, next, &e);
        json_decref(reply);
        if (rc >= 0)
            agent_log("[agent] job %s completed%s", id, reply ? " with a reply" : "");
    } else {
        rc = baton_fail_next(b, id, acfg.worker_id, token, reason, message, retryable, 0, 0, ask, next, &e);
        if (rc >= 0)
            agent_log("[agent] job %s failed (%s, %s)", id, reason,
                      retryable ? "retryable" : "permanent");
    }
    if (rc < 0)
        agent_log("[agent] could not report job %s: %s", id, baton_strerror(&e));
}

/* A job answering a web chat message: its reply is streamed. */
static bool
is_web(json_t *payload)
{
    const char *ch = json_string_value(json_object_get(payload, "channel"));

    return ch && !strcmp(ch, "web") && json_object_get(payload, "messageId");
}

/* Run one job and report it; the next job claimed with the report, or
 * NULL, into *next. */
static void
handle(baton_client *b, json_t *job, json_t **next)
{
    const char *id = json_string_value(json_object_get(job, "id"));
    const char *token = json_string_value(json_object_get(job, "claimToken"));
    json_t *payload = json_object_get(job, "payload");
    const char *conv = json_string_value(json_object_get(job, "conversationId"));
    struct out out = {0}, err = {0};
    char line[200], message[600];
    int status = 0;

    if (!id || !token)
        return;
    if (!conv)
        conv = json_string_value(json_object_get(payload, "conversationId"));
    agent_log("[agent] processing job %s", id);
    if (!strcmp(acfg.handler, "echo")) {
        const char *text = json_string_value(json_object_get(payload, "text"));
        char *reply = NULL;
        if (text && *text && asprintf(&reply, "echo: %s", text) < 0)
            reply = NULL;
        finish(b, next, id, token, reply, NULL, NULL, false);
        free(reply);
        return;
    }
    {
        json_t *in = json_pack("{s:O, s:o}", "job", job, "messages",
                               conv ? history(b, conv) : json_array());
        char *text = json_dumps(in, JSON_COMPACT);
        enum outcome oc;

        json_decref(in);
        if (!text) {
            finish(b, next, id, token, NULL, "handler_retry", "out of memory", true);
            return;
        }
        oc = run_handler(b, id, token, text, is_web(payload), &out, &err, &status);
        free(text);
        first_line(err.p, line, sizeof line);
        switch (oc) {
        case RUN_OK:
            while (out.n && strchr(" \t\r\n", out.p[out.n - 1]))
                out.p[--out.n] = 0;
            finish(b, next, id, token, out.p ? out.p : "", NULL, NULL, false);
            break;
        case RUN_RETRY:
            finish(b, next, id, token, NULL, line[0] ? line : "handler_retry",
                   line[0] ? NULL : "the handler asked to retry (exit 75)", true);
            break;
        case RUN_FAILED:
            if (WIFSIGNALED(status))
                snprintf(message, sizeof message, "killed by signal %d%s%s", WTERMSIG(status),
                         line[0] ? ": " : "", line);
            else
                snprintf(message, sizeof message, "exit status %d%s%s", WEXITSTATUS(status),
                         line[0] ? ": " : "", line);
            finish(b, next, id, token, NULL, "handler_failed", message, false);
            break;
        case RUN_TIMEOUT:
            snprintf(message, sizeof message, "no answer within %ld ms", acfg.handler_timeout_ms);
            finish(b, next, id, token, NULL, "handler_timeout", message, false);
            break;
        case RUN_SHUTDOWN:
            finish(b, next, id, token, NULL, "worker_shutdown", "the worker stopped during the handler",
                   true);
            break;
        case RUN_LOST:
            agent_log("[agent] job %s was taken away; its handler was stopped", id);
            break;
        }
    }
    free(out.p);
    free(err.p);
}

static int
core_cancel(void *arg)
{
    (void)arg;
    return atomic_load(&agent_stopping);
}

int
agent_run_core(void)
{
    baton_client *b = agent_client();
    long delay = 500;

    if (!b)
        return 1;
    agent_log("[agent] Starting agent loop — subscribing to pending jobs...");
    while (!atomic_load(&agent_stopping)) {
        json_t *job = NULL;
        baton_error e;
        int rc;

        baton_set_cancel(b, core_cancel, NULL);
        rc = baton_claim(b, "agent", acfg.worker_id, CORE_LOCK_MS, AGENT_CLAIM_WAIT_MS, 0, &job, &e);
        baton_set_cancel(b, NULL, NULL);
        if (rc == 200) {
            delay = 500;
            while (job) {
                json_t *next = NULL;
                handle(b, job, &next);
                json_decref(job);
                job = next;
            }
        } else if (rc < 0 && strcmp(e.code, "cancelled")) {
            agent_log("[agent] claim failed: %s", baton_strerror(&e));
            agent_sleep(delay, NULL, NULL);
            delay = delay * 2 > 10000 ? 10000 : delay * 2;
        }
        json_decref(job);
    }
    baton_free(b);
    return 0;
}
