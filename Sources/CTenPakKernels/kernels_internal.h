// Between the kernel files, not exported: rans_avx2.c's kernels, which the public entry points
// (rans_avx512.c) call where AVX-512 (or, for the encoder, its CD, BW and VL extensions) is missing.
#pragma once
#include "tenpak_kernels.h"

/// A CPU probe's answer, computed once: `*known` starts at -1 (unknown) and then holds probe()'s.
/// Relaxed atomics: threads racing to fill it store the same value.
static inline int tenpak_internal_probe_once(int *known, int (*probe)(void)) {
    int k = __atomic_load_n(known, __ATOMIC_RELAXED);
    if (k < 0) {
        k = probe();
        __atomic_store_n(known, k, __ATOMIC_RELAXED);
    }
    return k;
}

/// 1 when this CPU and OS can run AVX2 code (with POPCNT), else 0.
int tenpak_internal_avx2_available(void);

/// tenpak_cd_symbols32 with AVX2; call only where tenpak_internal_avx2_available().
size_t tenpak_internal_cd_symbols32_avx2(const struct tenpak_cd_params *p, const void *base, size_t i, size_t count,
                                         uint32_t states[32], uint32_t bucket_offsets_of_lanes[32],
                                         const uint8_t **stream, const uint8_t *stream_end, uint8_t *symbols);

/// tenpak_rans8_decode32 with AVX2; call only where tenpak_internal_avx2_available().
size_t tenpak_internal_rans8_decode32_avx2(const uint32_t *table, uint32_t table_log, uint32_t states[32],
                                           const uint8_t **stream, const uint8_t *stream_end, uint8_t *out, size_t count);

/// tenpak_cd_tokens32 with AVX2; call only where tenpak_internal_avx2_available().
size_t tenpak_internal_cd_tokens32_avx2(const struct tenpak_cd_encode_params *p, const void *target, const void *base,
                                        size_t count, uint32_t prev_buckets[32], uint16_t *syms, uint32_t *raw,
                                        uint8_t *nraw);

/// tenpak_rans_encode32 with AVX2; call only where tenpak_internal_avx2_available(). It stores 16
/// bytes below the sink position per 8 symbols (the emitted words at their top), within the room
/// tenpak_kernels.h's contract asks for.
size_t tenpak_internal_rans_encode32_avx2(const uint32_t *freq_start, uint32_t table_log, const void *syms,
                                          uint32_t sym_bytes, size_t count, uint32_t states[32], uint8_t **sink);
