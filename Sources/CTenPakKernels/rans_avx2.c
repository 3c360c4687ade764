// rANS decoding, 32 lanes with AVX2 (four vectors of 8), for CPUs without AVX-512: the same streams
// and results as rans_avx512.c's decoders, which tenpak_cd_symbols32 and tenpak_rans8_decode32
// prefer where they run. AVX2 has gathers but neither an expand nor masks, so a renormalisation
// spreads the words to the lanes that take them with a permutation from a 256-entry table.
#include "tenpak_kernels.h"
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

// AVX2 usable: the CPU has AVX, AVX2 and POPCNT, and the OS saves the YMM state (XCR0 bits 1, 2).
static int avx2_usable(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!((c >> 27) & 1) || !((c >> 28) & 1) || !((c >> 23) & 1)) return 0;   // OSXSAVE, AVX, POPCNT
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!((b >> 5) & 1)) return 0;   // AVX2
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0x6) == 0x6;
}

int tenpak_internal_avx2_available(void) {
    // -1 unknown. Relaxed atomics: threads racing to fill it store the same value.
    static int known = -1;
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (k < 0) {
        k = avx2_usable();
        __atomic_store_n(&known, k, __ATOMIC_RELAXED);
    }
    return k;
}

// spread[m][j]: for a need mask m of 8 lanes, the index of the word lane j takes (the number of
// needing lanes below j) where bit j of m is set; 0 elsewhere (masked off by the blend).
static uint32_t spread[256][8];

__attribute__((constructor)) static void fill_spread(void) {
    for (unsigned m = 0; m < 256; m++) {
        unsigned k = 0;
        for (unsigned j = 0; j < 8; j++) spread[m][j] = (m >> j) & 1 ? k++ : 0;
    }
}

#define TP_TARGET __attribute__((target("avx2,popcnt")))

// Renormalises the lanes of `x` below 2^16 in lane order, each taking the next 16-bit word.
TP_TARGET static inline void quarter_renorm(__m256i *x, const uint8_t **rp) {
    __m256i need = _mm256_cmpeq_epi32(_mm256_srli_epi32(*x, 16), _mm256_setzero_si256());
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(need));
    // Safe: the caller leaves 64 bytes of stream per group, its four quarters read at most 16
    // bytes each, so 16 bytes from here are inside the stream.
    __m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)*rp));
    __m256i spread_words = _mm256_permutevar8x32_epi32(words, _mm256_loadu_si256((const __m256i *)spread[m]));
    __m256i renormed = _mm256_or_si256(_mm256_slli_epi32(*x, 16), spread_words);
    *x = _mm256_blendv_epi8(*x, renormed, need);
    *rp += 2 * (size_t)__builtin_popcount(m);
}

// The bytes of four vectors of 8 symbols (each below 256), in lane order, to out[0 ..< 32].
TP_TARGET static inline void store_bytes32(uint8_t *out, __m256i a, __m256i b, __m256i c, __m256i d) {
    // packus keeps each 128-bit half apart: bytes a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7; the
    // permutation of 32-bit groups puts them in order.
    __m256i ab = _mm256_packus_epi32(a, b), cd = _mm256_packus_epi32(c, d);
    __m256i bytes = _mm256_packus_epi16(ab, cd);
    bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // Safe: the caller's 32 bytes at out lie inside the output.
    _mm256_storeu_si256((__m256i *)out, bytes);
}

// One quarter (8 lanes) of a context-delta group; see half_symbols in rans_avx512.c.
TP_TARGET static inline __m256i quarter_symbols(const struct tenpak_cd_params *p, const void *base, size_t i,
                                                __m256i *x, __m256i *pb) {
    __m256i b;
    if (p->element_bytes == 4) {
        // Safe: the caller decodes only groups that lie inside the base (i + 8 <= n).
        b = _mm256_loadu_si256((const __m256i *)((const uint8_t *)base + i * 4));
    } else {
        b = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint8_t *)base + i * 2)));
    }
    __m256i e = _mm256_and_si256(_mm256_srl_epi32(b, _mm_cvtsi32_si128((int)p->mantissa_bits)), _mm256_set1_epi32((int)p->exponent_mask));
    __m256i t = _mm256_add_epi32(e, _mm256_set1_epi32(15 - p->exponent_top));
    t = _mm256_min_epi32(_mm256_max_epi32(t, _mm256_setzero_si256()), _mm256_set1_epi32(15));
    __m256i ctx = _mm256_add_epi32(_mm256_mullo_epi32(t, _mm256_set1_epi32((int)p->exponent_stride)), *pb);
    __m256i slot = _mm256_and_si256(*x, _mm256_set1_epi32((int)((1u << p->table_log) - 1)));
    // Safe: ctx < 64 << table_log and slot < 2^table_log index the slot table.
    __m256i entry = _mm256_i32gather_epi32((const int *)p->slots, _mm256_add_epi32(ctx, slot), 4);
    __m256i s = _mm256_and_si256(entry, _mm256_set1_epi32(0x7F));
    // Bit length L = (s + 5) >> 2, 0 for s = 0; the next bucket offset adds a stride per threshold
    // L exceeds (a compare is all ones where it does).
    __m256i len = _mm256_andnot_si256(_mm256_cmpeq_epi32(s, _mm256_setzero_si256()),
                                      _mm256_srli_epi32(_mm256_add_epi32(s, _mm256_set1_epi32(5)), 2));
    __m256i step = _mm256_set1_epi32((int)p->bucket_stride);
    __m256i next = _mm256_and_si256(_mm256_cmpgt_epi32(len, _mm256_set1_epi32((int)p->thresholds[0])), step);
    next = _mm256_add_epi32(next, _mm256_and_si256(_mm256_cmpgt_epi32(len, _mm256_set1_epi32((int)p->thresholds[1])), step));
    *pb = _mm256_add_epi32(next, _mm256_and_si256(_mm256_cmpgt_epi32(len, _mm256_set1_epi32((int)p->thresholds[2])), step));
    __m256i freq = _mm256_and_si256(_mm256_srli_epi32(entry, 7), _mm256_set1_epi32(0x1FFF));
    __m256i offset = _mm256_srli_epi32(entry, 20);
    __m256i hi = _mm256_srl_epi32(*x, _mm_cvtsi32_si128((int)p->table_log));
    *x = _mm256_add_epi32(_mm256_mullo_epi32(freq, hi), offset);
    return s;
}

