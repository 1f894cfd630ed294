/*
 * libFuzzer target for the TIFF decoder (our walk of the first directory,
 * Pillow's mode table, libtiff's codecs and strip, tile and plane reading,
 * the sample conversions, the Orientation turn) and what follows it
 * (alpha compositing, preprocessing). Inputs without a TIFF or BigTIFF
 * signature are skipped: the other targets cover the other formats.
 * Built by `make fuzz`; seeds in tests/fuzz/corpus/tiff/.
 */
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || (memcmp(data, "II*\0", 4) != 0 &&
                     memcmp(data, "MM\0*", 4) != 0 &&
                     memcmp(data, "II+\0", 4) != 0 &&
                     memcmp(data, "MM\0+", 4) != 0))
        return 0;
    fuzz_one(data, size);
    return 0;
}
