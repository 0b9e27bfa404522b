/*
 * jvx.h — small helpers on jq's jv values that the library shares.
 */
#ifndef CV_COMMON_JVX_H
#define CV_COMMON_JVX_H

#include <jv.h>

/*
 * A copy of `v` (consumed) that shares no allocation with it. jq 1.6's
 * reference counts are not atomic, so a value handed to another thread must
 * be one that no other thread can reach: deep-copy it at the hand-over.
 * Returns jv_invalid() on out of memory (jq aborts on OOM today, but the
 * contract leaves room for it).
 */
jv cv__jv_deep_copy(jv v);

#endif
