/*
 * The request codec of the worker: a request's JSON header and data frames
 * into a req (service/svc_worker.h), every field checked against the
 * worker's limits and its model, or a refusal (a reject) that says which
 * field is wrong and why. Runs on the I/O thread; nothing here sends.
 */
#include "service/svc_worker.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const svc_code_names[N_CODES] = {
#define CODE_STR(name, str) str,
    CODE_LIST(CODE_STR)
#undef CODE_STR
};

void svc_req_free(req *r)
{
    if (!r)
        return;
    svc_msg_close(&r->data);
    for (int i = 0; i < r->n_texts; i++)
        free(r->texts[i]);
    free(r->texts);
    for (int i = 0; i < r->n_labels; i++)
        free(r->labels[i]);
    free(r->labels);
    free(r->tmpl);
    free(r->zs_key);
    free(r->pixels);
    free(r->top);
    free(r->logits);
    free(r->img_emb);
    free(r->txt_emb);
    free(r->items);
    for (int i = 0; i < r->n_ids; i++) {
        free(r->ids[i]);
        if (r->metas)
            free(r->metas[i]);
    }
    free(r->ids);
    free(r->metas);
    free(r->given);
    free(r->prefix);
    free(r);
}

int svc_rejectf(reject *rj, code_t code, int index, const char *field,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rj->msg, sizeof rj->msg, fmt, ap);
    va_end(ap);
    rj->code = code;
    rj->index = index;
    rj->field = field;
    return -1;
}

static op_t op_parse(const char *s)
{
    for (int i = 0; i < OP_INVALID; i++)
        if (strcmp(s, svc_ops[i].name) == 0)
            return (op_t)i;
    return OP_INVALID;
}

/* An optional integer field in [lo, hi]. */
static int get_int(json_t *h, const char *key, long lo, long hi, long *v,
                   reject *rj)
{
    json_t *x = json_object_get(h, key);
    if (!x)
        return 0;
    if (!json_is_integer(x) || json_integer_value(x) < lo ||
        json_integer_value(x) > hi)
        return svc_rejectf(rj, C_BAD_REQUEST, -1, key,
                           "'%s' must be an integer from %ld to %ld", key, lo,
                           hi);
    *v = (long)json_integer_value(x);
    return 0;
}

static int get_bool(json_t *h, const char *key, int *v, reject *rj)
{
    json_t *x = json_object_get(h, key);
    if (!x)
        return 0;
    if (!json_is_boolean(x))
        return svc_rejectf(rj, C_BAD_REQUEST, -1, key,
                           "'%s' must be a boolean", key);
    *v = json_is_true(x);
    return 0;
}

/* ViT models leave has_vision 0 (the flag came with CLIP); any model
 * that takes a pixel tensor and is not CLIP's text tower has one. */
int svc_has_vision(const vit_model_info *in)
{
    return in->has_vision ||
           (in->arch != VIT_ARCH_CLIP_TEXT && in->image_h > 0 &&
            in->image_w > 0);
}

/* Zero-shot classify: "labels" (strings, like "texts") and an optional
 * "template" with "{}" where each label goes. Builds the set's cache key. */
