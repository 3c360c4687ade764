// TenPak's own C: x86 specifics that Swift cannot express.
//
// SHA-256 block compression with the x86 SHA extensions (SHA-NI), one stream or two interleaved.
// Why two: SHA256RNDS2 has a latency of several cycles and a throughput of about one every two, so
// one stream leaves the unit idle most of the time. A put hashes every byte twice (into its
// chunk's id and into the file's SHA-256); compressing the two streams' blocks in one instruction
// stream costs about what one stream costs alone. Only whole 64-byte blocks: padding, partial
// blocks and lengths are the caller's (TenPakFormat's StreamingSHA256).
//
// Context-delta symbol decoding with AVX-512: see tenpak_cd_symbols32. Why C: gathers, masked
// expands and opmask registers are out of reach of Swift's SIMD types.
//
// Clearing the AVX upper state: see tenpak_clear_avx_upper.
#ifndef TENPAK_KERNELS_H
#define TENPAK_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has SHA-NI, SSSE3 and SSE4.1 (the kernels below may be called), else 0.
int tenpak_sha256_ni_available(void);

/// Compresses `blocks` 64-byte blocks from `data` into `state` (H0..H7, host order).
void tenpak_sha256_ni_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);

/// Compresses `blocks` blocks of stream A (`a`, from `da`) and as many of stream B (`b`, from
/// `db`), interleaved. The streams are independent: they may read overlapping memory.
void tenpak_sha256_ni_blocks_x2(uint32_t a[8], const uint8_t *da, uint32_t b[8], const uint8_t *db, size_t blocks);

/// Marks the upper halves of the AVX registers clean (VZEROUPPER) where the CPU has AVX; nothing
/// elsewhere. libxxhash's dispatching XXH3 returns from its AVX-512 code with them dirty, and
/// until they are cleared every legacy-SSE instruction on that thread runs slower: SHA-256 with
/// SHA-NI (ours and BoringSSL's) at about 0.7 of its speed, two streams at half (measured on this
/// EPYC, 2026-12-04). Called after every XXH3 call (TenPakFormat's Hashing).
void tenpak_clear_avx_upper(void);

/// Caps the vector kernels the entry points below may choose: 2 (AVX-512 where the CPU has it; the
/// default), 1 (AVX2 at most), 0 (none: they return 0 and their callers' portable loops run). For
/// tests, which hold every form to the portable code on one CPU, and benchmarks; process-wide, set
/// while no codec runs.
void tenpak_set_kernel_limit(int limit);

/// The cap tenpak_set_kernel_limit set.
int tenpak_kernel_limit(void);

/// The widest kernels this CPU and OS can run, whatever the cap: 2 AVX-512F, 1 AVX2, 0 neither.
int tenpak_cpu_kernel_level(void);

/// 1 when this CPU and OS can run AVX-512F code and the cap allows it (tenpak_cd_values16 does work;
/// the decoders below use their AVX-512 forms), else 0.
int tenpak_avx512_available(void);

/// 1 when tenpak_cd_symbols32 and tenpak_rans8_decode32 do work here: with AVX-512F, else with
/// AVX2 (four vectors of 8 lanes). Else 0.
int tenpak_vector_decode_available(void);

/// The decoder tables of one context-delta payload (TenPakCodecs' ContextDeltaCodec builds them;
/// FORMAT.md's implementation notes describe the layout).
struct tenpak_cd_params {
    /// 4 (f32) or 2 (bf16, f16).
    uint32_t element_bytes;
    uint32_t mantissa_bits;
    uint32_t exponent_mask;
    int32_t exponent_top;
    /// Entries between the slot rows of neighbouring exponent contexts (4 << table_log).
    uint32_t exponent_stride;
    uint32_t table_log;
    /// The bucket thresholds t1, t2, t3 on a token's bit length, and the entries between the slot
    /// rows of neighbouring buckets (1 << table_log).
    uint32_t thresholds[3];
    uint32_t bucket_stride;
    /// 64 rows (context 4 * exponent context + bucket) of 2^table_log entries, one per slot:
    /// symbol | freq << 7 | (slot - start) << 20.
    const uint32_t *slots;
};

/// Decodes the symbols of elements i, i+1, ... of a 32-lane context-delta stream (FORMAT.md, mode 2)
/// in whole groups of 32, while at least 32 of `count` elements remain and at least 64 stream bytes
/// are left before `stream_end`; i must be a multiple of 32 and i + count must not pass the base's
/// end. Element i+k's symbol goes to symbols[k]. `states` (lane states) and
/// `bucket_offsets_of_lanes` (each lane's previous bucket offset) are read and updated, `*stream`
/// advances past the words read. Returns the number of elements decoded (a multiple of 32; 0 where
/// neither AVX-512 nor AVX2 runs). The caller decodes the rest with bounds checks.
size_t tenpak_cd_symbols32(const struct tenpak_cd_params *p, const void *base, size_t i, size_t count,
                           uint32_t states[32], uint32_t bucket_offsets_of_lanes[32],
                           const uint8_t **stream, const uint8_t *stream_end, uint8_t *symbols);

