/*
 * The C client of vit's ZeroMQ service: one request at a time to a worker
 * or a broker, as service/PROTOCOL.md specifies, with the Lazy Pirate
 * pattern: a request that gets no reply within the timeout is sent again on
 * a fresh socket, a bounded number of times (operations are idempotent, and
 * a fresh socket never receives the late reply to an old one). A worked
 * example, asking for the top 3 labels of one PNG file's bytes:
 *
 *     vit_client *c;
 *     vit_error err;
 *     vit_client_options o = vit_client_options_default();
 *     if (vit_client_new("tcp://127.0.0.1:5555", &o, &c, &err) != VIT_OK)
 *         return fail(err.msg);
 *     vit_blob img = {png_bytes, png_size};
 *     vit_reply r;
 *     if (vit_client_call(c, "{\"op\":\"classify\",\"top_k\":3}", &img, 1,
 *                         &r, &err) == VIT_OK) {
 *         puts(r.body);  // {"ok":true,"op":"classify","results":[...]}
 *         vit_reply_free(&r);
 *     }
 *     vit_client_free(c);
 *
 * A client is used by one thread at a time; make one per thread.
 */
#ifndef VIT_CLIENT_H
#define VIT_CLIENT_H

#include "vit/vit.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int timeout_ms;   /* wait for a reply this long per try (5000) */
    int retries;      /* tries after the first that timed out (2) */
    const char *service;  /* the model to route to; NULL or "" for any */
    /* CURVE: the server's public key (Z85, 40 characters) turns it on; the
     * client's own key pair may be NULL for a fresh one per connection
     * (which only a server without an allow-list admits). */
    const char *curve_server_key;
    const char *curve_public_key;
    const char *curve_secret_key;
} vit_client_options;

vit_client_options vit_client_options_default(void);

typedef struct vit_client vit_client;

/* A run of bytes the caller owns (an image file's contents). */
typedef struct {
    const void *data;
    size_t size;
} vit_blob;

/* A reply. `body` is the JSON object of frame 5, NUL-terminated; `data`
 * the binary frames after it (embeddings: little-endian float32, at no
 * particular alignment, so copy them out before reading them as floats),
 * `service` the name of the model that answered. All owned by the reply;
 * free with vit_reply_free. */
typedef struct {
    char *body;
    char *service;
    vit_blob *data;
    int n_data;
    void *priv_;
} vit_reply;

/* Creates a client for `endpoint` (a worker's --bind or a broker's
 * --frontend). `opt` may be NULL (defaults). Nothing is sent yet. */
vit_status vit_client_new(const char *endpoint, const vit_client_options *opt,
                          vit_client **out, vit_error *err);
void vit_client_free(vit_client *c);

/* Sends one request, `header` (a JSON object's text, see PROTOCOL.md 2.3)
 * and `n` data frames, and waits for its reply, retrying as described
 * above. Returns VIT_OK when a reply arrived, which may be an error reply
 * ("ok": false; see vit_reply_error); VIT_E_IO when none came after all
 * tries, or VIT_E_ARG/VIT_E_NOMEM. */
vit_status vit_client_call(vit_client *c, const char *header,
                           const vit_blob *frames, int n, vit_reply *out,
                           vit_error *err);
void vit_reply_free(vit_reply *r);

/* When `r` is an error reply, writes its code (e.g. "bad_image") and
 * message and returns 1, with *index the offending item or -1; returns 0
 * for a success. A body that is not valid JSON counts as an error with the
 * code "internal". Any output pointer may be NULL. */
int vit_reply_error(const vit_reply *r, char code[32], char *msg,
                    size_t msg_size, int *index);

/* Item keys (ids, file paths) are byte strings, and JSON strings are
 * UTF-8: a key that is not valid UTF-8 travels as {"base64": "..."}
 * (PROTOCOL.md 3.5), in requests and replies alike. vit_key_to_json makes
 * the JSON value for a key (a new jansson reference; NULL when out of
 * memory); vit_key_from_json reads either form into a malloc'd,
 * NUL-terminated copy (NULL when it is neither form, empty, over `max`
 * bytes, or holds a NUL byte). */
struct json_t;
struct json_t *vit_key_to_json(const char *key);
char *vit_key_from_json(struct json_t *v, size_t max);

#ifdef __cplusplus
}
#endif
#endif
