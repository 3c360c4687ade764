// See include/tenpak_kernels.h, tenpak_clear_avx_upper.
#include "tenpak_kernels.h"
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

// AVX usable: the CPU has it and the OS saves the YMM state (OSXSAVE, XCR0 bits 1 and 2).
static int avx_usable(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!((c >> 27) & 1) || !((c >> 28) & 1)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6;
}

// -1 unknown, else avx_usable().
static int has_avx = -1;

__attribute__((target("avx"))) static void zero_upper(void) { _mm256_zeroupper(); }

void tenpak_clear_avx_upper(void) {
    if (tenpak_internal_probe_once(&has_avx, avx_usable)) zero_upper();
}

#else

void tenpak_clear_avx_upper(void) {}

#endif
