/*
 * The image batch driver the image subcommands share (classify, zero-shot
 * classify, embed, match): it decodes and preprocesses inputs one at a time
 * into a batch buffer, copies .npy pixel arrays in as they are, hands each
 * full batch to the subcommand's callback, keeps the progress line, and
 * reports failed inputs without stopping. What a batch computes and prints
 * is the callback's business.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void input_failed(cli_batch *b, const char *path, const char *why)
{
    cli_progress_clear(&b->prog);
    cli_report(path, why);
    b->failed++;
    b->prog.done++;
    cli_progress_draw(&b->prog);
}

/* Runs the images in the batch; their results are the callback's to
 * print. */
static void flush(cli_batch *b)
{
    if (b->n == 0)
        return;
    vit_error err = {{0}};
    cli_progress_clear(&b->prog);
    vit_status st = b->run(b->ctx, b->pixels, b->n, b->paths, &err);
    if (st == VIT_E_NOMEM)
        b->oom = 1; /* said once, at the end */
    for (int i = 0; i < b->n; i++) {
        if (st != VIT_OK && !b->oom) {
            cli_report(b->paths[i], err.msg[0] ? err.msg : vit_status_str(st));
            b->failed++;
        }
        free(b->paths[i]);
    }
    b->prog.done += (size_t)b->n;
    b->n = 0;
    if (b->prog.tty)
        fflush(stdout); /* the results go to the screen before the line */
    cli_progress_draw(&b->prog);
}

/* Takes the image just written to pixels[n]; `path` is owned. */
static void commit(cli_batch *b, char *path)
{
    if (!path) {
        b->oom = 1;
        return;
    }
    b->paths[b->n++] = path;
    if (b->n == b->cap)
        flush(b);
}

static float *slot(cli_batch *b)
{
    return b->pixels + (size_t)b->n * b->chw;
}

static void do_image(cli_batch *b, const char *path)
{
    vit_error err = {{0}};
    vit_image img;
    vit_status st =
        vit_image_read(path, vit_model_options(b->model), &img, &err);
    if (st != VIT_OK) {
        input_failed(b, path, err.msg[0] ? err.msg : vit_status_str(st));
        return;
    }
    st = vit_preprocess(b->model, &img, 1, slot(b), &err);
    vit_image_free(&img);
    if (st != VIT_OK) {
        input_failed(b, path, err.msg[0] ? err.msg : vit_status_str(st));
        return;
    }
    commit(b, strdup(path));
}

static void shape_str(char *buf, size_t size, const int64_t *shape, int ndim)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, size - o, "(");
    for (int i = 0; i < ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "," : "",
                              (long long)shape[i]);
    if (o < size)
        snprintf(buf + o, size - o, ")");
}

static void do_npy(cli_batch *b, const char *path)
{
    vit_error err = {{0}};
    vit_array a;
    vit_status st = vit_npy_read(path, &a, &err);
    if (st != VIT_OK) {
        input_failed(b, path, err.msg[0] ? err.msg : vit_status_str(st));
        return;
    }
    const int64_t *s = a.shape;
    int C = b->info.channels, H = b->info.image_h, W = b->info.image_w;
    int64_t count = -1;
    if (a.ndim == 3 && s[0] == C && s[1] == H && s[2] == W)
        count = 1;
    else if (a.ndim == 4 && s[0] >= 0 && s[1] == C && s[2] == H && s[3] == W)
        count = s[0];
    if (count < 0) {
        char got[160], msg[320];
        shape_str(got, sizeof got, a.shape, a.ndim < 8 ? a.ndim : 8);
        snprintf(msg, sizeof msg,
                 "pixel array of shape %s; the model takes (%d,%d,%d) or "
                 "(N,%d,%d,%d)",
                 got, C, H, W, C, H, W);
        vit_array_free(&a);
        input_failed(b, path, msg);
        return;
    }
    /* The file was counted as one input; it holds `count`. */
    b->prog.total = b->prog.total + (size_t)count - 1;
    for (int64_t i = 0; i < count && !b->oom; i++) {
        memcpy(slot(b), a.data + (size_t)i * b->chw, b->chw * sizeof(float));
        char *name;
        if (a.ndim == 3) {
            name = strdup(path);
        } else {
            size_t len = strlen(path) + 24;
            if ((name = malloc(len)))
                snprintf(name, len, "%s[%lld]", path, (long long)i);
        }
        commit(b, name);
    }
    vit_array_free(&a);
}

int cli_batch_inputs(cli_batch *b, const cli_input_list *in)
{
    vit_model_get_info(b->model, &b->info);
    b->cap = b->cap > 0 ? b->cap : 1;
    b->chw = (size_t)b->info.channels * (size_t)b->info.image_h *
             (size_t)b->info.image_w;
    size_t cap = (size_t)b->cap;
    if (b->chw == 0 || b->chw > SIZE_MAX / sizeof(float) / cap) {
        fprintf(stderr, "vit: the pixel batch is too large for memory\n");
        return CLI_EXIT_FAILED;
    }
    b->pixels = malloc(cap * b->chw * sizeof(float));
    b->paths = malloc(cap * sizeof *b->paths);
    if (!b->pixels || !b->paths)
        b->oom = 1;
    cli_progress_init(&b->prog, in->n, cap);
    for (size_t i = 0; i < in->n && !b->oom; i++) {
        const cli_input *x = &in->v[i];
        switch (x->kind) {
        case CLI_IN_ERROR:
            input_failed(b, x->path, x->error);
            break;
        case CLI_IN_IMAGE:
            do_image(b, x->path);
            break;
        case CLI_IN_NPY:
            do_npy(b, x->path);
            break;
        }
    }
    if (!b->oom)
        flush(b);
    cli_progress_clear(&b->prog);
    for (int i = 0; i < b->n; i++)
        free(b->paths[i]);
    b->n = 0;
    free(b->pixels);
    free(b->paths);
    b->pixels = NULL;
    b->paths = NULL;
    if (b->oom) {
        fprintf(stderr, "vit: out of memory\n");
        return CLI_EXIT_FAILED;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "vit: writing the output: %s\n", strerror(errno));
        return CLI_EXIT_FAILED;
    }
    return b->failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
