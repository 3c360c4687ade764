// glibc's malloc tuning (mallopt, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD), which the Glibc module
// leaves out; part of libc, nothing to link. Used by the tpstore executable only.
#include <malloc.h>
