/* util.c -- clocks and sleeping, ids, secret comparison and number parsing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "base.h"

static int64_t clock_skew_ms;
static pthread_once_t clock_skew_once = PTHREAD_ONCE_INIT;

/* TEST-ONLY (docs/testing.md): BATON_TEST_CLOCK_SKEW_MS shifts this
 * process's clock, so that the replica tests can show that ownership and
 * due times come from the database's clock. The writer logs it. */
static void
clock_skew_init(void)
{
    const char *s = getenv("BATON_TEST_CLOCK_SKEW_MS");

    clock_skew_ms = s && *s ? atoll(s) : 0;
}

int64_t
now_ms(void)
{
    struct timespec ts;

    pthread_once(&clock_skew_once, clock_skew_init);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + clock_skew_ms;
}

double
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

void
sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};

    if (ms <= 0)
        return;
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* An absolute time of now_ms's clock as CLOCK_REALTIME sees it (for
 * timed waits): the test-only skew taken back out. */
struct timespec
ms_timespec(int64_t ms)
{
    struct timespec ts;

    pthread_once(&clock_skew_once, clock_skew_init);
    ms -= clock_skew_ms;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000;
    return ts;
}

void
fmt_time(int64_t ms, char *buf, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];

    gmtime_r(&s, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03dZ", base, (int)(ms % 1000));
}

/* Hash both sides to a fixed length first so neither the contents nor the
 * length of the secret leak through timing. */
bool
secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char ha[32], hb[32];

    crypto_generichash(ha, sizeof ha, (const unsigned char *)a, alen, NULL, 0);
    crypto_generichash(hb, sizeof hb, (const unsigned char *)b, blen, NULL, 0);
    return sodium_memcmp(ha, hb, sizeof ha) == 0;
}

char *
new_id(const char *prefix)
{
    unsigned char raw[16];
    size_t plen = strlen(prefix);
    char *id = malloc(plen + 2 * sizeof raw + 1);

    if (!id)
        return NULL;
    randombytes_buf(raw, sizeof raw);
    memcpy(id, prefix, plen);
    sodium_bin2hex(id + plen, 2 * sizeof raw + 1, raw, sizeof raw);
    return id;
}

int
parse_int64(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || end == s)
        return -1;
    *out = v;
    return 0;
}

bool
name_ok(const char *s, size_t max, const char *punct)
{
    size_t n = 0;

    if (!s)
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr(punct, c)))
            return false;
    }
    return n >= 1 && n <= max;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when
 * invalid: overlong forms, surrogates and code points above U+10FFFF are
 * invalid (RFC 3629). */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp, min;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

bool
utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0, k; i < n; i += k)
        if (!(k = utf8_seq(p + i, n - i)))
            return false;
    return true;
}

void
utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t n = strlen(s), i = 0, k;

    while (i < n) {
        if ((k = utf8_seq(p + i, n - i))) {
            i += k;
            continue;
        }
        /* an incomplete sequence at the very end was cut by a buffer */
        size_t j = i + 1;
        while (j < n && (p[j] & 0xc0) == 0x80)
            j++;
        if (j == n && p[i] >= 0xc2 && p[i] <= 0xf4) {
            p[i] = 0;
            return;
        }
        p[i++] = '?';
    }
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
url_decode(const char *in, size_t n, char **out, const char **why)
{
    char *o = malloc(n + 1);
    size_t len = 0;

    *out = NULL;
    if (!o) {
        *why = "out of memory";
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (in[i] != '%') {
            o[len++] = in[i];
            continue;
        }
        if (i + 2 >= n) {
            free(o);
            *why = "has a malformed %-escape";
            return -1;
        }
        hi = hexval((unsigned char)in[i + 1]);
        lo = hi < 0 ? -1 : hexval((unsigned char)in[i + 2]);
        if (hi < 0 || lo < 0) {
            free(o);
            *why = "has a malformed %-escape";
            return -1;
        }
        o[len++] = (char)(hi * 16 + lo);
        i += 2;
    }
    o[len] = 0;
    if (memchr(o, 0, len)) {
        free(o);
        *why = "contains a NUL byte";
        return -1;
    }
    if (!utf8_valid(o, len)) {
        free(o);
        *why = "is not valid UTF-8";
        return -1;
    }
    *out = o;
    return 0;
}

int
real_to_int64(double d, int64_t *out)
{
    int64_t x;

    if (d != d)
        return -1;                  /* NaN */
    /* [-2^63, 2^63): both bounds are exact doubles, so the cast below is
     * defined for everything that passes */
    if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
        return -2;
    x = (int64_t)d;
    if ((double)x != d)
        return -1;                  /* a fraction */
    *out = x;
    return 0;
}

/* ---- text: a growing buffer --------------------------------------------- */

static bool
text_room(struct text *b, size_t n)
{
    size_t cap;
    char *s;

    if (b->oom)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    if (!(s = realloc(b->s, cap))) {
        b->oom = true;
        return false;
    }
    b->s = s;
    b->cap = cap;
    return true;
}

void
text_add(struct text *b, const char *s, size_t n)
{
    if (!text_room(b, n))
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void
text_str(struct text *b, const char *s)
{
    text_add(b, s, strlen(s));
}

void
text_int(struct text *b, int64_t v)
{
    char d[24];

    text_add(b, d, (size_t)snprintf(d, sizeof d, "%lld", (long long)v));
}

void
text_json_str(struct text *b, const char *s)
{
    const char *run = s;

    text_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        size_t n = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        text_add(b, run, (size_t)(s - run));
        run = s + 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: n = (size_t)snprintf(esc, sizeof esc, "\\u%04X", c); break;
        }
        text_add(b, esc, n);
    }
    text_add(b, run, (size_t)(s - run));
    text_add(b, "\"", 1);
}

void
text_free(struct text *b)
{
    free(b->s);
    *b = (struct text){0};
}