static int parse_labels(worker *w, json_t *labels, json_t *tmpl, req *r,
                        reject *rj)
{
    if (!labels)
        return svc_rejectf(rj, C_MISSING_FIELD, -1, "labels",
                           "'template' goes with 'labels'");
    if (!json_is_array(labels) || json_array_size(labels) == 0)
        return svc_rejectf(rj, C_BAD_REQUEST, -1, "labels",
                           "'labels' must be a non-empty array of strings");
    size_t n = json_array_size(labels);
    if (n > (size_t)w->o.max_texts)
        return svc_rejectf(rj, C_TOO_LARGE, -1, "labels",
                           "%zu labels; the limit is %d", n, w->o.max_texts);
    if (tmpl && (!json_is_string(tmpl) ||
                 !strstr(json_string_value(tmpl), "{}") ||
                 json_string_length(tmpl) > (size_t)w->o.max_text_bytes))
        return svc_rejectf(rj, C_BAD_REQUEST, -1, "template",
                           "'template' must be a string with '{}' where the "
                           "label goes, at most %d bytes",
                           w->o.max_text_bytes);
    size_t keylen = tmpl ? strlen(json_string_value(tmpl)) + 2 : 2;
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(labels, i);
        if (!json_is_string(x))
            return svc_rejectf(rj, C_BAD_REQUEST, (int)i, "labels",
                               "label %zu is not a string", i);
        if (json_string_length(x) > (size_t)w->o.max_text_bytes)
            return svc_rejectf(rj, C_TOO_LARGE, (int)i, "labels",
                               "label %zu is %zu bytes; the limit is %d", i,
                               json_string_length(x), w->o.max_text_bytes);
        keylen += strlen(json_string_value(x)) + 1;
    }
    if (!w->info.has_text)
        return svc_rejectf(rj, C_NO_TEXT_TOWER, -1, NULL,
                           "model '%s' has no text tower for zero-shot labels",
                           w->name);
    r->labels = calloc(n, sizeof *r->labels);
    r->zs_key = malloc(keylen);
    if (tmpl)
        r->tmpl = strdup(json_string_value(tmpl));
    if (!r->labels || !r->zs_key || (tmpl && !r->tmpl))
        return svc_rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
    /* Template and labels joined by separators no label can hold (a
     * label ends at its first NUL, like a text). */
    size_t o = (size_t)sprintf(r->zs_key, "%s\x1f",
                               tmpl ? json_string_value(tmpl) : "");
    for (size_t i = 0; i < n; i++, r->n_labels++) {
        const char *x = json_string_value(json_array_get(labels, i));
        if (!(r->labels[i] = strdup(x)))
            return svc_rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
        o += (size_t)sprintf(r->zs_key + o, "%s\x1e", x);
    }
    return 0;
}

/* An array of n strings (n 0: any length from 1 to max) into *out. */
/* The item keys of `key`: n of them (n > 0) or 1 to max, each a string or
 * {"base64": ...} (svc_key_parse) of 1 to max_bytes bytes. */
static int get_keys(json_t *h, const char *key, int n, int max,
                    size_t max_bytes, char ***out, int *count, reject *rj)
{
    json_t *a = json_object_get(h, key);
    if (!a)
        return svc_rejectf(rj, C_MISSING_FIELD, -1, key, "'%s' is required",
                           key);
    size_t na = json_is_array(a) ? json_array_size(a) : 0;
    if (!json_is_array(a) || na == 0 || (n > 0 && na != (size_t)n) ||
        na > (size_t)max)
        return n > 0 ? svc_rejectf(rj, C_BAD_REQUEST, -1, key,
                                   "'%s' must be an array of %d strings, one "
                                   "per item", key, n)
                     : svc_rejectf(rj, C_BAD_REQUEST, -1, key,
                                   "'%s' must be an array of 1 to %d strings",
                                   key, max);
    *out = calloc(na, sizeof **out);
    if (!*out)
        return svc_rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
    for (size_t i = 0; i < na; i++, (*count)++)
        if (!((*out)[i] = svc_key_parse(json_array_get(a, i), max_bytes)))
            return svc_rejectf(
                rj, C_BAD_REQUEST, (int)i, key,
                "%s %zu must be a string, or {\"base64\": ...}, "
                "of 1 to %zu bytes and no NUL",
                key, i, max_bytes);
    return 0;
}

/* The fields of the searches: k and prefix. */
static int parse_search(worker *w, json_t *h, svc_msg *m, int hi, int given,
                        req *r, reject *rj)
{
    long k = 10;
    if (get_int(h, "k", 1, 1000, &k, rj))
        return -1;
    r->search_k = (int)k;
    json_t *p = json_object_get(h, "prefix");
    if (p && !(r->prefix = svc_key_parse(p, 4096)))
        return svc_rejectf(rj, C_BAD_REQUEST, -1, "prefix",
                           "'prefix' must be a string, or {\"base64\": "
                           "...}, of 1 to 4096 bytes and no NUL");
    return 0;
}

static int parse_index_get(worker *w, json_t *h, svc_msg *m, int hi,
                           int given, req *r, reject *rj)
{
    return get_keys(h, "ids", 0, 1000, 4096, &r->ids, &r->n_ids, rj);
}

static int parse_index_remove(worker *w, json_t *h, svc_msg *m, int hi,
                              int given, req *r, reject *rj)
{
    return get_keys(h, "ids", 0, 100000, 4096, &r->ids, &r->n_ids, rj);
}

