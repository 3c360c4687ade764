// SHA-256 block compression with the x86 SHA extensions (SHA-NI), one stream or two interleaved.
//
// Why two: SHA256RNDS2 has a latency of several cycles and a throughput of about one every two, so
// one stream leaves the unit idle most of the time. A put hashes every byte twice (into its
// chunk's id and into the file's SHA-256); compressing the two streams' blocks in one instruction
// stream costs about what one stream costs alone. Only whole 64-byte blocks: padding, partial
// blocks and lengths are the caller's (TenPakFormat's SHA256Stream).
#ifndef TENPAK_SHA256_H
#define TENPAK_SHA256_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has SHA-NI and SSE4.1 (the kernels below may be called), else 0.
int tenpak_sha256_ni_available(void);

/// Compresses `blocks` 64-byte blocks from `data` into `state` (H0..H7, host order).
void tenpak_sha256_ni_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);

/// Compresses `blocks` blocks of stream A (`a`, from `da`) and as many of stream B (`b`, from
/// `db`), interleaved. The streams are independent: they may read overlapping memory.
void tenpak_sha256_ni_blocks_x2(uint32_t a[8], const uint8_t *da, uint32_t b[8], const uint8_t *db, size_t blocks);

#endif