TP_TARGET size_t tenpak_internal_cd_symbols32_avx2(const struct tenpak_cd_params *p, const void *base, size_t i, size_t count,
                                                   uint32_t states[32], uint32_t bucket_offsets_of_lanes[32],
                                                   const uint8_t **stream, const uint8_t *stream_end, uint8_t *symbols) {
    __m256i x[4], pb[4];
    for (int q = 0; q < 4; q++) {
        x[q] = _mm256_loadu_si256((const __m256i *)(states + 8 * q));
        pb[q] = _mm256_loadu_si256((const __m256i *)(bucket_offsets_of_lanes + 8 * q));
    }
    const uint8_t *rp = *stream;
    size_t done = 0;
    while (count - done >= 32 && stream_end - rp >= 64) {
        __m256i s0 = quarter_symbols(p, base, i + done, &x[0], &pb[0]);
        __m256i s1 = quarter_symbols(p, base, i + done + 8, &x[1], &pb[1]);
        __m256i s2 = quarter_symbols(p, base, i + done + 16, &x[2], &pb[2]);
        __m256i s3 = quarter_symbols(p, base, i + done + 24, &x[3], &pb[3]);
        store_bytes32(symbols + done, s0, s1, s2, s3);
        for (int q = 0; q < 4; q++) quarter_renorm(&x[q], &rp);
        done += 32;
    }
    for (int q = 0; q < 4; q++) {
        _mm256_storeu_si256((__m256i *)(states + 8 * q), x[q]);
        _mm256_storeu_si256((__m256i *)(bucket_offsets_of_lanes + 8 * q), pb[q]);
    }
    *stream = rp;
    return done;
}

// One quarter (8 lanes) of an order-0 byte group; see half_bytes in rans_avx512.c.
TP_TARGET static inline __m256i quarter_bytes(const uint32_t *table, uint32_t table_log, __m256i *x) {
    __m256i slot = _mm256_and_si256(*x, _mm256_set1_epi32((int)((1u << table_log) - 1)));
    // Safe: slot < 2^table_log, the table's size.
    __m256i entry = _mm256_i32gather_epi32((const int *)table, slot, 4);
    __m256i freq = _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(entry, 8), _mm256_set1_epi32(0xFFF)), _mm256_set1_epi32(1));
    __m256i hi = _mm256_srl_epi32(*x, _mm_cvtsi32_si128((int)table_log));
    *x = _mm256_add_epi32(_mm256_mullo_epi32(freq, hi), _mm256_srli_epi32(entry, 20));
    return _mm256_and_si256(entry, _mm256_set1_epi32(0xFF));
}

TP_TARGET size_t tenpak_internal_rans8_decode32_avx2(const uint32_t *table, uint32_t table_log, uint32_t states[32],
                                                     const uint8_t **stream, const uint8_t *stream_end, uint8_t *out, size_t count) {
    __m256i x[4];
    for (int q = 0; q < 4; q++) x[q] = _mm256_loadu_si256((const __m256i *)(states + 8 * q));
    const uint8_t *rp = *stream;
    size_t done = 0;
    while (count - done >= 32 && stream_end - rp >= 64) {
        __m256i b0 = quarter_bytes(table, table_log, &x[0]);
        __m256i b1 = quarter_bytes(table, table_log, &x[1]);
        __m256i b2 = quarter_bytes(table, table_log, &x[2]);
        __m256i b3 = quarter_bytes(table, table_log, &x[3]);
        // Safe: done + 32 <= count, the output's length.
        store_bytes32(out + done, b0, b1, b2, b3);
        for (int q = 0; q < 4; q++) quarter_renorm(&x[q], &rp);
        done += 32;
    }
    for (int q = 0; q < 4; q++) _mm256_storeu_si256((__m256i *)(states + 8 * q), x[q]);
    *stream = rp;
    return done;
}

#else

int tenpak_internal_avx2_available(void) { return 0; }

size_t tenpak_internal_cd_symbols32_avx2(const struct tenpak_cd_params *p, const void *base, size_t i, size_t count,
                                         uint32_t states[32], uint32_t bucket_offsets_of_lanes[32],
                                         const uint8_t **stream, const uint8_t *stream_end, uint8_t *symbols) {
    (void)p; (void)base; (void)i; (void)count; (void)states; (void)bucket_offsets_of_lanes;
    (void)stream; (void)stream_end; (void)symbols;
    return 0;
}

size_t tenpak_internal_rans8_decode32_avx2(const uint32_t *table, uint32_t table_log, uint32_t states[32],
                                           const uint8_t **stream, const uint8_t *stream_end, uint8_t *out, size_t count) {
    (void)table; (void)table_log; (void)states; (void)stream; (void)stream_end; (void)out; (void)count;
    return 0;
}

#endif
