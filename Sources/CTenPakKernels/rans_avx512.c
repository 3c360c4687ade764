// rANS, 32 lanes with AVX-512 (two vectors of 16): decoding of context-delta symbols and order-0
// byte streams, the context-delta encoder's token pass and rANS encoder; the public entry points
// fall back to rans_avx2.c's forms where AVX-512 (for the encoder: with CD, BW, VL) is missing.
// See include/tenpak_kernels.h for the contracts, Sources/TenPakCodecs/Entropy/FORMAT.md (mode 2)
// and SPEC 8.1 (plane mode 3) for the streams.
#include "tenpak_kernels.h"
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

// AVX-512F usable: the CPU has it and the OS saves the opmask and ZMM state (XCR0 bits 1, 2, 5-7).
static int avx512_usable(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!((c >> 27) & 1)) return 0;   // OSXSAVE
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!((b >> 16) & 1)) return 0;   // AVX512F
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xE6) == 0xE6;
}

// The encoder kernels' extensions on top of AVX-512F: CD (VPLZCNTD, bit lengths), BW and VL
// (16-bit masked stores of the emitted words).
static int avx512_encoder_extensions(void) {
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return ((b >> 28) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1);
}

// The widest kernels the dispatchers may choose (tenpak_set_kernel_limit). Relaxed atomics: it is
// set while no codec runs.
static int kernel_limit = 2;

void tenpak_set_kernel_limit(int limit) {
    __atomic_store_n(&kernel_limit, limit < 0 ? 0 : limit > 2 ? 2 : limit, __ATOMIC_RELAXED);
}

int tenpak_kernel_limit(void) { return __atomic_load_n(&kernel_limit, __ATOMIC_RELAXED); }

static int avx512_cpu(void) {
    static int known = -1;
    return tenpak_internal_probe_once(&known, avx512_usable);
}

static int avx512_encoder_probe(void) { return avx512_cpu() && avx512_encoder_extensions(); }

static int avx512_encoder_cpu(void) {
    static int known = -1;
    return tenpak_internal_probe_once(&known, avx512_encoder_probe);
}

int tenpak_cpu_kernel_level(void) { return avx512_cpu() ? 2 : tenpak_internal_avx2_available() ? 1 : 0; }

int tenpak_avx512_available(void) { return tenpak_kernel_limit() >= 2 && avx512_cpu(); }

static int avx512_encoder_available(void) { return tenpak_kernel_limit() >= 2 && avx512_encoder_cpu(); }

static int avx2_available(void) { return tenpak_kernel_limit() >= 1 && tenpak_internal_avx2_available(); }

int tenpak_vector_encode_available(void) { return avx512_encoder_available() || avx2_available(); }

#define TP_TARGET __attribute__((target("avx512f,popcnt")))

