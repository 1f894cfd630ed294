/*
 * A program built on the installed library: embeds one image and some
 * texts with a CLIP model directory and prints each text's cosine
 * similarity to the image, best first.
 *
 *     cc match.c $(pkg-config --cflags --libs vit) -o match
 *     ./match MODEL_DIR IMAGE TEXT...
 */
#include <vit/vit.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR IMAGE TEXT...\n", argv[0]);
        return 2;
    }
    vit_error err;
    vit_model *m;
    vit_options opt = vit_options_default();
    if (vit_model_load(argv[1], &opt, &m, &err) != VIT_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], err.msg);
        return 1;
    }
    vit_model_info info;
    vit_model_get_info(m, &info);
    int nt = argc - 3, d = info.embed_dim, rc = 1;
    float *img_emb = malloc((size_t)d * sizeof *img_emb);
    float *txt_emb = malloc((size_t)nt * (size_t)d * sizeof *txt_emb);
    vit_state *s = NULL;
    vit_image img = {0};
    if (!img_emb || !txt_emb) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }
    if (vit_state_new(m, &s, &err) != VIT_OK ||
        vit_image_read(argv[2], &opt, &img, &err) != VIT_OK ||
        vit_embed_images(s, &img, 1, img_emb, &err) != VIT_OK ||
        vit_embed_texts(s, (const char *const *)argv + 3, nt, txt_emb,
                        &err) != VIT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        goto out;
    }
    /* Unit vectors: the dot product is the cosine similarity. */
    vit_l2_normalize(img_emb, 1, d);
    vit_l2_normalize(txt_emb, nt, d);
    for (int t = 0; t < nt; t++) {
        double dot = 0;
        for (int k = 0; k < d; k++)
            dot += (double)img_emb[k] * txt_emb[(size_t)t * d + k];
        printf("%.4f  %s\n", dot, argv[3 + t]);
    }
    rc = 0;
out:
    vit_image_free(&img);
    vit_state_free(s);
    vit_model_free(m);
    free(img_emb);
    free(txt_emb);
    return rc;
}
