"""Small strict safetensors reader/writer shared by the scripts in Tools/ (not a command).

Works on raw bytes so every dtype round-trips, including BF16, which numpy has no type for:
BF16 tensors are exposed as uint16 bit patterns. Header key order is kept as in the file and
data is written in header order, contiguously, header padded with spaces to a multiple of 8
(the convention of the `safetensors` package).
"""

import json
import struct
import sys

import numpy as np

# safetensors dtype -> numpy dtype used to view the raw little-endian bytes
NP_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "?", "F8_E4M3": "u1", "F8_E5M2": "u1",
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
MAX_HEADER = 100 * 1024 * 1024


class FormatError(Exception):
    pass


class Tensor:
    __slots__ = ("name", "dtype", "shape", "data")

    def __init__(self, name, dtype, shape, data):
        self.name, self.dtype, self.shape, self.data = name, dtype, list(shape), bytes(data)

    @classmethod
    def from_array(cls, name, dtype, arr):
        """arr must already hold the right bit patterns (uint16 for BF16)."""
        want = np.dtype(NP_DTYPES[dtype])
        if arr.dtype != want:
            raise ValueError(f"{name}: array dtype {arr.dtype} does not match {dtype}")
        return cls(name, dtype, arr.shape, np.ascontiguousarray(arr).tobytes())

    def array(self):
        return np.frombuffer(self.data, dtype=NP_DTYPES[self.dtype]).reshape(self.shape)

    @property
    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n


def read_header(path):
    """Returns (header_len, header_dict, raw_prefix_bytes) where raw_prefix = 8-byte length + header."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FormatError(f"{path}: shorter than 8 bytes")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise FormatError(f"{path}: header length {n} too large")
        hb = f.read(n)
        if len(hb) != n:
            raise FormatError(f"{path}: header runs past end of file")
    try:
        header = json.loads(hb.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: header is not a JSON object")
    return n, header, head + hb


def read(path):
    """Returns (metadata_or_None, [Tensor] in header order). Validates the layout strictly."""
    n, header, _ = read_header(path)
    with open(path, "rb") as f:
        f.seek(8 + n)
        data = f.read()
    meta = header.pop("__metadata__", None)
    tensors, spans = [], []
    for name, info in header.items():
        try:
            dtype, shape, (s, e) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{path}: bad entry for tensor {name!r}") from None
        if dtype not in NP_DTYPES:
            raise FormatError(f"{path}: tensor {name!r} has unknown dtype {dtype}")
        t = Tensor(name, dtype, shape, b"")
        if not (0 <= s <= e <= len(data)) or e - s != t.numel * np.dtype(NP_DTYPES[dtype]).itemsize:
            raise FormatError(f"{path}: tensor {name!r} has bad offsets [{s}, {e}]")
        t.data = data[s:e]
        tensors.append(t)
        spans.append((s, e))
    pos = 0
    for s, e in sorted(spans):
        if s != pos:
            raise FormatError(f"{path}: data region has a gap or overlap at offset {pos}")
        pos = e
    if pos != len(data):
        raise FormatError(f"{path}: data region is {len(data)} bytes, tensors cover {pos}")
    return meta, tensors


def encode(tensors, metadata=None):
    """Returns the bytes of a safetensors file holding `tensors` in the given order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    pos = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [pos, pos + len(t.data)]}
        pos += len(t.data)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + b"".join(t.data for t in tensors)


def write(path, tensors, metadata=None):
    with open(path, "wb") as f:
        f.write(encode(tensors, metadata))


def die(msg):
    print(f"{sys.argv[0].rsplit('/', 1)[-1]}: {msg}", file=sys.stderr)
    sys.exit(1)


def f32_to_bf16_bits(a):
    """float32 array -> uint16 BF16 bit patterns, rounding to nearest, ties to even.
    NaNs stay NaN (quiet bit set, sign and top payload bits kept); overflow rounds to +-inf."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = np.where(nan, (u >> 16) | 0x0040, rounded)
    return rounded.astype("<u2").reshape(np.shape(a))


def bf16_bits_to_f32(b):
    """uint16 BF16 bit patterns -> float32 (exact)."""
    return (np.asarray(b, dtype="<u2").astype("<u4") << 16).view("<f4")
