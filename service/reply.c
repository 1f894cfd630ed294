/*
 * The worker's replies: a finished request's reply body (built on the
 * thread that finished it and handed back to the I/O thread over an inproc
 * PUSH socket), sending a reply or a refusal on the I/O thread, and the
 * info operation's body.
 */
#include "service/svc_worker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- handing results back to the I/O thread ---- */

/* Sends `d` (owned) over a thread's PUSH socket. */
void svc_hand_back(void *push, done_msg *d)
{
    done_msg *p = malloc(sizeof *p);
    if (p) {
        *p = *d;
        if (zmq_send(push, &p, sizeof p, 0) == sizeof p)
            return;
        free(p);
    }
    /* Out of memory or the context is ending: the I/O thread cannot learn
     * of this request, so it is dropped here. Not reached in practice. */
    free(d->body);
    free(d->data);
}

void svc_finish_error(void *push, req *r, code_t code, const char *msg,
                      int index)
{
    done_msg d = {.r = r,
                  .code = code,
                  .body =
                      svc_error_body(svc_code_names[code], msg, index, NULL)};
    svc_hand_back(push, &d);
}

static json_t *jfloat(float x)
{
    return isfinite(x) ? json_real((double)x) : json_null();
}

char *svc_dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                    JSON_REAL_PRECISION(9))
                : NULL;
    json_decref(o);
    return s;
}

void svc_to_le(float *v, size_t n)
{
    const uint32_t one = 1;
    if (*(const unsigned char *)&one == 1)
        return;  /* little-endian already, as on every machine we run on */
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        u = __builtin_bswap32(u);
        memcpy(&v[i], &u, 4);
    }
}

/* The index writer's answer to a job of request `r` (svc_ix_done_fn). */
void svc_ix_reply(void *push, void *rv, char *body, const char *code,
                  const char *msg)
{
    req *r = rv;
    if (body) {
        done_msg d = {.r = r, .code = C_OK, .body = body};
        svc_hand_back(push, &d);
        return;
    }
    svc_finish_error(
        push, r, strcmp(code, "bad_request") == 0 ? C_BAD_REQUEST : C_INTERNAL,
        msg, -1);
}

/* Hands an index_add or index_remove to the index writer, which answers
 * it once committed; the job takes the request's keys and `vecs`.
 * Returns -1, having changed nothing, when out of memory. */
int svc_req_ix_submit(worker *w, req *r, float *vecs)
{
    svc_ix_job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->remove = r->op == OP_INDEX_REMOVE;
    j->n = r->n_ids;
    j->keys = r->ids;
    j->metas = r->metas;
    j->vecs = vecs;
    j->req = r;
    j->op = svc_ops[r->op].name;
    r->ids = NULL;
    r->metas = NULL;
    r->n_ids = 0;
    svc_ix_submit(w->ix, j);
    return 0;
}

/* ---- the replies of computed requests, by op (svc_ops' reply) ----
 *
 * Each fills `o`, the reply's {"ok": true, "op": ...}, and `d`'s data,
 * and returns 0; or answers the request otherwise (an error handed back,
 * the index writer) and returns -1. They run on the thread that computed
 * the last item. */

int svc_reply_index_add(infer_ctx *c, req *r, json_t *o, done_msg *d)
{
    if (svc_req_ix_submit(c->w, r, r->img_emb) != 0) {
        svc_finish_error(c->push, r, C_INTERNAL, "out of memory", -1);
        return -1;
    }
    r->img_emb = NULL;
    return -1;  /* the index writer answers once it has committed them */
}

int svc_reply_classify(infer_ctx *c, req *r, json_t *o, done_msg *d)
{
    int L = r->L;
    json_t *res = json_array();
    json_object_set_new(o, "results", res);
    for (int i = 0; i < r->n_images; i++) {
        json_t *labels = json_array(), *e = json_object();
        json_array_append_new(res, e);
        json_object_set_new(e, "labels", labels);
        for (int j = 0; j < r->k; j++) {
            const vit_prediction *p = &r->top[(size_t)i * r->k + j];
            if (p->id < 0)
                break;
            /* A label set's strings may be evicted from the cache by
             * now; the request holds its own. */
            const char *label = r->labels ? r->labels[p->id] : p->label;
            json_array_append_new(
                labels, json_pack("{s:i, s:s, s:o}", "id", p->id, "label",
                                  label ? label : "", "score",
                                  jfloat(p->score)));
        }
        if (r->want_logits) {
            json_t *lg = json_array();
            json_object_set_new(e, "logits", lg);
            for (int j = 0; j < L; j++)
                json_array_append_new(lg,
                                      jfloat(r->logits[(size_t)i * L + j]));
        }
    }
    return 0;
}

