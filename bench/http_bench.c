/*
 * HTTP against ZeroMQ on the same worker: requests per second of one
 * `classify` of one image per request, closed loop, from N client threads
 * in this process (a second process to the worker and to the gateway),
 * sent over ZeroMQ with vit_client to the worker's endpoint, and as a
 * multipart POST /v1/classify with libcurl (one keep-alive connection a
 * thread) to the gateway in front of it. The two alternate in slices,
 * --rounds times, so both see the same load from whatever else the machine
 * runs; the ratio HTTP / ZeroMQ is printed for each round and overall.
 * bench/http_bench.sh starts the worker and the gateway.
 *
 *   build/http_bench ENDPOINT HTTP_PORT IMAGE [--clients N] [--seconds S]
 *                    [--rounds R]
 */
#define _XOPEN_SOURCE 700

#include "service/client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
    const char *ep;
    int port, http;
    const unsigned char *img;
    size_t n;
    double until;
    long done, failed;
} job;

static size_t sink(char *d, size_t s, size_t m, void *u)
{
    (void)d, (void)u;
    return s * m;
}

static void *run(void *p)
{
    job *j = p;
    if (j->http) {
        CURL *c = curl_easy_init();
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/classify", j->port);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_mime *mime = curl_mime_init(c);
        curl_mimepart *part = curl_mime_addpart(mime);
        curl_mime_name(part, "images");
        curl_mime_filename(part, "x");
        curl_mime_data(part, (const char *)j->img, j->n);
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
        while (now_s() < j->until) {
            long st = 0;
            if (curl_easy_perform(c) == CURLE_OK &&
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st) ==
                    CURLE_OK &&
                st == 200)
                j->done++;
            else
                j->failed++;
        }
        curl_mime_free(mime);
        curl_easy_cleanup(c);
        return NULL;
    }
    vit_client *c = NULL;
    if (vit_client_new(j->ep, NULL, &c, NULL) != VIT_OK)
        return NULL;
    vit_blob b = {j->img, j->n};
    while (now_s() < j->until) {
        vit_reply r;
        if (vit_client_call(c, "{\"op\":\"classify\"}", &b, 1, &r, NULL) ==
            VIT_OK) {
            j->done += !vit_reply_error(&r, NULL, NULL, 0, NULL);
            vit_reply_free(&r);
        } else {
            j->failed++;
        }
    }
    vit_client_free(c);
    return NULL;
}

/* Requests per second of one slice. */
static double slice(const char *ep, int port, int http, int clients,
                    const unsigned char *img, size_t n, double seconds,
                    long *failed)
{
    pthread_t th[64];
    job jobs[64];
    double t0 = now_s();
    for (int i = 0; i < clients; i++) {
        jobs[i] = (job){ep, port, http, img, n, t0 + seconds, 0, 0};
        pthread_create(&th[i], NULL, run, &jobs[i]);
    }
    long done = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        done += jobs[i].done;
        *failed += jobs[i].failed;
    }
    return done / (now_s() - t0);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: http_bench ENDPOINT HTTP_PORT IMAGE "
                        "[--clients N] [--seconds S] [--rounds R]\n");
        return 2;
    }
    int clients = 4, rounds = 3;
    double seconds = 3;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--clients") == 0)
            clients = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
    }
    if (clients < 1 || clients > 64 || rounds < 1 || seconds <= 0) {
        fprintf(stderr, "http_bench: 1 to 64 clients, rounds and seconds "
                        "above 0\n");
        return 2;
    }
    FILE *f = fopen(argv[3], "rb");
    static unsigned char img[1 << 24];
    size_t n = f ? fread(img, 1, sizeof img, f) : 0;
    if (f)
        fclose(f);
    if (!n) {
        fprintf(stderr, "http_bench: cannot read %s\n", argv[3]);
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int port = atoi(argv[2]);
    double zsum = 0, hsum = 0;
    long failed = 0;
    printf("classify, 1 image a request, %d clients, %.1f s slices\n",
           clients, seconds);
    for (int r = 0; r < rounds; r++) {
        double z = slice(argv[1], port, 0, clients, img, n, seconds, &failed);
        double h = slice(argv[1], port, 1, clients, img, n, seconds, &failed);
        zsum += z;
        hsum += h;
        printf("round %d: ZeroMQ %.1f req/s, HTTP %.1f req/s, ratio %.3f\n",
               r + 1, z, h, z > 0 ? h / z : 0);
    }
    printf("overall: ZeroMQ %.1f req/s, HTTP %.1f req/s, HTTP/ZeroMQ %.3f "
           "(%ld failed)\n",
           zsum / rounds, hsum / rounds, zsum > 0 ? hsum / zsum : 0, failed);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
