// rANS with AVX2 (four vectors of 8 lanes), for CPUs without AVX-512: the 32-lane decoders
// (context-delta symbols, order-0 bytes) and the context-delta encoder's token pass and rANS
// encoder, with the same streams and results as rans_avx512.c's forms, which the public entry
// points prefer where they run. AVX2 has gathers (on Zen 2 slower than eight scalar loads for the
// order-0 decoder's and the encoder's table lookups, which load that way; not for the context-delta
// decoder's) but neither expands, compresses nor masks, so a renormalisation moves words between
// lanes and memory with a permutation from a 256-entry table per need mask; and no vector
// leading-zero count, so bit lengths come from float exponents.
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
    static int known = -1;
    return tenpak_internal_probe_once(&known, avx2_usable);
}

// spread[m][j]: for a need mask m of 8 lanes, the index of the word lane j takes (the number of
// needing lanes below j) where bit j of m is set; 0 elsewhere (masked off by the blend).
static uint32_t spread[256][8];

// gather_top[m]: for a need mask m of 8 lanes, the lanes that emit a word, in lane order, in the
// top popcount(m) entries (the encoder stores a vector's top words just below its sink); 0 below.
static uint32_t gather_top[256][8];

__attribute__((constructor)) static void fill_tables(void) {
    for (unsigned m = 0; m < 256; m++) {
        unsigned k = 0, top = 8 - (unsigned)__builtin_popcount(m);
        for (unsigned j = 0; j < 8; j++) {
            spread[m][j] = (m >> j) & 1 ? k++ : 0;
            gather_top[m][j] = 0;
        }
        for (unsigned j = 0; j < 8; j++) if ((m >> j) & 1) gather_top[m][top++] = j;
    }
}

#define TP_TARGET __attribute__((target("avx2,popcnt")))

// table[idx[j]] for the 8 lanes, by scalar loads: on Zen 2 faster than a gather.
TP_TARGET static inline __m256i lookup8(const uint32_t *table, __m256i idx) {
    uint32_t k[8] __attribute__((aligned(32)));
    _mm256_store_si256((__m256i *)k, idx);
    // Safe: the caller's indices are inside the table.
    return _mm256_setr_epi32((int)table[k[0]], (int)table[k[1]], (int)table[k[2]], (int)table[k[3]],
                             (int)table[k[4]], (int)table[k[5]], (int)table[k[6]], (int)table[k[7]]);
}

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
    __m256i entry = lookup8(table, slot);
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

// The decay prediction of 8 base elements; see predict16 in rans_avx512.c.
TP_TARGET static inline __m256i predict8(__m256i b, uint64_t decay, uint32_t mantissa_bits, uint32_t exponent_mask,
                                         uint32_t value_mask) {
    if (decay == 0) return b;
    __m256i mag = _mm256_and_si256(b, _mm256_set1_epi32((int)(value_mask >> 1)));
    __m256i e = _mm256_srl_epi32(mag, _mm_cvtsi32_si128((int)mantissa_bits));
    __m256i mant = _mm256_set1_epi32((int)((1u << mantissa_bits) - 1));
    __m256i subnormal = _mm256_cmpeq_epi32(e, _mm256_setzero_si256());
    __m256i sig = _mm256_blendv_epi8(_mm256_or_si256(_mm256_and_si256(mag, mant), _mm256_set1_epi32((int)(1u << mantissa_bits))),
                                     mag, subnormal);
    __m256i c = _mm256_set1_epi64x((long long)decay);
    __m256i round = _mm256_set1_epi64x(0x80000000LL);
    // 32 x 32 -> 64-bit products of the even and the odd lanes; their high halves are the subtrahends.
    __m256i even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epu32(sig, c), round), 32);
    __m256i odd = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(sig, 32), c), round);
    __m256i sub = _mm256_blend_epi32(even, odd, 0xAA);
    __m256i special = _mm256_cmpeq_epi32(e, _mm256_set1_epi32((int)exponent_mask));
    return _mm256_blendv_epi8(_mm256_sub_epi32(b, sub), b, special);
}

