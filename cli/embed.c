/*
 * `vit embed`: image or text embeddings, L2-normalized by default
 * (--no-normalize gives exactly get_image_features / get_text_features),
 * written as JSONL lines or one float32 .npy array. Images go through the
 * shared batch driver; texts through vit_embed_texts in batches. All model
 * work is the library's.
 */
#include "cli/args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Where embeddings go: JSONL lines as they come, or rows gathered for one
 * .npy array at the end. */
typedef struct {
    FILE *f;
    int npy, normalize, dim;
    vit_state *state;
    float *emb;  /* (cap, dim) for a batch */
    float *all;  /* npy rows so far */
    size_t rows, cap_rows;
} sink;

static vit_status sink_rows(sink *k, const float *v, int n, const char *key,
                            char *const *names)
{
    if (!k->npy) {
        for (int i = 0; i < n; i++)
            if (cli_embedding_write(k->f, key, names[i],
                                    v + (size_t)i * k->dim, k->dim) != 0)
                return VIT_E_NOMEM;
        return VIT_OK;
    }
    if (k->rows + (size_t)n > k->cap_rows) {
        size_t cap = k->cap_rows ? 2 * k->cap_rows : 64;
        while (cap < k->rows + (size_t)n)
            cap *= 2;
        float *na = realloc(k->all, cap * (size_t)k->dim * sizeof *na);
        if (!na)
            return VIT_E_NOMEM;
        k->all = na;
        k->cap_rows = cap;
    }
    memcpy(k->all + k->rows * (size_t)k->dim, v,
           (size_t)n * (size_t)k->dim * sizeof *v);
    k->rows += (size_t)n;
    return VIT_OK;
}

static vit_status image_batch(void *p, const float *pixels, int n,
                              char *const *paths, vit_error *err)
{
    sink *k = p;
    vit_status st = vit_embed_pixels(k->state, pixels, n, k->emb, err);
    if (st != VIT_OK)
        return st;
    if (k->normalize)
        vit_l2_normalize(k->emb, n, k->dim);
    return sink_rows(k, k->emb, n, "path", paths);
}

/* Texts in batches of `cap`; a failed batch is reported per text. Ctrl-C
 * or SIGTERM stops it between batches; *done: the texts done. */
static int embed_texts(sink *k, char **texts, int n, int cap, int *done)
{
    int failed = 0;
    *done = 0;
    for (int i = 0; i < n && !cli_interrupted(); i += cap) {
        int b = n - i < cap ? n - i : cap;
        vit_error err = {{0}};
        vit_status st = vit_embed_texts(k->state, (const char *const *)texts + i,
                                        b, k->emb, &err);
        if (st == VIT_OK && k->normalize)
            vit_l2_normalize(k->emb, b, k->dim);
        if (st == VIT_OK)
            st = sink_rows(k, k->emb, b, "text", texts + i);
        if (st == VIT_E_NOMEM) {
            fprintf(stderr, "vit: out of memory\n");
            return -1;
        }
        if (st != VIT_OK) {
            for (int j = 0; j < b; j++)
                cli_report(texts[i + j], err.msg);
            failed += b;
        }
        *done += b;
    }
    return failed;
}

int cli_embed_main(int argc, char **argv)
{
    cli_embed_args a;
    int rc = cli_op_parse_local(&cli_embed_op, argc, argv, &a);
    if (rc >= 0)
        goto out_args;
    rc = CLI_EXIT_FAILED;
    vit_options opt = cli_model_options(a.batch, &a.dec);
    vit_model *m = NULL;
    sink k = {.npy = a.npy, .normalize = a.normalize, .f = stdout};
    cli_batch b = {.run = image_batch, .ctx = &k};
    cli_input_list in = {0};
    vit_error err = {{0}};
    if (vit_model_load(a.model_dir, &opt, &m, &err) != VIT_OK) {
        cli_report(a.model_dir, err.msg);
        goto out;
    }
    vit_model_info info;
    vit_model_get_info(m, &info);
    k.dim = info.embed_dim;
    if (vit_state_new(m, &k.state, &err) != VIT_OK) {
        cli_report(a.model_dir, err.msg);
        goto out;
    }
    k.emb = malloc((size_t)opt.max_batch * (size_t)k.dim * sizeof *k.emb);
    if (!k.emb) {
        fprintf(stderr, "vit: out of memory\n");
        goto out;
    }
    if (a.out && !(k.f = fopen(a.out, "wb"))) {
        cli_report(a.out, strerror(errno));
        goto out;
    }
    int texts_done = 0, texts_failed = 0;
    cli_interrupt_install();
    if (a.texts.n) {
        texts_failed = embed_texts(&k, a.texts.v, a.texts.n, opt.max_batch,
                                   &texts_done);
        rc = texts_failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
        if (texts_failed >= 0 && cli_interrupted())
            rc = cli_interrupt_status();
    } else {
        if (cli_inputs_collect(a.images.v, a.images.n, &in) != 0) {
            fprintf(stderr, "vit: out of memory\n");
            goto out;
        }
        b.model = m;
        b.cap = opt.max_batch;
        rc = cli_batch_inputs(&b, &in);
    }
    /* Interrupted, the rows done still make a whole array. */
    if (k.npy && cli_npy_write(k.f, k.all, k.rows, (size_t)k.dim) != 0) {
        cli_report(a.out ? a.out : "stdout", strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    if (k.f && k.f != stdout && fclose(k.f) != 0) {
        cli_report(a.out, strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    k.f = NULL;
    cli_inputs_say_skipped(&in);
    if (b.interrupted)
        cli_interrupt_say(b.prog.done, b.prog.total, (size_t)b.failed,
                          "written");
    if (a.texts.n && texts_failed >= 0 && cli_interrupted())
        cli_interrupt_say_items((size_t)texts_done, (size_t)a.texts.n,
                                (size_t)texts_failed, "text", "written");
out:
    if (k.f && k.f != stdout && fclose(k.f) != 0) {
        cli_report(a.out, strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    cli_inputs_free(&in);
    free(k.emb);
    free(k.all);
    vit_state_free(k.state);
    vit_model_free(m);
out_args:
    cli_op_free(&cli_embed_op, &a);
    return rc;
}
