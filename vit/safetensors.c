/*
 * Checkpoint weights: safetensors files mapped into memory and validated
 * before anything in them is trusted, a single file or a sharded set
 * (model.safetensors.index.json), and the lookup of a tensor by name with
 * its expected shape. F32 tensors are used in place from the mapping; F16
 * and BF16 ones are widened to float32 once, at load, into buffers this
 * module owns.
 *
 * The format: 8 bytes little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
 * "__metadata__": {...}}, then the data section, offsets relative to it.
 */
#include "vit/vit_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Large enough for any real header (a 70B-parameter model's is ~1 MB) and
 * small enough that a hostile length cannot make us allocate much. */
#define ST_MAX_HEADER (100u << 20)

static const struct {
    const char *name;
    int size;
    vit__dtype dtype;
} st_dtypes[] = {
    {"F32", 4, VIT_DT_F32},   {"F16", 2, VIT_DT_F16},
    {"BF16", 2, VIT_DT_BF16}, {"F64", 8, VIT_DT_OTHER},
    {"I64", 8, VIT_DT_OTHER}, {"U64", 8, VIT_DT_OTHER},
    {"I32", 4, VIT_DT_OTHER}, {"U32", 4, VIT_DT_OTHER},
    {"I16", 2, VIT_DT_OTHER}, {"U16", 2, VIT_DT_OTHER},
    {"I8", 1, VIT_DT_OTHER},  {"U8", 1, VIT_DT_OTHER},
    {"BOOL", 1, VIT_DT_OTHER}, {"F8_E4M3", 1, VIT_DT_OTHER},
    {"F8_E5M2", 1, VIT_DT_OTHER},
};

static int st_cmp_offset(const void *a, const void *b)
{
    const vit__tensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static int st_cmp_name(const void *a, const void *b)
{
    return strcmp(((const vit__tensor *)a)->name,
                  ((const vit__tensor *)b)->name);
}

/* Parses one tensor entry of the header; `data`/`dlen` is the data
 * section. */
static vit_status st_parse_entry(const char *path, const char *name,
                                 json_t *e, const uint8_t *data, size_t dlen,
                                 vit__tensor *t, vit_error *err)
{
    json_t *jd = json_object_get(e, "dtype");
    json_t *js = json_object_get(e, "shape");
    json_t *jo = json_object_get(e, "data_offsets");
    if (!json_is_object(e) || !json_is_string(jd) || !json_is_array(js) ||
        !json_is_array(jo) || json_array_size(jo) != 2)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "%s: tensor '%s' lacks dtype, shape or data_offsets",
                         path, name);
    const char *ds = json_string_value(jd);
    int esize = 0;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (strcmp(ds, st_dtypes[i].name) == 0) {
            esize = st_dtypes[i].size;
            t->dtype = st_dtypes[i].dtype;
        }
    if (!esize)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "%s: tensor '%s' has unknown dtype '%s'", path, name,
                         ds);
    size_t nd = json_array_size(js);
    if (nd > VIT_MAX_DIMS)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "%s: tensor '%s' has %zu dimensions", path, name, nd);
    uint64_t count = 1;
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        json_int_t v = json_is_integer(d) ? json_integer_value(d) : -1;
        if (v < 0 || (v > 0 && count > (UINT64_MAX >> 4) / (uint64_t)v))
            return vit__fail(err, VIT_E_CHECKPOINT,
                             "%s: tensor '%s' has a bad shape", path, name);
        t->shape[i] = v;
        count *= (uint64_t)v;
    }
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    json_int_t b = json_is_integer(jb) ? json_integer_value(jb) : -1;
    json_int_t en = json_is_integer(je) ? json_integer_value(je) : -1;
    if (b < 0 || en < b || (uint64_t)en > dlen)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "%s: tensor '%s' data_offsets [%lld, %lld] lie outside "
                         "the %zu-byte data section",
                         path, name, (long long)b, (long long)en, dlen);
    if ((uint64_t)(en - b) != count * (uint64_t)esize)
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "%s: tensor '%s' holds %lld bytes but its shape and "
                         "dtype %s need %llu",
                         path, name, (long long)(en - b), ds,
                         (unsigned long long)(count * (uint64_t)esize));
    t->name = strdup(name);
    if (!t->name)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    t->data = data + b;
    t->nbytes = (size_t)(en - b);
    t->count = count;
    return VIT_OK;
}

