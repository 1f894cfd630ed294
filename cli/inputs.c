/*
 * Gathering the inputs of a command from its PATH arguments: a file named
 * explicitly is always an input, a directory is walked recursively in byte
 * order of its entry names so that output order never depends on the file
 * system, and a file found in a directory is taken only when its first bytes
 * say JPEG or PNG, or it is a .npy array. Problems found here (a path that
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

/* Reads the first bytes of a file. Returns -1 with errno set when the file
 * cannot be opened or read. */
static int sniff(const char *path, sniff_kind *kind)
{
    static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n',
                                         0x1a, '\n'};
    static const unsigned char npy[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    unsigned char b[8];
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
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        *kind = SNIFF_IMAGE;
    else if (n >= 8 && memcmp(b, png, 8) == 0)
        *kind = SNIFF_IMAGE;
    else if (n >= 6 && memcmp(b, npy, 6) == 0)
        *kind = SNIFF_NPY;
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
            ;  /* sockets, fifos, devices: never images, and may block */
        else if (sniff(path, &kind) != 0)
            rc = list_push(out, path, CLI_IN_ERROR, strerror(errno));
        else if (kind == SNIFF_IMAGE)
            rc = list_push(out, path, CLI_IN_IMAGE, NULL);
        else if (kind == SNIFF_NPY)
            rc = list_push(out, path, CLI_IN_NPY, NULL);
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
        if (stat(path, &st) != 0)
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
}