// One half (16 lanes) of a group: decodes the symbols of elements i .. i+15 from lane states `x`
// (left decoded, not renormalised), their contexts from the base exponents and the lanes'
// previous bucket offsets `pb` (replaced by these symbols' bucket offsets). Returns the symbols.
TP_TARGET static inline __m512i half_symbols(const struct tenpak_cd_params *p, const void *base, size_t i,
                                             __m512i *x, __m512i *pb) {
    __m512i b;
    if (p->element_bytes == 4) {
        // Safe: the caller decodes only groups that lie inside the base (i + 16 <= n).
        b = _mm512_loadu_si512((const void *)((const uint8_t *)base + i * 4));
    } else {
        b = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint8_t *)base + i * 2)));
    }
    __m512i e = _mm512_and_si512(_mm512_srl_epi32(b, _mm_cvtsi32_si128((int)p->mantissa_bits)), _mm512_set1_epi32((int)p->exponent_mask));
    // Exponent context clamp(e - eTop + 15, 0, 15), scaled to its first context block.
    __m512i t = _mm512_add_epi32(e, _mm512_set1_epi32(15 - p->exponent_top));
    t = _mm512_min_epi32(_mm512_max_epi32(t, _mm512_setzero_si512()), _mm512_set1_epi32(15));
    __m512i ctx = _mm512_add_epi32(_mm512_mullo_epi32(t, _mm512_set1_epi32((int)p->exponent_stride)), *pb);
    __m512i slot = _mm512_and_si512(*x, _mm512_set1_epi32((int)((1u << p->table_log) - 1)));
    // Safe: ctx < 64 << table_log and slot < 2^table_log index the slot table.
    __m512i entry = _mm512_i32gather_epi32(_mm512_add_epi32(ctx, slot), (const void *)p->slots, 4);
    __m512i s = _mm512_and_si512(entry, _mm512_set1_epi32(0x7F));
    // The lane's next bucket from this token's bit length L = (s + 5) >> 2 (0 for s = 0): one
    // offset step per threshold L exceeds. Arithmetic rather than a third gather, which would
    // lengthen the chain to the next group.
    __m512i len = _mm512_maskz_srli_epi32(_mm512_test_epi32_mask(s, s), _mm512_add_epi32(s, _mm512_set1_epi32(5)), 2);
    __m512i step = _mm512_set1_epi32((int)p->bucket_stride);
    __m512i next = _mm512_setzero_si512();
    next = _mm512_mask_add_epi32(next, _mm512_cmpgt_epi32_mask(len, _mm512_set1_epi32((int)p->thresholds[0])), next, step);
    next = _mm512_mask_add_epi32(next, _mm512_cmpgt_epi32_mask(len, _mm512_set1_epi32((int)p->thresholds[1])), next, step);
    *pb = _mm512_mask_add_epi32(next, _mm512_cmpgt_epi32_mask(len, _mm512_set1_epi32((int)p->thresholds[2])), next, step);
    __m512i freq = _mm512_and_si512(_mm512_srli_epi32(entry, 7), _mm512_set1_epi32(0x1FFF));
    __m512i offset = _mm512_srli_epi32(entry, 20);
    __m512i hi = _mm512_srl_epi32(*x, _mm_cvtsi32_si128((int)p->table_log));
    *x = _mm512_add_epi32(_mm512_mullo_epi32(freq, hi), offset);
    return s;
}

// Renormalises the lanes of `x` below 2^16 in lane order, each taking the next 16-bit word.
TP_TARGET static inline void half_renorm(__m512i *x, const uint8_t **rp) {
    __mmask16 need = _mm512_cmplt_epu32_mask(*x, _mm512_set1_epi32(1 << 16));
    // Safe: the caller leaves 64 bytes of stream per group, and a group's two halves read at most
    // 32 bytes each.
    __m512i words = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)*rp));
    __m512i spread = _mm512_maskz_expand_epi32(need, words);
    *x = _mm512_mask_or_epi32(*x, need, _mm512_slli_epi32(*x, 16), spread);
    *rp += 2 * (size_t)__builtin_popcount((unsigned)need);
}

TP_TARGET static size_t cd_symbols32_avx512(const struct tenpak_cd_params *p, const void *base, size_t i, size_t count,
                                            uint32_t states[32], uint32_t bucket_offsets_of_lanes[32],
                                            const uint8_t **stream, const uint8_t *stream_end, uint8_t *symbols) {
    __m512i x0 = _mm512_loadu_si512(states), x1 = _mm512_loadu_si512(states + 16);
    __m512i pb0 = _mm512_loadu_si512(bucket_offsets_of_lanes), pb1 = _mm512_loadu_si512(bucket_offsets_of_lanes + 16);
    const uint8_t *rp = *stream;
    size_t done = 0;
    while (count - done >= 32 && stream_end - rp >= 64) {
        __m512i s0 = half_symbols(p, base, i + done, &x0, &pb0);
        __m512i s1 = half_symbols(p, base, i + done + 16, &x1, &pb1);
        _mm_storeu_si128((__m128i *)(symbols + done), _mm512_cvtepi32_epi8(s0));
        _mm_storeu_si128((__m128i *)(symbols + done + 16), _mm512_cvtepi32_epi8(s1));
        half_renorm(&x0, &rp);
        half_renorm(&x1, &rp);
        done += 32;
    }
    _mm512_storeu_si512(states, x0);
    _mm512_storeu_si512(states + 16, x1);
    _mm512_storeu_si512(bucket_offsets_of_lanes, pb0);
    _mm512_storeu_si512(bucket_offsets_of_lanes + 16, pb1);
    *stream = rp;
    return done;
}