/* embed_image and embed_text: the vectors as the data frame. */
int svc_reply_embed(infer_ctx *c, req *r, json_t *o, done_msg *d)
{
    int D = c->w->info.embed_dim;
    int n = r->op == OP_EMBED_IMAGE ? r->n_images : r->n_texts;
    float *v = r->op == OP_EMBED_IMAGE ? r->img_emb : r->txt_emb;
    if (r->normalize)
        vit_l2_normalize(v, n, D);
    json_object_set_new(o, "count", json_integer(n));
    json_object_set_new(o, "dim", json_integer(D));
    json_object_set_new(o, "dtype", json_string("float32"));
    json_object_set_new(o, "normalized", json_boolean(r->normalize));
    svc_to_le(v, (size_t)n * D);
    d->data = v;
    d->data_len = (size_t)n * D * sizeof(float);
    if (r->op == OP_EMBED_IMAGE)
        r->img_emb = NULL;
    else
        r->txt_emb = NULL;
    return 0;
}

/* search_text and search_image. The search runs here, on the inference
 * thread, under the matrix's read lock; the index writer never holds it
 * longer than a copy of finished rows. */
int svc_reply_search(infer_ctx *c, req *r, json_t *o, done_msg *d)
{
    int n = r->op == OP_SEARCH_IMAGE ? r->n_images : r->n_texts;
    float *v = r->op == OP_SEARCH_IMAGE ? r->img_emb : r->txt_emb;
    char msg[256];
    json_t *res = svc_ix_search(c->w->ix, v, n, r->search_k, r->prefix, msg);
    if (!res) {
        svc_finish_error(c->push, r, C_INTERNAL, msg, -1);
        return -1;
    }
    json_object_set_new(o, "results", res);
    return 0;
}

int svc_reply_match(infer_ctx *c, req *r, json_t *o, done_msg *d)
{
    size_t nm = (size_t)r->n_images * r->n_texts;
    float *lg = malloc(nm * sizeof(float));
    float *pr = malloc(nm * sizeof(float));
    vit_error err = {{0}};
    vit_status st = lg && pr ? vit_match(c->w->model, r->img_emb, r->n_images,
                                         r->txt_emb, r->n_texts, lg, pr, &err)
                             : VIT_E_NOMEM;
    if (st != VIT_OK) {
        free(lg);
        free(pr);
        svc_finish_error(
            c->push, r, st == VIT_E_NO_HEAD ? C_NO_TEXT_TOWER : C_INTERNAL,
            err.msg[0] ? err.msg : vit_status_str(st), -1);
        return -1;
    }
    json_t *res = json_array();
    json_object_set_new(o, "texts", json_integer(r->n_texts));
    json_object_set_new(o, "results", res);
    for (int i = 0; i < r->n_images; i++) {
        json_t *a = json_array(), *b = json_array();
        for (int j = 0; j < r->n_texts; j++) {
            size_t at = (size_t)i * r->n_texts + j;
            json_array_append_new(a, jfloat(lg[at]));
            json_array_append_new(b, jfloat(pr[at]));
        }
        json_array_append_new(res, json_pack("{s:o, s:o}", "logits", a,
                                             "probs", b));
    }
    free(lg);
    free(pr);
    return 0;
}

/* Builds the reply of a request whose items are all computed. */
void svc_finish_ok(infer_ctx *c, req *r)
{
    done_msg d = {.r = r, .code = C_OK};
    json_t *o = json_pack("{s:b, s:s}", "ok", 1, "op", svc_ops[r->op].name);
    if (!o)
        goto oom;
    if (svc_ops[r->op].reply(c, r, o, &d) != 0) {
        json_decref(o);
        return;
    }
    d.body = svc_dump(o);
    if (!d.body) {
        free(d.data);
        goto oom;
    }
    svc_hand_back(c->push, &d);
    return;
oom:
    svc_finish_error(c->push, r, C_INTERNAL,
                     "out of memory building the reply", -1);
}

/* ---- the answers of the ops answered at once (svc_ops' answer) ----
 *
 * Each returns the reply's body, malloc'd, or NULL with `msg` (256
 * bytes, "out of memory" unless it says otherwise). They run on the I/O
 * thread. */

char *svc_answer_index_get(worker *w, req *r, char *msg)
{
    json_t *items = svc_ix_get(w->ix, r->ids, r->n_ids, msg);
    return items ? svc_dump(json_pack("{s:b, s:s, s:o}", "ok", 1, "op",
                                      "index_get", "items", items))
                 : NULL;
}

char *svc_answer_index_stats(worker *w, req *r, char *msg)
{
    return svc_dump(json_pack("{s:b, s:s, s:o}", "ok", 1, "op",
                              "index_stats", "index", svc_ix_stats(w->ix)));
}

char *svc_answer_health(worker *w, req *r, char *msg)
{
    return svc_health_body(*w->o.stop ? "draining" : "serving",
                           svc_queue_depth(w));
}

char *svc_answer_info(worker *w, req *r, char *msg)
{
    return svc_info_body(w);
}

char *svc_answer_metrics(worker *w, req *r, char *msg)
{
    if (!r->prometheus)
        return svc_metrics_body(w);
    char *text = svc_metrics_prometheus(w);
    char *body = text ? svc_dump(json_pack("{s:b, s:s, s:s, s:s}", "ok", 1,
                                           "op", "metrics", "format",
                                           "prometheus", "text", text))
                      : NULL;
    free(text);
    return body;
}

