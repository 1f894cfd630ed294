/*
 * libFuzzer target for the BMP decoder (our own reader: the headers, the
 * palette, the raw rows and Pillow's RLE reader) and what follows it
 * (alpha compositing, preprocessing). Inputs without a BMP signature are
 * skipped: the other targets cover the other formats.
 * Built by `make fuzz`; seeds in tests/fuzz/corpus/bmp/.
 */
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || data[0] != 'B' || data[1] != 'M')
        return 0;
    fuzz_one(data, size);
    return 0;
}
