/*
 * The worker's metrics: the counters by operation and reply code, the
 * batch sizes and the latencies, as the metrics operation's JSON and as
 * Prometheus text, and the link that lets the metrics port's thread ask
 * the I/O thread for the text (the numbers are read only where they are
 * written).
 */
#include "service/svc_worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double svc_lat_le[N_LAT_LE] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                     0.5,   1,    2.5,   5,    10,  30};

void svc_count(worker *w, op_t op, code_t code)
{
    w->counts[op][code]++;
}

void svc_record_latency(worker *w, double ms)
{
    w->lat[w->n_lat++ % LAT_RING] = ms;
    w->lat_sum_s += ms / 1e3;
    for (int i = 0; i < N_LAT_LE; i++)
        if (ms / 1e3 <= svc_lat_le[i]) {
            w->lat_bucket[i]++;
            break;
        }
}

int svc_queue_depth(worker *w)
{
    return w->inflight;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

char *svc_metrics_body(worker *w)
{
    json_t *reqs = json_object();
    for (int op = 0; op < N_OPS; op++) {
        json_t *o = NULL;
        for (int c = 0; c < N_CODES; c++) {
            if (!w->counts[op][c])
                continue;
            if (!o)
                o = json_object();
            json_object_set_new(o, svc_code_names[c],
                                json_integer((json_int_t)w->counts[op][c]));
        }
        if (o)
            json_object_set_new(reqs, svc_ops[op].name, o);
    }
    json_t *sizes = json_object();
    pthread_mutex_lock(&w->mu);
    for (int i = 1; i < MAX_HIST; i++) {
        if (!w->batch_hist[i])
            continue;
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        json_object_set_new(sizes, key,
                            json_integer((json_int_t)w->batch_hist[i]));
    }
    json_t *batches = json_pack("{s:I, s:I, s:f, s:o}", "count",
                                (json_int_t)w->batches, "items",
                                (json_int_t)w->batch_items, "busy_s",
                                w->busy_ms / 1e3, "sizes", sizes);
    pthread_mutex_unlock(&w->mu);

    size_t n = w->n_lat < LAT_RING ? (size_t)w->n_lat : LAT_RING;
    double sorted[LAT_RING];
    memcpy(sorted, w->lat, n * sizeof(double));
    qsort(sorted, n, sizeof(double), cmp_double);
#define PCT(p) (n ? sorted[(size_t)((double)(n - 1) * (p) + 0.5)] : 0.0)
    json_t *lat = json_pack("{s:I, s:f, s:f, s:f, s:f}", "count",
                            (json_int_t)w->n_lat, "p50", PCT(0.5), "p90",
                            PCT(0.9), "p99", PCT(0.99), "max", PCT(1.0));
#undef PCT
    return svc_dump(json_pack("{s:b, s:s, s:f, s:i, s:o, s:o, s:o}", "ok", 1,
                              "op", "metrics", "uptime_s",
                              (svc_now_ms() - w->t_start) / 1e3, "queue_depth",
                              svc_queue_depth(w), "requests", reqs, "batches",
                              batches, "latency_ms", lat));
}

/* The same counters in Prometheus' text exposition format (0.0.4), for
 * the `metrics` operation with "format": "prometheus" and GET /metrics on
 * --metrics-bind's port. */
char *svc_metrics_prometheus(worker *w)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fprintf(f, "# HELP vit_requests_total Replies sent, by operation and "
               "code.\n# TYPE vit_requests_total counter\n");
    for (int op = 0; op < N_OPS; op++)
        for (int c = 0; c < N_CODES; c++)
            if (w->counts[op][c])
                fprintf(f, "vit_requests_total{model=\"%s\",op=\"%s\","
                           "code=\"%s\"} %llu\n",
                        w->name, svc_ops[op].name, svc_code_names[c],
                        (unsigned long long)w->counts[op][c]);
    fprintf(f, "# HELP vit_queue_depth Requests accepted and not yet "
               "answered.\n# TYPE vit_queue_depth gauge\n"
               "vit_queue_depth{model=\"%s\"} %d\n",
            w->name, svc_queue_depth(w));
    fprintf(f, "# HELP vit_batch_size Items per forward pass.\n"
               "# TYPE vit_batch_size histogram\n");
    pthread_mutex_lock(&w->mu);
    uint64_t cum = 0;
    for (int le = 1; le <= w->o.max_batch && le < MAX_HIST; le *= 2) {
        for (int i = le / 2 + 1; i <= le; i++)
            cum += w->batch_hist[i];
        fprintf(f, "vit_batch_size_bucket{model=\"%s\",le=\"%d\"} %llu\n",
                w->name, le, (unsigned long long)cum);
    }
    fprintf(f, "vit_batch_size_bucket{model=\"%s\",le=\"+Inf\"} %llu\n"
               "vit_batch_size_sum{model=\"%s\"} %llu\n"
               "vit_batch_size_count{model=\"%s\"} %llu\n",
            w->name, (unsigned long long)w->batches, w->name,
            (unsigned long long)w->batch_items, w->name,
            (unsigned long long)w->batches);
    fprintf(f, "# HELP vit_inference_busy_seconds_total Time spent in "
               "forward passes.\n"
               "# TYPE vit_inference_busy_seconds_total counter\n"
               "vit_inference_busy_seconds_total{model=\"%s\"} %.6f\n",
            w->name, w->busy_ms / 1e3);
    pthread_mutex_unlock(&w->mu);
    size_t n = w->n_lat < LAT_RING ? (size_t)w->n_lat : LAT_RING;
    double sorted[LAT_RING];
    memcpy(sorted, w->lat, n * sizeof(double));
    qsort(sorted, n, sizeof(double), cmp_double);
    fprintf(f, "# HELP vit_request_latency_seconds Receipt to reply, over "
               "the last %d work requests.\n"
               "# TYPE vit_request_latency_seconds summary\n", LAT_RING);
    static const double q[] = {0.5, 0.9, 0.99};
    for (int i = 0; i < 3; i++)
        fprintf(f, "vit_request_latency_seconds{model=\"%s\",quantile=\"%g\"}"
                   " %.6f\n", w->name, q[i],
                n ? sorted[(size_t)((double)(n - 1) * q[i] + 0.5)] / 1e3
                  : 0.0);
    fprintf(f, "vit_request_latency_seconds_count{model=\"%s\"} %llu\n",
            w->name, (unsigned long long)w->n_lat);
    /* The same latencies as a histogram of every work request, which a
     * server can aggregate across workers (a summary cannot be). */
    fprintf(f, "# HELP vit_request_duration_seconds Receipt to reply of "
               "work requests.\n"
               "# TYPE vit_request_duration_seconds histogram\n");
    uint64_t below = 0;
    for (int i = 0; i < N_LAT_LE; i++) {
        below += w->lat_bucket[i];
        fprintf(f, "vit_request_duration_seconds_bucket{model=\"%s\","
                   "le=\"%g\"} %llu\n",
                w->name, svc_lat_le[i], (unsigned long long)below);
    }
    fprintf(f, "vit_request_duration_seconds_bucket{model=\"%s\",le=\"+Inf\"}"
               " %llu\n"
               "vit_request_duration_seconds_sum{model=\"%s\"} %.6f\n"
               "vit_request_duration_seconds_count{model=\"%s\"} %llu\n",
            w->name, (unsigned long long)w->n_lat, w->name, w->lat_sum_s,
            w->name, (unsigned long long)w->n_lat);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

char *svc_metrics_fetch(void *ud)
{
    metrics_link *l = ud;
    void *s = zmq_socket(l->ctx, ZMQ_REQ);
    int zero = 0, wait_ms = 5000;
    char *text = NULL;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (s && zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) == 0 &&
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &wait_ms, sizeof wait_ms) == 0 &&
        zmq_connect(s, l->ep) == 0 && zmq_send(s, "", 0, 0) == 0 &&
        zmq_msg_recv(&m, s, 0) > 0 && (text = malloc(zmq_msg_size(&m) + 1))) {
        memcpy(text, zmq_msg_data(&m), zmq_msg_size(&m));
        text[zmq_msg_size(&m)] = '\0';
    }
    zmq_msg_close(&m);
    if (s)
        zmq_close(s);
    return text;
}

/* One scrape's question on the loop's REP socket: answered with the text,
 * or an empty frame (which the port turns into 503). */
void svc_handle_metrics(worker *w, void *rep)
{
    char q[8];
    if (zmq_recv(rep, q, sizeof q, ZMQ_DONTWAIT) < 0)
        return;
    char *text = svc_metrics_prometheus(w);
    zmq_send(rep, text ? text : "", text ? strlen(text) : 0, 0);
    free(text);
}
