/*
 * libFuzzer target for the JPEG decoder and what follows it (EXIF
 * orientation, alpha compositing, preprocessing). Inputs without the
 * JPEG signature are skipped: the other decoder's target covers them, and
 * the sniffing in front is covered by the test suite.
 * Built by `make fuzz`; seeds in tests/fuzz/corpus/jpeg/.
 */
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || data[0] != 0xff || data[1] != 0xd8 || data[2] != 0xff)
        return 0;
    fuzz_one(data, size);
    return 0;
}