/* Maps `path` and appends its tensors to w->tensors. */
static vit_status st_open_file(vit__weights *w, const char *path,
                               vit_error *err)
{
    vit_status st = VIT_OK;
    json_t *root = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vit__fail(err, VIT_E_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = vit__fail(err, VIT_E_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        st = vit__fail(err, VIT_E_CHECKPOINT,
                       "%s: file is %zu bytes, too short for a safetensors "
                       "header (truncated?)",
                       path, size);
        goto out;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        st = vit__fail(err, VIT_E_IO, "%s: mmap: %s", path, strerror(errno));
        goto out;
    }
    vit__mapping *mp = realloc(w->maps, (w->nmaps + 1) * sizeof *w->maps);
    if (!mp) {
        munmap(map, size);
        st = vit__fail(err, VIT_E_NOMEM, "out of memory");
        goto out;
    }
    w->maps = mp;
    w->maps[w->nmaps].addr = map;
    w->maps[w->nmaps].len = size;
    w->nmaps++;

    const uint8_t *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen > size - 8 || hlen > ST_MAX_HEADER) {
        st = vit__fail(err, VIT_E_CHECKPOINT,
                       "%s: header length %llu runs past the end of the "
                       "%zu-byte file (truncated or not safetensors)",
                       path, (unsigned long long)hlen, size);
        goto out;
    }
    json_error_t je;
    root = json_loadb((const char *)p + 8, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        st = vit__fail(err, VIT_E_CHECKPOINT,
                       "%s: safetensors header is not a JSON object%s%s", path,
                       root ? "" : ": ", root ? "" : je.text);
        goto out;
    }
    const uint8_t *data = p + 8 + hlen;
    size_t dlen = size - 8 - hlen;
    size_t first = w->ntensors;
    size_t extra = json_object_size(root);
    vit__tensor *nt = realloc(w->tensors, (first + extra + 1) * sizeof *nt);
    if (!nt) {
        st = vit__fail(err, VIT_E_NOMEM, "out of memory");
        goto out;
    }
    w->tensors = nt;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        vit__tensor *t = &w->tensors[w->ntensors];
        memset(t, 0, sizeof *t);
        if ((st = st_parse_entry(path, key, val, data, dlen, t, err)))
            goto out;
        w->ntensors++;
    }
    /* Overlapping ranges would let one tensor's bytes pass for another's. */
    size_t n = w->ntensors - first;
    qsort(w->tensors + first, n, sizeof *w->tensors, st_cmp_offset);
    for (size_t i = first + 1; i < w->ntensors; i++) {
        const vit__tensor *a = &w->tensors[i - 1], *b = &w->tensors[i];
        if (b->data < a->data + a->nbytes) {
            st = vit__fail(err, VIT_E_CHECKPOINT,
                           "%s: tensors '%s' and '%s' overlap in the data "
                           "section",
                           path, a->name, b->name);
            goto out;
        }
    }
out:
    json_decref(root);
    close(fd);
    return st;
}

