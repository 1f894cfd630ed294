/*
 * The fingerprint that ties an index to the model whose vectors it holds.
 * Vectors from two different models live in unrelated spaces, so an index
 * refuses a query or an add from any model but its own; this file decides
 * what "its own" means, cheaply: hashing every byte of a multi-gigabyte
 * checkpoint on each search would cost more than the search. What is read
 * is listed in index.h (idx_model_fingerprint) and in the README.
 */
#include "index/index.h"
#include "vit/fail.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <unistd.h>

#define MIB (1u << 20)
/* safetensors caps its JSON header at 100 MB; past that it is no header. */
#define MAX_HEADER (100u * 1000u * 1000u)

/* The library's one helper (vit/fail.h), by the name this file uses. */
#define fail vit__fail

/* dir/name into out; -1 when it does not fit. */
static int join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Copies at most size - 1 bytes and terminates. */
static void copy(char *out, size_t size, const char *s)
{
    size_t n = strlen(s);
    if (n >= size)
        n = size - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

/* Feeds `n` bytes of f from `off` (fewer at the end of the file). */
static int hash_range(idx_sha256 *c, FILE *f, uint64_t off, uint64_t n,
                      uint8_t *buf)
{
    if (fseeko(f, (off_t)off, SEEK_SET) != 0)
        return -1;
    while (n > 0) {
        size_t want = n < MIB ? (size_t)n : MIB;
        size_t got = fread(buf, 1, want, f);
        idx_sha256_update(c, buf, got);
        if (got < want)
            return ferror(f) ? -1 : 0;
        n -= got;
    }
    return 0;
}

/* A length-prefixed field, so that ("ab", "c") and ("a", "bc") differ. */
static void hash_field(idx_sha256 *c, const void *p, size_t n)
{
    uint64_t len = n;
    idx_sha256_update(c, &len, sizeof len);
    idx_sha256_update(c, p, n);
}

static idx_status hash_weights(idx_sha256 *c, const char *dir,
                               const char *name, uint8_t *buf, idx_error *err)
{
    char path[PATH_MAX];
    if (join(path, sizeof path, dir, name) != 0)
        return fail(err, IDX_E_IO, "%s/%s: path too long", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, IDX_E_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return fail(err, IDX_E_IO, "%s: %s", path, strerror(errno));
    }
    uint64_t size = (uint64_t)st.st_size;
    hash_field(c, name, strlen(name));
    idx_sha256_update(c, &size, sizeof size);
    uint8_t len8[8] = {0};
    uint64_t hlen = 0;
    if (fread(len8, 1, 8, f) == 8)
        for (int i = 7; i >= 0; i--)
            hlen = hlen << 8 | len8[i];
    if (hlen > MAX_HEADER || hlen > size - 8)
        hlen = 0;  /* not safetensors as we know it: the ends still count */
    int bad = hash_range(c, f, 0, 8 + hlen, buf) ||
              hash_range(c, f, 0, MIB, buf) ||
              hash_range(c, f, size > MIB ? size - MIB : 0, MIB, buf);
    fclose(f);
    if (bad)
        return fail(err, IDX_E_IO, "%s: read error", path);
    return IDX_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The shard names of a sharded checkpoint, sorted and unique. */
static idx_status shard_names(const char *index_path, char ***out, size_t *n,
                              idx_error *err)
{
    json_error_t je;
    json_t *j = json_load_file(index_path, 0, &je);
    if (!j)
        return fail(err, IDX_E_IO, "%s: %s", index_path, je.text);
    json_t *map = json_object_get(j, "weight_map");
    size_t cap = json_object_size(map);
    char **v = calloc(cap ? cap : 1, sizeof *v);
    size_t k = 0;
    const char *key;
    json_t *val;
    idx_status st = v ? IDX_OK : IDX_E_NOMEM;
    json_object_foreach(map, key, val)
    {
        if (st != IDX_OK || !json_is_string(val))
            continue;
        if (!(v[k] = strdup(json_string_value(val))))
            st = IDX_E_NOMEM;
        else
            k++;
    }
    json_decref(j);
    if (st != IDX_OK) {
        for (size_t i = 0; i < k; i++)
            free(v[i]);
        free(v);
        return fail(err, st, "out of memory");
    }
    qsort(v, k, sizeof *v, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < k; i++) {
        if (u && strcmp(v[u - 1], v[i]) == 0)
            free(v[i]);
        else
            v[u++] = v[i];
    }
    *out = v;
    *n = u;
    return IDX_OK;
}

idx_status idx_model_fingerprint(const char *dir, const char *architecture,
                                 int dim, idx_model *out, idx_error *err)
{
    if (!dir || !architecture || dim <= 0)
        return fail(err, IDX_E_ARG, "no model directory, architecture or "
                                    "dimension");
    char abs[PATH_MAX];
    if (!realpath(dir, abs))
        return fail(err, IDX_E_IO, "%s: %s", dir, strerror(errno));
    uint8_t *buf = malloc(MIB);
    if (!buf)
        return fail(err, IDX_E_NOMEM, "out of memory");
    idx_sha256 c;
    idx_sha256_init(&c);
    hash_field(&c, architecture, strlen(architecture));
    int32_t d = dim;
    idx_sha256_update(&c, &d, sizeof d);

    /* The small files that change what a vector means, whole. */
    static const char *const small[] = {
        "config.json", "preprocessor_config.json", "tokenizer.json",
        "vocab.json", "merges.txt", "open_clip_config.json",
    };
    idx_status st = IDX_OK;
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof small / sizeof *small && st == IDX_OK; i++) {
        uint8_t h[32];
        if (join(path, sizeof path, abs, small[i]) != 0 ||
            access(path, R_OK) != 0)
            continue;
        st = idx_sha256_file(path, h, err);
        if (st == IDX_OK) {
            hash_field(&c, small[i], strlen(small[i]));
            idx_sha256_update(&c, h, sizeof h);
        }
    }

    /* One file (open_clip's when there is no config.json), or shards. */
    const char *single = "model.safetensors";
    if (join(path, sizeof path, abs, "config.json") == 0 &&
        access(path, F_OK) != 0)
        single = "open_clip_model.safetensors";
    if (st == IDX_OK && join(path, sizeof path, abs, single) == 0 &&
        access(path, R_OK) == 0) {
        st = hash_weights(&c, abs, single, buf, err);
    } else if (st == IDX_OK) {
        char **names = NULL;
        size_t n = 0;
        if (join(path, sizeof path, abs, "model.safetensors.index.json") ||
            access(path, R_OK) != 0)
            st = fail(err, IDX_E_IO, "%s: no model.safetensors", dir);
        else
            st = shard_names(path, &names, &n, err);
        for (size_t i = 0; i < n; i++) {
            if (st == IDX_OK)
                st = hash_weights(&c, abs, names[i], buf, err);
            free(names[i]);
        }
        free(names);
    }
    free(buf);
    if (st != IDX_OK)
        return st;

    uint8_t h[32];
    idx_sha256_final(&c, h);
    idx_model m;
    memset(&m, 0, sizeof m);
    idx_hex(m.fingerprint, h, 32);
    const char *slash = strrchr(abs, '/');
    copy(m.name, sizeof m.name, slash && slash[1] ? slash + 1 : abs);
    copy(m.architecture, sizeof m.architecture, architecture);
    copy(m.dir, sizeof m.dir, abs);
    m.dim = dim;
    snprintf(m.id, sizeof m.id, "%s/%s@%.16s", m.name, m.architecture,
             m.fingerprint);
    *out = m;
    return IDX_OK;
}
