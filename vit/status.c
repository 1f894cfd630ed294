/*
 * The status list's messages, from VIT_STATUS_LIST in vit.h, so the enum
 * and its strings can never disagree. (The helper that fills a vit_error
 * is vit/fail.h's vit__fail.)
 */
#include "vit/vit_impl.h"

#include <string.h>

const char *vit_status_str(vit_status st)
{
    switch (st) {
#define VIT_STATUS_CASE(name, msg) \
    case name:                     \
        return msg;
        VIT_STATUS_LIST(VIT_STATUS_CASE)
#undef VIT_STATUS_CASE
    }
    return "unknown status";
}

const char *vit_version(void)
{
    return VIT_VERSION_STRING;
}