/* index_add's metadata: an object (or null) per item, kept as text. */
static int parse_metadata(json_t *h, int n, req *r, reject *rj)
{
    json_t *meta = json_object_get(h, "metadata");
    if (!meta)
        return 0;
    if (!json_is_array(meta) || json_array_size(meta) != (size_t)n)
        return svc_rejectf(rj, C_BAD_REQUEST, -1, "metadata",
                           "'metadata' must be an array of %d objects (or "
                           "nulls), one per item", n);
    if (!(r->metas = calloc((size_t)n, sizeof *r->metas)))
        return svc_rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
    for (int i = 0; i < n; i++) {
        json_t *x = json_array_get(meta, (size_t)i);
        if (json_is_null(x))
            continue;
        if (!json_is_object(x))
            return svc_rejectf(rj, C_BAD_REQUEST, i, "metadata",
                               "metadata %d is not an object", i);
        if (!(r->metas[i] =
                  json_dumps(x, JSON_COMPACT | JSON_PRESERVE_ORDER)))
            return svc_rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
    }
    return 0;
}

/* index_add: ids and metadata, one per image, or for given embeddings one
 * per vector of the one data frame, and then the vectors. */
static int parse_index_add(worker *w, json_t *h, svc_msg *m, int hi,
                           int given, req *r, reject *rj)
{
    int D = svc_ix_dim(w->ix);
    int n = 0;
    if (given) {
        size_t bytes = svc_size(m, hi + 1);
        if (bytes == 0 || bytes % ((size_t)D * 4) != 0)
            return svc_rejectf(rj, C_BAD_REQUEST, -1, "embeddings",
                               "the data frame holds %zu bytes, not a whole "
                               "number of %d-float vectors", bytes, D);
        n = (int)(bytes / ((size_t)D * 4));
    } else {
        n = m->n - hi - 1 + m->dropped;
    }
    if (get_keys(h, "ids", n, 1 << 20, 4096, &r->ids, &r->n_ids, rj) ||
        parse_metadata(h, n, r, rj))
        return -1;
    if (given) {
        size_t bytes = (size_t)n * (size_t)D * 4;
        if (!(r->given = malloc(bytes)))
            return svc_rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
        memcpy(r->given, svc_data(m, hi + 1), bytes);
        svc_to_le(r->given, (size_t)n * (size_t)D); /* a swap is its inverse */
        for (size_t i = 0; i < (size_t)n * (size_t)D; i++)
            if (!isfinite(r->given[i]))
                return svc_rejectf(rj, C_BAD_REQUEST, (int)(i / (size_t)D),
                                   "embeddings", "vector %zu is not finite",
                                   i / (size_t)D);
    }
    return 0;
}

/* classify: a label set of the request's (zero-shot), or the model's
 * head. */
static int parse_classify(worker *w, json_t *h, svc_msg *m, int hi,
                          int given, req *r, reject *rj)
{
    json_t *labels = json_object_get(h, "labels");
    json_t *tmpl = json_object_get(h, "template");
    if ((labels || tmpl) && parse_labels(w, labels, tmpl, r, rj) != 0)
        return -1;
    if (!r->labels && w->info.num_labels <= 0)
        return svc_rejectf(rj, C_NO_HEAD, -1, NULL,
                           "model '%s' has no classification head", w->name);
    return 0;
}

/* The decode work a request asks for is known from its images' headers
 * before any is decoded: a small file may state a huge image (a PNG of
 * zeros compresses a thousand to one), and decoding it would hold a decode
 * thread for seconds. Each image's own limits and the request's pixel
 * budget are checked here, in the thread that reads requests, after the
 * rest of the request has been found well formed. An image whose header
 * cannot be read is left to the decoder, which says what is wrong. */
static int check_pixels(worker *w, svc_msg *m, int first, reject *rj)
{
    uint64_t pixels = 0;
    for (int i = 0; first + i < m->n; i++) {
        vit_error err = {{0}};
        int iw, ih;
        vit_status st = vit_image_size(svc_data(m, first + i),
                                       svc_size(m, first + i), &w->vopt, &iw,
                                       &ih, &err);
        if (st == VIT_E_TOO_LARGE)
            return svc_rejectf(rj, C_TOO_LARGE, i, NULL, "image %d: %s", i,
                               err.msg);
        if (st == VIT_OK)
            pixels += (uint64_t)iw * (uint64_t)ih;
    }
    if (w->o.max_request_pixels && pixels > w->o.max_request_pixels)
        return svc_rejectf(
            rj, C_TOO_LARGE, -1, "images",
            "the images total %llu pixels by their headers; the "
            "limit is %llu a request (max-request-pixels)",
            (unsigned long long)pixels,
            (unsigned long long)w->o.max_request_pixels);
    return 0;
}

