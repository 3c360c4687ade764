// SHA-256 compression with SHA-NI; see include/tenpak_kernels.h for why two streams.
// The register layout (ABEF / CDGH), the message schedule with SHA256MSG1/MSG2 and the round
// pairs follow Intel's "Intel SHA Extensions" white paper (2013).
#include "tenpak_kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

int tenpak_sha256_ni_available(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int sse41 = (c >> 19) & 1, ssse3 = (c >> 9) & 1;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int sha = (b >> 29) & 1;
    return sse41 && ssse3 && sha;
}

static const uint32_t K[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define TP_TARGET __attribute__((target("sha,sse4.1,ssse3")))

// H0..H7 → the two registers SHA256RNDS2 works on: ABEF and CDGH.
TP_TARGET static inline void load_state(const uint32_t s[8], __m128i *abef, __m128i *cdgh) {
    __m128i dcba = _mm_loadu_si128((const __m128i *)&s[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&s[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    *abef = _mm_alignr_epi8(cdab, efgh, 8);
    *cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
}

TP_TARGET static inline void store_state(uint32_t s[8], __m128i abef, __m128i cdgh) {
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    __m128i dcba = _mm_blend_epi16(feba, dchg, 0xF0);
    __m128i hgfe = _mm_alignr_epi8(dchg, feba, 8);
    _mm_storeu_si128((__m128i *)&s[0], dcba);
    _mm_storeu_si128((__m128i *)&s[4], hgfe);
}

// The next four schedule words from the previous sixteen, oldest first (four per register).
TP_TARGET static inline __m128i schedule(__m128i w4, __m128i w3, __m128i w2, __m128i w1) {
    // W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]; MSG1 adds the σ0 terms to W[t-16],
    // the ALIGNR brings W[t-7..t-4], MSG2 adds σ1 (and chains the words that depend on each other).
    __m128i x = _mm_add_epi32(_mm_sha256msg1_epu32(w4, w3), _mm_alignr_epi8(w1, w2, 4));
    return _mm_sha256msg2_epu32(x, w1);
}

// Four rounds: two SHA256RNDS2, each taking two of the four K+W words.
#define FOUR_ROUNDS(abef, cdgh, w, i) do { \
        __m128i m_ = _mm_add_epi32((w), _mm_load_si128((const __m128i *)&K[4 * (i)])); \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m_); \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(m_, 0x0E)); \
    } while (0)

TP_TARGET void tenpak_sha256_ni_blocks(uint32_t state[8], const uint8_t *data, size_t blocks) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abef, cdgh;
    load_state(state, &abef, &cdgh);
    for (size_t n = 0; n < blocks; n++, data += 64) {
        __m128i abef0 = abef, cdgh0 = cdgh;
        __m128i w[4];
        for (int i = 0; i < 4; i++) {
            w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * i)), swap);
            FOUR_ROUNDS(abef, cdgh, w[i], i);
        }
#pragma clang loop unroll(full)
        for (int i = 4; i < 16; i++) {
            __m128i next = schedule(w[i & 3], w[(i + 1) & 3], w[(i + 2) & 3], w[(i + 3) & 3]);
            w[i & 3] = next;
            FOUR_ROUNDS(abef, cdgh, next, i);
        }
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    store_state(state, abef, cdgh);
}

TP_TARGET void tenpak_sha256_ni_blocks_x2(uint32_t a[8], const uint8_t *da, uint32_t b[8], const uint8_t *db, size_t blocks) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abefA, cdghA, abefB, cdghB;
    load_state(a, &abefA, &cdghA);
    load_state(b, &abefB, &cdghB);
    for (size_t n = 0; n < blocks; n++, da += 64, db += 64) {
        __m128i abefA0 = abefA, cdghA0 = cdghA, abefB0 = abefB, cdghB0 = cdghB;
        __m128i wa[4], wb[4];
#pragma clang loop unroll(full)
        for (int i = 0; i < 4; i++) {
            wa[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(da + 16 * i)), swap);
            wb[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(db + 16 * i)), swap);
            FOUR_ROUNDS(abefA, cdghA, wa[i], i);
            FOUR_ROUNDS(abefB, cdghB, wb[i], i);
        }
#pragma clang loop unroll(full)
        for (int i = 4; i < 16; i++) {
            __m128i nextA = schedule(wa[i & 3], wa[(i + 1) & 3], wa[(i + 2) & 3], wa[(i + 3) & 3]);
            __m128i nextB = schedule(wb[i & 3], wb[(i + 1) & 3], wb[(i + 2) & 3], wb[(i + 3) & 3]);
            wa[i & 3] = nextA;
            wb[i & 3] = nextB;
            FOUR_ROUNDS(abefA, cdghA, nextA, i);
            FOUR_ROUNDS(abefB, cdghB, nextB, i);
        }
        abefA = _mm_add_epi32(abefA, abefA0);
        cdghA = _mm_add_epi32(cdghA, cdghA0);
        abefB = _mm_add_epi32(abefB, abefB0);
        cdghB = _mm_add_epi32(cdghB, cdghB0);
    }
    store_state(a, abefA, cdghA);
    store_state(b, abefB, cdghB);
}

#else

int tenpak_sha256_ni_available(void) { return 0; }
// Never called where the extensions are absent (callers check tenpak_sha256_ni_available).
void tenpak_sha256_ni_blocks(uint32_t state[8], const uint8_t *data, size_t blocks) {
    (void)state; (void)data; (void)blocks; __builtin_trap();
}
void tenpak_sha256_ni_blocks_x2(uint32_t a[8], const uint8_t *da, uint32_t b[8], const uint8_t *db, size_t blocks) {
    (void)a; (void)da; (void)b; (void)db; (void)blocks; __builtin_trap();
}

#endif
