/* convex_sync.c -- GET /api/{version}/sync, the Convex sync WebSocket
 * (`npx convex data`, `convex run --watch`, ConvexClient), refused in a
 * way the client stops on.
 *
 * DESIGN
 * batond has no sync protocol. An HTTP error on the upgrade makes the
 * client reconnect forever (it retries every close and every failed
 * handshake), and a FatalError message makes the CLI print it and then hang.
 * What it does stop on is a failed query whose message carries the
 * backend's permission sentence ("You do not have permission to perform
 * this operation"): `convex data` then prints that one line and exits 1. So
 * batond completes the handshake and sends one Transition failing the
 * client's first query (id 0, the one `convex data` subscribes to) from the
 * initial version, then a close frame.
 *
 * A client that does not exit on it (ConvexClient in an app) reconnects
 * with its backoff and is refused the same way each time. The handshake is
 * libmicrohttpd's upgrade (101); its upgrade handler writes the two frames,
 * which are the same for every client (built once), and closes. A GET that
 * is not a WebSocket handshake gets a JSON 404 with the same sentence.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <sodium.h>

#include "batond.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static const char refusal[] =
    "You do not have permission to perform this operation: batond does not serve Convex's sync WebSocket, "
    "so `npx convex data`, `convex run --watch` and reactive queries are not available. Use `npx convex run "
    "<function>` or the baton CLI (see docs/migration-from-convex.md)";

/* ---- SHA-1 (RFC 3174), only for Sec-WebSocket-Accept --------------------- */

static uint32_t
rol(uint32_t x, int n)
{
    return x << n | x >> (32 - n);
}

static void
sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (int i = 0; i < 80; i++) {
        uint32_t f, k, t;
        if (i < 20)
            f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40)
            f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60)
            f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else
            f = b ^ c ^ d, k = 0xCA62C1D6;
        t = rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

/* SHA-1 of a message shorter than 119 bytes (a key and the GUID are 60). */
static void
sha1_short(const char *msg, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    unsigned char buf[128] = {0};
    size_t blocks = len + 9 > 64 ? 2 : 1;
    uint64_t bits = (uint64_t)len * 8;

    memcpy(buf, msg, len);
    buf[len] = 0x80;
    for (int i = 0; i < 8; i++)
        buf[blocks * 64 - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < blocks; i++)
        sha1_block(h, buf + 64 * i);
    for (int i = 0; i < 20; i++)
        out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

/* ---- the handshake and two frames ------------------------------------------ */

/* Append one unmasked server frame (FIN set) to buf at *len. */
static void
frame(char *buf, size_t cap, size_t *len, unsigned opcode, const char *payload, size_t n)
{
    size_t head = n < 126 ? 2 : 4;

    if (*len + head + n > cap)
        return;
    buf[(*len)++] = (char)(0x80 | opcode);
    if (n < 126)
        buf[(*len)++] = (char)n;
    else {
        buf[(*len)++] = 126;
        buf[(*len)++] = (char)(n >> 8);
        buf[(*len)++] = (char)(n & 0xff);
    }
    memcpy(buf + *len, payload, n);
    *len += n;
}

/* true when the request asks for a WebSocket with a well-formed key */
static bool
is_handshake(struct req *r, const char **key)
{
    const char *up = req_header(r, "Upgrade"), *version = req_header(r, "Sec-WebSocket-Version");

    *key = req_header(r, "Sec-WebSocket-Key");
    return up && !strcasecmp(up, "websocket") && version && !strcmp(version, "13") && *key &&
           strlen(*key) == 24;
}

/* The two frames every refused client gets: built once. */
static char frames[2048];
static size_t frames_len;
static pthread_once_t frames_once = PTHREAD_ONCE_INIT;

static void
frames_init(void)
{
    json_t *fail;
    char *msg;

    /* versions: querySet 0 -> 1, identity unchanged, ts 0 -> 1 (u64 LE, base64) */
    fail = json_pack("{s:s, s:{s:i, s:i, s:s}, s:{s:i, s:i, s:s}, s:[{s:s, s:i, s:s, s:[], s:n}]}", "type",
                     "Transition", "startVersion", "querySet", 0, "identity", 0, "ts", "AAAAAAAAAAA=",
                     "endVersion", "querySet", 1, "identity", 0, "ts", "AQAAAAAAAAA=", "modifications", "type",
                     "QueryFailed", "queryId", 0, "errorMessage", refusal, "logLines", "journal");
    msg = fail ? json_dumps(fail, JSON_COMPACT) : NULL;
    json_decref(fail);
    if (!msg)
        return;
    frame(frames, sizeof frames, &frames_len, 0x1, msg, strlen(msg));
    /* a normal close (1000): the client logs nothing for it while the CLI exits */
    frame(frames, sizeof frames, &frames_len, 0x8, "\x03\xe8", 2);
    free(msg);
}

/* After the 101 went out: the frames, then close. */
static void
upgraded(void *cls, struct MHD_Connection *c, void *req_cls, const char *extra, size_t extra_len,
         MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)cls, (void)c, (void)req_cls, (void)extra, (void)extra_len;
    if (send(sock, frames, frames_len, MSG_NOSIGNAL) < 0)
        log_event("debug", "convex.sync.refused", json_pack("{s:s}", "error", "send failed"));
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

/* GET /api/{version}/sync */
int
convex_sync(struct req *r)
{
    const char *key;
    char accept_in[128], accept[32];
    unsigned char digest[20];
    struct MHD_Response *resp;

    if (!is_handshake(r, &key) || !r->conn)
        return req_fail(r, "not_found", NULL, "%s", refusal);
    pthread_once(&frames_once, frames_init);
    if (!frames_len)
        return req_fail(r, "unavailable", NULL, "out of memory");
    snprintf(accept_in, sizeof accept_in, "%s%s", key, WS_GUID);
    sha1_short(accept_in, strlen(accept_in), digest);
    sodium_bin2base64(accept, sizeof accept, digest, sizeof digest, sodium_base64_VARIANT_ORIGINAL);
    resp = MHD_create_response_for_upgrade(upgraded, NULL);
    if (!resp)
        return req_fail(r, "unavailable", NULL, "out of memory");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    r->raw = resp;
    r->status = MHD_HTTP_SWITCHING_PROTOCOLS;
    return 0;
}
