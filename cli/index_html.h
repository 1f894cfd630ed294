/*
 * The HTML page of `vit index search --html` (cli/index_html.c), declared
 * apart from cli.h because only cli/index.c uses it and it speaks the
 * index module's types.
 */
#ifndef CLI_INDEX_HTML_H
#define CLI_INDEX_HTML_H

#include "index/index.h"
#include "vit/vit.h"

/* One query of a search. */
typedef struct {
    int is_image;   /* s is an image file, else a text */
    const char *s;
} cli_html_query;

/* The longest side of a thumbnail, pixels; smaller images keep theirs. */
#define CLI_THUMB_MAX 160

/* Writes a self-contained page of the results of nq queries, k hits each
 * (hits[q * k ...], id -1 ends a row): each hit's image downscaled to a
 * thumbnail, PNG-encoded and embedded as a data URI, with its rank, score
 * and path. Images are read with `opt`. A hit whose file cannot be read is
 * shown as its path and the reason. Returns 0, or -1 after reporting on
 * stderr. */
int cli_index_html(const char *path, const cli_html_query *q, int nq,
                   const idx_hit *hits, int k, const vit_options *opt);

#endif
