/*
 * libFuzzer target for the WebP decoder (libwebp's animation decoder, the
 * container's EXIF and XMP chunks) and what follows it (EXIF orientation,
 * alpha compositing, preprocessing). Inputs without the RIFF/WEBP
 * signature are skipped: the other targets cover the other formats.
 * Built by `make fuzz`; seeds in tests/fuzz/corpus/webp/.
 */
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 12 || memcmp(data, "RIFF", 4) != 0 ||
        memcmp(data + 8, "WEBP", 4) != 0)
        return 0;
    fuzz_one(data, size);
    return 0;
}
