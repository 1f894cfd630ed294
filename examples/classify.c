/*
 * A program built on the installed library: classifies image files with a
 * ViT model directory and prints each one's best labels.
 *
 *     cc classify.c $(pkg-config --cflags --libs vit) -o classify
 *     ./classify MODEL_DIR IMAGE...
 */
#include <vit/vit.h>

#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR IMAGE...\n", argv[0]);
        return 2;
    }
    vit_error err;
    vit_model *m;
    vit_options opt = vit_options_default();
    if (vit_model_load(argv[1], &opt, &m, &err) != VIT_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], err.msg);
        return 1;
    }
    vit_state *s;
    if (vit_state_new(m, &s, &err) != VIT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        vit_model_free(m);
        return 1;
    }
    int rc = 0;
    for (int i = 2; i < argc; i++) {
        vit_image img;
        vit_prediction top[3];
        if (vit_image_read(argv[i], &opt, &img, &err) != VIT_OK ||
            vit_classify(s, &img, 1, 3, top, NULL, &err) != VIT_OK) {
            fprintf(stderr, "%s: %s\n", argv[i], err.msg);
            rc = 1;
            continue;
        }
        vit_image_free(&img);
        printf("%s", argv[i]);
        for (int k = 0; k < 3; k++)
            printf("  %s %.4f", top[k].label, top[k].score);
        printf("\n");
    }
    vit_state_free(s);
    vit_model_free(m);
    return rc;
}