/* The header frame as a JSON object, its op and the fields every op
 * reads. */
static int parse_header(worker *w, svc_msg *m, int hi, req *r, json_t **hp,
                        reject *rj)
{
    size_t hn = svc_size(m, hi);
    if (hn == 0)
        return svc_rejectf(
            rj, C_BAD_REQUEST, -1, NULL,
            "the header frame is empty; it must be a JSON object");
    if (hn > SVC_MAX_HEADER)
        return svc_rejectf(rj, C_TOO_LARGE, -1, NULL,
                           "the header is %zu bytes; the limit is %d", hn,
                           SVC_MAX_HEADER);
    json_error_t jerr;
    json_t *h = *hp = json_loadb((const char *)svc_data(m, hi), hn,
                                 JSON_REJECT_DUPLICATES, &jerr);
    if (!h)
        /* jansson's reason: a syntax error, or a number it cannot hold
         * (an integer past 64 bits) */
        return svc_rejectf(rj, C_BAD_REQUEST, -1, NULL,
                           "the header is not valid JSON: %s", jerr.text);
    if (!json_is_object(h))
        return svc_rejectf(rj, C_BAD_REQUEST, -1, NULL,
                           "the header is JSON but not an object");
    json_t *op = json_object_get(h, "op");
    if (!op)
        return svc_rejectf(rj, C_MISSING_FIELD, -1, "op",
                           "the header has no 'op'");
    if (!json_is_string(op))
        return svc_rejectf(rj, C_BAD_REQUEST, -1, "op",
                           "'op' must be a string");
    r->op = op_parse(json_string_value(op));
    if (r->op == OP_INVALID)
        return svc_rejectf(rj, C_UNKNOWN_OP, -1, "op",
                           "unknown operation '%.100s'",
                           json_string_value(op));
    long v = 1, deadline = w->o.deadline_ms, top_k = 5;
    if (get_int(h, "v", 1, 1, &v, rj) ||
        get_int(h, "deadline_ms", 1, 86400000, &deadline, rj) ||
        get_int(h, "top_k", 1, 1000, &top_k, rj) ||
        get_bool(h, "logits", &r->want_logits, rj) ||
        get_bool(h, "normalize", &r->normalize, rj))
        return -1;
    r->deadline = r->t_recv + (double)deadline;
    r->top_k = (int)top_k;
    json_t *fmt = json_object_get(h, "format");
    if (r->op == OP_METRICS && fmt) {
        if (!json_is_string(fmt) ||
            (strcmp(json_string_value(fmt), "json") != 0 &&
             strcmp(json_string_value(fmt), "prometheus") != 0))
            return svc_rejectf(rj, C_BAD_REQUEST, -1, "format",
                               "'format' is \"json\" or \"prometheus\"");
        r->prometheus = strcmp(json_string_value(fmt), "prometheus") == 0;
    }
    return 0;
}

/* The image frames from `first` on: how many, and each one's size. */
static int check_images(worker *w, svc_msg *m, int first, int n_data,
                        const req *r, reject *rj)
{
    if (n_data == 0)
        return svc_rejectf(rj, C_MISSING_FIELD, -1, "images",
                           "operation '%s' needs at least one image frame",
                           svc_ops[r->op].name);
    if (n_data > w->o.max_images)
        return svc_rejectf(rj, C_TOO_LARGE, -1, "images",
                           "%d images in one request; the limit is %d",
                           n_data, w->o.max_images);
    size_t total = 0;
    for (int i = 0; i < n_data; i++) {
        size_t sz = svc_size(m, first + i);
        if (sz > w->o.max_image_bytes)
            return svc_rejectf(rj, C_TOO_LARGE, i, NULL,
                               "image %d is %zu bytes; the limit is %zu", i,
                               sz, w->o.max_image_bytes);
        if (sz == 0)
            return svc_rejectf(rj, C_BAD_IMAGE, i, NULL, "image %d is empty",
                               i);
        total += sz;
    }
    if (total > w->o.max_request_bytes)
        return svc_rejectf(rj, C_TOO_LARGE, -1, NULL,
                           "the images total %zu bytes; the limit is %zu",
                           total, w->o.max_request_bytes);
    return 0;
}