// Order-0 byte stream: one half (16 lanes) of a group decodes bytes from `x` (left decoded, not
// renormalised); the entries are symbol | (freq - 1) << 8 | (slot - start) << 20.
TP_TARGET static inline __m512i half_bytes(const uint32_t *table, uint32_t table_log, __m512i *x) {
    __m512i slot = _mm512_and_si512(*x, _mm512_set1_epi32((int)((1u << table_log) - 1)));
    // Safe: slot < 2^table_log, the table's size.
    __m512i entry = _mm512_i32gather_epi32(slot, (const void *)table, 4);
    __m512i freq = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(entry, 8), _mm512_set1_epi32(0xFFF)), _mm512_set1_epi32(1));
    __m512i hi = _mm512_srl_epi32(*x, _mm_cvtsi32_si128((int)table_log));
    *x = _mm512_add_epi32(_mm512_mullo_epi32(freq, hi), _mm512_srli_epi32(entry, 20));
    return entry;
}

TP_TARGET static size_t rans8_decode32_avx512(const uint32_t *table, uint32_t table_log, uint32_t states[32],
                                              const uint8_t **stream, const uint8_t *stream_end, uint8_t *out, size_t count) {
    __m512i x0 = _mm512_loadu_si512(states), x1 = _mm512_loadu_si512(states + 16);
    const uint8_t *rp = *stream;
    size_t done = 0;
    while (count - done >= 32 && stream_end - rp >= 64) {
        __m512i e0 = half_bytes(table, table_log, &x0);
        __m512i e1 = half_bytes(table, table_log, &x1);
        // Safe: done + 32 <= count, the output's length.
        _mm_storeu_si128((__m128i *)(out + done), _mm512_cvtepi32_epi8(e0));
        _mm_storeu_si128((__m128i *)(out + done + 16), _mm512_cvtepi32_epi8(e1));
        half_renorm(&x0, &rp);
        half_renorm(&x1, &rp);
        done += 32;
    }
    _mm512_storeu_si512(states, x0);
    _mm512_storeu_si512(states + 16, x1);
    *stream = rp;
    return done;
}

// The decay prediction of 16 base elements (FORMAT.md "Prediction"): b - round(significand * c /
// 2^32), b itself for Inf/NaN or c = 0.
__attribute__((target("avx512f")))
static inline __m512i predict16(__m512i b, uint64_t decay, uint32_t mantissa_bits, uint32_t exponent_mask, uint32_t value_mask) {
    if (decay == 0) return b;
    __m512i mag = _mm512_and_si512(b, _mm512_set1_epi32((int)(value_mask >> 1)));
    __m512i e = _mm512_srl_epi32(mag, _mm_cvtsi32_si128((int)mantissa_bits));
    __m512i mant = _mm512_set1_epi32((int)((1u << mantissa_bits) - 1));
    __mmask16 normal = _mm512_test_epi32_mask(e, e);
    __m512i sig = _mm512_mask_or_epi32(mag, normal, _mm512_and_si512(mag, mant), _mm512_add_epi32(mant, _mm512_set1_epi32(1)));
    __m512i c = _mm512_set1_epi64((long long)decay);
    __m512i round = _mm512_set1_epi64(0x80000000LL);
    // 32 x 32 -> 64-bit products of the even and the odd lanes; their high halves are the subtrahends.
    __m512i even = _mm512_srli_epi64(_mm512_add_epi64(_mm512_mul_epu32(sig, c), round), 32);
    __m512i odd = _mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64(sig, 32), c), round);
    __m512i sub = _mm512_mask_blend_epi32(0xAAAA, even, odd);
    __mmask16 special = _mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32((int)exponent_mask));
    return _mm512_mask_sub_epi32(b, ~special, b, sub);
}

