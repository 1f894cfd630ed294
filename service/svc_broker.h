/*
 * Private declarations shared by the broker's files: broker.c, the broker
 * itself, and broker_mmi.c, its own service (mmi.broker). Nothing here is
 * API; the prefix is svc_.
 */
#ifndef SVC_BROKER_H
#define SVC_BROKER_H

#include "service/service.h"
#include "service/svc_impl.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bworker bworker;

/* A client request the broker holds until it is answered. */
typedef struct breq {
    unsigned char client[SVC_MAX_ID];
    size_t client_len;
    char service[SVC_MAX_ID + 1];
    svc_msg frames;  /* request id, header, data ... */
    double t_recv, deadline;
    int sends;       /* how many workers it was sent to */
    size_t cost;     /* its frames' bytes */
    int control;     /* health, info or metrics: answered by a worker at
                        once, so it needs no credit */
    bworker *w;      /* the worker holding it, or NULL while queued */
    struct breq *prev, *next;
} breq;

typedef struct {
    breq *head, *tail;
    int n;
} breq_list;

struct bworker {
    unsigned char id[SVC_MAX_ID];
    size_t id_len;
    char service[SVC_MAX_ID + 1];
    int credit, draining;
    double hb, expiry, last_sent;
    breq_list held;
    bworker *next;
};

typedef struct {
    vit_broker_options o;
    void *front, *back;
    bworker *workers;
    breq_list queue;
    size_t held_bytes;  /* frames of every request held, queued or sent */
    uint64_t received, forwarded, resent, expired, refused;
    double t_start;
} broker;

/* broker.c: a reply to a client: [client, "", VITC01, FINAL, service,
 * rid, body, data ...]; the tail frames (from `tail`, index >= first) are
 * moved. A refusal: an error reply, with the field at fault or none. */
void svc_broker_to_client(broker *b, const unsigned char *client,
                          size_t client_len, const char *service,
                          const void *rid, size_t rid_len, svc_msg *tail,
                          int first, const char *body);
void svc_broker_refuse_field(broker *b, const unsigned char *client,
                             size_t client_len, const void *rid,
                             size_t rid_len, const char *code,
                             const char *field, const char *msg);
void svc_broker_refuse(broker *b, const unsigned char *client,
                       size_t client_len, const void *rid, size_t rid_len,
                       const char *code, const char *msg);

/* broker_mmi.c: a request to a reserved `mmi.` service, answered at once:
 * [client, "", VITC01, REQUEST, service, rid, header, data ...]. */
void svc_broker_mmi(broker *b, svc_msg *m, const unsigned char *client,
                    size_t client_len, const void *rid, size_t rid_len);

#endif
