#!/usr/bin/env python3
"""Independent numpy reference for the bitsandbytes quantizers (a test oracle for TenPakOptimizer).

Written from the bitsandbytes definitions, not from the Swift code:
  * LLM.int8 weights (`int8_vectorwise_quant`): per row absmax m, codes = rint(W * (127/m)) as int8,
    dequantized codes * m * float32(1/127).
  * 4-bit (`quantize_4bit`, blocksize 64): per block absmax m, each x*(1/m) mapped to the nearest
    code value (ties to the lower one), packed two per byte, first element in the high nibble.
    NF4 values are bitsandbytes' `get_4bit_type("nf4")`; FP4 is `get_4bit_type("fp4")` (sign bit 3,
    magnitudes {0, 0.0625, 8, 12, 4, 6, 2, 3}/12), quantized as sign then nearest magnitude.
  * double quantization (`compress_statistics=True`): offset = mean(absmax); `quantize_blockwise`
    of absmax - offset with blocksize 256 and `create_dynamic_map(signed=True)`, nearest value.
Nearest values are found by argmin of the distance in float64 (exact for float32 inputs).

Usage: quant_reference.py IN.safetensors OUT.safetensors
  IN holds a float32 2-D tensor "w"; OUT gets, for each method, its codes, statistics and the
  dequantized matrix (see `main`).
"""
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)

_FP4_RAW = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0]
FP4 = (np.array(_FP4_RAW, dtype=np.float64) / 12.0).astype(np.float32)


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """bitsandbytes.functional.create_dynamic_map, in float64, rounded to float32 at the end."""
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = np.linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    if additional_items > 0:
        raise NotImplementedError
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data.sort()
    return np.array(data, dtype=np.float64).astype(np.float32)


DYNAMIC = create_dynamic_map()


def nearest(values, table):
    """Index of the nearest table entry for each value (first, i.e. lower, on ties)."""
    d = np.abs(values.astype(np.float64)[:, None] - table.astype(np.float64)[None, :])
    return np.argmin(d, axis=1)


def int8_vectorwise(w):
    absmax = np.max(np.abs(w), axis=1).astype(np.float32)
    safe = np.where(absmax > 0, absmax, np.float32(1))
    scale = (np.float32(127.0) / safe).astype(np.float32)
    codes = np.rint(w * scale[:, None]).astype(np.int8)
    codes[absmax == 0] = 0
    deq = codes.astype(np.float32) * absmax[:, None] * np.float32(7.874015718698502e-3)
    return codes, absmax, deq.astype(np.float32)


def blockwise_absmax(flat, block):
    n = flat.size
    nb = (n + block - 1) // block
    padded = np.zeros(nb * block, dtype=np.float32)
    padded[:n] = flat
    return np.max(np.abs(padded.reshape(nb, block)), axis=1).astype(np.float32)


def quantize_4bit(w, kind):
    flat = w.reshape(-1).astype(np.float32)
    n = flat.size
    absmax = blockwise_absmax(flat, 64)
    per = np.repeat(absmax, 64)[:n]
    inv = np.where(per > 0, (np.float32(1) / np.where(per > 0, per, 1)).astype(np.float32), np.float32(0))
    x = (flat * inv).astype(np.float32)
    if kind == "nf4":
        codes = nearest(x, NF4)
        codes[per == 0] = 7
    else:
        mags = FP4[:8]
        order = np.argsort(mags, kind="stable")
        pos = nearest(np.abs(x), mags[order])
        codes = order[pos] + np.where(x < 0, 8, 0)
        codes[per == 0] = 0
    codes = codes.astype(np.uint8)
    if n % 2:
        codes = np.concatenate([codes, np.zeros(1, dtype=np.uint8)])
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)
    return packed, absmax


def double_quantize(absmax):
    offset = np.float32(np.mean(absmax.astype(np.float64)))
    v = (absmax - offset).astype(np.float32)
    n = v.size
    absmax2 = blockwise_absmax(v, 256)
    per = np.repeat(absmax2, 256)[:n]
    inv = np.where(per > 0, (np.float32(1) / np.where(per > 0, per, 1)).astype(np.float32), np.float32(0))
    codes = nearest((v * inv).astype(np.float32), DYNAMIC).astype(np.uint8)
    codes[per == 0] = nearest(np.zeros(1, dtype=np.float32), DYNAMIC)[0]
    deq = (DYNAMIC[codes] * per + offset).astype(np.float32)
    return codes, absmax2, offset, deq


def dequantize_4bit(packed, absmax, kind, n):
    table = NF4 if kind == "nf4" else FP4
    codes = np.empty(packed.size * 2, dtype=np.uint8)
    codes[0::2] = packed >> 4
    codes[1::2] = packed & 0xF
    codes = codes[:n]
    return (table[codes] * np.repeat(absmax, 64)[:n]).astype(np.float32)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    w = load_file(sys.argv[1])["w"].astype(np.float32)
    rows, cols = w.shape
    out = {}
    codes, absmax, deq = int8_vectorwise(w)
    out.update(int8_codes=codes, int8_absmax=absmax, int8_deq=deq)
    for kind in ("nf4", "fp4"):
        packed, am = quantize_4bit(w, kind)
        out[f"{kind}_packed"] = packed
        out[f"{kind}_absmax"] = am
        out[f"{kind}_deq"] = dequantize_4bit(packed, am, kind, w.size).reshape(rows, cols)
        q, am2, offset, am_deq = double_quantize(am)
        out[f"{kind}dq_qabsmax"] = q
        out[f"{kind}dq_absmax2"] = am2
        out[f"{kind}dq_offset"] = np.array([offset], dtype=np.float32)
        out[f"{kind}dq_deq"] = dequantize_4bit(packed, am_deq, kind, w.size).reshape(rows, cols)
    out["dynamic_map"] = DYNAMIC
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, sys.argv[2])


if __name__ == "__main__":
    main()