// Context-delta tokens of 16 elements (see tenpak_cd_tokens32). `prev` holds the buckets of the
// lanes' previous elements and is replaced by these elements' buckets.
__attribute__((target("avx512f,avx512cd,avx512bw,avx512vl")))
static inline void half_tokens(const struct tenpak_cd_encode_params *p, const uint8_t *target, const uint8_t *base,
                               size_t i, __m512i *prev, uint16_t *syms, uint32_t *raw, uint8_t *nraw) {
    __m512i b, t;
    if (p->element_bytes == 4) {
        // Safe: the caller passes only whole groups inside both buffers.
        b = _mm512_loadu_si512((const void *)(base + i * 4));
        t = _mm512_loadu_si512((const void *)(target + i * 4));
    } else {
        b = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(base + i * 2)));
        t = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(target + i * 2)));
    }
    const __m512i mask = _mm512_set1_epi32((int)p->value_mask);
    const __m128i mb = _mm_cvtsi32_si128((int)p->mantissa_bits);
    __m512i pred = predict16(b, p->decay, p->mantissa_bits, p->exponent_mask, p->value_mask);
    __m512i d = _mm512_and_si512(_mm512_sub_epi32(t, pred), mask);
    __m512i neg = _mm512_srl_epi32(d, _mm_cvtsi32_si128((int)p->sign_shift));
    __m512i negMask = _mm512_sub_epi32(_mm512_setzero_si512(), neg);
    __m512i a = _mm512_and_si512(_mm512_sub_epi32(_mm512_xor_si512(d, negMask), negMask), mask);
    __m512i len = _mm512_sub_epi32(_mm512_set1_epi32(32), _mm512_lzcnt_epi32(a));
    __m512i sh = _mm512_max_epi32(_mm512_sub_epi32(len, _mm512_set1_epi32(2)), _mm512_setzero_si512());
    __m512i top = _mm512_and_si512(_mm512_srlv_epi32(a, sh), _mm512_set1_epi32(1));
    // Token: 0 for L = 0, 1 + neg for L = 1, 4L - 5 + 2 neg + top from L = 2.
    __m512i tok = _mm512_add_epi32(_mm512_sub_epi32(_mm512_slli_epi32(len, 2), _mm512_set1_epi32(5)),
                                   _mm512_add_epi32(_mm512_slli_epi32(neg, 1), top));
    tok = _mm512_mask_add_epi32(tok, _mm512_cmpeq_epi32_mask(len, _mm512_set1_epi32(1)), neg, _mm512_set1_epi32(1));
    tok = _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(len, len), tok);
    __m512i bits = _mm512_and_si512(a, _mm512_sub_epi32(_mm512_sllv_epi32(_mm512_set1_epi32(1), sh), _mm512_set1_epi32(1)));
    // Context: exponent context of the base element, bucket of the lane's previous element.
    __m512i eb = _mm512_and_si512(_mm512_srl_epi32(b, mb), _mm512_set1_epi32((int)p->exponent_mask));
    __m512i ectx = _mm512_add_epi32(eb, _mm512_set1_epi32(15 - p->exponent_top));
    ectx = _mm512_min_epi32(_mm512_max_epi32(ectx, _mm512_setzero_si512()), _mm512_set1_epi32(15));
    __m512i ctx = _mm512_add_epi32(_mm512_slli_epi32(ectx, 2), *prev);
    __m512i one = _mm512_set1_epi32(1);
    __m512i bucket = _mm512_setzero_si512();
    bucket = _mm512_mask_add_epi32(bucket, _mm512_cmpgt_epi32_mask(len, _mm512_set1_epi32((int)p->thresholds[0])), bucket, one);
    bucket = _mm512_mask_add_epi32(bucket, _mm512_cmpgt_epi32_mask(len, _mm512_set1_epi32((int)p->thresholds[1])), bucket, one);
    *prev = _mm512_mask_add_epi32(bucket, _mm512_cmpgt_epi32_mask(len, _mm512_set1_epi32((int)p->thresholds[2])), bucket, one);
    __m512i sym = _mm512_or_si512(_mm512_sll_epi32(ctx, _mm_cvtsi32_si128((int)p->stride_shift)), tok);
    _mm256_storeu_si256((__m256i *)syms, _mm512_cvtepi32_epi16(sym));
    _mm512_storeu_si512((void *)raw, bits);
    _mm_storeu_si128((__m128i *)nraw, _mm512_cvtepi32_epi8(sh));
}

