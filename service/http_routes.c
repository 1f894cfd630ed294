/*
 * The HTTP gateway's routes: /ready, /v1/models, /metrics, and the
 * operations (/v1/classify, /v1/embeddings, /v1/match, /v1/search), each
 * made into requests of the client protocol (service/client.h) to the
 * endpoint, and the replies made into JSON.
 */
#include "service/svc_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One request to the endpoint: 0 with the reply parsed into *body (and
 * the reply, for its data frames); -1 with the failure (the service's
 * error code, or "timeout"). */
int svc_http_call(vit_http *h, const char *service, int probe, json_t *header,
                  const vit_blob *img, int n, vit_reply *rep, json_t **body,
                  failure *f)
{
    char *hs = json_dumps(header, JSON_COMPACT);
    if (!hs)
        return svc_failf(f, "bad_request", -1,
                         "a parameter is not valid UTF-8, or out of memory");
    pooled *p = NULL;
    vit_client *c = probe ? svc_http_client_new(h, service, 1)
                    : (p = svc_http_client_take(h, service)) ? p->c
                                                             : NULL;
    if (!c) {
        free(hs);
        return svc_failf(f, "internal", -1, "cannot make a client for %s",
                         h->connect);
    }
    vit_error err = {{0}};
    vit_status st = vit_client_call(c, hs, img, n, rep, &err);
    free(hs);
    if (probe)
        vit_client_free(c);
    else
        svc_http_client_give(h, p, st != VIT_OK);
    if (st == VIT_E_IO)
        return svc_failf(f, "timeout", -1, "%s", err.msg);
    if (st != VIT_OK)
        return svc_failf(f, "internal", -1, "%s", err.msg);
    char code[32], msg[1024];
    int index = -1;
    if (vit_reply_error(rep, code, msg, sizeof msg, &index)) {
        vit_reply_free(rep);
        /* The codes of PROTOCOL.md section 4; any other is internal. */
        static const char *const codes[] = {
            "bad_request", "unknown_op", "missing_field", "bad_image",
            "too_large", "no_text_tower", "no_vision_tower", "no_head",
            "no_index", "unknown_service", "overloaded", "shutting_down",
            "unavailable", "deadline_exceeded", "internal"};
        const char *sc = "internal";
        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
            if (strcmp(code, codes[i]) == 0)
                sc = codes[i];
        return svc_failf(f, sc, index, "%s", msg);
    }
    if (!(*body = json_loads(rep->body, 0, NULL))) {
        vit_reply_free(rep);
        return svc_failf(f, "internal", -1, "a malformed reply from %s",
                         h->connect);
    }
    return 0;
}

/* The model a request names ("model"), routed to as the service name. */
static const char *model_of(input *in, failure *f)
{
    json_t *m = json_object_get(in->req, "model");
    if (!m || json_is_null(m))
        return "";
    if (!json_is_string(m) || json_string_length(m) > 255) {
        svc_failf(f, "bad_request", -1,
                  "'model' must be a model's name (at most 255 bytes)");
        return NULL;
    }
    return json_string_value(m);
}

/* The common path of an operation: the model the request names, its
 * images (from `field`, when `field` is not NULL), a header of `op` with
 * the request's `fields` (the worker checks their types and ranges), the
 * call. */
static int op_call(vit_http *h, input *in, const char *op,
                   const char *field, const char *const *fields,
                   json_t *extra, vit_reply *rep, json_t **b, failure *f)
{
    const char *model = model_of(in, f);
    json_t *hdr = json_pack("{s:s}", "op", op);
    if (!model || (field && svc_take_images(h, in, field, f) != 0) || !hdr) {
        json_decref(hdr);
        json_decref(extra);
        return model && !hdr ? svc_failf(f, "internal", -1, "out of memory")
                             : -1;
    }
    /* The request's own deadline, when it gives one (the worker checks
     * it); past it the answer is deadline_exceeded, 504. */
    json_t *dl = json_object_get(in->req, "deadline_ms");
    if (dl)
        json_object_set(hdr, "deadline_ms", dl);
    for (; *fields; fields++) {
        json_t *v = json_object_get(in->req, *fields);
        if (v)
            json_object_set(hdr, *fields, v);
    }
    if (extra)
        json_object_update(hdr, extra);
    json_decref(extra);
    int rc = svc_http_call(h, model, 0, hdr, in->img, in->n_img, rep, b, f);
    json_decref(hdr);
    return rc;
}

