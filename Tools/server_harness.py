#!/usr/bin/env python3
"""Long-running-server harness: one `tpstore serve` while the store changes under it.

Usage: server_harness.py [--tpstore PATH] [--ops N] [--seconds S] [--seed K] [--cache on|off|both]
                         [--scenario NAME[,NAME...]] [--timeout T] [--keep] [--verbose]

Each round makes a fresh local store in a temporary directory, starts ONE `tpstore serve` on
127.0.0.1 (port 0: the server picks a free one; --allow-uploads, spool in the round's directory;
--cache-mib 64 with the cache on, 0 with it off) and keeps it running while operations chosen by a
seeded RNG change the store:
  put      a generated model (safetensors of several sizes, up to multi-chunk files > 1 MiB, plus
           a config and sometimes a content-chunked blob), a fine-tune of an earlier one (some
           tensors perturbed, some dropped: deltas, shared chunks, and packs that fall under half
           live when the base goes), or identical bytes again (dedup); through the CLI
  upload   the same through the server: PUT of one file, or of a tar of the model
  rm       of a revision (often the newest, so gc frees the highest catalog row ids)
  rm-base-gc  HEAD a fine-tune's files, rm its base, gc (which often repacks the base's pack,
           moving chunks the fine-tune reads), then GET the HEADed files
  gc       to completion (repacks), sometimes with reads running during it
  gc-kill  gc started as a subprocess and SIGKILLed after a random short delay
  repair   `fsck --repair` (the catalog is rebuilt and swapped under the server; a repair that
           refuses because the store is served, which issue 12 allows, is not a failure: the
           server is then stopped for it)
  fsck     plain fsck, which must find no damage
After every operation `tpstore ls` must list exactly the revisions the harness expects (a lost
acknowledged write fails here), and several HTTP reads go through the running server: full GETs,
Range GETs (random, across 1 MiB chunk boundaries, open-ended, suffix, past the end, several
ranges), HEADs whose file is fetched again after later operations, `main`, removed revisions and
unknown paths. A new revision is read right after its put. Every answer is classified:
  ok       the exact expected status, headers (Content-Length, ETag, Content-Range,
           X-TenPak-Revision) and bytes;
  clean    an error status with its whole body (Content-Length respected) where an error is
           allowed: 404 for a removed revision or unknown path, 416 past the end, 503 while a gc
           runs beside the read;
  FAILURE  anything else: wrong bytes, a short body after 200/206, a live revision that 404s or
           500s, a removed one that answers bytes, a crash of serve, a request past --timeout.
At the end of a round every live file is read in full through the server and
`tpstore fsck --read-data` must be clean. After a failure the server is restarted (so later
operations test a fresh process too; the count is printed).

--scenario runs the deterministic sequences of issue 12 instead of (or as well as) the random
operations: rm-gc-put, head-gc-read, repair-then-put; `named` is those three, `random` the random
operations (the default), `all` both. --ops counts random operations per round; --cache both (the
default) runs every scenario twice, cache on then off; --seconds caps the whole run (rounds share
it; a round out of time stops its random operations and still does its final checks).

Prints failures as they are found (seed, cache mode, operation index, what differed; at most 5 per
kind and round in full), a digest by kind, and last one line:
  server harness: R rounds, N operations, M requests, F failures
Exit 0 when F is 0, 1 otherwise, 2 on a usage or setup error. The server is stopped however the
harness exits (and dies with it on Linux); the work directory is removed unless --keep or a round
failed (its path is printed then).
"""
import argparse
import hashlib
import http.client
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MIB = 1 << 20
MODELS = ["org/alpha", "beta", "org/gamma", "delta-lab/eps"]
KINDS_SHOWN = 5  # failures per kind and round printed in full


# ---------------------------------------------------------------------------------------------
# Generated models


def safetensors_bytes(tensors):
    """tensors: list of (name, dtype, array); data in list order, header padded to 8 bytes."""
    header, offset, blobs = {}, 0, []
    for name, dtype, arr in tensors:
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def tensor_starts(tensors):
    """Absolute file offsets where each tensor's data starts (chunks are counted from there)."""
    blob = safetensors_bytes(tensors)
    hlen = int.from_bytes(blob[:8], "little")
    starts, at = [], 8 + hlen
    for _, _, arr in tensors:
        starts.append((at, arr.nbytes))
        at += arr.nbytes
    return starts


NP_OF = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
SIZE_CLASSES = {"tiny": (2 << 10, 24 << 10), "small": (64 << 10, 400 << 10), "multi": (1100 << 10, 2600 << 10)}


class Content:
    """One revision's files: path -> bytes, and (for fine-tuning) its safetensors tensors."""

    def __init__(self, files, tensors, st_path, lineage):
        self.files = files
        self.tensors = tensors
        self.st_path = st_path
        self.lineage = lineage  # short description: "base small BF16", "ft of org/alpha@r00003"
        self.sha = {p: hashlib.sha256(b).hexdigest() for p, b in files.items()}
        self.starts = tensor_starts(tensors) if tensors else []
        self.parent = None  # "model@rev" this was fine-tuned from

    def main_path(self):
        """The safetensors file, or (a revision uploaded as one other file) its one file."""
        return self.st_path if self.st_path in self.files else sorted(self.files)[0]


def random_array(nprng, dtype, shape):
    values = (nprng.standard_normal(shape) * 0.02).astype(np.float32)
    if dtype == "BF16":
        return (values.view(np.uint32) >> 16).astype(np.uint16)
    return values.astype(NP_OF[dtype])