/* "texts": 1 to max_texts strings, each at most max_text_bytes. */
static int parse_texts(worker *w, json_t *h, req *r, reject *rj)
{
    json_t *t = json_object_get(h, "texts");
    if (!t)
        return svc_rejectf(rj, C_MISSING_FIELD, -1, "texts",
                           "operation '%s' needs 'texts'",
                           svc_ops[r->op].name);
    if (!json_is_array(t) || json_array_size(t) == 0)
        return svc_rejectf(rj, C_BAD_REQUEST, -1, "texts",
                           "'texts' must be a non-empty array of strings");
    if (json_array_size(t) > (size_t)w->o.max_texts)
        return svc_rejectf(rj, C_TOO_LARGE, -1, "texts",
                           "%zu texts in one request; the limit is %d",
                           json_array_size(t), w->o.max_texts);
    size_t nt = json_array_size(t);
    for (size_t i = 0; i < nt; i++) {
        json_t *s = json_array_get(t, i);
        if (!json_is_string(s))
            return svc_rejectf(rj, C_BAD_REQUEST, (int)i, "texts",
                               "text %zu is not a string", i);
        if (json_string_length(s) > (size_t)w->o.max_text_bytes)
            return svc_rejectf(rj, C_TOO_LARGE, (int)i, "texts",
                               "text %zu is %zu bytes; the limit is %d", i,
                               json_string_length(s), w->o.max_text_bytes);
        if (memchr(json_string_value(s), 0, json_string_length(s)))
            return svc_rejectf(rj, C_BAD_REQUEST, (int)i, "texts",
                               "text %zu holds a NUL byte (\\u0000)", i);
    }
    if (!w->info.has_text)
        return svc_rejectf(rj, C_NO_TEXT_TOWER, -1, NULL,
                           "model '%s' has no text tower", w->name);
    r->texts = calloc(nt, sizeof *r->texts);
    if (!r->texts)
        return svc_rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
    for (size_t i = 0; i < nt; i++, r->n_texts++) {
        /* json strings may hold NUL; the library takes C strings, so a
         * text ends at its first NUL, as a C caller's would. */
        r->texts[i] = strdup(json_string_value(json_array_get(t, i)));
        if (!r->texts[i])
            return svc_rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
    }
    return 0;
}

/* What the op takes, by its row of the table: data frames (images, or
 * index_add's one frame of given embeddings), texts, the index, and its
 * own fields (its parse); then the images' pixels by their headers, and
 * the image frames taken into r->data. */
static int parse_op(worker *w, json_t *h, svc_msg *m, int hi, req *r,
                    reject *rj)
{
    const svc_op *op = &svc_ops[r->op];
    int n_data = m->n - hi - 1 + m->dropped;
    if ((op->flags & OPF_INDEX) && !w->ix)
        return svc_rejectf(rj, C_NO_INDEX, -1, NULL,
                           "this worker serves no index (vit serve --index "
                           "PATH)");
    /* index_add of vectors computed elsewhere: one data frame of floats. */
    int given = r->op == OP_INDEX_ADD &&
                json_is_true(json_object_get(h, "embeddings"));
    int takes_images = (op->flags & OPF_IMAGES) && !given;
    if (given && n_data != 1)
        return svc_rejectf(rj, C_BAD_REQUEST, -1, "embeddings",
                           "index_add with \"embeddings\": true takes one "
                           "data frame of float32 vectors");
    if (!takes_images && !given && n_data > 0)
        return svc_rejectf(rj, C_BAD_REQUEST, -1, "images",
                           "operation '%s' takes no data frames", op->name);
    if (takes_images && check_images(w, m, hi + 1, n_data, r, rj) != 0)
        return -1;
    if ((op->flags & OPF_TEXTS) && parse_texts(w, h, r, rj) != 0)
        return -1;
    if (takes_images && !svc_has_vision(&w->info))
        return svc_rejectf(rj, C_NO_VISION_TOWER, -1, NULL,
                           "model '%s' has no vision tower", w->name);
    if (op->parse && op->parse(w, h, m, hi, given, r, rj) != 0)
        return -1;
    if (takes_images && check_pixels(w, m, hi + 1, rj) != 0)
        return -1;
    if (takes_images) {
        for (int i = hi + 1; i < m->n; i++)
            if (svc_msg_add_frame(&r->data, m, i) != 0)
                return svc_rejectf(rj, C_INTERNAL, -1, NULL,
                                   "out of memory");
        r->n_images = r->data.n;
    }
    return 0;
}