/* ---- routes ---- */

static json_t *model_entry(json_t *info, const char *service)
{
    json_t *m = json_object_get(info, "model");
    json_t *e = json_pack("{s:s, s:s, s:s}", "id",
                          service && *service
                              ? service
                              : json_string_value(json_object_get(m, "name"))
                                    ? json_string_value(
                                          json_object_get(m, "name"))
                                    : "",
                          "object", "model", "owned_by", "vit");
    static const char *const keep[][2] = {
        {"architecture", "architecture"}, {"embed_dim", "embedding_dim"},
        {"precision", "precision"},       {"preprocess", "preprocess"},
        {"num_labels", "num_labels"},     {"image_h", "image_height"},
        {"image_w", "image_width"},       {"has_vision", "has_vision"},
        {"has_text", "has_text"},         {"text_max_len", "text_max_len"},
    };
    for (size_t i = 0; e && i < sizeof keep / sizeof keep[0]; i++) {
        json_t *v = json_object_get(m, keep[i][0]);
        if (v)
            json_object_set(e, keep[i][1], v);
    }
    json_t *lim = json_object_get(info, "limits");
    if (e && lim)
        json_object_set(e, "limits", lim);
    return e;
}

static int do_models(vit_http *h, json_t **out, failure *f)
{
    json_t *data = json_array();
    json_t *hdr = json_pack("{s:s}", "op", "info");
    vit_reply rep;
    json_t *b = NULL;
    /* A broker lists its models (mmi.broker); a worker answers
     * unknown_service to that name, and its own info is the one model. */
    json_t *services = NULL;
    if (svc_http_call(h, "mmi.broker", 1, hdr, NULL, 0, &rep, &b, f) == 0) {
        services = json_incref(json_object_get(b, "services"));
        json_decref(b);
        vit_reply_free(&rep);
    } else if (strcmp(f->code, "unknown_service") != 0) {
        json_decref(hdr);
        json_decref(data);
        return -1;
    }
    json_object_set_new(hdr, "deadline_ms", json_integer(PROBE_MS));
    if (services) {
        const char *name;
        json_t *s;
        json_object_foreach(services, name, s)
        {
            if (json_integer_value(json_object_get(s, "workers")) < 1)
                continue;
            if (svc_http_call(h, name, 1, hdr, NULL, 0, &rep, &b, f) != 0)
                continue;
            json_array_append_new(data, model_entry(b, name));
            json_decref(b);
            vit_reply_free(&rep);
        }
        json_decref(services);
    } else {
        if (svc_http_call(h, "", 1, hdr, NULL, 0, &rep, &b, f) != 0) {
            json_decref(hdr);
            json_decref(data);
            return -1;
        }
        json_array_append_new(data, model_entry(b, rep.service));
        json_decref(b);
        vit_reply_free(&rep);
    }
    json_decref(hdr);
    *out = json_pack("{s:s, s:o}", "object", "list", "data", data);
    return 0;
}

static int do_ready(vit_http *h, json_t **out, failure *f)
{
    json_t *hdr = json_pack("{s:s, s:i}", "op", "info", "deadline_ms",
                            PROBE_MS);
    vit_reply rep;
    json_t *b;
    int rc = svc_http_call(h, "", 1, hdr, NULL, 0, &rep, &b, f);
    json_decref(hdr);
    if (rc != 0) {
        char m[sizeof f->msg];
        snprintf(m, sizeof m, "%s", f->msg);
        return svc_failf(f, "not_ready", -1, "no worker answers at %s: %s",
                         h->connect, m);
    }
    *out = json_pack("{s:s, s:s}", "status", "ready", "model",
                     rep.service ? rep.service : "");
    json_decref(b);
    vit_reply_free(&rep);
    return 0;
}

static int do_classify(vit_http *h, input *in, json_t **out, failure *f)
{
    static const char *const fields[] = {"top_k", "labels", "template",
                                         "logits", NULL};
    vit_reply rep;
    json_t *b;
    if (op_call(h, in, "classify", "images", fields, NULL, &rep, &b, f) != 0)
        return -1;
    *out = json_pack("{s:s, s:O}", "model", rep.service ? rep.service : "",
                     "results", json_object_get(b, "results"));
    json_decref(b);
    vit_reply_free(&rep);
    return 0;
}

