/*
 * Reading small text files of one item per line, as --labels and
 * --texts-file take them: blank lines are skipped, a trailing carriage
 * return is dropped, and the file is reported when it cannot be read.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int cli_read_lines(const char *path, char ***out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_report(path, strerror(errno));
        return -1;
    }
    char **v = NULL, *line = NULL;
    size_t cap = 0, linecap = 0;
    int n = 0;
    ssize_t len;
    while ((len = getline(&line, &linecap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0)
            continue;
        if ((size_t)n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv)
                goto oom;
            v = nv;
        }
        if (!(v[n] = strdup(line)))
            goto oom;
        n++;
    }
    if (ferror(f)) {
        cli_report(path, strerror(errno));
        cli_free_lines(v, n);
        n = -1;
        v = NULL;
    }
    free(line);
    fclose(f);
    *out = v;
    return n;
oom:
    free(line);
    fclose(f);
    cli_free_lines(v, n);
    cli_report(path, "out of memory");
    return -1;
}

void cli_free_lines(char **v, int n)
{
    for (int i = 0; i < n && v; i++)
        free(v[i]);
    free(v);
}