__attribute__((target("avx512f,avx512cd,avx512bw,avx512vl")))
static size_t cd_tokens32_avx512(const struct tenpak_cd_encode_params *p, const void *target, const void *base, size_t count,
                          uint32_t prev_buckets[32], uint16_t *syms, uint32_t *raw, uint8_t *nraw) {
    __m512i prev0 = _mm512_loadu_si512(prev_buckets), prev1 = _mm512_loadu_si512(prev_buckets + 16);
    size_t done = 0;
    for (; count - done >= 32; done += 32) {
        half_tokens(p, target, base, done, &prev0, syms + done, raw + done, nraw + done);
        half_tokens(p, target, base, done + 16, &prev1, syms + done + 16, raw + done + 16, nraw + done + 16);
    }
    _mm512_storeu_si512(prev_buckets, prev0);
    _mm512_storeu_si512(prev_buckets + 16, prev1);
    return done;
}

// Values of 16 elements from their symbols and raw bits at bit `pos` (see tenpak_cd_values16);
// returns the bits they used.
TP_TARGET static inline uint32_t half_values(const struct tenpak_cd_value_params *p, const uint8_t *base, uint8_t *out,
                                             const uint8_t *syms, const uint8_t *raw, size_t pos) {
    __m512i s = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)syms));
    __m512i one = _mm512_set1_epi32(1);
    __mmask16 nonzero = _mm512_test_epi32_mask(s, s);
    __mmask16 big = _mm512_cmpge_epu32_mask(s, _mm512_set1_epi32(3));
    // Token s: L = (s + 5) >> 2 (0 for s = 0); from s = 3 on, k = s - 3 holds neg (bit 1) and top
    // (bit 0), and L - 2 raw bits follow; s = 1, 2 are +1 and -1.
    __m512i len = _mm512_maskz_srli_epi32(nonzero, _mm512_add_epi32(s, _mm512_set1_epi32(5)), 2);
    __m512i nraw = _mm512_maskz_sub_epi32(big, len, _mm512_set1_epi32(2));
    __m512i k = _mm512_sub_epi32(s, _mm512_set1_epi32(3));
    __m512i top = _mm512_and_si512(k, one);
    __m512i mag = _mm512_maskz_mov_epi32(nonzero, one);
    mag = _mm512_mask_or_epi32(mag, big, _mm512_sllv_epi32(one, _mm512_sub_epi32(len, one)), _mm512_sllv_epi32(top, nraw));
    __m512i neg = _mm512_maskz_mov_epi32(_mm512_cmpeq_epi32_mask(s, _mm512_set1_epi32(2)), one);
    neg = _mm512_mask_and_epi32(neg, big, _mm512_srli_epi32(k, 1), one);
    // Bit positions: an exclusive prefix sum of the raw field widths.
    __m512i zero = _mm512_setzero_si512();
    __m512i incl = _mm512_add_epi32(nraw, _mm512_alignr_epi32(nraw, zero, 15));
    incl = _mm512_add_epi32(incl, _mm512_alignr_epi32(incl, zero, 14));
    incl = _mm512_add_epi32(incl, _mm512_alignr_epi32(incl, zero, 12));
    incl = _mm512_add_epi32(incl, _mm512_alignr_epi32(incl, zero, 8));
    __m512i at = _mm512_add_epi32(_mm512_sub_epi32(incl, nraw), _mm512_set1_epi32((int)pos));
    __m512i byte = _mm512_srli_epi32(at, 3);
    __m512i shift = _mm512_and_si512(at, _mm512_set1_epi32(7));
    // Safe: the caller leaves 8 readable bytes past every element's byte position.
    __m512i wlo = _mm512_i32gather_epi64(_mm512_castsi512_si256(byte), (const void *)raw, 1);
    __m512i whi = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(byte, 1), (const void *)raw, 1);
    wlo = _mm512_srlv_epi64(wlo, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(shift)));
    whi = _mm512_srlv_epi64(whi, _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(shift, 1)));
    __m512i bits = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(wlo)), _mm512_cvtepi64_epi32(whi), 1);
    bits = _mm512_and_si512(bits, _mm512_sub_epi32(_mm512_sllv_epi32(one, nraw), one));
    __m512i negMask = _mm512_sub_epi32(zero, neg);
    __m512i d = _mm512_sub_epi32(_mm512_xor_si512(_mm512_or_si512(mag, bits), negMask), negMask);
    __m512i b;
    if (p->element_bytes == 4) {
        // Safe: the caller passes whole groups inside the base and the output.
        b = _mm512_loadu_si512((const void *)base);
    } else {
        b = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)base));
    }
    __m512i v = _mm512_and_si512(_mm512_add_epi32(predict16(b, p->decay, p->mantissa_bits, p->exponent_mask, p->value_mask), d),
                                 _mm512_set1_epi32((int)p->value_mask));
    if (p->element_bytes == 4) {
        _mm512_storeu_si512((void *)out, v);
    } else {
        _mm256_storeu_si256((__m256i *)out, _mm512_cvtepi32_epi16(v));
    }
    return (uint32_t)_mm_extract_epi32(_mm512_extracti32x4_epi32(incl, 3), 3);
}

