/*
 * A request's body, as the HTTP gateway reads it: JSON, or
 * multipart/form-data whose fields become one JSON object (counts as
 * numbers, flags as booleans, the repeatable fields as lists) and whose
 * files are the images; images in a JSON body are data: URIs, bare
 * base64, or URLs fetched by the caller's fetch function.
 */
#include "service/svc_http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int svc_grow(unsigned char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    unsigned char *q = realloc(*p, c);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

enum MHD_Result svc_on_part(void *cls, enum MHD_ValueKind kind,
                            const char *key, const char *filename,
                            const char *content_type,
                            const char *transfer_encoding,
                            const char *data, uint64_t off, size_t size)
{
    (void)kind, (void)content_type, (void)transfer_encoding;
    reqctx *q = cls;
    if (off == 0) {
        if (q->n_parts == MAX_PARTS)
            return q->bad_form = 1, MHD_NO;
        if (q->n_parts == q->cap_parts) {
            int c = q->cap_parts ? q->cap_parts * 2 : 8;
            part *np = realloc(q->parts, (size_t)c * sizeof *np);
            if (!np)
                return q->bad_form = 1, MHD_NO;
            q->parts = np;
            q->cap_parts = c;
        }
        part *p = &q->parts[q->n_parts++];
        memset(p, 0, sizeof *p);
        p->file = filename != NULL;
        if (!(p->key = strdup(key ? key : "")))
            return q->bad_form = 1, MHD_NO;
    }
    if (!q->n_parts)
        return q->bad_form = 1, MHD_NO;
    part *p = &q->parts[q->n_parts - 1];
    /* One byte more: a field's value is used as a string. */
    if (svc_grow(&p->data, &p->cap, p->n + size + 1) != 0)
        return q->bad_form = 1, MHD_NO;
    memcpy(p->data + p->n, data, size);
    p->n += size;
    p->data[p->n] = '\0';
    return MHD_YES;
}

void svc_reqctx_free(reqctx *q)
{
    if (!q)
        return;
    if (q->pp)
        MHD_destroy_post_processor(q->pp);
    for (int i = 0; i < q->n_parts; i++) {
        free(q->parts[i].key);
        free(q->parts[i].data);
    }
    free(q->parts);
    free(q->body);
    free(q);
}

void svc_input_free(input *in)
{
    json_decref(in->req);
    for (int i = 0; in->own && i < in->n_img; i++)
        free(in->own[i]);
    free(in->own);
    free(in->img);
}

