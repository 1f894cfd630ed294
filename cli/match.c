/*
 * `vit match`: zero-shot matching of images against a list of texts with a
 * CLIP or SigLIP model. The texts are embedded once; each batch of images
 * is embedded and matched, and every image gets, with CLIP, the softmax
 * over the texts of logit_scale * cosine — what
 * logits_per_image.softmax(-1) gives in transformers — and with SigLIP
 * each pair's sigmoid(logit_scale * cosine + logit_bias), what
 * logits_per_image.sigmoid() gives. The batching of images is
 * cli/batch.c's.
 */
#include "cli/args.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const cli_match_args *args;
    vit_model *model;
    vit_state *state;
    int dim, k;
    float *text_emb;  /* (k, dim) */
    float *img_emb;   /* (cap, dim) */
    float *logits, *probs;  /* (cap, k) */
} match_ctx;

static vit_status match_batch(void *p, const float *pixels, int n,
                              char *const *paths, vit_error *err)
{
    match_ctx *c = p;
    vit_status st = vit_embed_pixels(c->state, pixels, n, c->img_emb, err);
    if (st == VIT_OK)
        st = vit_match(c->model, c->img_emb, n, c->text_emb, c->k, c->logits,
                       c->probs, err);
    if (st != VIT_OK)
        return st;
    for (int i = 0; i < n; i++)
        if (cli_match_write(stdout, c->args->fmt, paths[i], c->args->texts.v,
                            c->k, c->probs + (size_t)i * c->k,
                            c->logits + (size_t)i * c->k) != 0)
            return VIT_E_NOMEM;
    return VIT_OK;
}

int cli_match_main(int argc, char **argv)
{
    cli_match_args a;
    int rc = cli_op_parse_local(&cli_match_op, argc, argv, &a);
    vit_options opt = vit_options_default();
    match_ctx c = {.args = &a};
    cli_input_list in = {0};
    vit_error err = {{0}};
    if (rc >= 0)
        goto out;
    rc = CLI_EXIT_FAILED;
    opt = cli_model_options(a.batch, &a.dec);
    if (vit_model_load(a.model_dir, &opt, &c.model, &err) != VIT_OK ||
        vit_state_new(c.model, &c.state, &err) != VIT_OK) {
        cli_report(a.model_dir, err.msg);
        goto out;
    }
    vit_model_info info;
    vit_model_get_info(c.model, &info);
    if (info.arch != VIT_ARCH_CLIP && info.arch != VIT_ARCH_SIGLIP) {
        cli_report(a.model_dir, "matching needs a CLIPModel or SiglipModel "
                                "directory (both towers and logit_scale)");
        goto out;
    }
    c.dim = info.embed_dim;
    c.k = a.texts.n;
    size_t cap = (size_t)opt.max_batch;
    c.text_emb = malloc((size_t)c.k * (size_t)c.dim * sizeof(float));
    c.img_emb = malloc(cap * (size_t)c.dim * sizeof(float));
    c.logits = malloc(cap * (size_t)c.k * sizeof(float));
    c.probs = malloc(cap * (size_t)c.k * sizeof(float));
    cli_interrupt_install();
    if (!c.text_emb || !c.img_emb || !c.logits || !c.probs ||
        cli_inputs_collect(a.paths.v, a.paths.n, &in) != 0) {
        fprintf(stderr, "vit: out of memory\n");
        goto out;
    }
    if (vit_embed_texts(c.state, (const char *const *)a.texts.v, c.k, c.text_emb,
                        &err) != VIT_OK) {
        cli_report(a.model_dir, err.msg);
        goto out;
    }
    cli_batch b = {.model = c.model, .cap = (int)cap,
                   .run = match_batch, .ctx = &c};
    rc = cli_batch_inputs(&b, &in);
    cli_inputs_say_skipped(&in);
    if (b.interrupted)
        cli_interrupt_say(b.prog.done, b.prog.total, (size_t)b.failed,
                          "written");
out:
    cli_inputs_free(&in);
    free(c.text_emb);
    free(c.img_emb);
    free(c.logits);
    free(c.probs);
    vit_state_free(c.state);
    vit_model_free(c.model);
    cli_op_free(&cli_match_op, &a);
    return rc;
}