/* Parses header frame `hi` of `m` and the data frames after it into `r`.
 * The op is known (r->op) as soon as it could be read, for the metrics. */
int svc_parse_body(worker *w, svc_msg *m, int hi, req *r, reject *rj)
{
    json_t *h = NULL;
    int rc = parse_header(w, m, hi, r, &h, rj);
    if (rc == 0)
        rc = parse_op(w, h, m, hi, r, rj);
    json_decref(h);
    return rc;
}

/* ---- the op table ---- */

/* Each operation: its name, what it takes (OPF_*), its own fields
 * (parse, after the fields every op has), and how it is answered: at once
 * on the I/O thread (answer), or by a reply made once its items are
 * computed (reply, reply.c), which for index_add hands them to the index
 * writer; index_remove and an index_add of given vectors go to the writer
 * straight away. */
const svc_op svc_ops[N_OPS] = {
    [OP_CLASSIFY] = {"classify", OPF_IMAGES, parse_classify, NULL,
                     svc_reply_classify},
    [OP_EMBED_IMAGE] = {"embed_image", OPF_IMAGES | OPF_IMG_EMB, NULL, NULL,
                        svc_reply_embed},
    [OP_EMBED_TEXT] = {"embed_text", OPF_TEXTS, NULL, NULL,
                       svc_reply_embed},
    [OP_MATCH] = {"match", OPF_IMAGES | OPF_TEXTS | OPF_IMG_EMB, NULL, NULL,
                  svc_reply_match},
    [OP_INFO] = {"info", 0, NULL, svc_answer_info, NULL},
    [OP_HEALTH] = {"health", 0, NULL, svc_answer_health, NULL},
    [OP_METRICS] = {"metrics", 0, NULL, svc_answer_metrics, NULL},
    [OP_INDEX_ADD] = {"index_add", OPF_IMAGES | OPF_INDEX | OPF_IMG_EMB,
                      parse_index_add, NULL, svc_reply_index_add},
    [OP_INDEX_REMOVE] = {"index_remove", OPF_INDEX, parse_index_remove,
                         NULL, NULL},
    [OP_SEARCH_TEXT] = {"search_text", OPF_TEXTS | OPF_INDEX, parse_search,
                        NULL, svc_reply_search},
    [OP_SEARCH_IMAGE] = {"search_image", OPF_IMAGES | OPF_INDEX | OPF_IMG_EMB,
                         parse_search, NULL, svc_reply_search},
    [OP_INDEX_STATS] = {"index_stats", OPF_INDEX, NULL,
                        svc_answer_index_stats, NULL},
    [OP_INDEX_GET] = {"index_get", OPF_INDEX, parse_index_get,
                      svc_answer_index_get, NULL},
    [OP_INVALID] = {"invalid", 0, NULL, NULL, NULL},
};

/* Allocates the result buffers and items of an accepted request. */
int svc_req_prepare(worker *w, req *r)
{
    int D = w->info.embed_dim;
    size_t ni = (size_t)r->n_images, nt = (size_t)r->n_texts;
    int L = r->L = r->labels ? r->n_labels : w->info.num_labels;
    r->k = r->top_k < L ? r->top_k : L;
    if (r->op == OP_CLASSIFY) {
        r->top = malloc(ni * (size_t)r->k * sizeof *r->top);
        if (!r->top)
            return -1;
        if (r->want_logits && !(r->logits = malloc(ni * L * sizeof(float))))
            return -1;
    }
    if ((svc_ops[r->op].flags & OPF_IMG_EMB) && ni &&
        !(r->img_emb = malloc(ni * D * sizeof(float))))
        return -1;
    if (nt && !(r->txt_emb = malloc(nt * D * sizeof(float))))
        return -1;
    r->items = calloc(ni + nt, sizeof *r->items);
    if (!r->items)
        return -1;
    item_kind ik = r->op != OP_CLASSIFY ? K_EMBED_IMAGE
                   : r->labels          ? K_ZEROSHOT
                                        : K_CLASSIFY;
    for (size_t i = 0; i < ni; i++)
        r->items[i] = (item){.r = r, .kind = ik, .idx = (int)i};
    for (size_t i = 0; i < nt; i++)
        r->items[ni + i] = (item){.r = r, .kind = K_TEXT, .idx = (int)i};
    r->pending = (int)(ni + nt);
    return 0;
}
