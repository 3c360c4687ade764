// TenPak's own C: x86 specifics that Swift cannot express.
//
// SHA-256 block compression with the x86 SHA extensions (SHA-NI), one stream or two interleaved.
// Why two: SHA256RNDS2 has a latency of several cycles and a throughput of about one every two, so
// one stream leaves the unit idle most of the time. A put hashes every byte twice (into its
// chunk's id and into the file's SHA-256); compressing the two streams' blocks in one instruction
// stream costs about what one stream costs alone. Only whole 64-byte blocks: padding, partial
// blocks and lengths are the caller's (TenPakFormat's StreamingSHA256).
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

#endif
