/*
 * Private declarations shared by the files of vit/: the model and state
 * structs, the checkpoint loader, the kernels and the encoder. Nothing here
 * is API; tests include it to check internals against the reference.
 */
#ifndef VIT_IMPL_H
#define VIT_IMPL_H

#include "vit/vit.h"
#include "imgio/imgio.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* For bugs only: bad input returns a status instead. */
#define VIT_ASSERT(c)                                                        \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,       \
                    __LINE__, #c);                                           \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* Sets err->msg (when err is not NULL) and returns st. */
vit_status vit__fail(vit_error *err, vit_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

/* ---- checkpoint weights (safetensors.c) ---- */

#define VIT_MAX_DIMS 8

typedef enum { VIT_DT_F32, VIT_DT_F16, VIT_DT_BF16, VIT_DT_OTHER } vit__dtype;

typedef struct {
    char *name;
    vit__dtype dtype;
    int ndim;
    int64_t shape[VIT_MAX_DIMS];
    uint64_t count;       /* elements */
    const uint8_t *data;  /* inside a mapping */
    size_t nbytes;
} vit__tensor;

typedef struct {
    void *addr;
    size_t len;
} vit__mapping;

/* All tensors of a checkpoint (one file or every shard), sorted by name. */
typedef struct {
    vit__tensor *tensors;
    size_t ntensors;
    vit__mapping *maps;
    size_t nmaps;
    float **owned;  /* float32 copies of F16/BF16/unaligned tensors */
    size_t nowned;
} vit__weights;

/* Maps and validates DIR/model.safetensors or the shards its index names. */
vit_status vit__weights_open(const char *dir, vit__weights **out,
                             vit_error *err);
void vit__weights_free(vit__weights *w);
const vit__tensor *vit__weights_find(const vit__weights *w, const char *name);

/* The float32 data of tensor `name`, which must have exactly `shape`: in
 * place for aligned F32, else a copy the weights own. NULL with `err` set
 * when missing, misshapen or of another dtype. */
const float *vit__weights_get(vit__weights *w, const char *name, int ndim,
                              const int64_t *shape, vit_error *err);
