/*
 * libFuzzer target for the GIF decoder (giflib's block and LZW reading,
 * the first frame laid out as Pillow lays it) and what follows it (alpha
 * compositing, preprocessing). Inputs without a GIF signature are
 * skipped: the other targets cover the other formats.
 * Built by `make fuzz`; seeds in tests/fuzz/corpus/gif/.
 */
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6 || (memcmp(data, "GIF87a", 6) != 0 &&
                     memcmp(data, "GIF89a", 6) != 0))
        return 0;
    fuzz_one(data, size);
    return 0;
}
