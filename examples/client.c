/*
 * A program built on the installed service client: sends image files to
 * a running `vit serve` (or a broker) and prints each reply's labels.
 *
 *     cc client.c $(pkg-config --cflags --libs vit-service) -o client
 *     vit serve --model MODEL_DIR --bind tcp://127.0.0.1:5555 &
 *     ./client tcp://127.0.0.1:5555 IMAGE...
 */
#include <vit/client.h>

#include <stdio.h>
#include <stdlib.h>

/* The whole file, malloc'd; NULL when it cannot be read. */
static void *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            char *b = realloc(buf, cap = cap ? 2 * cap : 65536);
            if (!b)
                break;
            buf = b;
        }
        size_t got = fread(buf + *n, 1, cap - *n, f);
        *n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s ENDPOINT IMAGE...\n", argv[0]);
        return 2;
    }
    vit_error err;
    vit_client *c;
    vit_client_options o = vit_client_options_default();
    if (vit_client_new(argv[1], &o, &c, &err) != VIT_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], err.msg);
        return 1;
    }
    int rc = 0;
    for (int i = 2; i < argc; i++) {
        size_t n;
        void *bytes = slurp(argv[i], &n);
        if (!bytes) {
            perror(argv[i]);
            rc = 1;
            continue;
        }
        vit_blob img = {bytes, n};
        vit_reply r;
        char code[32], msg[256];
        if (vit_client_call(c, "{\"op\":\"classify\",\"top_k\":3}", &img, 1,
                            &r, &err) != VIT_OK) {
            fprintf(stderr, "%s: %s\n", argv[i], err.msg);
            rc = 1;
        } else if (vit_reply_error(&r, code, msg, sizeof msg, NULL)) {
            fprintf(stderr, "%s: %s: %s\n", argv[i], code, msg);
            vit_reply_free(&r);
            rc = 1;
        } else {
            printf("%s %s\n", argv[i], r.body);
            vit_reply_free(&r);
        }
        free(bytes);
    }
    vit_client_free(c);
    return rc;
}
