/*
 * Gathering the inputs of a command from its PATH arguments: a file named
 * explicitly is always an input, a directory is walked recursively in byte
 * order of its entry names so that output order never depends on the file
 * system, and a file found in a directory is taken when its first bytes
 * say it is an image of any known format (one the decoder does not read is
 * then reported as failed, not skipped), or it is a .npy array; the other
 * files are counted, for one line at the end. Problems found here (a path that
 * does not exist, a directory that cannot be read) become error entries in
 * the list, so that they are reported in their place among the results.
 */
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum { SNIFF_OTHER, SNIFF_IMAGE, SNIFF_NPY } sniff_kind;

/* The directories on the path from the argument down to the one being
 * walked, to stop at a symbolic link that loops back to an ancestor. */
typedef struct dir_chain {
    dev_t dev;
    ino_t ino;
    const struct dir_chain *up;
} dir_chain;

static int list_push(cli_input_list *l, const char *path, cli_input_kind kind,
                     const char *error)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        cli_input *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    cli_input *in = &l->v[l->n];
    in->path = strdup(path);
    in->kind = kind;
    in->error = error ? strdup(error) : NULL;
    if (!in->path || (error && !in->error)) {
        free(in->path);
        free(in->error);
        return -1;
    }
    l->n++;
    return 0;
}

static int ends_with_npy(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && strcmp(path + n - 4, ".npy") == 0;
}

/* Whether the first n bytes at b start like an image file of a format
 * anyone would call a picture, whether or not the decoder reads it: such a
 * file found in a directory is an input, so that one the decoder cannot
 * read is reported rather than skipped. The signatures are strict enough
 * (BMP's header size, PNM's whitespace, ICO's first entry) that text and
 * other data files do not pass for images. */
static int looks_like_image(const unsigned char *b, size_t n)
{
#define HAS(off, lit)                    \
    (n >= (off) + sizeof(lit) - 1 &&     \
     memcmp(b + (off), lit, sizeof(lit) - 1) == 0)
    if (HAS(0, "\xff\xd8\xff") || HAS(0, "\x89PNG\r\n\x1a\n"))
        return 1; /* JPEG, PNG */
    if (HAS(0, "GIF87a") || HAS(0, "GIF89a") ||
        (HAS(0, "RIFF") && HAS(8, "WEBP")) || HAS(0, "qoif") ||
        HAS(0, "8BPS") || HAS(0, "\x76\x2f\x31\x01") /* OpenEXR */ ||
        HAS(0, "DDS ") || HAS(0, "#?RADIANCE") || HAS(0, "#?RGBE") ||
        HAS(0, "FUJIFILMCCD-RAW") || HAS(0, "IIRO") || HAS(0, "IIU\0"))
        return 1;
    /* TIFF and BigTIFF, and the camera raw formats built on TIFF. */
    if (HAS(0, "II*\0") || HAS(0, "MM\0*") || HAS(0, "II+\0") ||
        HAS(0, "MM\0+"))
        return 1;
    /* JPEG 2000 (JP2 box, raw codestream), JPEG XL (codestream, box). */
    if (HAS(0, "\0\0\0\x0cjP  \r\n\x87\n") || HAS(0, "\xff\x4f\xff\x51") ||
        HAS(0, "\xff\x0a") || HAS(0, "\0\0\0\x0cJXL \r\n\x87\n"))
        return 1;
    /* HEIF family: HEIC, AVIF, Canon CR3, by the major brand. */
    if (HAS(4, "ftyp")) {
        static const char brands[][5] = {"avif", "avis", "heic", "heix",
                                         "hevc", "hevx", "heim", "heis",
                                         "mif1", "msf1", "crx "};
        for (size_t i = 0; i < sizeof brands / sizeof brands[0]; i++)
            if (n >= 12 && memcmp(b + 8, brands[i], 4) == 0)
                return 1;
        return 0;
    }
    /* BMP: "BM", then the DIB header's size at 14 is one of the known. */
    if (HAS(0, "BM") && n >= 18) {
        unsigned h = b[14] | (unsigned)b[15] << 8 | (unsigned)b[16] << 16 |
                     (unsigned)b[17] << 24;
        if (h == 12 || h == 16 || h == 40 || h == 52 || h == 56 || h == 64 ||
            h == 108 || h == 124)
            return 1;
    }
    /* ICO and CUR: reserved 0, type 1 or 2, at least one image whose
     * entry's reserved byte is 0. */
    if ((HAS(0, "\0\0\1\0") || HAS(0, "\0\0\2\0")) && n >= 10 &&
        (b[4] | b[5]) != 0 && b[9] == 0)
        return 1;
    /* PNM (PBM, PGM, PPM, PAM): P1 to P7 and whitespace. */
    if (n >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7' &&
        (b[2] == ' ' || b[2] == '\t' || b[2] == '\n' || b[2] == '\r'))
        return 1;
    /* SVG, bare or after an XML declaration. */
    if (HAS(0, "<svg"))
        return 1;
    if (HAS(0, "<?xml")) {
        for (size_t i = 5; i + 4 <= n; i++)
            if (memcmp(b + i, "<svg", 4) == 0)
                return 1;
    }
#undef HAS
    return 0;
}

