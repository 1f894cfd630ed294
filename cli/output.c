/*
 * The output formats of the command: `text` for people (a block per image),
 * `jsonl` (one JSON object per line, built with jansson so that strings are
 * escaped correctly) and `csv` (RFC 4180 quoting). Numbers are printed with
 * the fewest digits that read back as the same float, so scores look like
 * 0.93 rather than 0.930000007 and no precision is lost.
 */
#include "cli/cli.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int cli_format_parse(const char *s, cli_format *out)
{
    if (strcmp(s, "text") == 0)
        *out = CLI_FMT_TEXT;
    else if (strcmp(s, "jsonl") == 0)
        *out = CLI_FMT_JSONL;
    else if (strcmp(s, "csv") == 0)
        *out = CLI_FMT_CSV;
    else
        return -1;
    return 0;
}

void cli_float_str(char buf[32], float x)
{
    if (isnan(x)) {
        strcpy(buf, "nan");
        return;
    }
    if (isinf(x)) {
        strcpy(buf, x > 0 ? "inf" : "-inf");
        return;
    }
    /* Nine significant digits always round-trip a float. */
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, 32, "%.*g", p, (double)x);
        if (strtof(buf, NULL) == x)
            return;
    }
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

void cli_text_path(FILE *f, const char *path)
{
    const unsigned char *s = (const unsigned char *)path;
    size_t n = strlen(path);
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : utf8_seq(s + i, n - i);
        if (c == '\n' || c == '\t' || c == '\r' || c == '\\') {
            fputc('\\', f);
            fputc(c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : '\\', f);
            i++;
        } else if (c < 0x20 || c == 0x7f || len == 0) {
            fprintf(f, "\\x%02x", c);
            i++;
        } else {
            fwrite(s + i, 1, len, f);
            i += len;
        }
    }
}

/* A JSON string of `s`. File names are bytes, not always UTF-8, and JSON
 * text must be; a byte that is not part of valid UTF-8 becomes U+FFFD. */
