// Stable zstd API only: ZSTD_STATIC_LINKING_ONLY must stay undefined against the shared library.
#include <zstd.h>
