#!/usr/bin/env python3
"""A small HTTP Range client for `tpstore serve`, used by the tests as an independent oracle.

  http_range_client.py tensor URL ORIGINAL [TENSOR]
      Reads the safetensors header (bytes 0-7, then the JSON) and one tensor (the largest when
      TENSOR is omitted) from URL with Range requests, and checks them against ORIGINAL as the
      `safetensors` package loads it (numpy). Also checks the 206/Content-Range/ETag headers.
  http_range_client.py concurrent URL ORIGINAL [THREADS] [REQUESTS]
      THREADS clients (default 8), each REQUESTS (default 25) random Range requests on its own
      keep-alive connection; every answer must equal ORIGINAL's bytes.

Prints "ok: ..." and exits 0, or prints what differed and exits 1.
"""
import hashlib
import http.client
import json
import random
import sys
import threading
import urllib.parse

import numpy as np
from safetensors import safe_open

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16,
          "U8": np.uint8, "BOOL": np.bool_}


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


class Client:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.path = u.path
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

    def get(self, first, last):
        self.conn.request("GET", self.path, headers={"Range": f"bytes={first}-{last}"})
        r = self.conn.getresponse()
        body = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body


def tensor_mode(url, original, name):
    with open(original, "rb") as f:
        whole = f.read()
    sha = hashlib.sha256(whole).hexdigest()
    c = Client(url)
    status, headers, prefix = c.get(0, 7)
    if status != 206 or len(prefix) != 8:
        fail(f"prefix: status {status}, {len(prefix)} bytes")
    if headers.get("content-range") != f"bytes 0-7/{len(whole)}":
        fail(f"content-range {headers.get('content-range')}")
    if headers.get("etag") != f'"{sha}"' or headers.get("accept-ranges") != "bytes":
        fail(f"etag/accept-ranges: {headers}")
    n = int.from_bytes(prefix, "little")
    status, _, raw = c.get(8, 8 + n - 1)
    if status != 206 or len(raw) != n:
        fail(f"header: status {status}, {len(raw)} of {n} bytes")
    header = json.loads(raw)
    header.pop("__metadata__", None)
    with safe_open(original, framework="numpy") as st:
        if sorted(header) != sorted(st.keys()):
            fail("tensor names differ from the original's")
        if name is None:
            name = max(header, key=lambda k: header[k]["data_offsets"][1] - header[k]["data_offsets"][0])
        entry = header[name]
        begin, end = entry["data_offsets"]
        status, _, data = c.get(8 + n + begin, 8 + n + end - 1)
        if status != 206 or len(data) != end - begin:
            fail(f"tensor {name}: status {status}, {len(data)} of {end - begin} bytes")
        got = np.frombuffer(data, dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])
        want = st.get_tensor(name)
        if got.shape != want.shape or got.tobytes() != want.tobytes():
            fail(f"tensor {name} differs from the original")
    print(f"ok: header ({n} bytes, {len(header)} tensors) and tensor {name} {entry['dtype']} {entry['shape']} match")


def concurrent_mode(url, original, threads, requests):
    with open(original, "rb") as f:
        whole = f.read()
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        c = Client(url)
        for _ in range(requests):
            a = rng.randrange(len(whole))
            b = min(len(whole) - 1, a + rng.choice([1, 100, 4096, 300_000, 2_000_000]))
            status, _, body = c.get(a, b)
            if status != 206 or body != whole[a:b + 1]:
                errors.append(f"bytes {a}-{b}: status {status}, {len(body)} bytes")
                return

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        fail("; ".join(errors[:3]))
    print(f"ok: {threads} clients x {requests} ranges match")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "tensor":
        tensor_mode(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif len(sys.argv) >= 4 and sys.argv[1] == "concurrent":
        concurrent_mode(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 8,
                        int(sys.argv[5]) if len(sys.argv) > 5 else 25)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
