/*
 * The public interface of vit's ZeroMQ service: the worker (`vit serve`)
 * and the broker (`vit broker`), each a blocking call that runs until it is
 * told to stop through a flag the caller's signal handler sets. The wire
 * contract they speak is service/PROTOCOL.md; the client side is
 * service/client.h. Like the rest of libvit these never print or exit: what
 * a person should see is handed to the `log` callback, and failures come
 * back as a vit_status with a message.
 */
#ifndef VIT_SERVICE_H
#define VIT_SERVICE_H

#include "vit/vit.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A line for a person (no trailing newline); called from the calling
 * thread only. */
typedef void (*vit_log_fn)(void *ud, const char *line);

typedef struct {
    const char *model_dir;   /* required */
    const char *name;        /* service name; NULL: the model dir's last
                                component */
    const char *bind;        /* serve clients directly here, or */
    const char *connect;     /* connect to a broker's backend here */
    int max_batch;           /* items per forward pass (8) */
    int max_delay_ms;        /* wait this long for a batch to fill (5) */
    int batch_wait_full;     /* 0 (adaptive): wait up to max_delay_ms
                                while more images are being decoded, and
                                after a forward pass at most 1/16 of a
                                full batch's time for the clients just
                                answered to send again (a lone request
                                on a fast model runs at once);
                                1: always wait up to max_delay_ms */
    int max_queue;           /* requests held at once; past it `overloaded`
                                (256) */
    size_t max_queue_bytes;  /* image bytes and pixels held at once; past
                                it `overloaded` (1 GiB; one request is
                                always taken) */
    int decode_threads;      /* image decoding and preprocessing (2) */
    int threads;             /* threads of each forward pass (vit_options;
                                0: one per online CPU) */
    int precision;           /* the model's vit_precision (fp32) */
    int preprocess;          /* its vit_preprocess_backend (pil) */
    int deadline_ms;         /* default per-request deadline (30000) */
    int max_images;          /* per request (64) */
    int max_texts;           /* per request (64) */
    int max_text_bytes;      /* per text (4096) */
    size_t max_image_bytes;  /* per image frame (16 MiB) */
    size_t max_request_bytes;/* all data frames of a request (64 MiB) */
    uint64_t max_pixels;     /* per decoded image (vit_options, 64 Mpixel) */
    uint64_t max_request_pixels; /* all images of a request, width x
                                    height by their headers, refused
                                    before decoding (32 Mpixel; 0: no
                                    limit) */
    int heartbeat_ms;        /* with a broker (1000) */
    const char *metrics_bind;  /* an HTTP endpoint (tcp://HOST:PORT, port *
                                  for any) serving GET with the metrics in
                                  Prometheus text; NULL for none */
    /* CURVE (Z85 keys, 40 characters). Direct (bind): curve_secret_key
     * is the server's, and puts CURVE on the socket facing clients;
     * allow_keys_dir then admits only the client public keys listed in
     * its files. With a broker (connect): curve_server_key is the
     * broker's backend public key, and the worker's own key pair,
     * curve_public_key and curve_secret_key, must be in the broker's
     * allow-list of workers. */
    const char *curve_secret_key;
    const char *allow_keys_dir;
    const char *curve_server_key;
    const char *curve_public_key;
    const char *index_path;  /* an embedding index (vit index) to search
                                and add to; NULL: none */
    int index_precision;     /* its in-memory matrix: 0 fp32, 1 fp16,
                                2 int8 (idx_precision) */
    /* Read by the worker: 0 serve, 1 or more drain (finish what was
     * accepted, refuse new work with shutting_down) and return. */
    volatile sig_atomic_t *stop;
    vit_log_fn log;
    void *log_ud;
} vit_serve_options;

vit_serve_options vit_serve_options_default(void);

/* Loads the model, serves until *opt->stop is set and the accepted work is
 * answered, and returns VIT_OK; or a failure to start (bad model, endpoint
 * in use) with a message. */
