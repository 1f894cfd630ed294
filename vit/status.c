/*
 * The status list's messages and the one helper that fills a vit_error.
 * Both come from VIT_STATUS_LIST in vit.h, so the enum and its strings can
 * never disagree.
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

vit_status vit__fail(vit_error *err, vit_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

const char *vit_version(void)
{
    return VIT_VERSION_STRING;
}
