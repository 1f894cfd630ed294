/*
 * Reading NumPy .npy files of float32 values: the format the command takes
 * for already-preprocessed pixels and the one the test fixtures use. Only
 * what numpy.save writes for a C-ordered little-endian float32 array is
 * accepted; everything else is refused with a sentence saying why.
 */
#include "vit/vit_impl.h"

#include <errno.h>
#include <string.h>

/* Finds `'key':` in the header dict and returns the text after the colon. */
static const char *npy_field(const char *hdr, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "'%s':", key);
    const char *p = strstr(hdr, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    return p;
}

static vit_status npy_parse_header(const char *path, const char *hdr,
                                   vit_array *a, vit_error *err)
{
    const char *d = npy_field(hdr, "descr");
    if (!d)
        return vit__fail(err, VIT_E_ARG, "%s: .npy header has no 'descr'", path);
    if (strncmp(d, "'<f4'", 5) != 0) {
        char got[16] = {0};
        sscanf(d, "'%15[^']'", got);
        return vit__fail(err, VIT_E_ARG,
                         "%s: .npy dtype is '%s'; float32 ('<f4') is needed",
                         path, got);
    }
    const char *f = npy_field(hdr, "fortran_order");
    if (!f || strncmp(f, "False", 5) != 0)
        return vit__fail(err, VIT_E_ARG,
                         "%s: .npy array is not in C order", path);
    const char *s = npy_field(hdr, "shape");
    if (!s || *s != '(')
        return vit__fail(err, VIT_E_ARG, "%s: .npy header has no shape", path);
    s++;
    a->ndim = 0;
    for (;;) {
        while (*s == ' ' || *s == ',')
            s++;
        if (*s == ')')
            break;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || v < 0 || a->ndim >= 8)
            return vit__fail(err, VIT_E_ARG, "%s: malformed .npy shape", path);
        a->shape[a->ndim++] = v;
        s = end;
    }
    return VIT_OK;
}

vit_status vit_npy_read(const char *path, vit_array *out, vit_error *err)
{
    vit_status st = VIT_OK;
    char *hdr = NULL;
    float *data = NULL;
    vit_array a = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return vit__fail(err, VIT_E_IO, "%s: %s", path, strerror(errno));

    unsigned char pre[12];
    if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = vit__fail(err, VIT_E_ARG, "%s: not a .npy file", path);
        goto done;
    }
    size_t hlen;
    if (pre[6] == 1) {
        hlen = pre[8] | (size_t)pre[9] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, fp) != 2) {
            st = vit__fail(err, VIT_E_ARG, "%s: truncated .npy header", path);
            goto done;
        }
        hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 |
               (size_t)pre[11] << 24;
    } else {
        st = vit__fail(err, VIT_E_ARG, "%s: unknown .npy version %d", path,
                       pre[6]);
        goto done;
    }
    if (hlen > 1 << 20) {
        st = vit__fail(err, VIT_E_ARG, "%s: .npy header too long", path);
        goto done;
    }
    hdr = malloc(hlen + 1);
    if (!hdr) {
        st = vit__fail(err, VIT_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(hdr, 1, hlen, fp) != hlen) {
        st = vit__fail(err, VIT_E_ARG, "%s: truncated .npy header", path);
        goto done;
    }
    hdr[hlen] = 0;
    if ((st = npy_parse_header(path, hdr, &a, err)) != VIT_OK)
        goto done;

    uint64_t count = 1;
    for (int i = 0; i < a.ndim; i++) {
        if (a.shape[i] != 0 && count > (UINT64_MAX / 4) / (uint64_t)a.shape[i]) {
            st = vit__fail(err, VIT_E_TOO_LARGE, "%s: .npy array too large",
                           path);
            goto done;
        }
        count *= (uint64_t)a.shape[i];
    }
    long here = ftell(fp);
    if (fseek(fp, 0, SEEK_END) != 0 || here < 0) {
        st = vit__fail(err, VIT_E_IO, "%s: cannot seek", path);
        goto done;
    }
    long size = ftell(fp);
    if (size < 0 || (uint64_t)(size - here) != count * 4) {
        st = vit__fail(err, VIT_E_ARG,
                       "%s: .npy data is %ld bytes, shape says %llu", path,
                       size - here, (unsigned long long)(count * 4));
        goto done;
    }
    fseek(fp, here, SEEK_SET);
    data = malloc(count ? count * 4 : 4);
    if (!data) {
        st = vit__fail(err, VIT_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(data, 4, count, fp) != count) {
        st = vit__fail(err, VIT_E_IO, "%s: short read", path);
        goto done;
    }
    a.data = data;
    data = NULL;
    *out = a;
done:
    free(data);
    free(hdr);
    fclose(fp);
    return st;
}

void vit_array_free(vit_array *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}