TP_TARGET static size_t cd_values16_avx512(const struct tenpak_cd_value_params *p, const void *base, void *out, size_t count,
                                    const uint8_t *syms, const uint8_t *raw, size_t raw_length, size_t *bit_position) {
    size_t pos = *bit_position, done = 0;
    size_t w = p->element_bytes;
    // Bit positions travel in 32-bit lanes.
    if (raw_length > ((size_t)1 << 27)) return 0;
    // A group's fields end before pos + 16 (W - 2) bits; each lane loads 8 bytes at its byte.
    size_t group_bits = 16 * (8 * w - 2);
    while (count - done >= 16 && ((pos + group_bits) >> 3) + 8 <= raw_length) {
        pos += half_values(p, (const uint8_t *)base + done * w, (uint8_t *)out + done * w, syms + done, raw, pos);
        done += 16;
    }
    *bit_position = pos;
    return done;
}

#define TP_ENCODER __attribute__((target("avx512f,avx512bw,avx512vl,popcnt")))

// One half (16 lanes) of a group of the rANS encoder: codes symbols i .. i+15 into the lanes'
// states, emitting the low words of the lanes that renormalise below *p (lowest lane lowest).
TP_ENCODER static inline void encode_half(const uint32_t *freq_start, uint32_t table_log, const void *syms,
                                          uint32_t sym_bytes, size_t i, __m512i *x, uint8_t **p) {
    __m512i s;
    if (sym_bytes == 2) {
        // Safe: the caller passes whole groups inside `syms`.
        s = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)syms + i)));
    } else {
        s = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)((const uint8_t *)syms + i)));
    }
    // Safe: every symbol indexes the table (its alphabet).
    __m512i fs = _mm512_i32gather_epi32(s, (const void *)freq_start, 4);
    __m512i f = _mm512_and_si512(fs, _mm512_set1_epi32(0xFFFF));
    __m512i start = _mm512_srli_epi32(fs, 16);
    // Renormalise where x >= f * 2^(32 - table_log), i.e. x >> (32 - table_log) >= f.
    __mmask16 need = _mm512_cmpge_epu32_mask(_mm512_srl_epi32(*x, _mm_cvtsi32_si128(32 - (int)table_log)), f);
    int count = __builtin_popcount((unsigned)need);
    __m256i words = _mm512_cvtepi32_epi16(_mm512_maskz_compress_epi32(need, *x));
    *p -= 2 * count;
    // Safe: the sink has room for one word per symbol below *p.
    _mm256_mask_storeu_epi16((void *)*p, (__mmask16)((1u << count) - 1), words);
    *x = _mm512_mask_srli_epi32(*x, need, *x, 16);
    // q = floor(x / f), exact in double: x < 2^32 and f <= 2^12, so a quotient's fractional part
    // (0 or at least 1/f) is far above the rounding error and the truncation is the floor.
    __m512d lo = _mm512_div_pd(_mm512_cvtepu32_pd(_mm512_castsi512_si256(*x)), _mm512_cvtepu32_pd(_mm512_castsi512_si256(f)));
    __m512d hi = _mm512_div_pd(_mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(*x, 1)), _mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(f, 1)));
    __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvttpd_epu32(lo)), _mm512_cvttpd_epu32(hi), 1);
    // x' = (x / f) * M + x mod f + start = x + start + q * (M - f).
    __m512i cmpl = _mm512_sub_epi32(_mm512_set1_epi32(1 << table_log), f);
    *x = _mm512_add_epi32(_mm512_add_epi32(*x, start), _mm512_mullo_epi32(q, cmpl));
}