/// Decodes bytes of a 32-lane order-0 rANS stream (SPEC 8.1, plane mode 3) into out[0...] in whole
/// groups of 32, while at least 32 of `count` bytes remain and at least 64 stream bytes are left
/// before `stream_end`. `table` has 2^table_log entries, symbol | (freq - 1) << 8 | (slot - start)
/// << 20; states[k] is the state of the lane of out[k] (the caller starts at a multiple of 32).
/// `states` and `*stream` are updated. Returns the number of bytes decoded (a multiple of 32; 0
/// where neither AVX-512 nor AVX2 runs).
size_t tenpak_rans8_decode32(const uint32_t *table, uint32_t table_log, uint32_t states[32],
                             const uint8_t **stream, const uint8_t *stream_end, uint8_t *out, size_t count);

/// 1 when the encoder kernels (tenpak_cd_tokens32, tenpak_rans_encode32) do work here: with
/// AVX-512F, CD, BW and VL, else with AVX2. Else 0.
int tenpak_vector_encode_available(void);

/// The context-delta encoder's parameters of one payload (FORMAT.md "Model").
struct tenpak_cd_encode_params {
    /// 4 (f32) or 2 (bf16, f16).
    uint32_t element_bytes;
    uint32_t mantissa_bits;
    uint32_t exponent_mask;
    /// W - 1: the sign bit of a W-bit difference.
    uint32_t sign_shift;
    /// 2^W - 1.
    uint32_t value_mask;
    int32_t exponent_top;
    uint32_t thresholds[3];
    /// log2 of the symbol stride per context.
    uint32_t stride_shift;
    /// The decay factor c (FORMAT.md "Prediction"); 0 = none.
    uint64_t decay;
};

/// The token pass of the context-delta encoder for elements 0, 1, ... of `target` against `base`,
/// in whole groups of 32 while 32 of `count` remain: per element, syms[i] = context << stride_shift
/// | token, raw[i] = the raw bits (the low L - 2 bits of |d|) and nraw[i] = their count. The bucket
/// context of element i is the bucket of element i - 32: `prev_buckets` holds those of the 32
/// elements before the first (0 at the start of a payload) and is updated. Returns the number of
/// elements done (a multiple of 32; 0 where tenpak_vector_encode_available() is 0).
size_t tenpak_cd_tokens32(const struct tenpak_cd_encode_params *p, const void *target, const void *base, size_t count,
                          uint32_t prev_buckets[32], uint16_t *syms, uint32_t *raw, uint8_t *nraw);

/// Codes symbols count-1 down to 0 (count a multiple of 32) of a 32-lane rANS stream, symbol i with
/// states[i mod 32], as EntropyCore's ransEncode does one at a time: `freq_start[s]` = f | start
/// << 16 of symbol s, `syms` holds `sym_bytes`-byte symbols (1 or 2), `*sink` is the position below
/// which the words go (back to front) and moves down past them; the caller leaves room for one
/// 16-bit word per symbol and 16 bytes more below it (the AVX2 form stores whole vectors, the words
/// at their top; the bytes below the final position are left undefined). Returns the number of
/// symbols coded (0 where tenpak_vector_encode_available() is 0).
size_t tenpak_rans_encode32(const uint32_t *freq_start, uint32_t table_log, const void *syms, uint32_t sym_bytes,
                            size_t count, uint32_t states[32], uint8_t **sink);

/// What the context-delta value kernel needs of a payload.
struct tenpak_cd_value_params {
    /// 4 (f32) or 2 (bf16, f16).
    uint32_t element_bytes;
    uint32_t mantissa_bits;
    uint32_t exponent_mask;
    /// 2^W - 1.
    uint32_t value_mask;
    /// The decay factor c (FORMAT.md "Prediction"); 0 = none.
    uint64_t decay;
};

/// Rebuilds elements from their decoded symbols and raw bits (FORMAT.md "Token and raw bits"), in
/// groups of 16 while 16 of `count` remain and the raw stream (`raw_length` bytes) holds 8 readable
/// bytes past the byte of every bit a group may use: out[k] = pred(base[k]) + d(syms[k], raw bits
/// from *bit_position on). `*bit_position` advances past the bits used. Returns the number of
/// elements done (a multiple of 16; 0 where AVX-512 is missing or the kernel limit is below it).
size_t tenpak_cd_values16(const struct tenpak_cd_value_params *p, const void *base, void *out, size_t count,
                          const uint8_t *syms, const uint8_t *raw, size_t raw_length, size_t *bit_position);

#endif