/* The rows of an embed_* reply's data frame, `count` of them. */
static json_t *embedding_rows(const vit_reply *rep, json_t *b, int count,
                              failure *f)
{
    long long n = json_integer_value(json_object_get(b, "count"));
    long long dim = json_integer_value(json_object_get(b, "dim"));
    if (n != count || dim < 1 || rep->n_data != 1 ||
        rep->data[0].size != (size_t)n * (size_t)dim * 4) {
        svc_failf(f, "internal", -1, "a malformed embeddings reply");
        return NULL;
    }
    json_t *data = json_array();
    const unsigned char *p = rep->data[0].data;
    for (long long i = 0; data && i < n; i++) {
        json_t *v = json_array();
        for (long long j = 0; v && j < dim; j++, p += 4) {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                         (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            float x;
            memcpy(&x, &u, 4);
            json_array_append_new(v, json_real(x));
        }
        json_array_append_new(
            data, json_pack("{s:s, s:I, s:o}", "object", "embedding",
                            "index", (json_int_t)i, "embedding", v));
    }
    return data;
}

static int do_embed(vit_http *h, input *in, json_t **out, failure *f)
{
    json_t *mod = json_object_get(in->req, "modality");
    const char *m = json_string_value(mod);
    if (mod && (!m || (strcmp(m, "text") != 0 && strcmp(m, "image") != 0)))
        return svc_failf(f, "bad_request", -1,
                         "'modality' is \"text\" (default) or \"image\"");
    json_t *fmt = json_object_get(in->req, "encoding_format");
    if (fmt && !(json_is_string(fmt) &&
                 strcmp(json_string_value(fmt), "float") == 0))
        return svc_failf(f, "bad_request", -1,
                         "'encoding_format' is \"float\" only");
    int image = in->form ? in->n_img > 0 : m && strcmp(m, "image") == 0;
    json_t *extra = json_pack("{s:b}", "normalize", 1);
    int count = 0;
    if (!image) {
        json_t *t = json_object_get(in->req, "input");
        json_t *texts = json_is_string(t) ? json_pack("[O]", t)
                                          : json_incref(t);
        if (!json_is_array(texts) || json_array_size(texts) == 0) {
            json_decref(texts);
            json_decref(extra);
            return svc_failf(
                f, t ? "bad_request" : "missing_field", -1,
                "'input' must be a string or a non-empty array of "
                "strings");
        }
        count = (int)json_array_size(texts);
        json_object_set_new(extra, "texts", texts);
    }
    static const char *const fields[] = {"normalize", NULL};
    vit_reply rep;
    json_t *b;
    if (op_call(h, in, image ? "embed_image" : "embed_text",
                image ? "input" : NULL, fields, extra, &rep, &b, f) != 0)
        return -1;
    json_t *data = embedding_rows(&rep, b, image ? in->n_img : count, f);
    if (data)
        /* The protocol does not count tokens: usage is 0. */
        *out = json_pack("{s:s, s:o, s:s, s:{s:i, s:i}}", "object", "list",
                         "data", data, "model",
                         rep.service ? rep.service : "", "usage",
                         "prompt_tokens", 0, "total_tokens", 0);
    json_decref(b);
    vit_reply_free(&rep);
    return data ? 0 : -1;
}

static int do_match(vit_http *h, input *in, json_t **out, failure *f)
{
    static const char *const fields[] = {"texts", NULL};
    vit_reply rep;
    json_t *b;
    if (op_call(h, in, "match", "images", fields, NULL, &rep, &b, f) != 0)
        return -1;
    json_t *res = json_array(), *r;
    size_t i;
    json_array_foreach(json_object_get(b, "results"), i, r)
        json_array_append_new(
            res, json_pack("{s:O, s:O}", "scores",
                           json_object_get(r, "probs"), "logits",
                           json_object_get(r, "logits")));
    *out = json_pack("{s:s, s:o}", "model", rep.service ? rep.service : "",
                     "results", res);
    json_decref(b);
    vit_reply_free(&rep);
    return 0;
}

static int do_search(vit_http *h, input *in, json_t **out, failure *f)
{
    json_t *text = json_object_get(in->req, "text");
    int image = in->form ? in->n_img > 0
                         : json_object_get(in->req, "image") != NULL;
    if (!text == !image)
        return svc_failf(f, "bad_request", -1,
                         "give one of 'text' (a string) and 'image'");
    if (text && !json_is_string(text))
        return svc_failf(f, "bad_request", -1, "'text' must be a string");
    if (in->form && in->n_img != 1)
        return svc_failf(f, "bad_request", -1, "search takes one image");
    static const char *const fields[] = {"k", "prefix", NULL};
    vit_reply rep;
    json_t *b;
    if (op_call(h, in, image ? "search_image" : "search_text",
                image ? "image" : NULL, fields,
                text ? json_pack("{s:[O]}", "texts", text) : NULL, &rep, &b,
                f) != 0)
        return -1;
    if (in->n_img > 1) {
        json_decref(b);
        vit_reply_free(&rep);
        return svc_failf(f, "bad_request", -1, "search takes one image");
    }
    json_t *res = json_array(), *r;
    size_t i;
    json_array_foreach(json_array_get(json_object_get(b, "results"), 0), i, r)
        json_array_append_new(
            res, json_pack("{s:I, s:O, s:O, s:O, s:O}", "rank",
                           (json_int_t)i + 1, "score",
                           json_object_get(r, "score"), "path",
                           json_object_get(r, "id"), "id",
                           json_object_get(r, "rowid"), "metadata",
                           json_object_get(r, "metadata")));
    *out = json_pack("{s:s, s:o}", "model", rep.service ? rep.service : "",
                     "results", res);
    json_decref(b);
    vit_reply_free(&rep);
    return 0;
}

static enum MHD_Result do_metrics(vit_http *h, struct MHD_Connection *con)
{
    failure f;
    json_t *hdr = json_pack("{s:s, s:s}", "op", "metrics", "format",
                            "prometheus");
    vit_reply rep;
    json_t *b;
    int rc = svc_http_call(h, "", 0, hdr, NULL, 0, &rep, &b, &f);
    json_decref(hdr);
    if (rc != 0)
        return svc_send_error(h, con, f.code, f.index, "%s", f.msg);
    const char *t = json_string_value(json_object_get(b, "text"));
    char *text = strdup(t ? t : "");
    json_decref(b);
    vit_reply_free(&rep);
    return svc_send_text(h, con, MHD_HTTP_OK,
                         "text/plain; version=0.0.4; charset=utf-8", text,
                         NULL);
}

enum MHD_Result svc_dispatch(vit_http *h, struct MHD_Connection *con,
                             reqctx *q)
{
    failure f = {0};
    json_t *out = NULL;
    int rc;
    switch (q->route) {
    case R_HEALTH:
        return svc_send_json(h, con, MHD_HTTP_OK,
                             json_pack("{s:s}", "status", "ok"));
    case R_METRICS:
        return do_metrics(h, con);
    case R_PAGE:
        return svc_send_text(h, con, MHD_HTTP_OK, "text/html; charset=utf-8",
                             strdup(svc_http_page), NULL);
    case R_IMAGE:
        return svc_do_image(h, con);
    case R_READY:
        rc = do_ready(h, &out, &f);
        break;
    case R_MODELS:
        rc = do_models(h, &out, &f);
        break;
    default: {
        if (q->bad_form)
            return svc_send_error(h, con, "bad_request", -1,
                                  "the multipart/form-data body could not be "
                                  "read");
        input in;
        rc = svc_read_input(q, &in, &f);
        if (rc == 0)
            switch (q->route) {
            case R_CLASSIFY: rc = do_classify(h, &in, &out, &f); break;
            case R_EMBED: rc = do_embed(h, &in, &out, &f); break;
            case R_MATCH: rc = do_match(h, &in, &out, &f); break;
            default: rc = do_search(h, &in, &out, &f); break;
            }
        svc_input_free(&in);
    }
    }
    if (rc != 0)
        return svc_send_error(h, con, f.code, f.index, "%s", f.msg);
    return svc_send_json(h, con, MHD_HTTP_OK, out);
}