TP_ENCODER static size_t rans_encode32_avx512(const uint32_t *freq_start, uint32_t table_log, const void *syms, uint32_t sym_bytes,
                                       size_t count, uint32_t states[32], uint8_t **sink) {
    __m512i x0 = _mm512_loadu_si512(states), x1 = _mm512_loadu_si512(states + 16);
    uint8_t *p = *sink;
    size_t groups = count / 32;
    for (size_t g = groups; g > 0; g--) {
        size_t i = (g - 1) * 32;
        // Backwards: the upper half's symbols come first, so its words lie above the lower half's.
        encode_half(freq_start, table_log, syms, sym_bytes, i + 16, &x1, &p);
        encode_half(freq_start, table_log, syms, sym_bytes, i, &x0, &p);
    }
    _mm512_storeu_si512(states, x0);
    _mm512_storeu_si512(states + 16, x1);
    *sink = p;
    return groups * 32;
}

size_t tenpak_cd_tokens32(const struct tenpak_cd_encode_params *p, const void *target, const void *base, size_t count,
                          uint32_t prev_buckets[32], uint16_t *syms, uint32_t *raw, uint8_t *nraw) {
    if (avx512_encoder_available()) return cd_tokens32_avx512(p, target, base, count, prev_buckets, syms, raw, nraw);
    if (avx2_available())
        return tenpak_internal_cd_tokens32_avx2(p, target, base, count, prev_buckets, syms, raw, nraw);
    return 0;
}

size_t tenpak_rans_encode32(const uint32_t *freq_start, uint32_t table_log, const void *syms, uint32_t sym_bytes,
                            size_t count, uint32_t states[32], uint8_t **sink) {
    if (avx512_encoder_available()) return rans_encode32_avx512(freq_start, table_log, syms, sym_bytes, count, states, sink);
    if (avx2_available())
        return tenpak_internal_rans_encode32_avx2(freq_start, table_log, syms, sym_bytes, count, states, sink);
    return 0;
}

