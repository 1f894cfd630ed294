/*
 * Inputs that are not files, taken as transformers' load_image takes them:
 * an http:// or https:// URL (fetched with libcurl: redirects followed,
 * a timeout, the byte limit the model's options give, an HTTP error
 * status reported as one), a data: URL (base64 or percent-encoded), and
 * "-", one image read from standard input. The bytes are then decoded
 * like a file's, by content.
 */
#include "cli/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_is_remote(const char *name)
{
    return strcmp(name, "-") == 0 || strncmp(name, "http://", 7) == 0 ||
           strncmp(name, "https://", 8) == 0 || strncmp(name, "data:", 5) == 0;
}

static int failf(char *why, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int failf(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- growing a buffer within a limit ---- */

typedef struct {
    unsigned char *p;
    size_t n, cap, max;
    int over;  /* the limit was passed */
} buf;

static int buf_add(buf *b, const void *d, size_t n)
{
    if (b->max && b->n + n > b->max) {
        b->over = 1;
        return -1;
    }
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->n + n)
            cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    return 0;
}

/* ---- standard input, once ---- */

static pthread_mutex_t stdin_mu = PTHREAD_MUTEX_INITIALIZER;
static int stdin_taken;

static int read_stdin(buf *b, char *why, size_t whylen)
{
    pthread_mutex_lock(&stdin_mu);
    int taken = stdin_taken;
    stdin_taken = 1;
    pthread_mutex_unlock(&stdin_mu);
    if (taken)
        return failf(why, whylen, "standard input holds one image, and it "
                                  "was read already");
    unsigned char chunk[65536];
    for (;;) {
        ssize_t k = read(STDIN_FILENO, chunk, sizeof chunk);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return failf(why, whylen, "reading standard input: %s",
                         strerror(errno));
        if (k == 0)
            break;
        if (buf_add(b, chunk, (size_t)k) != 0)
            return b->over ? failf(why, whylen,
                                   "standard input is larger than the "
                                   "%zu-byte limit",
                                   b->max)
                           : failf(why, whylen, "out of memory");
    }
    if (b->n == 0)
        return failf(why, whylen, "standard input is empty");
    return 0;
}

/* ---- data: URLs (RFC 2397) ---- */

static int b64(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

static int hex(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static int read_data_url(const char *url, buf *b, char *why, size_t whylen)
{
    const char *comma = strchr(url, ',');
    if (!comma)
        return failf(why, whylen, "a data: URL needs a comma before its "
                                  "data");
    const char *meta = url + 5;
    size_t ml = (size_t)(comma - meta);
    int base64 = ml >= 7 && strncmp(comma - 7, ";base64", 7) == 0;
    const char *s = comma + 1;
    unsigned char out[3];
    if (base64) {
        /* Whitespace is skipped; padding ends the data. */
        uint32_t acc = 0;
        int bits = 0;
        for (; *s && *s != '='; s++) {
            if (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
                continue;
            int v = b64((unsigned char)*s);
            if (v < 0)
                return failf(why, whylen, "a data: URL's base64 holds '%c'",
                             *s);
            acc = acc << 6 | (uint32_t)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                out[0] = (unsigned char)(acc >> bits);
                if (buf_add(b, out, 1) != 0)
                    goto full;
            }
        }
    } else {
        for (; *s; s++) {
            int c = (unsigned char)*s;
            if (c == '%' && hex(s[1]) >= 0 && hex(s[2]) >= 0) {
                c = hex(s[1]) * 16 + hex(s[2]);
                s += 2;
            }
            out[0] = (unsigned char)c;
            if (buf_add(b, out, 1) != 0)
                goto full;
        }
    }
    if (b->n == 0)
        return failf(why, whylen, "the data: URL holds no data");
    return 0;
full:
    return b->over ? failf(why, whylen,
                           "the data: URL is larger than the %zu-byte limit",
                           b->max)
                   : failf(why, whylen, "out of memory");
}

/* ---- http(s) ---- */

static size_t on_body(char *d, size_t size, size_t nmemb, void *ud)
{
    buf *b = ud;
    return buf_add(b, d, size * nmemb) == 0 ? size * nmemb : 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ok;

static void curl_start(void)
{
    curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

void cli_fetch_init(void)
{
    pthread_once(&curl_once, curl_start);
}

static int read_url(const char *url, buf *b, char *why, size_t whylen)
{
    cli_fetch_init();
    if (!curl_ok)
        return failf(why, whylen, "libcurl could not be initialized");
    CURL *c = curl_easy_init();
    if (!c)
        return failf(why, whylen, "out of memory");
    char ua[64], cerr[CURL_ERROR_SIZE] = "";
    snprintf(ua, sizeof ua, "vit/%s", VIT_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* decode threads */
    curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    if (b->max)
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)b->max);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (b->over || rc == CURLE_FILESIZE_EXCEEDED)
        return failf(why, whylen, "the download is larger than the "
                                  "%zu-byte limit",
                     b->max);
    if (rc != CURLE_OK)
        return failf(why, whylen, "%s", cerr[0] ? cerr
                                                : curl_easy_strerror(rc));
    if (status >= 400)
        return failf(why, whylen, "the server answered HTTP %ld", status);
    if (b->n == 0)
        return failf(why, whylen, "the server sent no data");
    return 0;
}

vit_status cli_image_load(const char *name, const vit_options *opt,
                          vit_image *img, vit_error *err)
{
    if (!cli_is_remote(name))
        return vit_image_read(name, opt, img, err);
    unsigned char *bytes = NULL;
    size_t n = 0;
    vit_status st = VIT_E_IO;
    if (cli_fetch(name, opt ? opt->max_file_bytes : 0, &bytes, &n, err->msg,
                  sizeof err->msg) == 0)
        st = vit_image_decode(bytes, n, opt, img, err);
    free(bytes);
    return st;
}

int cli_fetch(const char *name, size_t max_bytes, unsigned char **data,
              size_t *n, char *why, size_t whylen)
{
    buf b = {.max = max_bytes};
    int rc = strcmp(name, "-") == 0          ? read_stdin(&b, why, whylen)
             : strncmp(name, "data:", 5) == 0 ? read_data_url(name, &b, why,
                                                             whylen)
                                              : read_url(name, &b, why, whylen);
    if (rc != 0) {
        free(b.p);
        return -1;
    }
    *data = b.p;
    *n = b.n;
    return 0;
}
