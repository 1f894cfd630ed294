/*
 * What the files of `vit client` share (cli/client.c: the options, the
 * image and text commands; cli/client_index.c: search and the index
 * commands): the state of one run, and the helpers both use.
 */
#ifndef CLI_CLIENT_H
#define CLI_CLIENT_H

#include "cli/cli.h"
#include "service/client.h"

#include <jansson.h>
#include <string.h>

#define MAX_FILE_BYTES ((size_t)256 << 20)
#define DEFAULT_BATCH 8

/* The most bytes a key takes in a header: as a JSON string (escapes
 * aside), or as {"base64": ...} when it is not UTF-8. */
static inline size_t client_key_wire_bytes(const char *key)
{
    return strlen(key) / 3 * 4 + 28;
}

/* One image queued for a request. */
typedef struct {
    char *path;
    unsigned char *bytes;
    size_t size;
    char *key;  /* index-add: the item's id, the file's real path */
} pending;

typedef enum { OP_CLASSIFY, OP_MATCH, OP_EMBED, OP_INDEX_ADD } client_op;

/* index-add's requests stay under the server's 64 KiB header. */
#define MAX_ID_BYTES (48 << 10)

typedef struct {
    vit_client *c;
    cli_format fmt;
    client_op op;
    int top_k, logits, batch, normalize;
    char **texts;  /* match and embed --text, classify --labels */
    int n_texts;
    const char *template;  /* classify --template */
    pending *q;
    int nq;
    size_t q_bytes, q_id_bytes;  /* what the queued images take */
    size_t max_bytes;            /* index-add: the server's per request */
    long added;                  /* index-add: items committed */
    long long items;             /* index-add: in the index after */
    /* embed output: jsonl lines, or npy rows kept for the end */
    FILE *out;
    int npy, dim;
    float *rows;
    size_t n_rows, cap_rows;
    int failed, dead, oom;
} run;


/* The usage lines of `vit client`, and its usage errors. */
extern const char client_usage_line[];
#define usage_error(...) \
    cli_usage_error("client", client_usage_line, __VA_ARGS__)

/* Reads a whole file (at most MAX_FILE_BYTES); NULL with *why set on
 * failure. */
unsigned char *client_read_file(const char *path, size_t *n, const char **why);
/* "image 3: not a PNG" -> "not a PNG", so the message reads as the local
 * command's. */
const char *client_strip_index(const char *msg);
/* A JSON number as a float; NaN for anything else. */
float client_jf(json_t *x);
/* Image inputs through the local commands' walker: files and directories,
 * sent in requests of up to r->batch. */
int client_images_main(run *r, char **paths, int n_paths);

/* cli/client_index.c: search, index-add, index-remove and index-stats. */
int client_search_cmd(run *r, int argc, char **argv);
int client_index_add_cmd(run *r, int argc, char **argv);
int client_index_remove_cmd(run *r, int argc, char **argv);
int client_stats_cmd(run *r, int argc, char **argv);

#endif