static int path_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Opens the shards a model.safetensors.index.json names. */
static vit_status st_open_index(vit__weights *w, const char *dir,
                                const char *index, vit_error *err)
{
    json_error_t je;
    json_t *root = json_load_file(index, 0, &je);
    json_t *map = root ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(map)) {
        json_decref(root);
        return vit__fail(err, VIT_E_CHECKPOINT,
                         "%s: not a safetensors index (%s)", index,
                         root ? "no weight_map object" : je.text);
    }
    /* Each shard once, in the order first named; names are plain file
     * names inside the model directory. */
    vit_status st = VIT_OK;
    const char **seen = NULL;
    size_t nseen = 0;
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val)
    {
        const char *f = json_string_value(val);
        if (!f || !*f || strchr(f, '/') || strcmp(f, "..") == 0) {
            st = vit__fail(err, VIT_E_CHECKPOINT,
                           "%s: bad shard file name for '%s'", index, key);
            break;
        }
        size_t i = 0;
        while (i < nseen && strcmp(seen[i], f) != 0)
            i++;
        if (i < nseen)
            continue;
        const char **ns = realloc(seen, (nseen + 1) * sizeof *ns);
        if (!ns) {
            st = vit__fail(err, VIT_E_NOMEM, "out of memory");
            break;
        }
        seen = ns;
        seen[nseen++] = f;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, f);
        if ((st = st_open_file(w, path, err)))
            break;
    }
    free(seen);
    if (st == VIT_OK) {
        qsort(w->tensors, w->ntensors, sizeof *w->tensors, st_cmp_name);
        json_object_foreach(map, key, val)
        {
            vit__tensor k = {.name = (char *)key};
            if (!bsearch(&k, w->tensors, w->ntensors, sizeof k, st_cmp_name)) {
                st = vit__fail(err, VIT_E_CHECKPOINT,
                               "%s: tensor '%s' is not in shard %s", index,
                               key, json_string_value(val));
                break;
            }
        }
    }
    json_decref(root);
    return st;
}

/* Sorts the tensors w holds after st (VIT_OK: they were read) by name,
 * refusing a name stored twice; gives w to *out, or frees it. */
static vit_status st_finish(vit__weights *w, const char *dir, vit_status st,
                            vit__weights **out, vit_error *err)
{
    if (st == VIT_OK) {
        qsort(w->tensors, w->ntensors, sizeof *w->tensors, st_cmp_name);
        for (size_t i = 1; i < w->ntensors; i++)
            if (strcmp(w->tensors[i - 1].name, w->tensors[i].name) == 0) {
                st = vit__fail(err, VIT_E_CHECKPOINT,
                               "%s: tensor '%s' is stored twice", dir,
                               w->tensors[i].name);
                break;
            }
    }
    if (st != VIT_OK) {
        vit__weights_free(w);
        return st;
    }
    *out = w;
    return VIT_OK;
}