json_t *cli_json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s);
    char *t = malloc(3 * n + 1);
    if (!t)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq((const unsigned char *)s + i, n - i);
        if (len) {
            memcpy(t + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(t + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    t[o] = '\0';
    j = json_string(t);
    free(t);
    return j;
}

/* A JSON number that prints as cli_float_str does (dumped with
 * JSON_REAL_PRECISION(9)); JSON has no NaN or infinity, so those are null. */
json_t *cli_json_float(float x)
{
    if (!isfinite(x))
        return json_null();
    char buf[32];
    cli_float_str(buf, x);
    return json_real(strtod(buf, NULL));
}

static int write_jsonl(FILE *f, const cli_result *r)
{
    json_t *obj = json_object();
    json_t *labels = json_array();
    int rc = -1;
    if (!obj || !labels)
        goto done;
    if (json_object_set_new(obj, "path", cli_json_text(r->path)) != 0)
        goto done;
    for (int i = 0; i < r->k && r->top[i].id >= 0; i++) {
        const vit_prediction *p = &r->top[i];
        json_t *e = json_object();
        if (!e || json_array_append_new(labels, e) != 0)
            goto done;
        if (json_object_set_new(e, "id", json_integer(p->id)) != 0 ||
            json_object_set_new(e, "label",
                                cli_json_text(p->label ? p->label : "")) != 0 ||
            json_object_set_new(e, "score", cli_json_float(p->score)) != 0)
            goto done;
    }
    if (json_object_set(obj, "labels", labels) != 0)
        goto done;
    if (r->logits) {
        json_t *lg = json_array();
        if (!lg || json_object_set_new(obj, "logits", lg) != 0)
            goto done;
        for (int i = 0; i < r->num_labels; i++)
            if (json_array_append_new(lg, cli_json_float(r->logits[i])) != 0)
                goto done;
    }
    rc = cli_json_line(f, obj);
done:
    json_decref(labels);
    json_decref(obj);
    return rc;
}

/* RFC 4180 quoting: a field holding a comma, a quote or a line break is
 * quoted, with quotes doubled. Rows end in \n rather than the RFC's \r\n,
 * as Unix tools expect; CSV readers accept both. */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_csv(FILE *f, const cli_result *r)
{
    for (int i = 0; i < r->k && r->top[i].id >= 0; i++) {
        const vit_prediction *p = &r->top[i];
        char score[32];
        cli_float_str(score, p->score);
        csv_field(f, r->path);
        fprintf(f, ",%d,%d,", i + 1, p->id);
        csv_field(f, p->label ? p->label : "");
        fprintf(f, ",%s\n", score);
    }
}

static void write_text(FILE *f, const cli_result *r)
{
    cli_text_path(f, r->path);
    fputc('\n', f);
    for (int i = 0; i < r->k && r->top[i].id >= 0; i++) {
        const vit_prediction *p = &r->top[i];
        fprintf(f, "  %.4f  %s (%d)\n", (double)p->score,
                p->label ? p->label : "", p->id);
    }
    if (r->logits) {
        fputs("  logits:", f);
        for (int i = 0; i < r->num_labels; i++) {
            char buf[32];
            cli_float_str(buf, r->logits[i]);
            fprintf(f, " %s", buf);
        }
        fputc('\n', f);
    }
}

void cli_output_begin(FILE *f, cli_format fmt)
{
    if (fmt == CLI_FMT_CSV)
        fputs("path,rank,id,label,score\n", f);
}

int cli_output_write(FILE *f, cli_format fmt, const cli_result *r)
{
    switch (fmt) {
    case CLI_FMT_JSONL:
        return write_jsonl(f, r);
    case CLI_FMT_CSV:
        write_csv(f, r);
        return 0;
    case CLI_FMT_TEXT:
        write_text(f, r);
        return 0;
    }
    return 0;
}

int cli_json_line(FILE *f, json_t *obj)
{
    /* Without JSON_COMPACT jansson separates with ", " and ": ", as in
     * {"path": "a.jpg", "labels": [...]}; without JSON_INDENT, one line. */
    if (json_dumpf(obj, f, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) != 0)
        return -1;
    fputc('\n', f);
    return 0;
}

json_t *cli_json_floats(const float *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        if (json_array_append_new(a, cli_json_float(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

int cli_embedding_write(FILE *f, const char *key, const char *name,
                        const float *v, int dim)
{
    json_t *obj = json_object();
    int rc = -1;
    if (obj && json_object_set_new(obj, key, cli_json_text(name)) == 0 &&
        json_object_set_new(obj, "embedding", cli_json_floats(v, dim)) == 0)
        rc = cli_json_line(f, obj);
    json_decref(obj);
    return rc;
}

int cli_match_write(FILE *f, cli_format fmt, const char *path,
                    char *const *texts, int n, const float *probs,
                    const float *logits)
{
    if (fmt == CLI_FMT_TEXT) {
        cli_text_path(f, path);
        fputc('\n', f);
        for (int j = 0; j < n; j++)
            fprintf(f, "  %.4f  %s\n", (double)probs[j], texts[j]);
        return 0;
    }
    json_t *obj = json_object(), *scores = json_array();
    int rc = -1;
    if (!obj || !scores ||
        json_object_set_new(obj, "path", cli_json_text(path)) != 0 ||
        json_object_set(obj, "scores", scores) != 0)
        goto done;
    for (int j = 0; j < n; j++) {
        json_t *e = json_object();
        if (!e || json_array_append_new(scores, e) != 0 ||
            json_object_set_new(e, "text", cli_json_text(texts[j])) != 0 ||
            json_object_set_new(e, "score", cli_json_float(probs[j])) != 0 ||
            json_object_set_new(e, "logit", cli_json_float(logits[j])) != 0)
            goto done;
    }
    rc = cli_json_line(f, obj);
done:
    json_decref(scores);
    json_decref(obj);
    return rc;
}

int cli_npy_write(FILE *f, const float *v, size_t rows, size_t cols)
{
    /* NumPy format 1.0: magic, version, header length, then a dict padded
     * with spaces so the data starts on a 64-byte boundary. */
    char dict[128];
    int dn = snprintf(dict, sizeof dict,
                      "{'descr': '<f4', 'fortran_order': False, "
                      "'shape': (%zu, %zu), }",
                      rows, cols);
    size_t total = 10 + (size_t)dn + 1;
    size_t pad = (64 - total % 64) % 64;
    unsigned hlen = (unsigned)((size_t)dn + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                             (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(dict, 1, (size_t)dn, f) != (size_t)dn)
        return -1;
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    if (rows > 0 && cols > 0 &&
        fwrite(v, sizeof *v, rows * cols, f) != rows * cols)
        return -1;
    return ferror(f) ? -1 : 0;
}
