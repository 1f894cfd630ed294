/*
 * libFuzzer target for the HEIC and AVIF decoder: libheif's reading of the
 * container (boxes, items, properties, grids), the HEVC and AV1 decoders
 * behind it (libde265, and dav1d through our own plugin), our reading of
 * irot and imir, and what follows (alpha compositing, the EXIF turn,
 * preprocessing). Inputs whose ftyp box does not name a HEIF brand are
 * skipped: the other targets cover the other formats. In a build without
 * libheif every input is refused at once, which still checks the refusal.
 * The codecs are C and C++ libraries that were known to print on damaged
 * data; when stderr is a file (a long run: ... 2> log), a decode that
 * writes to it is a finding too.
 * Built by `make fuzz`; seeds in tests/fuzz/corpus/heif/.
 */
#include "tests/fuzz/fuzz_common.h"

#include <stdio.h>
#include <sys/stat.h>

/* The size of stderr when it is a regular file, else -1. */
static long long stderr_size(void)
{
    struct stat st;
    fflush(stderr);
    return fstat(2, &st) == 0 && S_ISREG(st.st_mode) ? (long long)st.st_size
                                                      : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char brands[][5] = {"heic", "heix", "hevc", "hevx", "heim",
                                     "heis", "mif1", "msf1", "avif", "avis"};
    if (size < 12 || memcmp(data + 4, "ftyp", 4) != 0)
        return 0;
    for (size_t i = 0; i < sizeof brands / sizeof brands[0]; i++)
        if (memcmp(data + 8, brands[i], 4) == 0) {
            long long before = stderr_size();
            fuzz_one(data, size);
            if (before >= 0 && stderr_size() != before) {
                fprintf(stderr, "fuzz_heif: the decoder printed\n");
                abort();
            }
            break;
        }
    return 0;
}