size_t tenpak_cd_values16(const struct tenpak_cd_value_params *p, const void *base, void *out, size_t count,
                          const uint8_t *syms, const uint8_t *raw, size_t raw_length, size_t *bit_position) {
    // AVX-512 only: an AVX2 form measured slower than the Swift loop (SPEC 8.4).
    if (tenpak_avx512_available()) return cd_values16_avx512(p, base, out, count, syms, raw, raw_length, bit_position);
    return 0;
}

int tenpak_vector_decode_available(void) {
    return tenpak_avx512_available() || avx2_available();
}

size_t tenpak_cd_symbols32(const struct tenpak_cd_params *p, const void *base, size_t i, size_t count,
                           uint32_t states[32], uint32_t bucket_offsets_of_lanes[32],
                           const uint8_t **stream, const uint8_t *stream_end, uint8_t *symbols) {
    if (tenpak_avx512_available())
        return cd_symbols32_avx512(p, base, i, count, states, bucket_offsets_of_lanes, stream, stream_end, symbols);
    if (avx2_available())
        return tenpak_internal_cd_symbols32_avx2(p, base, i, count, states, bucket_offsets_of_lanes, stream, stream_end, symbols);
    return 0;
}

size_t tenpak_rans8_decode32(const uint32_t *table, uint32_t table_log, uint32_t states[32],
                             const uint8_t **stream, const uint8_t *stream_end, uint8_t *out, size_t count) {
    if (tenpak_avx512_available()) return rans8_decode32_avx512(table, table_log, states, stream, stream_end, out, count);
    if (avx2_available()) return tenpak_internal_rans8_decode32_avx2(table, table_log, states, stream, stream_end, out, count);
    return 0;
}

#else

void tenpak_set_kernel_limit(int limit) { (void)limit; }
int tenpak_kernel_limit(void) { return 0; }
int tenpak_cpu_kernel_level(void) { return 0; }
int tenpak_avx512_available(void) { return 0; }
int tenpak_vector_decode_available(void) { return 0; }
int tenpak_vector_encode_available(void) { return 0; }

size_t tenpak_cd_values16(const struct tenpak_cd_value_params *p, const void *base, void *out, size_t count,
                          const uint8_t *syms, const uint8_t *raw, size_t raw_length, size_t *bit_position) {
    (void)p; (void)base; (void)out; (void)count; (void)syms; (void)raw; (void)raw_length; (void)bit_position;
    return 0;
}

size_t tenpak_rans_encode32(const uint32_t *freq_start, uint32_t table_log, const void *syms, uint32_t sym_bytes,
                            size_t count, uint32_t states[32], uint8_t **sink) {
    (void)freq_start; (void)table_log; (void)syms; (void)sym_bytes; (void)count; (void)states; (void)sink;
    return 0;
}

size_t tenpak_cd_tokens32(const struct tenpak_cd_encode_params *p, const void *target, const void *base, size_t count,
                          uint32_t prev_buckets[32], uint16_t *syms, uint32_t *raw, uint8_t *nraw) {
    (void)p; (void)target; (void)base; (void)count; (void)prev_buckets; (void)syms; (void)raw; (void)nraw;
    return 0;
}

size_t tenpak_rans8_decode32(const uint32_t *table, uint32_t table_log, uint32_t states[32],
                             const uint8_t **stream, const uint8_t *stream_end, uint8_t *out, size_t count) {
    (void)table; (void)table_log; (void)states; (void)stream; (void)stream_end; (void)out; (void)count;
    return 0;
}

size_t tenpak_cd_symbols32(const struct tenpak_cd_params *p, const void *base, size_t i, size_t count,
                           uint32_t states[32], uint32_t bucket_offsets_of_lanes[32],
                           const uint8_t **stream, const uint8_t *stream_end, uint8_t *symbols) {
    (void)p; (void)base; (void)i; (void)count; (void)states; (void)bucket_offsets_of_lanes;
    (void)stream; (void)stream_end; (void)symbols;
    return 0;
}

#endif