// Bit length of each lane (0 for 0, else one more than the index of the top bit) from the exponent
// of the lane as a float. Clearing every bit with a set bit just above it keeps the top bit and
// clears the one below, so rounding to 24 bits cannot carry into the next power of two; 2^31, read
// as -2^31 by the signed conversion, has the same exponent field.
TP_TARGET static inline __m256i bit_lengths(__m256i a) {
    __m256i v = _mm256_andnot_si256(_mm256_srli_epi32(a, 1), a);
    __m256i e = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(v)), 23), _mm256_set1_epi32(0xFF));
    return _mm256_max_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(126)), _mm256_setzero_si256());
}

// Context-delta tokens of 8 elements; see half_tokens in rans_avx512.c. Stores the raw fields,
// returns the symbols and sets *nraw to the raw field widths.
TP_TARGET static inline __m256i quarter_tokens(const struct tenpak_cd_encode_params *p, const uint8_t *target,
                                               const uint8_t *base, size_t i, __m256i *prev, uint32_t *raw, __m256i *nraw) {
    __m256i b, t;
    if (p->element_bytes == 4) {
        // Safe: the caller passes only whole groups inside both buffers.
        b = _mm256_loadu_si256((const __m256i *)(base + i * 4));
        t = _mm256_loadu_si256((const __m256i *)(target + i * 4));
    } else {
        b = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(base + i * 2)));
        t = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(target + i * 2)));
    }
    const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
    const __m256i mask = _mm256_set1_epi32((int)p->value_mask);
    __m256i pred = predict8(b, p->decay, p->mantissa_bits, p->exponent_mask, p->value_mask);
    __m256i d = _mm256_and_si256(_mm256_sub_epi32(t, pred), mask);
    __m256i neg = _mm256_srl_epi32(d, _mm_cvtsi32_si128((int)p->sign_shift));
    __m256i negMask = _mm256_sub_epi32(zero, neg);
    __m256i a = _mm256_and_si256(_mm256_sub_epi32(_mm256_xor_si256(d, negMask), negMask), mask);
    __m256i len = bit_lengths(a);
    __m256i sh = _mm256_max_epi32(_mm256_sub_epi32(len, _mm256_set1_epi32(2)), zero);
    __m256i top = _mm256_and_si256(_mm256_srlv_epi32(a, sh), one);
    // Token: 0 for L = 0, 1 + neg for L = 1, 4L - 5 + 2 neg + top from L = 2.
    __m256i tok = _mm256_add_epi32(_mm256_sub_epi32(_mm256_slli_epi32(len, 2), _mm256_set1_epi32(5)),
                                   _mm256_add_epi32(_mm256_slli_epi32(neg, 1), top));
    tok = _mm256_blendv_epi8(tok, _mm256_add_epi32(neg, one), _mm256_cmpeq_epi32(len, one));
    tok = _mm256_andnot_si256(_mm256_cmpeq_epi32(len, zero), tok);
    // Safe: the caller's raw has room for the group's 32 fields.
    _mm256_storeu_si256((__m256i *)raw, _mm256_and_si256(a, _mm256_sub_epi32(_mm256_sllv_epi32(one, sh), one)));
    *nraw = sh;
    // Context: exponent context of the base element, bucket of the lane's previous element (a
    // compare is all ones, -1, where L exceeds a threshold).
    __m256i eb = _mm256_and_si256(_mm256_srl_epi32(b, _mm_cvtsi32_si128((int)p->mantissa_bits)), _mm256_set1_epi32((int)p->exponent_mask));
    __m256i ectx = _mm256_add_epi32(eb, _mm256_set1_epi32(15 - p->exponent_top));
    ectx = _mm256_min_epi32(_mm256_max_epi32(ectx, zero), _mm256_set1_epi32(15));
    __m256i ctx = _mm256_add_epi32(_mm256_slli_epi32(ectx, 2), *prev);
    __m256i over = _mm256_add_epi32(_mm256_cmpgt_epi32(len, _mm256_set1_epi32((int)p->thresholds[0])),
                                    _mm256_cmpgt_epi32(len, _mm256_set1_epi32((int)p->thresholds[1])));
    *prev = _mm256_sub_epi32(zero, _mm256_add_epi32(over, _mm256_cmpgt_epi32(len, _mm256_set1_epi32((int)p->thresholds[2]))));
    return _mm256_or_si256(_mm256_sll_epi32(ctx, _mm_cvtsi32_si128((int)p->stride_shift)), tok);
}