/* Reads the first bytes of a file. Returns -1 with errno set when the file
 * cannot be opened or read. */
static int sniff(const char *path, sniff_kind *kind)
{
    static const unsigned char npy[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    unsigned char b[256];
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n = fread(b, 1, sizeof b, f);
    int bad = ferror(f);
    int saved = errno;
    fclose(f);
    if (bad) {
        errno = saved;
        return -1;
    }
    if (n >= 6 && memcmp(b, npy, 6) == 0)
        *kind = SNIFF_NPY;
    else if (looks_like_image(b, n))
        *kind = SNIFF_IMAGE;
    else
        *kind = ends_with_npy(path) ? SNIFF_NPY : SNIFF_OTHER;
    return 0;
}

static int not_hidden(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* strcmp order, not the locale's: the same tree lists the same way on
 * every machine. */
static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *p = malloc(a + slash + b + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    if (slash)
        p[a] = '/';
    memcpy(p + a + slash, name, b + 1);
    return p;
}

static int walk(const char *dir, const struct stat *st, const dir_chain *up,
                cli_input_list *out)
{
    for (const dir_chain *c = up; c; c = c->up)
        if (c->dev == st->st_dev && c->ino == st->st_ino)
            return 0;  /* a link back to an ancestor: already being walked */
    dir_chain here = {st->st_dev, st->st_ino, up};

    struct dirent **names;
    int n = scandir(dir, &names, not_hidden, by_name);
    if (n < 0)
        return list_push(out, dir, CLI_IN_ERROR, strerror(errno));

    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char *path = path_join(dir, names[i]->d_name);
        if (!path) {
            rc = -1;
            break;
        }
        struct stat cs;
        sniff_kind kind;
        if (stat(path, &cs) != 0)
            rc = list_push(out, path, CLI_IN_ERROR, strerror(errno));
        else if (S_ISDIR(cs.st_mode))
            rc = walk(path, &cs, &here, out);
        else if (!S_ISREG(cs.st_mode))
            out->skipped++; /* sockets, fifos, devices: may block */
        else if (sniff(path, &kind) != 0)
            rc = list_push(out, path, CLI_IN_ERROR, strerror(errno));
        else if (kind == SNIFF_IMAGE)
            rc = list_push(out, path, CLI_IN_IMAGE, NULL);
        else if (kind == SNIFF_NPY)
            rc = list_push(out, path, CLI_IN_NPY, NULL);
        else
            out->skipped++;
        free(path);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int cli_inputs_collect(char *const *paths, int n, cli_input_list *out)
{
    for (int i = 0; i < n; i++) {
        const char *path = paths[i];
        struct stat st;
        sniff_kind kind;
        int rc;
        if (cli_is_remote(path)) {
            /* Fetched when it is prepared: libcurl is set up now, in one
             * thread, before the decode threads start. */
            if (strncmp(path, "http", 4) == 0)
                cli_fetch_init();
            rc = list_push(out, path, CLI_IN_IMAGE, NULL);
        } else if (stat(path, &st) != 0)
            rc = list_push(out, path, CLI_IN_ERROR, strerror(errno));
        else if (S_ISDIR(st.st_mode))
            rc = walk(path, &st, NULL, out);
        else if (!S_ISREG(st.st_mode))
            rc = list_push(out, path, CLI_IN_IMAGE, NULL);  /* /dev/stdin */
        else if (sniff(path, &kind) != 0)
            rc = list_push(out, path, CLI_IN_ERROR, strerror(errno));
        else
            rc = list_push(out, path,
                           kind == SNIFF_NPY ? CLI_IN_NPY : CLI_IN_IMAGE, NULL);
        if (rc != 0)
            return -1;
    }
    return 0;
}

void cli_inputs_free(cli_input_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].error);
    }
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
    l->skipped = 0;
}

void cli_inputs_say_skipped(const cli_input_list *l)
{
    if (l->skipped == 1)
        fprintf(stderr, "vit: skipped 1 file that is not an image\n");
    else if (l->skipped > 1)
        fprintf(stderr, "vit: skipped %zu files that are not images\n",
                l->skipped);
}
