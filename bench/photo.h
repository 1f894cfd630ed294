/*
 * Synthetic photo-like images for the benchmarks, shared by
 * bench/imgio_bench.c and bench/make_photos.c: smooth shading, a horizon,
 * objects with hard edges, fine texture and sensor-like noise, so that a
 * JPEG of one carries about as much entropy-coded data as a camera photo
 * and its decoder has a realistic amount of work; and their encoding with
 * libjpeg (quality 90, 4:2:0 as cameras and most photo tools write them).
 * Header-only: each bench program is a single file.
 */
#ifndef BENCH_PHOTO_H
#define BENCH_PHOTO_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>

static uint32_t rng_state = 12345;
static inline double urand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (double)(rng_state >> 8) / 16777216.0;
}

/* Value noise on a grid of `cell` pixels, bilinearly interpolated. */
static inline float *noise_layer(int w, int h, int cell)
{
    int gw = w / cell + 2, gh = h / cell + 2;
    float *g = malloc((size_t)gw * gh * sizeof *g);
    float *o = malloc((size_t)w * h * sizeof *o);
    if (!g || !o)
        exit(1);
    for (int i = 0; i < gw * gh; i++)
        g[i] = (float)urand();
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float fx = (float)x / cell, fy = (float)y / cell;
            int ix = (int)fx, iy = (int)fy;
            float tx = fx - ix, ty = fy - iy;
            float a = g[iy * gw + ix], b = g[iy * gw + ix + 1];
            float c = g[(iy + 1) * gw + ix], d = g[(iy + 1) * gw + ix + 1];
            o[(size_t)y * w + x] = (a * (1 - tx) + b * tx) * (1 - ty) +
                                   (c * (1 - tx) + d * tx) * ty;
        }
    free(g);
    return o;
}

/* Where the objects of a scene are, in pixels. */
typedef struct {
    float hill_freq;           /* of the horizon's wave, per pixel */
    float disc_x, disc_y, disc_r;
    int rect_x0, rect_x1, rect_y0, rect_y1;
    float tint[3];             /* added to the ground's colour */
} photo_scene;

/* A scene of its own for a w x h image, drawn from the generator. */
static inline photo_scene photo_scene_random(int w, int h)
{
    photo_scene s;
    s.hill_freq = (float)(0.004 + 0.02 * urand()) * 640.0f / (float)w;
    s.disc_x = (float)(w * urand());
    s.disc_y = (float)(h * (0.3 + 0.6 * urand()));
    s.disc_r = (float)(h * (0.05 + 0.2 * urand()));
    s.rect_x0 = (int)(w * 0.7 * urand());
    s.rect_x1 = s.rect_x0 + (int)(w * (0.1 + 0.3 * urand()));
    s.rect_y0 = (int)(h * (0.3 + 0.5 * urand()));
    s.rect_y1 = s.rect_y0 + (int)(h * (0.1 + 0.4 * urand()));
    for (int c = 0; c < 3; c++)
        s.tint[c] = (float)(60 * (urand() - 0.5));
    return s;
}

static inline uint8_t *synthetic_photo(int w, int h, const photo_scene *s)
{
    uint8_t *px = malloc((size_t)w * h * 3);
    float *n1 = noise_layer(w, h, 160), *n2 = noise_layer(w, h, 24);
    float *n3 = noise_layer(w, h, 4);
    if (!px)
        exit(1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            /* A sky-to-ground gradient, hills, objects with edges, texture
             * and per-pixel noise. */
            float sky = (float)y / h;
            float hill = 0.55f + 0.15f * sinf(x * s->hill_freq) + 0.1f * n1[i];
            float base[3];
            if (sky < hill) {
                base[0] = 90 + 80 * sky, base[1] = 140 + 60 * sky,
                base[2] = 220 - 40 * sky;
            } else {
                base[0] = 70 + 60 * n2[i] + s->tint[0],
                base[1] = 110 + 70 * n1[i] + s->tint[1],
                base[2] = 40 + 30 * n2[i] + s->tint[2];
            }
            float dx = x - s->disc_x, dy = y - s->disc_y;
            if (dx * dx + dy * dy < s->disc_r * s->disc_r)
                base[0] = 200, base[1] = 60 + 40 * n2[i], base[2] = 50;
            if (x > s->rect_x0 && x < s->rect_x1 && y > s->rect_y0 &&
                y < s->rect_y1)
                base[0] = 160 + 50 * n3[i], base[1] = 150, base[2] = 140;
            for (int c = 0; c < 3; c++) {
                float v = base[c] + 40 * (n3[i] - 0.5f) +
                          12 * (float)(urand() - 0.5);
                px[i * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    free(n1);
    free(n2);
    free(n3);
    return px;
}

/* JPEG quality 90, 2x2 luma sampling (4:2:0); malloc'd, *n bytes. */
static inline uint8_t *encode_jpeg(const uint8_t *px, int w, int h, size_t *n)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *buf = NULL;
    unsigned long len = 0;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(px + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *n = len;
    return buf;
}

#endif