def make_base(rng, size_class=None):
    nprng = np.random.default_rng(rng.getrandbits(63))
    size_class = size_class or rng.choices(["tiny", "small", "multi"], [3, 4, 3])[0]
    lo, hi = SIZE_CLASSES[size_class]
    total = rng.randint(lo, hi)
    dtype = rng.choice(["F32", "F32", "F16", "BF16"])
    width = 4 if dtype == "F32" else 2
    n = rng.randint(2, 6)
    tensors = []
    for i in range(n):
        cols = rng.choice([64, 96, 128, 256, 384, 512])
        rows = max(1, total // n // (cols * width))
        tensors.append((f"layers.{i}.{rng.choice(['attn', 'mlp', 'proj'])}.weight", dtype, random_array(nprng, dtype, (rows, cols))))
    return build_content(rng, nprng, tensors, f"base {size_class} {dtype}")


def build_content(rng, nprng, tensors, lineage, keep_files=None):
    st_path = rng.choice(["model.safetensors", "model.safetensors", "weights/part 1.safetensors"]) if keep_files is None else keep_files[0]
    files = {st_path: safetensors_bytes(tensors)}
    files["config.json"] = json.dumps({"hidden": int(rng.randrange(1 << 16)), "note": lineage}).encode() + b"\n"
    if keep_files is not None:
        for path, data in keep_files[1].items():
            files.setdefault(path, data)
    elif rng.random() < 0.3:
        files["tokenizer.bin"] = nprng.integers(0, 256, rng.randint(1 << 10, 300 << 10), dtype=np.uint8).tobytes()
    if rng.random() < 0.05:
        files["empty.txt"] = b""
    return Content(files, tensors, st_path, lineage)


def make_finetune(rng, parent, parent_ref):
    """Some tensors perturbed (deltas), some identical (shared chunks), some dropped (so the
    parent's pack falls under half live when the parent is removed), sometimes one added."""
    nprng = np.random.default_rng(rng.getrandbits(63))
    tensors = []
    for i, (name, dtype, arr) in enumerate(parent.tensors):
        r = rng.random()
        if r < 0.35 and (tensors or i < len(parent.tensors) - 1):
            continue  # dropped (at least one tensor stays)
        if r < 0.6:
            arr = random_array(nprng, dtype, arr.shape)  # retrained from scratch: no useful delta
        elif r < 0.85:
            arr = arr.copy()
            flat = arr.reshape(-1)
            idx = nprng.random(flat.size) < rng.uniform(0.05, 0.6)
            if dtype == "BF16":
                flat[idx] ^= nprng.integers(1, 8, int(idx.sum()), dtype=np.uint16)
            else:
                flat[idx] = (flat[idx].astype(np.float32) + nprng.standard_normal(int(idx.sum())).astype(np.float32) * 1e-3).astype(arr.dtype)
        tensors.append((name, dtype, arr))
    if rng.random() < 0.2:
        dtype = parent.tensors[0][1]
        tensors.append((f"head.{rng.randrange(100)}.weight", dtype, random_array(nprng, dtype, (rng.randint(8, 200), 128))))
    extra = {p: b for p, b in parent.files.items() if p not in (parent.st_path, "config.json") and rng.random() < 0.7}
    content = build_content(rng, nprng, tensors, f"ft of {parent_ref}", keep_files=(parent.st_path, extra))
    content.parent = parent_ref
    return content


def write_tree(root, files):
    for path, data in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)


def tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# HTTP


class Reply:
    __slots__ = ("status", "headers", "body", "error", "seconds")

    def __init__(self, status=None, headers=None, body=b"", error=None, seconds=0.0):
        self.status, self.headers, self.body, self.error, self.seconds = status, headers or {}, body, error, seconds


def url_of(model, rev, path):
    return "/" + "/".join(urllib.parse.quote(s, safe="") for s in model.split("/")) + "/resolve/" + urllib.parse.quote(rev, safe="") + "/" + \
        "/".join(urllib.parse.quote(s, safe="") for s in path.split("/"))


def http_call(port, method, url, headers=None, body=None, timeout=30.0):
    """One request on a fresh connection. The body is read to the end (or to Content-Length);
    anything that stops it early is reported in `error`, never raised."""
    t0 = time.monotonic()
    reply = Reply()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        resp = conn.getresponse()
        reply.status = resp.status
        reply.headers = {k.lower(): v for k, v in resp.getheaders()}
        try:
            reply.body = resp.read()
        except http.client.IncompleteRead as e:
            reply.body = e.partial
            reply.error = f"short body: {len(e.partial)} of {reply.headers.get('content-length', '?')} bytes, then the connection closed"
    except socket.timeout:
        reply.error = f"no answer within {timeout:.0f} s (hang)"
    except ConnectionRefusedError:
        reply.error = "connection refused (server down?)"
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as e:
        reply.error = f"connection cut: {type(e).__name__}: {e}"
    except (http.client.HTTPException, OSError) as e:
        reply.error = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    reply.seconds = time.monotonic() - t0
    if reply.error is None and method != "HEAD" and "content-length" in reply.headers:
        if len(reply.body) != int(reply.headers["content-length"]):
            reply.error = f"body of {len(reply.body)} bytes, Content-Length {reply.headers['content-length']}"
    if reply.error is None and reply.seconds > 2 * timeout:
        reply.error = f"answer took {reply.seconds:.1f} s (slow drip)"
    return reply


# ---------------------------------------------------------------------------------------------
# The server


try:  # Linux: a server gets SIGKILL if the harness dies without stopping it (PR_SET_PDEATHSIG)
    import ctypes
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (ImportError, OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)


class Server:
    def __init__(self, tpstore, store, cache_mib, spool, log_path):
        self.tpstore, self.store, self.cache_mib, self.spool, self.log_path = tpstore, store, cache_mib, spool, log_path
        self.proc = None
        self.port = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.log = open(self.log_path, "ab")
        self.log.write(f"--- start {self.starts} at {time.strftime('%H:%M:%S')}\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen(
            [self.tpstore, "serve", "--store", self.store, "--listen", "127.0.0.1:0", "--cache-mib", str(self.cache_mib),
             "--allow-uploads", "--spool-dir", self.spool],
            stdout=subprocess.PIPE, stderr=self.log, preexec_fn=_die_with_parent)
        line = b""
        deadline = time.monotonic() + 30
        fd = self.proc.stdout.fileno()
        os.set_blocking(fd, False)
        while time.monotonic() < deadline and b"\n" not in line:
            try:
                got = os.read(fd, 4096)
            except BlockingIOError:
                got = None
            if got:
                line += got
            elif got == b"" or self.proc.poll() is not None:
                break
            else:
                time.sleep(0.02)
        text = line.decode(errors="replace")
        if "listening on http://127.0.0.1:" not in text:
            self.stop()
            raise RuntimeError(f"tpstore serve did not start: {text.strip()!r}; {self.log_tail()}")
        self.port = int(text.split("listening on http://127.0.0.1:")[1].split()[0].strip("/"))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s. Returns a complaint when it did not stop cleanly."""
        if self.proc is None:
            return None
        complaint = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                complaint = "serve did not stop within 10 s of SIGTERM (killed)"
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
        self.proc = None
        return complaint

    def log_tail(self, n=4):
        """The serve log's fatal error line (if any) and its last lines."""
        try:
            with open(self.log_path, "rb") as f:
                lines = [l.strip() for l in f.read().decode(errors="replace").splitlines() if l.strip()]
        except OSError:
            return "no serve log"
        if not lines:
            return "serve stderr empty"
        fatal = [l for l in lines if "fatal error" in l.lower()][:1]
        fatal += [l for l in lines if "/Sources/" in l][:1] if fatal else []
        return "serve stderr: " + " | ".join(fatal or lines[-n:])[:600]


# ---------------------------------------------------------------------------------------------
# Expected answers


