/* util.c -- clock, ids, secret comparison and number parsing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "batond.h"

int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
