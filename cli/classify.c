/*
 * `vit classify`, run by the library: what each batch of images becomes: a
 * vit_classify_pixels call on a ViT classifier, or, with --labels, a
 * zero-shot vit_zeroshot_classify_pixels call on a CLIP model over the
 * label set; the results go to the output formats. Its options are
 * cli/ops.c's spec, which `vit client ... classify` shares; the batching
 * of inputs is cli/batch.c's; all model work is the library's.
 */
#include "cli/args.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* What a batch of images becomes: predictions and their output. */
typedef struct {
    const cli_classify_args *args;
    vit_state *state;
    vit_zeroshot *zs;     /* with --labels */
    int k;                /* top_k clamped to the number of labels */
    int L;                /* labels */
    vit_prediction *top;  /* (cap, k) */
    float *logits;        /* (cap, L), or NULL without --logits */
} classify_ctx;

static vit_status classify_batch(void *p, const float *pixels, int n,
                                 char *const *paths, vit_error *err)
{
    classify_ctx *c = p;
    vit_status st =
        c->zs ? vit_zeroshot_classify_pixels(c->state, c->zs, pixels, n, c->k,
                                             c->top, c->logits, err)
              : vit_classify_pixels(c->state, pixels, n, c->k, c->top,
                                    c->logits, err);
    if (st != VIT_OK)
        return st;
    for (int i = 0; i < n; i++) {
        cli_result res = {
            .path = paths[i],
            .top = c->top + (size_t)i * c->k,
            .k = c->k,
            .logits = c->logits ? c->logits + (size_t)i * c->L : NULL,
            .num_labels = c->L,
        };
        if (cli_output_write(stdout, c->args->fmt, &res) != 0)
            return VIT_E_NOMEM;
    }
    return VIT_OK;
}

int cli_classify_main(int argc, char **argv)
{
    cli_classify_args args;
    int rc = cli_op_parse_local(&cli_classify_op, argc, argv, &args);
    if (rc >= 0)
        return rc;

    vit_options opt = cli_model_options(args.batch, &args.dec);
    classify_ctx c = {.args = &args};
    cli_batch b = {.run = classify_batch, .ctx = &c};
    cli_input_list in = {0};
    vit_error err = {{0}};
    vit_model_info info;
    rc = CLI_EXIT_FAILED;
    vit_status st = vit_model_load(args.model_dir, &opt, &b.model, &err);
    if (st != VIT_OK) {
        cli_report(args.model_dir, err.msg[0] ? err.msg : vit_status_str(st));
        goto done;
    }
    vit_model_get_info(b.model, &info);
    if (!args.labels && info.num_labels <= 0) {
        cli_report(args.model_dir,
                   info.arch == VIT_ARCH_CLIP || info.arch == VIT_ARCH_SIGLIP
                       ? "a CLIP or SigLIP model has no fixed labels; give "
                         "them with --labels FILE"
                       : "the model has no classification head (a "
                         "ViTModel gives embeddings: use 'vit embed "
                         "--image')");
        goto done;
    }
    if (vit_state_new(b.model, &c.state, &err) != VIT_OK) {
        cli_report(args.model_dir, err.msg);
        goto done;
    }
    if (args.labels) {
        st = vit_zeroshot_new(c.state, (const char *const *)args.label_v,
                              args.n_labels,
                              args.template, &c.zs, &err);
        if (st != VIT_OK) {
            cli_report(args.model_dir, err.msg);
            goto done;
        }
        c.L = args.n_labels;
    } else {
        c.L = info.num_labels;
    }
    b.cap = opt.max_batch > 0 ? opt.max_batch : 1;
    c.k = args.top_k < c.L ? args.top_k : c.L;
    c.top = malloc((size_t)b.cap * (size_t)c.k * sizeof *c.top);
    if (args.logits)
        c.logits = malloc((size_t)b.cap * (size_t)c.L * sizeof(float));
    cli_interrupt_install();
    if (!c.top || (args.logits && !c.logits) ||
        cli_inputs_collect(args.paths.v, args.paths.n, &in) != 0) {
        fprintf(stderr, "vit: out of memory\n");
        goto done;
    }
    cli_output_begin(stdout, args.fmt);
    rc = cli_batch_inputs(&b, &in);
    cli_inputs_say_skipped(&in);
    if (b.interrupted)
        cli_interrupt_say(b.prog.done, b.prog.total, (size_t)b.failed,
                          "written");

done:
    cli_inputs_free(&in);
    free(c.top);
    free(c.logits);
    vit_zeroshot_free(c.zs);
    vit_state_free(c.state);
    vit_model_free(b.model);
    cli_op_free(&cli_classify_op, &args);
    return rc;
}
