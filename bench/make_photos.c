/*
 * make_photos DIR [N [WIDTH HEIGHT]]: writes N (default 1000) photo-like
 * JPEGs of WIDTH x HEIGHT (default 640x480), DIR/00000.jpg on, each a
 * scene of its own (bench/photo.h), for timing `vit bench --dir` and
 * `vit classify DIR` on a realistic decoding load. The set depends only on
 * the arguments. A set already complete in DIR (its marker file,
 * .complete-N-WxH, which the directory walk skips) is left as it is, so
 * the benchmark target can call this every time.
 */
#include "bench/photo.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static long arg(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "make_photos: '%s' is not a number from %ld to %ld\n",
                s, lo, hi);
        exit(2);
    }
    return v;
}

static int write_file(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(b, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "make_photos: %s: %s\n", path, strerror(errno));
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3 && argc != 5) {
        fprintf(stderr, "usage: make_photos DIR [N [WIDTH HEIGHT]]\n");
        return 2;
    }
    const char *dir = argv[1];
    long n = argc > 2 ? arg(argv[2], 1, 99999) : 1000;
    int w = argc > 4 ? (int)arg(argv[3], 16, 8192) : 640;
    int h = argc > 4 ? (int)arg(argv[4], 16, 8192) : 480;
    char marker[4096], path[4096];
    snprintf(marker, sizeof marker, "%s/.complete-%ld-%dx%d", dir, n, w, h);
    struct stat st;
    if (stat(marker, &st) == 0) {
        printf("%s: %ld photos of %dx%d already there\n", dir, n, w, h);
        return 0;
    }
    /* The directory and its parents (~/.cache/vit-bench on a fresh
     * machine), as mkdir -p makes them. */
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) {
        int last = *p == '\0';
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "make_photos: %s: %s\n", path, strerror(errno));
            return 1;
        }
        if (last)
            break;
        *p = '/';
    }
    size_t bytes = 0;
    for (long i = 0; i < n; i++) {
        rng_state = 12345u + 7919u * (uint32_t)i;
        photo_scene s = photo_scene_random(w, h);
        uint8_t *px = synthetic_photo(w, h, &s);
        size_t len;
        uint8_t *jpg = encode_jpeg(px, w, h, &len);
        snprintf(path, sizeof path, "%s/%05ld.jpg", dir, i);
        int rc = write_file(path, jpg, len);
        free(px);
        free(jpg);
        if (rc != 0)
            return 1;
        bytes += len;
    }
    if (write_file(marker, (const uint8_t *)"", 0) != 0)
        return 1;
    printf("%s: %ld photos of %dx%d, JPEG quality 90 4:2:0, %.1f KiB each "
           "on average\n",
           dir, n, w, h, (double)bytes / n / 1024);
    return 0;
}
