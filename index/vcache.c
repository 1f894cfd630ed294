/*
 * The vector cache: a copy of an index's vectors in one contiguous file
 * beside it (PATH-vectors), so that a process loading the index reads them
 * at the speed of the page cache instead of stepping through a million
 * SQLite rows. SQLite stays the only truth. The cache is stamped with the
 * index's identity (a random number made when the index was created) and
 * its generation (a counter every write transaction that changes a vector
 * bumps); it is used only while both match what the index says in the same
 * read transaction, and its ids must match the items' row for row. It is
 * written whole to a temporary file, synced and renamed over the old one,
 * so a crash leaves the old cache or the new, never half of one.
 *
 * Layout, little-endian:
 *     0  "VITVEC01"
 *     8  uint32 dim, uint32 0
 *    16  uint64 rows
 *    24  uint64 identity
 *    32  uint64 generation
 *    40  24 bytes of zeros
 *    64  float32 vectors, rows x dim
 *     .  int64 ids, rows, in ascending order
 */
#include "index/vcache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEAD 64
static const char magic[8] = {'V', 'I', 'T', 'V', 'E', 'C', '0', '1'};

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define VC_NATIVE 0 /* the file is little-endian; big-endian hosts skip it */
#else
#define VC_NATIVE 1
#endif

char *vc_path(const char *index_path)
{
    size_t n = strlen(index_path);
    char *p = malloc(n + sizeof "-vectors");
    if (p) {
        memcpy(p, index_path, n);
        memcpy(p + n, "-vectors", sizeof "-vectors");
    }
    return p;
}

static uint64_t get64(const unsigned char *b)
{
    uint64_t v;
    memcpy(&v, b, 8);
    return v;
}

int vc_open(const char *path, int dim, uint64_t identity, uint64_t gen,
            vc_map *out)
{
    memset(out, 0, sizeof *out);
    if (!VC_NATIVE || dim <= 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    unsigned char h[HEAD];
    struct stat sb;
    int ok = fstat(fd, &sb) == 0 && pread(fd, h, HEAD, 0) == HEAD &&
             memcmp(h, magic, 8) == 0;
    uint32_t d = 0;
    uint64_t rows = 0;
    if (ok) {
        memcpy(&d, h + 8, 4);
        rows = get64(h + 16);
        ok = d == (uint32_t)dim && get64(h + 24) == identity &&
             get64(h + 32) == gen &&
             rows <= ((uint64_t)sb.st_size - HEAD) /
                         ((uint64_t)dim * 4 + 8) &&
             (uint64_t)sb.st_size ==
                 HEAD + rows * ((uint64_t)dim * 4 + 8);
    }
    void *map = MAP_FAILED;
    if (ok && rows > 0)
        map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (!ok || (rows > 0 && map == MAP_FAILED))
        return -1;
    out->rows = (size_t)rows;
    out->base = rows > 0 ? map : NULL;
    out->len = rows > 0 ? (size_t)sb.st_size : 0;
    if (rows > 0) {
        /* Read front to back, once. */
        madvise(map, out->len, MADV_SEQUENTIAL);
        out->vecs = (const float *)((const char *)map + HEAD);
        out->ids = (const int64_t *)((const char *)map + HEAD +
                                     rows * (size_t)dim * 4);
    }
    return 0;
}

void vc_close(vc_map *m)
{
    if (m->base)
        munmap(m->base, m->len);
    memset(m, 0, sizeof *m);
}

struct vc_writer {
    FILE *f;
    char *tmp, *path;
    int dim;
    uint64_t identity, gen;
    int64_t *ids;
    size_t n, cap;
    int bad;
};

vc_writer *vc_writer_begin(const char *path, int dim, uint64_t identity,
                           uint64_t gen)
{
    if (!VC_NATIVE || dim <= 0)
        return NULL;
    vc_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    size_t n = strlen(path) + 32;
    w->path = strdup(path);
    w->tmp = malloc(n);
    if (!w->path || !w->tmp)
        goto fail;
    snprintf(w->tmp, n, "%s.tmp%ld", path, (long)getpid());
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !(w->f = fdopen(fd, "wb"))) {
        if (fd >= 0) {
            close(fd);
            unlink(w->tmp);
        }
        goto fail;
    }
    w->dim = dim;
    w->identity = identity;
    w->gen = gen;
    unsigned char h[HEAD] = {0};
    if (fwrite(h, 1, HEAD, w->f) != HEAD) /* written again at the end */
        w->bad = 1;
    return w;
fail:
    free(w->path);
    free(w->tmp);
    free(w);
    return NULL;
}

void vc_writer_add(vc_writer *w, size_t n, const int64_t *ids,
                   const float *vecs)
{
    if (!w || w->bad || n == 0)
        return;
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->n + n)
            cap *= 2;
        int64_t *v = realloc(w->ids, cap * sizeof *v);
        if (!v) {
            w->bad = 1;
            return;
        }
        w->ids = v;
        w->cap = cap;
    }
    memcpy(w->ids + w->n, ids, n * sizeof *ids);
    w->n += n;
    if (fwrite(vecs, (size_t)w->dim * sizeof(float), n, w->f) != n)
        w->bad = 1;
}

void vc_writer_abort(vc_writer *w)
{
    if (!w)
        return;
    fclose(w->f);
    unlink(w->tmp);
    free(w->ids);
    free(w->tmp);
    free(w->path);
    free(w);
}

int vc_writer_finish(vc_writer *w)
{
    if (!w)
        return -1;
    unsigned char h[HEAD] = {0};
    uint32_t d = (uint32_t)w->dim;
    uint64_t rows = w->n;
    memcpy(h, magic, 8);
    memcpy(h + 8, &d, 4);
    memcpy(h + 16, &rows, 8);
    memcpy(h + 24, &w->identity, 8);
    memcpy(h + 32, &w->gen, 8);
    int ok = !w->bad &&
             (w->n == 0 || fwrite(w->ids, sizeof *w->ids, w->n, w->f) == w->n) &&
             fflush(w->f) == 0 && pwrite(fileno(w->f), h, HEAD, 0) == HEAD &&
             fsync(fileno(w->f)) == 0;
    if (!ok) {
        vc_writer_abort(w);
        return -1;
    }
    ok = rename(w->tmp, w->path) == 0;
    if (!ok) {
        vc_writer_abort(w);
        return -1;
    }
    fclose(w->f);
    free(w->ids);
    free(w->tmp);
    free(w->path);
    free(w);
    return 0;
}
