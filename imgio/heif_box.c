/*
 * The HEIF container's boxes (ISO/IEC 14496-12 and 23008-12), walked by
 * hand for the little heif.c needs that libheif does not say: whether a
 * file is Pillow's AVIF or pillow-heif's HEIC, whether it was cut short,
 * and an AVIF's irot and imir as the EXIF orientation Pillow reports.
 * Plain byte parsing: it needs no libheif, and every read is bounded by
 * the box that holds it.
 */
#include "imgio/imgio_impl.h"

#include <string.h>

/* Pillow's AVIF plugin opens files whose major brand is avif or avis, or
 * mif1 or msf1 with an AVIF brand among the compatible ones (libavif
 * refuses the rest); everything else in the family is pillow-heif's. */
int img_heif_is_avif(const uint8_t *b, size_t n)
{
    if (n < 16)
        return 0;
    if (memcmp(b + 8, "avif", 4) == 0 || memcmp(b + 8, "avis", 4) == 0)
        return 1;
    if (memcmp(b + 8, "mif1", 4) != 0 && memcmp(b + 8, "msf1", 4) != 0)
        return 0;
    size_t end = img_be32(b);
    if (end > n)
        end = n;
    for (size_t i = 16; i + 4 <= end; i += 4)
        if (memcmp(b + i, "avif", 4) == 0 || memcmp(b + i, "avis", 4) == 0)
            return 1;
    return 0;
}

/* A box's payload [p, end) inside its parent. */
typedef struct {
    const uint8_t *p, *end;
} span;

/* The next box of s: its type and payload. 0 at the end or at a box that
 * does not fit in its parent. */
static int next_box(span *s, uint32_t *type, span *body)
{
    size_t left = (size_t)(s->end - s->p);
    if (left < 8)
        return 0;
    uint64_t size = img_be32(s->p);
    size_t head = 8;
    *type = img_be32(s->p + 4);
    if (size == 1) {
        if (left < 16)
            return 0;
        size = (uint64_t)img_be32(s->p + 8) << 32 | img_be32(s->p + 12);
        head = 16;
    } else if (size == 0) {
        size = left;
    }
    if (size < head || size > left)
        return 0;
    body->p = s->p + head;
    body->end = s->p + size;
    s->p += size;
    return 1;
}

#define FOURCC(a, b, c, d)                                               \
    ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 |    \
     (uint32_t)(d))

/* The first box of `type` directly in s. */
static int find_box(span s, uint32_t type, span *body)
{
    uint32_t t;
    while (next_box(&s, &t, body))
        if (t == type)
            return 1;
    return 0;
}

/* Whether the primary item (id) has the ipco property at index k (from
 * 1) among its associations in the ipma box m. */
static int ipma_has(span m, uint32_t id, uint32_t k)
{
    if (m.end - m.p < 8)
        return 0;
    int version = m.p[0], wide = m.p[3] & 1;
    uint32_t count = img_be32(m.p + 4);
    const uint8_t *p = m.p + 8;
    for (uint32_t i = 0; i < count; i++) {
        size_t idlen = version < 1 ? 2 : 4;
        if ((size_t)(m.end - p) < idlen + 1)
            return 0;
        uint32_t item = version < 1 ? (uint32_t)p[0] << 8 | p[1]
                                    : img_be32(p);
        size_t n = p[idlen], each = wide ? 2 : 1;
        p += idlen + 1;
        if ((size_t)(m.end - p) < n * each)
            return 0;
        for (size_t a = 0; a < n; a++, p += each) {
            uint32_t idx = wide ? ((uint32_t)p[0] << 8 | p[1]) & 0x7fff
                                : p[0] & 0x7fu;
            if (item == id && idx == k)
                return 1;
        }
    }
    return 0;
}

/* Whether property k (from 1) of ipco is associated with item id in one
 * of iprp's ipma boxes. */
static int associated(span iprp, uint32_t id, uint32_t k)
{
    uint32_t t;
    span m;
    while (next_box(&iprp, &t, &m))
        if (t == FOURCC('i', 'p', 'm', 'a') && ipma_has(m, id, k))
            return 1;
    return 0;
}

/* The EXIF orientation Pillow's AVIF plugin reports for the file: its
 * primary item's irot and imir boxes, mapped as Pillow's
 * irot_imir_to_exif_orientation maps them (an imir axis of 1 swaps left
 * and right there). 1 when there are none or they cannot be found: libheif
 * has read the file already, so this only looks the two boxes up. */
int img_avif_orientation(const uint8_t *b, size_t n)
{
    span file = {b, b + n}, meta, pitm, iprp, ipco, box;
    if (!find_box(file, FOURCC('m', 'e', 't', 'a'), &meta) ||
        meta.end - meta.p < 4)
        return 1;
    meta.p += 4; /* a FullBox: version and flags first */
    if (!find_box(meta, FOURCC('p', 'i', 't', 'm'), &pitm) ||
        pitm.end - pitm.p < 6 ||
        !find_box(meta, FOURCC('i', 'p', 'r', 'p'), &iprp) ||
        !find_box(iprp, FOURCC('i', 'p', 'c', 'o'), &ipco))
        return 1;
    uint32_t id;
    if (pitm.p[0] == 0)
        id = (uint32_t)pitm.p[4] << 8 | pitm.p[5];
    else if (pitm.end - pitm.p >= 8)
        id = img_be32(pitm.p + 4);
    else
        return 1;
    int angle = 0, axis = -1, seen_irot = 0;
    uint32_t t, k = 0;
    while (next_box(&ipco, &t, &box)) {
        k++;
        if (box.p == box.end)
            continue;
        if (t == FOURCC('i', 'r', 'o', 't') && !seen_irot &&
            associated(iprp, id, k)) {
            angle = box.p[0] & 3;
            seen_irot = 1;
        } else if (t == FOURCC('i', 'm', 'i', 'r') && axis < 0 &&
                   associated(iprp, id, k)) {
            axis = box.p[0] & 1;
        }
    }
    /* [angle][no imir, imir axis 0, imir axis 1] */
    static const int map[4][3] = {{1, 4, 2}, {8, 5, 7}, {3, 2, 4}, {6, 7, 5}};
    return map[angle][axis + 1];
}

/* Whether the file's top-level boxes run past its end: a file cut short,
 * whatever libheif found missing first. */
int img_heif_cut_short(const uint8_t *b, size_t n)
{
    span file = {b, b + n}, body;
    uint32_t t;
    while (next_box(&file, &t, &body))
        ;
    return file.p != file.end;
}