int svc_failf(failure *f, const char *code, int index, const char *fmt,
              ...)
{
    f->code = code;
    f->index = index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* A multipart field's value as JSON: numbers for counts, true/false for
 * flags, lists for the fields that may repeat. */
static int form_field(json_t *o, const part *p, failure *f)
{
    static const char *const lists[] = {"labels", "texts", "input"};
    static const char *const ints[] = {"top_k", "k", "deadline_ms"};
    static const char *const bools[] = {"logits", "normalize"};
    const char *v = (const char *)(p->data ? p->data : (unsigned char *)"");
    for (size_t i = 0; i < 3; i++)
        if (strcmp(p->key, lists[i]) == 0) {
            json_t *a = json_object_get(o, p->key);
            if (!a) {
                a = json_array();
                json_object_set_new(o, p->key, a);
            }
            json_t *s = json_stringn(v, p->n);
            if (!s)
                return svc_failf(f, "bad_request", -1,
                                 "field '%s' is not valid UTF-8", p->key);
            json_array_append_new(a, s);
            return 0;
        }
    for (size_t i = 0; i < 3; i++)
        if (strcmp(p->key, ints[i]) == 0) {
            char *end;
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (errno || end == v || *end)
                return svc_failf(f, "bad_request", -1,
                                 "field '%s' must be an integer, not '%.40s'",
                                 p->key, v);
            json_object_set_new(o, p->key, json_integer(x));
            return 0;
        }
    for (size_t i = 0; i < 2; i++)
        if (strcmp(p->key, bools[i]) == 0) {
            if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
                return svc_failf(f, "bad_request", -1,
                                 "field '%s' must be true or false", p->key);
            json_object_set_new(o, p->key, json_boolean(v[0] == 't'));
            return 0;
        }
    json_t *s = json_stringn(v, p->n);
    if (!s)
        return svc_failf(f, "bad_request", -1, "field '%s' is not valid UTF-8",
                         p->key);
    json_object_set_new(o, p->key, s);
    return 0;
}

int svc_read_input(reqctx *q, input *in, failure *f)
{
    memset(in, 0, sizeof *in);
    if (q->pp) {
        in->form = 1;
        if (!(in->req = json_object()))
            return svc_failf(f, "internal", -1, "out of memory");
        int files = 0;
        for (int i = 0; i < q->n_parts; i++)
            files += q->parts[i].file;
        if (files && !(in->img = calloc((size_t)files, sizeof *in->img)))
            return svc_failf(f, "internal", -1, "out of memory");
        for (int i = 0; i < q->n_parts; i++) {
            part *p = &q->parts[i];
            if (p->file)
                in->img[in->n_img++] = (vit_blob){p->data, p->n};
            else if (form_field(in->req, p, f) != 0)
                return -1;
        }
        return 0;
    }
    json_error_t je;
    in->req = q->n ? json_loadb(q->body, q->n, 0, &je) : NULL;
    if (!q->n)
        return svc_failf(f, "bad_request", -1,
                         "the body is empty: send a JSON object, or "
                         "multipart/form-data");
    if (!in->req)
        return svc_failf(f, "bad_request", -1,
                         "the body is not valid JSON: %s "
                         "(line %d)",
                         je.text, je.line);
    if (!json_is_object(in->req))
        return svc_failf(f, "bad_request", -1,
                         "the body must be a JSON object");
    return 0;
}

/* The images of a JSON request: the strings of `field` (an array, or one
 * string), each a data: URI, bare base64 or a URL,
 * turned into bytes by the fetch callback. A multipart request's are its
 * files. */
int svc_take_images(vit_http *h, input *in, const char *field,
                    failure *f)
{
    if (in->form) {
        if (!in->n_img)
            return svc_failf(f, "missing_field", -1,
                             "no image: send the images as files of the form");
        return 0;
    }
    json_t *v = json_object_get(in->req, field);
    if (!v)
        return svc_failf(f, "missing_field", -1, "'%s' is required", field);
    json_t *arr = json_is_string(v) ? json_pack("[O]", v) : json_incref(v);
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        json_decref(arr);
        return svc_failf(f, "bad_request", -1,
                         "'%s' must be an image or a non-empty array of "
                         "images (data: URIs or base64)",
                         field);
    }
    size_t n = json_array_size(arr);
    in->img = calloc(n, sizeof *in->img);
    in->own = calloc(n, sizeof *in->own);
    if (!in->img || !in->own) {
        json_decref(arr);
        return svc_failf(f, "internal", -1, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const char *ref = json_string_value(json_array_get(arr, i));
        char why[512];
        size_t len = 0;
        if (!ref) {
            json_decref(arr);
            return svc_failf(f, "bad_request", (int)i,
                             "image %zu: must be a string (a data: URI or "
                             "base64)",
                             i);
        }
        if (!h->o.fetch) {
            json_decref(arr);
            return svc_failf(f, "bad_request", (int)i,
                             "image %zu: this gateway takes images as "
                             "multipart/form-data files only",
                             i);
        }
        if (h->o.fetch(h->o.fetch_ud, ref, h->o.max_body_bytes,
                       &in->own[i], &len, why, sizeof why) != 0) {
            json_decref(arr);
            return svc_failf(f, "bad_image", (int)i, "image %zu: %s", i, why);
        }
        in->img[i] = (vit_blob){in->own[i], len};
        in->n_img = (int)i + 1;
    }
    json_decref(arr);
    return 0;
}