def expect_range(rng, content, path):
    """A random Range header for `path` and the answer it must get: (header, status, a, b)
    with [a, b) the bytes of a 206 (or the whole file for 200)."""
    size = len(content.files[path])
    kind = rng.choices(["range", "boundary", "open", "suffix", "past", "multi", "zero-suffix"], [5, 3, 2, 2, 1, 0.5, 0.3])[0]
    if kind == "boundary" and path == content.st_path and content.starts:
        start, length = rng.choice(content.starts)
        edge = start + MIB * rng.randint(0, max(0, (length - 1) // MIB))
        a = max(0, edge - rng.randint(0, 3000))
        b = min(size - 1, edge + rng.randint(0, 3000))
        if size == 0:
            return f"bytes={a}-{b}", 416, 0, 0
        return f"bytes={a}-{b}", 206, a, b + 1
    if size == 0:
        return rng.choice(["bytes=0-0", "bytes=0-", "bytes=-5"]), 416, 0, 0
    if kind in ("range", "boundary"):
        a = rng.randrange(size)
        b = a + rng.choice([0, rng.randint(0, 100), rng.randint(0, 2 * MIB)])
        return f"bytes={a}-{b}", 206, a, min(b, size - 1) + 1
    if kind == "open":
        a = rng.randrange(size)
        return f"bytes={a}-", 206, a, size
    if kind == "suffix":
        n = rng.choice([1, rng.randint(1, 5000), size, size + rng.randint(1, 100)])
        return f"bytes=-{n}", 206, max(0, size - n), size
    if kind == "past":
        a = size + rng.choice([0, 1, rng.randint(2, 1 << 20)])
        return f"bytes={a}-{a + rng.randint(0, 100)}", 416, 0, 0
    if kind == "multi":
        return f"bytes=0-1,{size // 2}-{size // 2 + 3}", 200, 0, size
    return "bytes=-0", 416, 0, 0


class Request:
    """One planned read: what to send and what must come back."""

    __slots__ = ("method", "model", "rev", "path", "range", "expect", "a", "b", "content", "note", "busy_ok", "reply")

    def __init__(self, method, model, rev, path, expect, content=None, range_=None, a=0, b=0, note=""):
        self.method, self.model, self.rev, self.path, self.expect = method, model, rev, path, expect
        self.content, self.range, self.a, self.b, self.note = content, range_, a, b, note
        self.busy_ok = False
        self.reply = None

    def describe(self):
        r = f" Range: {self.range}" if self.range else ""
        return f"{self.method} {url_of(self.model, self.rev, self.path)}{r}" + (f" ({self.note})" if self.note else "")


# ---------------------------------------------------------------------------------------------
# One round


class Failure:
    def __init__(self, kind, seed, cache, op_index, op, detail):
        self.kind, self.seed, self.cache, self.op_index, self.op, self.detail = kind, seed, cache, op_index, op, detail

    def line(self):
        return f"FAILURE [{self.kind}] seed {self.seed}, cache {self.cache}, op #{self.op_index} ({self.op}): {self.detail}"


class Round:
    def __init__(self, args, tpstore, seed, cache, work, deadline, label):
        self.args, self.tpstore, self.seed, self.cache, self.deadline, self.label = args, tpstore, seed, cache, deadline, label
        self.rng = random.Random(f"{seed}-{label}-{cache}")
        self.work = work
        self.store = os.path.join(work, "store")
        self.spool = os.path.join(work, "spool")
        os.makedirs(self.spool)
        self.server = Server(tpstore, self.store, 64 if cache == "on" else 0, self.spool, os.path.join(work, "serve.log"))
        self.live = {}        # (model, rev) -> Content
        self.order = {}       # (model, rev) -> put sequence number (for `main`)
        self.removed = {}     # (model, rev) -> Content (the last 40 kept)
        self.lost = set()     # revisions the store lost (reported once, then not expected)
        self.headed = []      # (model, rev, path, etag) HEADed earlier, fetched again later
        self.seq = 0
        self.op_index = 0
        self.op_desc = "setup"
        self.ops_done = 0
        self.requests = 0
        self.failures = []
        self.shown = {}
        self.counts = {}
        self.restarts = 0
        self.gc_seconds = [0.3]
        self.busy_answers = 0
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.timing = {}
        self.history = []
        self.server_since = 0  # op index when the running serve started
        self.events = []       # what changed the store under the running serve (for failure reports)

    # ---- bookkeeping

    def count(self, what, n=1):
        self.counts[what] = self.counts.get(what, 0) + n

    def event(self, what):
        self.events.append(f"{what} #{self.op_index}")

    def context(self):
        under = ", ".join(self.events[-6:]) if self.events else "nothing but puts"
        return f" [serve up since op #{self.server_since}; under it: {under}]"

    def start_server(self):
        self.server.start()
        self.server_since = self.op_index
        self.events = []

    def fail(self, kind, detail):
        if kind not in ("harness-error", "serve-stop", "interrupted"):
            detail += self.context()
        f = Failure(kind, self.seed, self.cache, self.op_index, self.op_desc, detail)
        self.failures.append(f)
        shown = self.shown.get(kind, 0)
        self.shown[kind] = shown + 1
        if shown < KINDS_SHOWN:
            print(f"  {f.line()}", flush=True)
            if shown == 0 and self.history:
                print(f"    ops before it: {'; '.join(self.history[-6:])}", flush=True)
        elif shown == KINDS_SHOWN:
            print(f"  (more [{kind}] failures in this round are counted, not printed)", flush=True)

    def cli(self, *args, timeout=300):
        t0 = time.monotonic()
        try:
            return subprocess.run([self.tpstore, *args[:1], "--store", self.store, *args[1:]], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, -1, "", f"timed out after {timeout} s")
        finally:
            self.timing["cli"] = self.timing.get("cli", 0) + time.monotonic() - t0

    def new_rev(self):
        self.seq += 1
        return f"r{self.seq:05d}"

    def ref(self, key):
        return f"{key[0]}@{key[1]}"

    def known_contents(self):
        return list(self.live.items()) + list(self.removed.items())

    # ---- the server

    def ensure_server(self):
        if not self.server.alive():
            if self.server.proc is not None:
                code = self.server.proc.returncode
                self.fail("serve-crash", f"tpstore serve exited ({code}); {self.server.log_tail()}")
                self.server.stop()
            self.start_server()

    def restart_server(self, why):
        complaint = self.server.stop()
        if complaint:
            self.fail("serve-stop", complaint)
        self.restarts += 1
        self.start_server()
        self.history.append(f"(serve restarted: {why})")

    # ---- checks

    def check_listing(self):
        r = self.cli("ls", "--json")
        if r.returncode != 0:
            self.fail("cli", f"tpstore ls failed ({r.returncode}): {r.stderr.strip()[:300]}")
            return
        try:
            listed = {(x["model"], x["revision"]) for x in json.loads(r.stdout)}
        except (ValueError, KeyError, TypeError) as e:
            self.fail("cli", f"tpstore ls --json printed something unreadable ({e}): {r.stdout[:200]!r}")
            return
        missing = set(self.live) - listed
        extra = listed - set(self.live) - self.lost
        for key in sorted(missing):
            self.fail("lost-write", f"{self.ref(key)} was stored (acknowledged) but `tpstore ls` no longer lists it")
            self.lost.add(key)
            del self.live[key]
        for key in sorted(extra):
            self.fail("phantom", f"`tpstore ls` lists {self.ref(key)}, which the harness never stored or removed")
            self.lost.add(key)

    def identify(self, body, a):
        """Whose bytes are these? (For wrong-bytes reports.)"""
        if body and body.count(0) == len(body):
            return "all zero bytes"
        probe = body[:64]
        elsewhere = None
        for key, content in self.known_contents():
            state = "live" if key in self.live else "REMOVED"
            for path, data in content.files.items():
                if len(body) >= 16 and data[a:a + len(body)] == body:
                    return f"they are the bytes of {state} {self.ref(key)}/{path} at the same offset"
                if elsewhere is None and len(probe) >= 16:
                    at = data.find(probe)
                    if at >= 0:
                        elsewhere = f"they start with the bytes of {state} {self.ref(key)}/{path} at offset {at}"
        return elsewhere or "they match no file the harness stored"

    def classify(self, req):
        rep = req.reply
        self.requests += 1
        what = req.describe()
        if rep.error:
            if "refused" in rep.error:
                kind = "serve-down"
            elif "hang" in rep.error or "slow" in rep.error:
                kind = "hang"
            elif rep.status in (200, 206):
                kind = "short-body"
            else:
                kind = "connection"
            self.fail(kind, f"{what}: status {rep.status}, {rep.error}")
            return False
        if req.expect == "404":
            if rep.status == 404:
                return True
            if rep.status == 503 and req.busy_ok:
                self.busy_answers += 1
                return True
            if rep.status in (200, 206):
                whose = self.identify(rep.body, req.a) if req.method == "GET" else f"Content-Length {rep.headers.get('content-length')}"
                self.fail("removed-served", f"{what}: {rep.status} with {len(rep.body)} bytes for a removed revision or unknown path, want 404; "
                          f"{whose}")
            else:
                self.fail("wrong-status", f"{what}: {rep.status} {rep.body[:160]!r}, want 404")
            return False
        # A live file: exact status, headers and bytes.
        content = req.content
        data = content.files[req.path]
        want_status = int(req.expect)
        if rep.status != want_status:
            if rep.status == 503 and req.busy_ok:
                self.busy_answers += 1
                return True
            kind = {404: "live-404", 500: "server-error"}.get(rep.status, "wrong-status")
            self.fail(kind, f"{what}: {rep.status} {rep.body[:200]!r}, want {want_status} ({len(data)}-byte file of live {req.model}@{req.rev})")
            return False
        problems = []
        h = rep.headers
        if "main=" in req.note and rep.status in (200, 206) and h.get("x-tenpak-revision") != req.note.split("main=")[1]:
            self.fail("stale-main", f"{what}: served revision {h.get('x-tenpak-revision')!r} as main, want {req.note.split('main=')[1]} "
                      f"(the newest revision of {req.model})")
            return False
        if want_status == 416:
            if h.get("content-range") != f"bytes */{len(data)}":
                problems.append(f"Content-Range {h.get('content-range')!r}, want 'bytes */{len(data)}'")
        else:
            want_len = req.b - req.a
            if h.get("content-length") != str(want_len):
                problems.append(f"Content-Length {h.get('content-length')!r}, want {want_len}")
            if h.get("etag") != f'"{content.sha[req.path]}"':
                problems.append(f"ETag {h.get('etag')!r}, want the file's SHA-256 {content.sha[req.path][:16]}...")
            want_rev = req.note.split("main=")[1] if "main=" in req.note else req.rev
            if h.get("x-tenpak-revision") != want_rev:
                problems.append(f"X-TenPak-Revision {h.get('x-tenpak-revision')!r}, want {want_rev!r}")
            if want_status == 206 and h.get("content-range") != f"bytes {req.a}-{req.b - 1}/{len(data)}":
                problems.append(f"Content-Range {h.get('content-range')!r}, want 'bytes {req.a}-{req.b - 1}/{len(data)}'")
            if req.method == "GET":
                want = data[req.a:req.b]
                if rep.body != want:
                    diff = next((i for i in range(min(len(want), len(rep.body))) if want[i] != rep.body[i]), min(len(want), len(rep.body)))
                    self.fail("wrong-bytes", f"{what}: {rep.status} with {len(rep.body)} bytes, want {len(want)}; first difference at file offset "
                              f"{req.a + diff}; {self.identify(rep.body, req.a)}")
                    return False
        if problems:
            self.fail("wrong-header", f"{what}: {rep.status} but " + "; ".join(problems))
            return False
        return True

    # ---- planning reads

    def read_live(self, key, path=None, method="GET", ranged=None, note=""):
        content = self.live[key]
        path = path or self.rng.choice(sorted(content.files))
        size = len(content.files[path])
        if ranged is None:
            ranged = self.rng.random() < 0.6
        if method == "HEAD" or not ranged:
            return Request(method, key[0], key[1], path, "200", content, None, 0, size, note)
        header, status, a, b = expect_range(self.rng, content, path)
        return Request(method, key[0], key[1], path, str(status), content, header, a, b, note)

    def plan_reads(self, n):
        reqs = []
        live = sorted(self.live)
        removed = sorted(self.removed)
        for _ in range(n):
            r = self.rng.random()
            if live and r < 0.55:
                reqs.append(self.read_live(self.rng.choice(live)))
            elif live and r < 0.68:
                key = self.rng.choice(live)
                req = self.read_live(key, method="HEAD")
                req.note = "HEAD, GET later"
                reqs.append(req)
            elif live and r < 0.75:
                model = self.rng.choice(sorted({k[0] for k in live}))
                newest = max((k for k in live if k[0] == model), key=lambda k: self.order[k])
                req = self.read_live(newest)
                req.rev, req.note = "main", f"main={newest[1]}"
                reqs.append(req)
            elif removed and r < 0.92:
                key = self.rng.choice(removed)
                path = self.rng.choice(sorted(self.removed[key].files))
                reqs.append(Request(self.rng.choice(["GET", "GET", "HEAD"]), key[0], key[1], path, "404", note="removed"))
            elif live:
                key = self.rng.choice(live)
                reqs.append(Request("GET", key[0], key[1], "no/such/file.bin", "404", note="unknown path"))
        # Files HEADed earlier: GET them again (exact if still live, 404 once removed).
        keep = []
        for entry in self.headed:
            model, rev, path, etag = entry
            if self.rng.random() < 0.5:
                keep.append(entry)
                continue
            key = (model, rev)
            if key in self.live:
                req = self.read_live(key, path=path, ranged=self.rng.random() < 0.5, note="HEADed before")
            elif key in self.removed:
                req = Request("GET", model, rev, path, "404", note="HEADed before, removed since")
            else:
                continue
            reqs.append(req)
        self.headed = keep
        return reqs

    def run_reads(self, reqs, busy_ok=False):
        if not reqs:
            return True
        for req in reqs:
            req.busy_ok = busy_ok
        port, timeout = self.server.port, self.args.timeout
        t0 = time.monotonic()
        futures = [self.pool.submit(http_call, port, req.method, url_of(req.model, req.rev, req.path),
                                    {"Range": req.range} if req.range else {}, None, timeout) for req in reqs]
        ok = True
        for req, fut in zip(reqs, futures):
            req.reply = fut.result()
            good = self.classify(req)
            ok &= good
            if good and req.method == "HEAD" and req.note == "HEAD, GET later" and len(self.headed) < 12:
                self.headed.append((req.model, req.rev, req.path, req.reply.headers.get("etag")))
        self.timing["reads"] = self.timing.get("reads", 0) + time.monotonic() - t0
        return ok

    def after_op(self, extra=()):
        """ls check, then reads through the server; restart it after a failure."""
        before = len(self.failures)
        self.check_listing()
        self.ensure_server()
        self.run_reads(list(extra) + self.plan_reads(self.rng.randint(2, 6)))
        if not self.server.alive():
            self.ensure_server()
        elif len(self.failures) > before:
            self.restart_server(f"after failures at op #{self.op_index}")
        self.check_spool()

    def check_spool(self):
        leftovers = [n for n in os.listdir(self.spool) if n.startswith("tpstore-upload-")]
        if leftovers and not self.spool_warned:
            time.sleep(0.5)  # removal may trail the response by a moment
            leftovers = [n for n in os.listdir(self.spool) if n.startswith("tpstore-upload-")]
            if leftovers:
                self.spool_warned = True
                self.fail("spool-leftover", f"{len(leftovers)} upload spool directories left after their requests ended: {leftovers[:3]}")

    spool_warned = False

    # ---- operations

    def remember_put(self, key, content):
        self.live[key] = content
        self.order[key] = self.seq

    def pick_parent(self):
        """Mostly a live revision (only those can be the base put finds), sometimes a removed one."""
        live = [(k, c) for k, c in self.live.items() if c.tensors]
        pool = live if live and self.rng.random() < 0.8 else [(k, c) for k, c in self.known_contents() if c.tensors]
        return self.rng.choice(pool) if pool else (None, None)

    def new_content(self, kind):
        if kind == "ft":
            key, parent = self.pick_parent()
            if parent is not None:
                return make_finetune(self.rng, parent, self.ref(key)), key
        if kind == "dedup":
            pool = self.known_contents()
            if pool:
                key, content = self.rng.choice(pool)
                return Content(dict(content.files), content.tensors, content.st_path, f"same bytes as {self.ref(key)}"), key
        return make_base(self.rng), None

    def op_put(self, kind):
        content, parent = self.new_content(kind)
        model = self.rng.choice(MODELS)
        key = (model, self.new_rev())
        self.op_desc = f"put {self.ref(key)} ({content.lineage}, {sum(map(len, content.files.values())) >> 10} KiB)"
        src = os.path.join(self.work, "src")
        shutil.rmtree(src, ignore_errors=True)
        write_tree(src, content.files)
        extra = []
        if parent and parent in self.live and self.rng.random() < 0.3:
            extra = ["--base", self.ref(parent)]
        elif self.rng.random() < 0.1:
            extra = ["--no-base"]
        self.op_desc += " " + " ".join(extra) if extra else ""
        r = self.cli("put", self.ref(key), src, *extra)
        shutil.rmtree(src, ignore_errors=True)
        if r.returncode != 0:
            self.fail("cli", f"tpstore put {self.ref(key)} failed ({r.returncode}): {r.stderr.strip()[:300]}")
            return []
        self.remember_put(key, content)
        self.count("put")
        # The new revision must be visible through the running server at once.
        return [self.read_live(key, path=content.main_path(), ranged=False, note="just put"), self.read_live(key, note="just put")]

    def op_upload(self, tar):
        content, _ = self.new_content(self.rng.choice(["base", "ft", "ft", "dedup"]))
        model = self.rng.choice(MODELS)
        key = (model, self.new_rev())
        if tar:
            files = content.files
            body = tar_of(files)
            url = "/" + "/".join(urllib.parse.quote(s, safe="") for s in model.split("/")) + f"/revisions/{key[1]}"
        else:
            path = content.st_path if content.st_path in content.files and self.rng.random() < 0.8 else self.rng.choice(sorted(content.files))
            files = {path: content.files[path]}
            body = files[path]
            url = url_of(model, key[1], path)
        if self.rng.random() < 0.15:
            url += "?base=none"
        content = Content(files, content.tensors if content.st_path in files else [], content.st_path, content.lineage)
        self.op_desc = f"upload {'tar' if tar else 'file'} {self.ref(key)} ({content.lineage}, {len(body) >> 10} KiB)"
        self.ensure_server()
        rep = http_call(self.server.port, "PUT", url, {"Content-Type": "application/octet-stream"}, body, max(self.args.timeout, 120))
        self.requests += 1
        if rep.error or rep.status != 201:
            self.fail("upload", f"PUT {url}: status {rep.status}, {rep.error or rep.body[:300]!r}")
            return []
        self.remember_put(key, content)
        self.count("upload")
        return [self.read_live(key, path=self.rng.choice(sorted(files)), ranged=False, note="just uploaded")]

    def op_rm(self):
        if not self.live:
            return self.op_put("base")
        live = sorted(self.live, key=lambda k: self.order[k])
        parents = sorted({c.parent for c in self.live.values() if c.parent} & {self.ref(k) for k in live})
        r = self.rng.random()
        if r < 0.4:
            key = live[-1]  # the newest: gc then frees the highest catalog row ids, which the next put reuses
        elif r < 0.75 and parents:
            key = tuple(self.rng.choice(parents).split("@"))  # a base of a live fine-tune: its pack is partly live, gc repacks it
        else:
            key = self.rng.choice(live)
        return self.rm_key(key)

    def rm_key(self, key):
        self.op_desc = f"rm {self.ref(key)}"
        r = self.cli("rm", self.ref(key))
        if r.returncode != 0:
            self.fail("cli", f"tpstore rm {self.ref(key)} failed ({r.returncode}): {r.stderr.strip()[:300]}")
            return []
        self.removed[key] = self.live.pop(key)
        while len(self.removed) > 40:
            del self.removed[next(iter(self.removed))]
        self.count("rm")
        return [Request("GET", key[0], key[1], self.rng.choice(sorted(self.removed[key].files)), "404", note="just removed")]

    def op_rm_base_gc(self):
        """HEAD the files of a fine-tune, rm its base, gc (which often repacks the base's pack,
        moving chunks the fine-tune reads); the HEADed files are fetched right after."""
        parents = sorted({c.parent for c in self.live.values() if c.parent} & {self.ref(k) for k in self.live})
        desc = ""
        if not parents:
            # Make one: a fine-tune of a live revision.
            bases = sorted(k for k, c in self.live.items() if c.tensors)
            if not bases:
                return self.op_put("base")
            base = self.rng.choice(bases)
            content = make_finetune(self.rng, self.live[base], self.ref(base))
            if not self.put_given((self.rng.choice(MODELS), self.new_rev()), content, "a fine-tune"):
                return []
            desc = self.op_desc + ", "
            parents = [self.ref(base)]
        pref = self.rng.choice(parents)
        key = tuple(pref.split("@"))
        child = self.rng.choice(sorted(k for k, c in self.live.items() if c.parent == pref))
        heads = [self.read_live(child, path=p, method="HEAD", note="HEAD before its base's rm and gc") for p in sorted(self.live[child].files)]
        self.ensure_server()
        self.run_reads(heads)
        self.rm_key(key)
        self.count("rm-base-gc")
        desc += f"HEAD {self.ref(child)}, rm its base {pref}, "
        self.gc_with_reads(False, beside=False)
        self.op_desc = desc + self.op_desc
        if child not in self.live:
            return []
        return [self.read_live(child, path=p, ranged=self.rng.random() < 0.4, note="HEADed before its base's rm and gc")
                for p in sorted(self.live[child].files)]

    def gc_with_reads(self, kill, beside=True):
        """gc as a subprocess, reads running beside it (sometimes); SIGKILL after a random delay if `kill`."""
        reqs = self.plan_reads(self.rng.randint(2, 6)) if beside and self.rng.random() < 0.6 else []
        delay = self.rng.uniform(0, 1.2 * (sum(self.gc_seconds) / len(self.gc_seconds))) if kill else None
        self.op_desc = ("gc, SIGKILL after %.3f s" % delay if kill else "gc") + (f", {len(reqs)} reads beside it" if reqs else "")
        self.ensure_server()
        t0 = time.monotonic()
        p = subprocess.Popen([self.tpstore, "gc", "--store", self.store], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        reader = threading.Thread(target=self.run_reads, args=(reqs, True)) if reqs else None
        if reader:
            reader.start()
        killed = False
        if kill:
            try:
                p.wait(delay)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                killed = True
        timed_out = False
        try:
            out, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            timed_out = True
        if reader:
            reader.join()
        if timed_out:
            self.fail("cli", "tpstore gc did not finish within 300 s (killed)")
        if killed:
            self.count("gc-killed")
            self.event("gc killed")
        elif p.returncode != 0:
            self.fail("cli", f"tpstore gc failed ({p.returncode}): {err.strip()[:300]}")
        else:
            self.gc_seconds = (self.gc_seconds + [time.monotonic() - t0])[-8:]
            self.count("gc")
            for line in out.splitlines():
                if line.startswith("packs:"):
                    try:
                        repacked = int(line.split(" deleted, ")[1].split(" repacked")[0])
                        deleted = int(line.split("packs: ")[1].split(" deleted")[0])
                        self.count("packs repacked", repacked)
                        self.count("packs deleted", deleted)
                        if repacked or deleted:
                            self.event(f"gc deleting {deleted} and repacking {repacked} packs")
                    except (IndexError, ValueError):
                        pass
                    self.op_desc += f" [{line.strip()}]"
        return []

    def op_repair(self):
        """`fsck --repair` under the running server. Issue 12 allows repair to refuse while the
        store is served instead of the server noticing the swapped catalog: a refusal that says
        so is not a failure; the server is then stopped for the repair and started again."""
        self.op_desc = "fsck --repair"
        r = self.cli("fsck", "--repair")
        if r.returncode != 0 and REFUSED_WHILE_SERVED(r.stderr):
            self.count("repair refused while served")
            self.op_desc += f" (refused while served: {r.stderr.strip()[:120]!r}; repaired with serve stopped)"
            complaint = self.server.stop()
            if complaint:
                self.fail("serve-stop", complaint)
            r = self.cli("fsck", "--repair")
            self.start_server()
        if r.returncode != 0:
            self.fail("cli", f"tpstore fsck --repair failed ({r.returncode}): {r.stderr.strip()[:300]}")
        self.count("repair")
        self.event("fsck --repair")
        return []

    def op_fsck(self, read_data=False):
        self.op_desc = "fsck --read-data" if read_data else "fsck"
        r = self.cli("fsck", "--json", *(["--read-data"] if read_data else []))
        try:
            report = json.loads(r.stdout)
        except ValueError:
            report = {"healthy": False, "damage": [r.stderr.strip()[:300] or r.stdout[:300]]}
        if r.returncode != 0 or not report.get("healthy"):
            self.fail("fsck", f"{self.op_desc}: exit {r.returncode}, damage: {'; '.join(report.get('damage', []))[:600]}")
        self.count("fsck")
        return []

    OPS = [("put", 11), ("ft", 14), ("dedup", 6), ("upload-file", 3), ("upload-tar", 3), ("rm", 14), ("rm-base-gc", 8),
           ("gc", 10), ("gc-kill", 6), ("repair", 5), ("fsck", 4)]

    def random_op(self):
        names, weights = zip(*self.OPS)
        weights = list(weights)
        if len(self.live) > 10:
            weights[names.index("rm")] *= 3
        if len(self.live) < 3:
            weights[names.index("rm")] = 1
        name = self.rng.choices(names, weights)[0]
        if name in ("put", "ft", "dedup"):
            return self.op_put({"put": "base"}.get(name, name))
        if name.startswith("upload"):
            return self.op_upload(name == "upload-tar")
        if name == "rm":
            return self.op_rm()
        if name == "rm-base-gc":
            return self.op_rm_base_gc()
        if name in ("gc", "gc-kill"):
            return self.gc_with_reads(name == "gc-kill")
        if name == "repair":
            return self.op_repair()
        return self.op_fsck()

    def step(self, fn, *a):
        """One random operation, then the ls check and random reads through the server."""
        self.op_index += 1
        self.op_desc = fn.__name__
        try:
            extra = fn(*a)
        except Exception:
            self.fail("harness-error", "the harness itself failed in this operation (a bug in it or a setup problem):\n" + traceback.format_exc())
            extra = []
        if self.args.verbose:
            print(f"  op #{self.op_index}: {self.op_desc}", flush=True)
        self.ops_done += 1
        self.after_op(extra)

    def exact_step(self, fn, *a):
        """One step of a named scenario: just it and the ls check (no random reads, no restart)."""
        self.op_index += 1
        self.op_desc = fn.__name__
        fn(*a)
        self.history.append(f"#{self.op_index} {self.op_desc}")
        if self.args.verbose:
            print(f"  op #{self.op_index}: {self.op_desc}", flush=True)
        self.ops_done += 1
        self.check_listing()
        self.ensure_server()

    # ---- whole rounds

    def final_checks(self):
        self.op_index += 1
        self.op_desc = "final: every live file in full through the server, then fsck --read-data"
        self.check_listing()
        self.ensure_server()
        reqs = [self.read_live(key, path=p, ranged=False, note="final") for key in sorted(self.live) for p in sorted(self.live[key].files)]
        self.run_reads(reqs)
        self.op_fsck(read_data=True)
        self.check_spool()

    def run(self, body):
        t0 = time.monotonic()
        try:
            r = self.cli("init")
            if r.returncode != 0:
                raise RuntimeError(f"tpstore init failed: {r.stderr.strip()}")
            self.start_server()
            body()
            self.final_checks()
        except Exception:
            self.fail("harness-error", "the harness itself failed (a bug in it or a setup problem):\n" + traceback.format_exc())
        finally:
            try:
                if self.server.proc is not None and self.server.proc.poll() is not None:
                    self.fail("serve-crash", f"tpstore serve exited ({self.server.proc.returncode}) before the end; {self.server.log_tail()}")
                complaint = self.server.stop()
                if complaint:
                    self.fail("serve-stop", complaint)
            finally:
                self.pool.shutdown(wait=False)
        self.seconds = time.monotonic() - t0

    def random_ops(self):
        reserve = 0.15 * (self.deadline - time.monotonic())
        for i in range(self.args.ops):
            if time.monotonic() > self.deadline - reserve:
                print(f"  time cap: stopped after {i} of {self.args.ops} operations", flush=True)
                break
            self.step(self.random_op)
            if (i + 1) % 50 == 0:
                print(f"  {self.label}/{self.cache}: {i + 1} operations, {self.requests} requests, {len(self.failures)} failures", flush=True)

    # ---- the named sequences

    def scenario_rm_gc_put(self):
        """put X, read X, rm X, gc, put Y, read Y: Y's bytes (the cache must not answer X's)."""
        x = make_base(self.rng, "multi")
        y = make_base(self.rng, "multi")
        kx, ky = ("org/x", self.new_rev()), ("org/y", self.new_rev())
        self.exact_step(self.put_given, kx, x, "X")
        self.exact_step(self.read_all, kx, "read X")
        self.exact_step(self.rm_given, kx)
        self.exact_step(self.gc_with_reads, False, False)
        self.exact_step(self.put_given, ky, y, "Y")
        self.exact_step(self.read_all, ky, "read Y")

    def scenario_head_gc_read(self):
        """HEAD a file; remove others so gc repacks its pack; gc; GET: exact."""
        a = make_base(self.rng, "multi")
        while len(a.tensors) < 3:
            a = make_base(self.rng, "multi")
        # B shares A's first tensor byte for byte and drops the rest: after rm A, A's pack is
        # mostly dead, so gc repacks it, moving the chunks B reads.
        nprng = np.random.default_rng(self.rng.getrandbits(63))
        name, dtype, arr = a.tensors[-1]
        b = build_content(self.rng, nprng, [a.tensors[0], (name + ".new", dtype, random_array(nprng, dtype, (64, 128)))], "shares A's first tensor")
        ka, kb = ("org/a", self.new_rev()), ("org/b", self.new_rev())
        self.exact_step(self.put_given, ka, a, "A")
        self.exact_step(self.put_given, kb, b, "B")
        heads = [self.read_live(kb, path=p, method="HEAD", note="HEAD before gc") for p in sorted(b.files)]
        self.exact_step(self.reads_given, heads, "HEAD every file of B")
        self.exact_step(self.rm_given, ka)
        self.exact_step(self.gc_with_reads, False, False)
        if not self.counts.get("packs repacked"):
            print("  note: the gc repacked no pack, so this run did not exercise a repack", flush=True)
        self.exact_step(self.reads_given, [self.read_live(kb, path=p, ranged=False, note="HEADed before gc") for p in sorted(b.files)] +
                  [self.read_live(kb, path=b.st_path, ranged=True, note="HEADed before gc") for _ in range(4)], "GET every file of B")

    def scenario_repair_then_put(self):
        """fsck --repair under the server, then put (CLI, upload of a file and of a tar): all
        served and listed, older revisions exact, also after a gc."""
        a = make_base(self.rng, "multi")
        ka = ("org/r", self.new_rev())
        self.exact_step(self.put_given, ka, a, "A")
        kb = ("org/r", self.new_rev())
        self.exact_step(self.put_given, kb, make_finetune(self.rng, a, self.ref(ka)), "B (fine-tune of A)")
        self.exact_step(self.read_all, ka, "read A")
        self.exact_step(self.op_repair)
        self.exact_step(self.put_given, ("org/r", self.new_rev()), make_finetune(self.rng, a, self.ref(ka)), "C via CLI after repair")
        self.exact_step(self.upload_given, ("org/r", self.new_rev()), make_base(self.rng, "small"), False)
        self.exact_step(self.upload_given, ("org/r", self.new_rev()), make_finetune(self.rng, a, self.ref(ka)), True)
        for key in sorted(self.live):
            self.exact_step(self.read_all, key, f"read {self.ref(key)}")
        self.exact_step(self.gc_with_reads, False, False)
        for key in sorted(self.live):
            self.exact_step(self.read_all, key, f"read {self.ref(key)} after gc")

    def put_given(self, key, content, label):
        self.op_desc = f"put {label} = {self.ref(key)} ({content.lineage})"
        src = os.path.join(self.work, "src")
        shutil.rmtree(src, ignore_errors=True)
        write_tree(src, content.files)
        r = self.cli("put", self.ref(key), src)
        shutil.rmtree(src, ignore_errors=True)
        if r.returncode != 0:
            self.fail("cli", f"tpstore put {self.ref(key)} failed ({r.returncode}): {r.stderr.strip()[:300]}")
            return False
        self.remember_put(key, content)
        return True

    def upload_given(self, key, content, tar):
        self.op_desc = f"upload {'tar' if tar else 'file'} {self.ref(key)} ({content.lineage})"
        files = content.files if tar else {content.st_path: content.files[content.st_path]}
        url = f"/{key[0]}/revisions/{key[1]}" if tar else url_of(key[0], key[1], content.st_path)
        rep = http_call(self.server.port, "PUT", url, {}, tar_of(files) if tar else files[content.st_path], max(self.args.timeout, 120))
        self.requests += 1
        if rep.error or rep.status != 201:
            self.fail("upload", f"PUT {url}: status {rep.status}, {rep.error or rep.body[:300]!r}")
            return []
        self.remember_put(key, Content(files, content.tensors, content.st_path, content.lineage))
        return []

    def rm_given(self, key):
        self.op_desc = f"rm {self.ref(key)}"
        r = self.cli("rm", self.ref(key))
        if r.returncode != 0:
            self.fail("cli", f"tpstore rm failed ({r.returncode}): {r.stderr.strip()[:300]}")
            return []
        self.removed[key] = self.live.pop(key)
        return []

    def read_all(self, key, label):
        self.op_desc = label
        if key not in self.live:
            return []
        content = self.live[key]
        reqs = [self.read_live(key, path=p, ranged=False, note=label) for p in sorted(content.files)]
        reqs += [self.read_live(key, path=content.main_path(), ranged=True, note=label) for _ in range(4)]
        self.run_reads(reqs)
        return []

    def reads_given(self, reqs, label):
        self.op_desc = label
        self.run_reads(reqs)
        return []


def REFUSED_WHILE_SERVED(stderr):
    """Does a failed `fsck --repair` say it refused because the store is being served?"""
    text = stderr.lower()
    return any(w in text for w in ("serve", "served", "serving", "in use", "running server"))


SCENARIOS = {"rm-gc-put": Round.scenario_rm_gc_put, "head-gc-read": Round.scenario_head_gc_read,
             "repair-then-put": Round.scenario_repair_then_put, "random": Round.random_ops}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_bin = next((p for p in (os.path.join(here, "..", ".build", b, "tpstore") for b in ("debug", "release")) if os.access(p, os.X_OK)),
                       os.path.join(here, "..", ".build", "debug", "tpstore"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[5:]))
    ap.add_argument("--tpstore", default=default_bin)
    ap.add_argument("--ops", type=int, default=500, help="random operations per round (default 500)")
    ap.add_argument("--seconds", type=float, default=1800, help="cap on the whole run's time (default 1800)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", choices=["on", "off", "both"], default="both")
    ap.add_argument("--scenario", default="random", help="rm-gc-put, head-gc-read, repair-then-put, random; named (the three), all; comma-separated")
    ap.add_argument("--timeout", type=float, default=30, help="seconds a request may take before it counts as a hang (default 30)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (stores, serve logs)")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every operation")
    a = ap.parse_args()
    names = []
    for part in a.scenario.split(","):
        part = part.strip()
        expand = {"named": ["rm-gc-put", "head-gc-read", "repair-then-put"], "all": ["rm-gc-put", "head-gc-read", "repair-then-put", "random"]}
        for name in expand.get(part, [part]):
            if name not in SCENARIOS:
                print(f"server_harness: unknown scenario {name!r} (rm-gc-put, head-gc-read, repair-then-put, random, named, all)", file=sys.stderr)
                return 2
            if name not in names:
                names.append(name)
    if not os.access(a.tpstore, os.X_OK):
        print(f"server_harness: no tpstore binary at {a.tpstore} (swift build --product tpstore)", file=sys.stderr)
        return 2
    tpstore = os.path.abspath(a.tpstore)
    caches = ["on", "off"] if a.cache == "both" else [a.cache]
    plan = [(name, cache) for name in names for cache in caches]
    work = tempfile.mkdtemp(prefix="tenpak-server-harness-")
    start = time.monotonic()
    deadline = start + a.seconds

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    rounds = []
    print(f"server harness: seed {a.seed}, {len(plan)} rounds ({', '.join(f'{n}/cache {c}' for n, c in plan)}), work dir {work}", flush=True)
    try:
        for i, (name, cache) in enumerate(plan):
            now = time.monotonic()
            weights = [3 if n == "random" else 1 for n, _ in plan[i:]]
            round_deadline = now + (deadline - now) * weights[0] / sum(weights)
            rdir = os.path.join(work, f"round{i + 1}-{name}-cache-{cache}")
            os.makedirs(rdir)
            rnd = Round(a, tpstore, a.seed, cache, rdir, round_deadline, name)
            rounds.append(rnd)
            print(f"round {i + 1}: {name}, cache {cache}", flush=True)
            rnd.run(lambda: SCENARIOS[name](rnd))
            coverage = ", ".join(f"{k} {v}" for k, v in sorted(rnd.counts.items()))
            print(f"round {i + 1}: {name}, cache {cache}: {rnd.ops_done} operations, {rnd.requests} requests, {len(rnd.failures)} failures, "
                  f"{rnd.seconds:.1f} s ({', '.join(f'{k} {v:.0f} s' for k, v in sorted(rnd.timing.items()))}); serve restarts {rnd.restarts}, 503 while gc ran {rnd.busy_answers}; {coverage}", flush=True)
    except KeyboardInterrupt as e:
        print(f"server harness: interrupted ({e})", flush=True)
        if rounds and not hasattr(rounds[-1], "seconds"):
            rounds[-1].fail("interrupted", f"the harness was interrupted ({e}) during this round")
    failures = [f for r in rounds for f in r.failures]
    if failures:
        print("failures by kind:")
        kinds = {}
        for f in failures:
            kinds.setdefault(f.kind, []).append(f)
        for kind, fs in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
            first = fs[0]
            print(f"  {kind}: {len(fs)} (first: seed {first.seed}, cache {first.cache}, op #{first.op_index} {first.op})")
        modes = sorted({f.cache for f in failures})
        print(f"reproduce: python3 Tools/server_harness.py --tpstore {a.tpstore} --seed {a.seed} --ops {a.ops} --scenario {a.scenario} "
              f"--cache {modes[0] if len(modes) == 1 else 'both'}")
    if a.keep or failures:
        print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"server harness: {len(rounds)} rounds, {sum(r.ops_done for r in rounds)} operations, {sum(r.requests for r in rounds)} requests, "
          f"{len(failures)} failures", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
