// The *_dispatch entry points pick AVX2/AVX-512 at run time (3-5x faster than the plain exports
// in a streaming loop); without this define the header would rename the plain calls to them.
#define XXH_DISPATCH_DISABLE_REPLACE 1
#include <xxhash.h>
#include <xxh_x86dispatch.h>