vit_status vit_serve(const vit_serve_options *opt, vit_error *err);

typedef struct {
    const char *frontend;   /* clients connect here */
    const char *backend;    /* workers connect here */
    int heartbeat_ms;       /* (1000) */
    int deadline_ms;        /* default per-request deadline (30000) */
    size_t max_request_bytes; /* (64 MiB) ZMQ_MAXMSGSIZE on the frontend */
    int max_queue;          /* requests waiting for a worker (10000) */
    size_t max_queue_bytes; /* bytes of the requests held (1 GiB; one
                               request is always taken) */
    const char *curve_secret_key; /* CURVE on the frontend (Z85) */
    const char *allow_keys_dir;   /* with it: admit only these clients */
    /* CURVE on the backend: only the workers whose public keys are listed
     * in the files of allow_worker_keys_dir are admitted. The backend's
     * secret key is backend_curve_secret_key, or when that is NULL
     * curve_secret_key. */
    const char *allow_worker_keys_dir;
    const char *backend_curve_secret_key;
    volatile sig_atomic_t *stop;  /* nonzero: return */
    vit_log_fn log;
    void *log_ud;
} vit_broker_options;

vit_broker_options vit_broker_options_default(void);
vit_status vit_broker(const vit_broker_options *opt, vit_error *err);

/* ---- the HTTP gateway (service/http.c) ----
 *
 * An HTTP/JSON front door to a worker or a broker: it answers HTTP
 * requests (the routes README.md's "HTTP" section lists) by making
 * requests of the client protocol (service/client.h) to `connect`. It runs
 * on libmicrohttpd's threads, a thread per connection, each request with a
 * client of its own taken from a pool; vit_http_start returns once it
 * listens. Nothing is printed: the caller learns the port from
 * vit_http_port and stops it with vit_http_stop. */

/* Turns an image reference of a JSON request (a data: URI, bare base64,
 * or an http(s) URL) into its bytes, at most max_bytes of them: 0 and a
 * malloc'd *data, or -1 with a sentence in `why`. Called from the
 * gateway's threads at once. */
typedef int (*vit_http_fetch_fn)(void *ud, const char *ref, size_t max_bytes,
                                 unsigned char **data, size_t *n, char *why,
                                 size_t why_size);

typedef struct vit_http_options {
    const char *listen;      /* HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any
                                free one); required */
    const char *connect;     /* a worker's --bind or a broker's --frontend;
                                required */
    const char *api_key;     /* when set, every route but /health needs
                                `Authorization: Bearer KEY` */
    size_t max_body_bytes;   /* a request body past it is refused, 413,
                                while it is read (96 MiB: room for
                                64 MiB of images in base64) */
    int timeout_ms;          /* per try of a ZeroMQ request (30000) */
    int retries;             /* tries after one that timed out (0) */
    int max_connections;     /* connections at once (256); past it a new
                                connection is closed at once */
    int connection_timeout_s; /* a connection idle this long is closed
                                (60) */
    /* CURVE to the endpoint, as vit_client_options. */
    const char *curve_server_key;
    const char *curve_public_key;
    const char *curve_secret_key;
    /* Image references in JSON bodies; NULL: every one is refused (400)
     * and images come as multipart uploads only. */
    vit_http_fetch_fn fetch;
    void *fetch_ud;
} vit_http_options;

vit_http_options vit_http_options_default(void);

typedef struct vit_http vit_http;

/* Listens and serves until vit_http_stop; fails (port in use, a bad
 * address) with a message. */
vit_status vit_http_start(const vit_http_options *opt, vit_http **out,
                          vit_error *err);
/* The port it listens on (what port 0 became). */
int vit_http_port(const vit_http *h);
/* Stops accepting connections, waits up to drain_ms for the requests in
 * flight to be answered, then closes everything and frees `h`. */
void vit_http_stop(vit_http *h, int drain_ms);

#ifdef __cplusplus
}
#endif
#endif
