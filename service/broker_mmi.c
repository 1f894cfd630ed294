/*
 * The broker's own service, mmi.broker (Majordomo's MMI names): `health`,
 * and `info`, what the broker serves, with how many workers, their credit
 * and the requests held and queued for each, and its counters.
 */
#include "service/svc_broker.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The entry of `name` in the services object, made when missing. */
static json_t *service_entry(json_t *services, const char *name)
{
    json_t *e = json_object_get(services, name);
    if (!e) {
        e = json_pack("{s:i, s:i, s:i, s:i, s:i}", "workers", 0, "draining",
                      0, "credit", 0, "in_flight", 0, "queued", 0);
        json_object_set_new(services, name, e);
    }
    return e;
}

static void add_to(json_t *o, const char *key, json_int_t n)
{
    json_object_set_new(o, key,
                        json_integer(json_integer_value(
                                         json_object_get(o, key)) + n));
}

/* What the broker has: each service a worker announced or a queued
 * request names, with its live workers, their credit, the requests they
 * hold and the requests queued for it; and the broker's counters. */
static char *broker_info(broker *b)
{
    json_t *services = json_object();
    for (bworker *w = b->workers; w; w = w->next) {
        json_t *e = service_entry(services, w->service);
        add_to(e, "workers", 1);
        add_to(e, "draining", w->draining);
        add_to(e, "credit", w->credit);
        add_to(e, "in_flight", w->held.n);
    }
    int any = 0;
    for (breq *r = b->queue.head; r; r = r->next)
        if (*r->service)
            add_to(service_entry(services, r->service), "queued", 1);
        else
            any++;
    json_t *o = json_pack(
        "{s:b, s:s, s:s, s:s, s:s, s:f, s:i, s:o, s:i, s:i, s:I, "
        "s:{s:I, s:I, s:I, s:I, s:I}, s:{s:i, s:I, s:I}}",
        "ok", 1, "op", "info", "role", "broker", "version", SVC_VERSION,
        "protocol", SVC_CLIENT_PROTO, "uptime_s",
        (svc_now_ms() - b->t_start) / 1e3, "heartbeat_ms",
        b->o.heartbeat_ms, "services", services, "queued_any", any,
        "queue_depth", b->queue.n, "held_bytes", (json_int_t)b->held_bytes,
        "requests", "received", (json_int_t)b->received, "forwarded",
        (json_int_t)b->forwarded, "resent", (json_int_t)b->resent,
        "expired", (json_int_t)b->expired, "refused",
        (json_int_t)b->refused, "limits", "max_queue", b->o.max_queue,
        "max_queue_bytes", (json_int_t)b->o.max_queue_bytes,
        "max_request_bytes", (json_int_t)b->o.max_request_bytes);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return s;
}

/* A request to a reserved `mmi.` service, answered here at once:
 * [client, "", VITC01, REQUEST, service, rid, header, data ...]. */
void svc_broker_mmi(broker *b, svc_msg *m, const unsigned char *client,
                    size_t client_len, const void *rid, size_t rid_len)
{
    if (!svc_frame_is(m, 4, SVC_MMI_BROKER)) {
        svc_broker_refuse(b, client, client_len, rid, rid_len,
                          "unknown_service",
                          "of the reserved 'mmi.' services the broker answers "
                          "'" SVC_MMI_BROKER "' only");
        return;
    }
    json_t *h = json_loadb((const char *)svc_data(m, 6), svc_size(m, 6),
                           0, NULL);
    json_t *op = json_object_get(h, "op");
    const char *ops = json_string_value(op);
    char *body = NULL;
    if (!json_is_object(h))
        svc_broker_refuse(b, client, client_len, rid, rid_len, "bad_request",
                          "the header is not a JSON object");
    else if (!op)
        svc_broker_refuse_field(b, client, client_len, rid, rid_len,
                                "missing_field", "op",
                                "the header has no 'op'");
    else if (!ops)
        svc_broker_refuse_field(b, client, client_len, rid, rid_len,
                                "bad_request", "op", "'op' must be a string");
    else if (strcmp(ops, "info") != 0 && strcmp(ops, "health") != 0)
        svc_broker_refuse_field(
            b, client, client_len, rid, rid_len, "unknown_op", "op",
            "the broker ('" SVC_MMI_BROKER "') answers 'info' and "
            "'health'");
    else if (m->n > 7)
        svc_broker_refuse_field(b, client, client_len, rid, rid_len,
                                "bad_request", "images",
                                "the broker's operations take no data frames");
    else if (strcmp(ops, "health") == 0)
        body = svc_health_body("serving", b->queue.n);
    else if (!(body = broker_info(b)))
        svc_broker_refuse(b, client, client_len, rid, rid_len, "internal",
                          "out of memory");
    if (body)
        svc_broker_to_client(b, client, client_len, SVC_MMI_BROKER, rid,
                             rid_len, NULL, 0, body);
    free(body);
    json_decref(h);
}