/* Sends a reply with body `body` (not freed) and optional data. */
void svc_send_reply(io *x, const unsigned char *route, size_t route_len,
                    const unsigned char *rid, size_t rid_len,
                    const char *body, const void *data, size_t data_len)
{
    svc_msg m = {0};
    int bad = 0;
    if (!x->front)
        return;  /* between broker sessions; the broker re-sends the work */
    if (x->brokered) {
        bad |= svc_msg_add(&m, "", 0) | svc_msg_add_str(&m, SVC_WORKER_PROTO) |
               svc_msg_add_byte(&m, SVC_W_FINAL) |
               svc_msg_add(&m, route, route_len) | svc_msg_add(&m, "", 0);
    } else {
        bad |= svc_msg_add(&m, route, route_len) | svc_msg_add(&m, "", 0) |
               svc_msg_add_str(&m, SVC_CLIENT_PROTO) |
               svc_msg_add_byte(&m, SVC_C_FINAL) |
               svc_msg_add_str(&m, x->w->name);
    }
    bad |= svc_msg_add(&m, rid, rid_len) | svc_msg_add_str(&m, body);
    if (data)
        bad |= svc_msg_add(&m, data, data_len);
    if (bad)
        svc_msg_close(&m);
    else
        svc_msg_send(&m, x->front);  /* an unroutable peer is dropped */
    x->last_send = svc_now_ms();
}

void svc_reply_reject(io *x, const unsigned char *route, size_t route_len,
                      const unsigned char *rid, size_t rid_len, op_t op,
                      const reject *rj)
{
    char *body = svc_error_body(svc_code_names[rj->code], rj->msg, rj->index,
                                rj->field);
    if (body)
        svc_send_reply(x, route, route_len, rid, rid_len, body, NULL, 0);
    free(body);
    svc_count(x->w, op, rj->code);
}

/* The CPU path the kernels run (vit_cpu_path). */
static const char *cpu_path(void)
{
    const char *p = "generic";
    vit_cpu_path(&p, NULL, 0, NULL);
    return p;
}

/* How the model makes vectors: what info says, and what an index served
 * records and checks. */
const char *svc_precision_name(const worker *w)
{
    return w->vopt.precision == VIT_PRECISION_INT8   ? "int8"
           : w->vopt.precision == VIT_PRECISION_BF16 ? "bf16"
                                                     : "fp32";
}

const char *svc_preprocess_name(const worker *w)
{
    return w->vopt.preprocess == VIT_PREPROCESS_TORCHVISION ? "torchvision"
                                                             : "pil";
}

char *svc_info_body(worker *w)
{
    const vit_model_info *in = &w->info;
    json_t *model = json_pack(
        "{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:b, "
        "s:i, s:s, s:s, s:s}",
        "name", w->name, "architecture",
        in->architecture ? in->architecture : "", "channels", in->channels,
        "image_h", in->image_h, "image_w", in->image_w, "num_labels",
        in->num_labels, "embed_dim", in->embed_dim, "hidden_size",
        in->hidden_size, "num_layers", in->num_layers, "num_heads",
        in->num_heads, "patch_size", in->patch_size, "has_vision",
        svc_has_vision(in), "has_text", in->has_text, "text_max_len",
        in->text_max_len, "precision", svc_precision_name(w), "preprocess",
        svc_preprocess_name(w), "cpu", cpu_path());
    json_t *limits = json_pack(
        "{s:i, s:i, s:i, s:I, s:I, s:I}", "max_images", w->o.max_images,
        "max_texts", w->o.max_texts, "max_text_bytes", w->o.max_text_bytes,
        "max_image_bytes", (json_int_t)w->o.max_image_bytes,
        "max_request_bytes", (json_int_t)w->o.max_request_bytes, "max_pixels",
        (json_int_t)w->o.max_pixels);
    /* Every limit a request meets is stated: the side of a decoded image
     * too, and the header's size. */
    json_object_set_new(limits, "max_side",
                        json_integer((json_int_t)w->vopt.max_width));
    json_object_set_new(limits, "max_header_bytes",
                        json_integer(SVC_MAX_HEADER));
    json_object_set_new(limits, "max_request_pixels",
                        json_integer((json_int_t)w->o.max_request_pixels));
    json_t *batching = json_pack("{s:i, s:i, s:s, s:i, s:I, s:i}",
                                 "max_batch", w->o.max_batch, "max_delay_ms",
                                 w->o.max_delay_ms, "wait",
                                 w->o.batch_wait_full ? "full" : "adaptive",
                                 "max_queue", w->o.max_queue,
                                 "max_queue_bytes",
                                 (json_int_t)w->o.max_queue_bytes,
                                 "decode_threads", w->o.decode_threads);
    return svc_dump(json_pack("{s:b, s:s, s:s, s:s, s:o, s:o, s:o}", "ok", 1,
                              "op", "info", "version", SVC_VERSION, "protocol",
                              SVC_CLIENT_PROTO, "model", model, "limits",
                              limits, "batching", batching));
}
