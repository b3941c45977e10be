/* fakeapi.c -- a stand-in for the Telegram Bot API and the WhatsApp Cloud
 * API, for the local demo stack (deploy/run-local.sh) and its test: the
 * senders of baton-agent point TELEGRAM_API_BASE / WHATSAPP_API_BASE at it
 * and every send succeeds without leaving the machine.
 *
 *   fakeapi [PORT]      listen on 127.0.0.1:PORT (0 or none: any free port)
 *
 * It prints "fakeapi: listening on http://127.0.0.1:<port>" once serving,
 * then one line per request (method, path with any bot token masked, body).
 *   POST .../bot<token>/sendMessage  -> {"ok":true,"result":{"message_id":N,...}}
 *   POST .../<phone-number-id>/messages -> {"messaging_product":"whatsapp",
 *                                          "messages":[{"id":"wamid.fake.N"}]}
 *   anything else                     -> 404 {"ok":false,...}
 * SIGTERM or SIGINT: exit 0. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <microhttpd.h>

#define BODY_MAX 65536

struct body {
    size_t n;
    char p[BODY_MAX + 1];
};

static atomic_int counter;

static bool
ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && !strcmp(s + n - m, tail);
}

/* The path as printed: "/bot<token>/" becomes "/bot***" + "/". */
static void
masked(const char *url, char *out, size_t n)
{
    const char *bot = strstr(url, "/bot"), *slash = bot ? strchr(bot + 4, '/') : NULL;

    if (bot && slash)
        snprintf(out, n, "%.*s/bot***%s", (int)(bot - url), url, slash);
    else
        snprintf(out, n, "%s", url);
}

static enum MHD_Result
answer(struct MHD_Connection *c, unsigned status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    struct MHD_Response *r;
    enum MHD_Result rc;

    json_decref(body);
    if (!text)
        return MHD_NO;
    r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *data, size_t *size, void **state)
{
    struct body *b = *state;
    json_t *in, *out;
    char path[512];
    int n;

    (void)cls;
    (void)version;
    if (!b) {
        if (!(b = calloc(1, sizeof *b)))
            return MHD_NO;
        *state = b;
        return MHD_YES;
    }
    if (*size) {
        size_t take = *size < BODY_MAX - b->n ? *size : BODY_MAX - b->n;
        memcpy(b->p + b->n, data, take);
        b->n += take;
        *size = 0;
        return MHD_YES;
    }
    masked(url, path, sizeof path);
    printf("fakeapi: %s %s %s\n", method, path, b->p);
    fflush(stdout);
    n = atomic_fetch_add(&counter, 1) + 1;
    in = json_loadb(b->p, b->n, 0, NULL);
    if (!strcmp(method, "POST") && ends_with(url, "/sendMessage")) {
        json_t *chat = json_object_get(in, "chat_id");
        out = json_pack("{s:b, s:{s:i, s:i, s:{s:O}, s:O}}", "ok", 1, "result", "message_id", n,
                        "date", 1700000000, "chat", "id", chat ? chat : json_null(), "text",
                        json_object_get(in, "text") ? json_object_get(in, "text") : json_null());
    } else if (!strcmp(method, "POST") && ends_with(url, "/messages")) {
        char id[64];
        snprintf(id, sizeof id, "wamid.fake.%d", n);
        out = json_pack("{s:s, s:[{s:O}], s:[{s:s}]}", "messaging_product", "whatsapp", "contacts",
                        "wa_id", json_object_get(in, "to") ? json_object_get(in, "to") : json_null(),
                        "messages", "id", id);
    } else {
        json_decref(in);
        return answer(c, 404, json_pack("{s:b, s:i, s:s}", "ok", 0, "error_code", 404,
                                        "description", "Not Found (fakeapi)"));
    }
    json_decref(in);
    return answer(c, 200, out);
}

static void
done(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)c;
    (void)why;
    free(*state);
    *state = NULL;
}

int
main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    struct sockaddr_in addr = {0};
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    sigset_t sigs;
    int sig;

    if (port < 0 || port > 65535) {
        fprintf(stderr, "usage: fakeapi [PORT]\n");
        return 2;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
                         handle, NULL, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_NOTIFY_COMPLETED, done,
                         NULL, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "fakeapi: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("fakeapi: listening on http://127.0.0.1:%u\n", info ? info->port : (unsigned)port);
    fflush(stdout);
    sigwait(&sigs, &sig);
    MHD_stop_daemon(d);
    return 0;
}