// Two vectors of 8 symbols (each below 2^16), in lane order, to out[0 ..< 16].
TP_TARGET static inline void store_shorts16(uint16_t *out, __m256i a, __m256i b) {
    // packus keeps each 128-bit half apart (a0-3 b0-3 | a4-7 b4-7); the 64-bit permutation orders them.
    __m256i ab = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
    // Safe: the caller's 16 entries at out lie inside the symbols.
    _mm256_storeu_si256((__m256i *)out, ab);
}

TP_TARGET size_t tenpak_internal_cd_tokens32_avx2(const struct tenpak_cd_encode_params *p, const void *target, const void *base,
                                                  size_t count, uint32_t prev_buckets[32], uint16_t *syms, uint32_t *raw,
                                                  uint8_t *nraw) {
    __m256i prev[4], s[4], w[4];
    for (int q = 0; q < 4; q++) prev[q] = _mm256_loadu_si256((const __m256i *)(prev_buckets + 8 * q));
    size_t done = 0;
    for (; count - done >= 32; done += 32) {
        for (int q = 0; q < 4; q++)
            s[q] = quarter_tokens(p, (const uint8_t *)target, (const uint8_t *)base, done + 8 * q, &prev[q], raw + done + 8 * q, &w[q]);
        store_shorts16(syms + done, s[0], s[1]);
        store_shorts16(syms + done + 16, s[2], s[3]);
        store_bytes32(nraw + done, w[0], w[1], w[2], w[3]);
    }
    for (int q = 0; q < 4; q++) _mm256_storeu_si256((__m256i *)(prev_buckets + 8 * q), prev[q]);
    return done;
}