vit_status vit__weights_open(const char *dir, vit__weights **out,
                             vit_error *err)
{
    char single[4096], index[4096];
    snprintf(single, sizeof single, "%s/model.safetensors", dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    vit__weights *w = calloc(1, sizeof *w);
    if (!w)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    vit_status st;
    if (path_exists(single)) {
        st = st_open_file(w, single, err);
    } else if (path_exists(index)) {
        st = st_open_index(w, dir, index, err);
    } else {
        char bin[4096];
        snprintf(bin, sizeof bin, "%s/pytorch_model.bin", dir);
        if (path_exists(bin))
            st = vit__fail(
                err, VIT_E_UNSUPPORTED,
                "%s holds only pytorch_model.bin; vit reads safetensors. "
                "Download the model's model.safetensors (the hub has one "
                "for most models), or convert once in Python with the class "
                "config.json names: `ViTForImageClassification."
                "from_pretrained(DIR).save_pretrained(DIR)`",
                dir);
        else
            st = vit__fail(err, VIT_E_IO,
                           "%s: no model.safetensors or "
                           "model.safetensors.index.json",
                           dir);
    }
    return st_finish(w, dir, st, out, err);
}

vit_status vit__weights_open_file(const char *path, vit__weights **out,
                                  vit_error *err)
{
    vit__weights *w = calloc(1, sizeof *w);
    if (!w)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    return st_finish(w, path, st_open_file(w, path, err), out, err);
}

vit_status vit__weights_add(vit__weights *w, const char *name,
                            vit__dtype dtype, int ndim, const int64_t *shape,
                            const void *data, vit_error *err)
{
    vit__tensor *nt = realloc(w->tensors, (w->ntensors + 1) * sizeof *nt);
    if (!nt)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    w->tensors = nt;
    vit__tensor *t = &w->tensors[w->ntensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    t->count = 1;
    for (int i = 0; i < ndim; i++)
        t->count *= (uint64_t)(t->shape[i] = shape[i]);
    t->data = data;
    t->nbytes = t->count * (dtype == VIT_DT_F32 ? 4 : 2);
    w->ntensors++;
    /* Insertion keeps the table sorted for vit__weights_find. */
    for (size_t i = w->ntensors - 1;
         i > 0 && st_cmp_name(&w->tensors[i - 1], &w->tensors[i]) > 0; i--) {
        vit__tensor tmp = w->tensors[i];
        w->tensors[i] = w->tensors[i - 1];
        w->tensors[i - 1] = tmp;
    }
    return VIT_OK;
}

void vit__weights_free(vit__weights *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->ntensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    for (size_t i = 0; i < w->nmaps; i++)
        munmap(w->maps[i].addr, w->maps[i].len);
    free(w->maps);
    for (size_t i = 0; i < w->nowned; i++)
        free(w->owned[i]);
    free(w->owned);
    free(w);
}

const vit__tensor *vit__weights_find(const vit__weights *w, const char *name)
{
    vit__tensor k = {.name = (char *)name};
    return bsearch(&k, w->tensors, w->ntensors, sizeof k, st_cmp_name);
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | man << 13;
    } else if (exp == 0) {
        /* Zero or subnormal: value = man * 2^-24, exact in float32. */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float *vit__weights_alloc(vit__weights *w, size_t n, vit_error *err)
{
    float **no = realloc(w->owned, (w->nowned + 1) * sizeof *no);
    float *f = no ? malloc((n ? n : 1) * sizeof *f) : NULL;
    if (no)
        w->owned = no;
    if (!f) {
        vit__fail(err, VIT_E_NOMEM, "out of memory (%zu floats of weights)",
                  n);
        return NULL;
    }
    w->owned[w->nowned++] = f;
    return f;
}

const float *vit__weights_get(vit__weights *w, const char *name, int ndim,
                              const int64_t *shape, vit_error *err)
{
    const vit__tensor *t = vit__weights_find(w, name);
    if (!t) {
        vit__fail(err, VIT_E_CHECKPOINT, "checkpoint has no tensor '%s'",
                  name);
        return NULL;
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char want[128] = "", got[128] = "";
        for (int i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld",
                     i ? ", " : "", (long long)shape[i]);
        for (int i = 0; i < t->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld",
                     i ? ", " : "", (long long)t->shape[i]);
        vit__fail(err, VIT_E_CHECKPOINT,
                  "tensor '%s' has shape [%s]; the config implies [%s]", name,
                  got, want);
        return NULL;
    }
    if (t->dtype == VIT_DT_F32 && ((uintptr_t)t->data & 3) == 0)
        return (const float *)t->data;
    if (t->dtype == VIT_DT_OTHER) {
        vit__fail(err, VIT_E_CHECKPOINT,
                  "tensor '%s' is not stored as F32, F16 or BF16", name);
        return NULL;
    }
    float *f = vit__weights_alloc(w, t->count, err);
    if (!f)
        return NULL;
    const uint8_t *p = t->data;
    for (uint64_t i = 0; i < t->count; i++) {
        if (t->dtype == VIT_DT_F32) {
            memcpy(&f[i], p + 4 * i, 4);
        } else {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            if (t->dtype == VIT_DT_F16) {
                f[i] = f16_to_f32(h);
            } else {
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&f[i], &bits, 4);
            }
        }
    }
    return f;
}

void vit__weights_release(vit__weights *w, const float *data)
{
    for (size_t i = 0; i < w->nowned; i++)
        if (w->owned[i] == data) {
            free(w->owned[i]);
            w->owned[i] = NULL;
            return;
        }
    /* In place in a mapping: hand the whole pages it covers back to the
     * kernel (clean file pages; were they read again, they would come
     * back from the file). */
    for (size_t i = 0; i < w->ntensors; i++) {
        const vit__tensor *t = &w->tensors[i];
        if ((const void *)t->data != (const void *)data)
            continue;
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t a = ((uintptr_t)t->data + page - 1) & ~(page - 1);
        uintptr_t b = ((uintptr_t)t->data + t->nbytes) & ~(page - 1);
        if (b > a && madvise((void *)a, b - a, MADV_DONTNEED) == 0)
            w->dropped += b - a;
        return;
    }
}
