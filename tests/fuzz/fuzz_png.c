/*
 * libFuzzer target for the PNG decoder and what follows it (EXIF
 * orientation, alpha compositing, preprocessing). Inputs without the
 * PNG signature are skipped: the other decoder's target covers them, and
 * the sniffing in front is covered by the test suite.
 * Built by `make fuzz`; seeds in tests/fuzz/corpus/png/.
 */
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8 || memcmp(data, "\x89PNG\r\n\x1a\n", 8) != 0)
        return 0;
    fuzz_one(data, size);
    return 0;
}