// One quarter (8 lanes) of a group of the rANS encoder; see encode_half in rans_avx512.c.
TP_TARGET static inline void encode_quarter(const uint32_t *freq_start, uint32_t table_log, const void *syms,
                                            uint32_t sym_bytes, size_t i, __m256i *x, uint8_t **p) {
    // Eight table loads by scalar index: the symbols are in memory already, and on Zen 2 this runs
    // faster than a gather.
    __m256i fs;
    // Safe: the caller passes whole groups inside `syms`; every symbol indexes the table (its alphabet).
    if (sym_bytes == 2) {
        const uint16_t *sp = (const uint16_t *)syms + i;
        fs = _mm256_setr_epi32((int)freq_start[sp[0]], (int)freq_start[sp[1]], (int)freq_start[sp[2]], (int)freq_start[sp[3]],
                               (int)freq_start[sp[4]], (int)freq_start[sp[5]], (int)freq_start[sp[6]], (int)freq_start[sp[7]]);
    } else {
        const uint8_t *sp = (const uint8_t *)syms + i;
        fs = _mm256_setr_epi32((int)freq_start[sp[0]], (int)freq_start[sp[1]], (int)freq_start[sp[2]], (int)freq_start[sp[3]],
                               (int)freq_start[sp[4]], (int)freq_start[sp[5]], (int)freq_start[sp[6]], (int)freq_start[sp[7]]);
    }
    __m256i f = _mm256_and_si256(fs, _mm256_set1_epi32(0xFFFF));
    __m256i start = _mm256_srli_epi32(fs, 16);
    // Renormalise where x >> (32 - table_log) >= f; both sides are below 2^16, so a signed compare
    // with f - 1 decides it.
    __m256i need = _mm256_cmpgt_epi32(_mm256_srl_epi32(*x, _mm_cvtsi32_si128(32 - (int)table_log)),
                                      _mm256_sub_epi32(f, _mm256_set1_epi32(1)));
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(need));
    __m256i out = _mm256_and_si256(_mm256_permutevar8x32_epi32(*x, _mm256_loadu_si256((const __m256i *)gather_top[m])),
                                   _mm256_set1_epi32(0xFFFF));
    __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(out), _mm256_extracti128_si256(out, 1));
    // Safe: the sink has room for a word per symbol left and 32 bytes of slack below *p, so the 16
    // bytes below it are inside; the emitted words are the top ones, what lies below them is
    // overwritten by later words or left below the stream's start.
    _mm_storeu_si128((__m128i *)(*p - 16), words);
    *p -= 2 * (size_t)__builtin_popcount(m);
    *x = _mm256_blendv_epi8(*x, _mm256_srli_epi32(*x, 16), need);
    // q = floor(x / f), exact in double (see encode_half); x is unsigned, the conversion signed, so
    // it converts x - 2^31 and adds 2^31 back.
    const __m128i bias = _mm_set1_epi32((int)0x80000000u);
    const __m256d two31 = _mm256_set1_pd(2147483648.0);
    __m256d xlo = _mm256_add_pd(_mm256_cvtepi32_pd(_mm_xor_si128(_mm256_castsi256_si128(*x), bias)), two31);
    __m256d xhi = _mm256_add_pd(_mm256_cvtepi32_pd(_mm_xor_si128(_mm256_extracti128_si256(*x, 1), bias)), two31);
    __m128i qlo = _mm256_cvttpd_epi32(_mm256_div_pd(xlo, _mm256_cvtepi32_pd(_mm256_castsi256_si128(f))));
    __m128i qhi = _mm256_cvttpd_epi32(_mm256_div_pd(xhi, _mm256_cvtepi32_pd(_mm256_extracti128_si256(f, 1))));
    __m256i q = _mm256_set_m128i(qhi, qlo);
    // x' = x + start + q * (M - f); q < 2^(32 - table_log) fits the signed conversion.
    __m256i cmpl = _mm256_sub_epi32(_mm256_set1_epi32(1 << table_log), f);
    *x = _mm256_add_epi32(_mm256_add_epi32(*x, start), _mm256_mullo_epi32(q, cmpl));
}

TP_TARGET size_t tenpak_internal_rans_encode32_avx2(const uint32_t *freq_start, uint32_t table_log, const void *syms,
                                                    uint32_t sym_bytes, size_t count, uint32_t states[32], uint8_t **sink) {
    __m256i x[4];
    for (int q = 0; q < 4; q++) x[q] = _mm256_loadu_si256((const __m256i *)(states + 8 * q));
    uint8_t *p = *sink;
    size_t groups = count / 32;
    for (size_t g = groups; g > 0; g--) {
        size_t i = (g - 1) * 32;
        // Backwards: the top quarter's symbols come first, so its words lie above the others'.
        for (int q = 3; q >= 0; q--) encode_quarter(freq_start, table_log, syms, sym_bytes, i + 8 * (size_t)q, &x[q], &p);
    }
    for (int q = 0; q < 4; q++) _mm256_storeu_si256((__m256i *)(states + 8 * q), x[q]);
    *sink = p;
    return groups * 32;
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

size_t tenpak_internal_cd_tokens32_avx2(const struct tenpak_cd_encode_params *p, const void *target, const void *base,
                                        size_t count, uint32_t prev_buckets[32], uint16_t *syms, uint32_t *raw,
                                        uint8_t *nraw) {
    (void)p; (void)target; (void)base; (void)count; (void)prev_buckets; (void)syms; (void)raw; (void)nraw;
    return 0;
}

size_t tenpak_internal_rans_encode32_avx2(const uint32_t *freq_start, uint32_t table_log, const void *syms,
                                          uint32_t sym_bytes, size_t count, uint32_t states[32], uint8_t **sink) {
    (void)freq_start; (void)table_log; (void)syms; (void)sym_bytes; (void)count; (void)states; (void)sink;
    return 0;
}

#endif
