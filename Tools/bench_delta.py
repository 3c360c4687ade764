#!/usr/bin/env python3
"""Benchmarks TenPak's base-relative (delta) storage against zstd, zstd --patch-from, ZipNN and BitX.

Usage: Tools/bench_delta.py [--tpstore PATH] [--corpus DIR] [--out DIR] [--cases a,b,...] [--keep-work]

Cases (each a base and a fine-tune safetensors file; all by default):
  corpus_f32, corpus_bf16, corpus_f16   CORPUS/minilm-base -> CORPUS/minilm-ft105 model.safetensors,
                                        as shipped (F32) and both cast with Tools/cast_safetensors.py
  lora, last_layers, vocab_extended,    Tools/make_finetunes.py variants of the real F32 base
  small_update, unrelated
  nobase_f32, nobase_bf16, nobase_f16   the base itself into an empty store (no base to delta against)

For each case, measured in the same run:
  TenPak      base put into a fresh store with --no-base, then the fine-tune with --base; stored bytes
              = the fine-tune's storedBytes from `put --json` (no-base rows: the base's own). put and
              get MB/s = raw bytes of that file / wall-clock seconds of the CLI call (get verifies the
              SHA-256; the script also compares the rebuilt file with the original, outside the timing)
  zstd-3      `zstd -3` of the fine-tune alone
  patch-from  `zstd -3 --long=27 --patch-from=BASE FINETUNE`
  ZipNN       PyPI zipnn, safetensors-aware: every float tensor compressed on its own with
              ZipNN(input_format="torch", method="HUFFMAN") (what zipnn's compress_safetensors
              script does; kept raw if that is not smaller), other tensors raw, written back as a
              safetensors file; size of that file. Each tensor's round trip is checked.
  BitX        Tools/bitx.py (XOR with the base, byte planes, zstd -3 per plane)
The tpstore binary is copied into the temp dir first, so a concurrent rebuild does not change it
mid-run. Writes OUT/bench_delta.md, OUT/bench_delta.csv and OUT/bench_delta.png (OUT defaults to
bench-out/ at the repository root, which is git-ignored); temp stores and inputs are deleted unless
--keep-work. MB = 1e6 bytes, GB = 1e9 bytes. Needs numpy, zstandard, the zstd CLI; optional zipnn
(with torch) and matplotlib (no chart without it).
"""

import argparse
import csv
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

CORPUS_CASES = ("corpus_f32", "corpus_bf16", "corpus_f16")
SYNTH_CASES = ("lora", "last_layers", "vocab_extended", "small_update", "unrelated")
NOBASE_CASES = ("nobase_f32", "nobase_bf16", "nobase_f16")
ALL_CASES = CORPUS_CASES + SYNTH_CASES + NOBASE_CASES
METHODS = ("tenpak", "zstd3", "patch_from", "zipnn", "bitx")
METHOD_LABELS = {"tenpak": "TenPak", "zstd3": "zstd -3", "patch_from": "zstd --patch-from",
                 "zipnn": "ZipNN", "bitx": "BitX"}
REAL_FT_SHA = "4035447f095bdf293c6e028072be26980668990e828adec6b5de00416eac5f5b"

# targets: (label, kind, case(s), threshold)
PUT_TARGET_MBPS = 1000.0
GET_TARGET_MBPS = 1200.0


def log(msg):
    print(f"bench_delta: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode(errors='replace').strip()[-2000:]}")
    return p.stdout


# ---- inputs ------------------------------------------------------------------------------

def stage(src, dest_dir):
    """Links (or copies) src to dest_dir/model.safetensors so every put sees the same file name."""
    os.makedirs(dest_dir, exist_ok=True)
    dst = os.path.join(dest_dir, "model.safetensors")
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def prepare_inputs(cases, corpus, work):
    """Returns {case: (base_path_or_None, subject_path, description)}; only makes what the cases need."""
    base32 = os.path.join(corpus, "minilm-base", "model.safetensors")
    ft32 = os.path.join(corpus, "minilm-ft105", "model.safetensors")
    for p in (base32, ft32):
        if not os.path.isfile(p):
            die(f"{p} missing; run: bash Tools/fetch_or_make_corpus.sh {corpus}")
    inputs = os.path.join(work, "inputs")
    os.makedirs(inputs, exist_ok=True)
    files = {("base", "f32"): base32, ("ft", "f32"): ft32}

    def cast(kind, dtype):
        key = (kind, dtype)
        if key not in files:
            out = os.path.join(inputs, f"{kind}_{dtype}.safetensors")
            log(f"casting {kind} to {dtype.upper()}")
            run([sys.executable, os.path.join(TOOLS, "cast_safetensors.py"), files[(kind, "f32")], out, "--dtype", dtype])
            files[key] = out
        return files[key]

    synth = [c for c in cases if c in SYNTH_CASES]
    if synth:
        log(f"making synthetic fine-tunes: {','.join(synth)}")
        run([sys.executable, os.path.join(TOOLS, "make_finetunes.py"), base32, os.path.join(inputs, "synth"), "--only", ",".join(synth)])
    pairs = {}
    for c in cases:
        if c in CORPUS_CASES:
            dt = c.split("_")[1]
            how = "as shipped" if dt == "f32" else f"both cast to {dt.upper()}"
            pairs[c] = (cast("base", dt), cast("ft", dt), f"minilm-base -> minilm-ft105, {how}")
        elif c in SYNTH_CASES:
            pairs[c] = (base32, os.path.join(inputs, "synth", f"{c}.safetensors"),
                        f"minilm-base -> make_finetunes.py {c}")
        else:
            dt = c.split("_")[1]
            how = "as shipped" if dt == "f32" else f"cast to {dt.upper()}"
            pairs[c] = (None, cast("base", dt), f"minilm-base {how}, into an empty store")
    return pairs


# ---- methods -----------------------------------------------------------------------------

def tenpak(tp, work, case, base, subject):
    """Returns dict with stored bytes, put/get seconds, encodings; the store is deleted afterwards."""
    root = os.path.join(work, f"tp-{case}")
    store = os.path.join(root, "store")
    os.makedirs(root)
    try:
        sdir = stage(subject, os.path.join(root, "subject"))
        if base is not None:
            bdir = stage(base, os.path.join(root, "base"))
            run([tp, "put", "--store", store, "base@1", bdir, "--no-base", "--json"])
            args = ["--base", "base@1"]
        else:
            args = ["--no-base"]
        t0 = time.perf_counter()
        out = run([tp, "put", "--store", store, "subject@1", sdir] + args + ["--json"])
        put_s = time.perf_counter() - t0
        rep = json.loads(out)
        files = rep.get("files", [])
        if len(files) != 1:
            raise RuntimeError(f"expected 1 file in the put report, got {len(files)}")
        dest = os.path.join(root, "got")
        t0 = time.perf_counter()
        run([tp, "get", "--store", store, "subject@1", dest])
        get_s = time.perf_counter() - t0
        got = os.path.join(dest, "model.safetensors")
        if sha256(got) != sha256(subject):
            raise RuntimeError(f"{case}: tpstore get rebuilt a file that differs from the original")
        enc = files[0].get("encodings", {})
        return {"stored": int(files[0]["storedBytes"]), "put_s": put_s, "get_s": get_s,
                "put_internal_s": rep.get("seconds"), "base": rep.get("base"),
                "encodings": " ".join(f"{k}:{v}" for k, v in sorted(enc.items(), key=lambda kv: -kv[1]))}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def zstd_alone(path):
    return len(run(["zstd", "-3", "-q", "-c", path]))


def zstd_patch_from(base, path):
    return len(run(["zstd", "-3", "--long=27", f"--patch-from={base}", "-q", "-c", path]))


class ZipNNRunner:
    """Lazy import: zipnn pulls in torch, which takes seconds."""

    def __init__(self):
        self.reason = None
        self.version = None
        try:
            import warnings
            warnings.filterwarnings("ignore")  # torch's jit deprecation warnings on import
            import torch
            import zipnn  # noqa: F401
            from importlib.metadata import version
            from safetensors import safe_open
            from safetensors.torch import save
            from zipnn import ZipNN
            from zipnn.util_safetensors import (COMPRESSED_DTYPE, COMPRESSION_METHOD,
                                                build_compressed_tensor_info,
                                                set_compressed_tensors_metadata)
        except Exception as e:  # ImportError, or a broken torch install
            self.reason = f"import zipnn failed: {type(e).__name__}: {e}"
            return
        self.version = version("zipnn")
        self.torch, self.safe_open, self.save, self.ZipNN = torch, safe_open, save, ZipNN
        self.cdtype, self.method = COMPRESSED_DTYPE, COMPRESSION_METHOD
        self.info, self.set_meta = build_compressed_tensor_info, set_compressed_tensors_metadata

    @property
    def ok(self):
        return self.reason is None

    def size(self, path):
        torch = self.torch
        out, infos = {}, {}
        with self.safe_open(path, "pt", "cpu") as f:
            meta = dict(f.metadata() or {})
            for name in f.keys():
                t = f.get_tensor(name)
                if not t.is_floating_point() or t.numel() == 0:
                    out[name] = t
                    continue
                # ZipNN.compress rewrites a torch input in place (sign-bit reordering), so give it a copy
                c = self.ZipNN(input_format="torch", bytearray_dtype=t.dtype, method=self.method).compress(t.clone())
                if len(c) >= t.numel() * t.element_size():
                    out[name] = t
                    continue
                d = self.ZipNN(input_format="torch").decompress(c)
                if d.dtype != t.dtype or tuple(d.shape) != tuple(t.shape) or not torch.equal(
                        d.contiguous().view(torch.uint8), t.contiguous().view(torch.uint8)):
                    raise RuntimeError(f"ZipNN round trip of {name} in {path} is not exact")
                out[name] = torch.frombuffer(bytearray(c), dtype=self.cdtype)
                infos[name] = self.info(t)
        self.set_meta(infos, meta)
        return len(self.save(out, meta or None))


def bitx_size(base, path):
    import bitx
    return bitx.bitx(base, path)["bitx_bytes"]


# ---- reporting ---------------------------------------------------------------------------

def fmt_size(v, raw):
    if not isinstance(v, int):
        return v
    return f"{v:,} ({v / raw:.3f})"


def fmt_rate(nbytes, secs):
    return f"{nbytes / secs / 1e6:,.0f}" if isinstance(secs, float) and secs > 0 else "n/a"


def table_rows(results):
    head = ["case", "raw bytes", "TenPak stored", "zstd -3", "zstd --patch-from", "ZipNN", "BitX",
            "put MB/s", "get MB/s"]
    rows = []
    for r in results:
        raw = r["raw"]
        rows.append([r["case"], f"{raw:,}"] + [fmt_size(r[m], raw) for m in METHODS]
                    + [fmt_rate(raw, r["put_s"]), fmt_rate(raw, r["get_s"])])
    return head, rows


def text_table(head, rows, left=False):
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w[i]) if i and not left else str(c).ljust(w[i])
                                   for i, c in enumerate(cells)).rstrip()
    return "\n".join([line(head), line(["-" * x for x in w])] + [line(r) for r in rows])


def md_table(head, rows, left=False):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 or left else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def ratio(a, b):
    return a / b if isinstance(a, int) and isinstance(b, int) and b else None


def ratios_and_targets(by_case):
    """Returns (ratio lines, target rows [target, measured, status])."""
    lines = []
    for c in CORPUS_CASES:
        r = by_case.get(c)
        if not r:
            continue
        rb, rz = ratio(r["tenpak"], r["bitx"]), ratio(r["tenpak"], r["zipnn"])
        lines.append(f"{c}: TenPak/BitX = {rb:.3f}" if rb is not None else f"{c}: TenPak/BitX = n/a")
        lines[-1] += f", TenPak/ZipNN = {rz:.3f}" if rz is not None else ", TenPak/ZipNN = n/a"
    targets = []

    def bitx_target(case, limit, label):
        r = by_case.get(case)
        if not r:
            targets.append([label, "not run", "not run"])
            return
        q = ratio(r["tenpak"], r["bitx"])
        targets.append([label, f"{q:.4f}×BitX" if q is not None else "n/a",
                        "n/a" if q is None else ("met" if q <= limit else "missed")])

    bitx_target("corpus_bf16", 0.8, "corpus BF16: stored ≤ 0.8×BitX")
    bitx_target("corpus_f32", 0.9, "corpus F32: stored ≤ 0.9×BitX")
    for c in NOBASE_CASES:
        r = by_case.get(c)
        label = f"{c}: stored ≤ ZipNN"
        if not r:
            targets.append([label, "not run", "not run"])
            continue
        q = ratio(r["tenpak"], r["zipnn"])
        targets.append([label, f"{q:.4f}×ZipNN" if q is not None else "n/a (ZipNN unavailable)",
                        "n/a" if q is None else ("met" if q <= 1.0 else "missed")])
    for key, limit, label in (("put_s", PUT_TARGET_MBPS, "put ≥ 1 GB/s"), ("get_s", GET_TARGET_MBPS, "get ≥ 1.2 GB/s")):
        rates = {c: r["raw"] / r[key] / 1e6 for c, r in by_case.items() if isinstance(r[key], float) and r[key] > 0}
        if not rates:
            targets.append([label, "not run", "not run"])
            continue
        worst = min(rates, key=rates.get)
        best = max(rates, key=rates.get)
        n_ok = sum(v >= limit for v in rates.values())
        targets.append([f"{label} (every case)",
                        f"{rates[worst]:,.0f}–{rates[best]:,.0f} MB/s (min {worst}, max {best})",
                        f"met ({n_ok}/{len(rates)})" if n_ok == len(rates) else f"missed ({n_ok}/{len(rates)} cases meet it)"])
    return lines, targets


def write_csv(path, results):
    cols = ["case", "inputs", "raw_bytes"]
    for m in METHODS:
        cols += [f"{m}_bytes", f"{m}_frac"]
    cols += ["put_seconds", "put_MBps", "put_internal_seconds", "get_seconds", "get_MBps", "tenpak_base", "tenpak_encodings"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in results:
            raw = r["raw"]
            row = [r["case"], r["desc"], raw]
            for m in METHODS:
                v = r[m]
                row += [v, f"{v / raw:.4f}"] if isinstance(v, int) else ["", ""]
            row += [f"{r['put_s']:.3f}", f"{raw / r['put_s'] / 1e6:.1f}",
                    "" if r["put_internal_s"] is None else f"{r['put_internal_s']:.3f}",
                    f"{r['get_s']:.3f}", f"{raw / r['get_s'] / 1e6:.1f}", r["tenpak_base"] or "", r["encodings"]]
            w.writerow(row)


def write_chart(path, results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"no chart: matplotlib not importable ({e}); python3 -m pip install -q matplotlib"
    colors = {"tenpak": "#d62728", "zstd3": "#7f7f7f", "patch_from": "#bcbd22", "zipnn": "#1f77b4", "bitx": "#2ca02c"}
    n, k = len(results), len(METHODS)
    width = 0.8 / k
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.45 * n + 2), 10), dpi=110,
                             gridspec_kw={"height_ratios": [3, 2]}, sharex=True)
    for ax, log_scale in zip(axes, (False, True)):
        for j, m in enumerate(METHODS):
            xs, ys = [], []
            for i, r in enumerate(results):
                x = i - 0.4 + width * (j + 0.5)
                if isinstance(r[m], int):
                    xs.append(x)
                    ys.append(r[m] / 1e6)
                elif not log_scale:
                    ax.text(x, 0.5, "n/a", ha="center", va="bottom", fontsize=6, rotation=90, color="0.4")
            ax.bar(xs, ys, width, label=METHOD_LABELS[m], color=colors[m], edgecolor="black", linewidth=0.3)
        for i, r in enumerate(results):
            ax.hlines(r["raw"] / 1e6, i - 0.45, i + 0.45, colors="black", linestyles="dashed", linewidth=1)
            if isinstance(r["tenpak"], int):
                x = i - 0.4 + width * 0.5
                y = r["tenpak"] / 1e6
                ax.text(x, y * 1.15 if log_scale else y + 1, f"{r['tenpak'] / r['raw']:.3f}", ha="center",
                        va="bottom", fontsize=7, rotation=90, color=colors["tenpak"])
        ax.grid(axis="y", alpha=0.3, which="both" if log_scale else "major")
        top = max(r["raw"] for r in results) / 1e6
        if log_scale:
            ax.set_yscale("log")
            ax.set_ylim(min(r[m] for r in results for m in METHODS if isinstance(r[m], int)) / 1e6 / 2, top * 3)
            ax.set_ylabel("stored MB, log scale")
        else:
            ax.set_ylim(0, top * 1.15)
            ax.set_ylabel("stored size (MB = 1e6 bytes)")
            ax.plot([], [], color="black", linestyle="dashed", linewidth=1, label="raw size")
            ax.legend(ncol=3, fontsize=9, loc="upper left")
            ax.set_title("Stored bytes per method and case (lower is better; red numbers: TenPak stored / raw)")
    axes[1].set_xticks(range(n))
    axes[1].set_xticklabels([r["case"] for r in results], rotation=25, ha="right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None


# ---- main --------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tpstore", default=os.path.join(REPO, ".build", "release", "tpstore"))
    ap.add_argument("--corpus", default=os.path.join(REPO, ".corpus"))
    ap.add_argument("--out", default=os.path.join(REPO, "bench-out"))
    ap.add_argument("--cases", default=",".join(ALL_CASES), help="comma-separated subset of: " + ",".join(ALL_CASES))
    ap.add_argument("--keep-work", action="store_true", help="keep the temp dir (inputs; stores are always removed)")
    a = ap.parse_args()

    cases = [c for c in a.cases.split(",") if c]
    bad = [c for c in cases if c not in ALL_CASES]
    if bad or not cases:
        die(f"--cases: unknown {','.join(bad) or '(empty)'}; known: {','.join(ALL_CASES)}")
    cases = [c for c in ALL_CASES if c in cases]  # canonical order
    if not (os.path.isfile(a.tpstore) and os.access(a.tpstore, os.X_OK)):
        die(f"{a.tpstore}: not an executable (the brief: use the already-built binary; do not build here)")
    if shutil.which("zstd") is None:
        die("needs the zstd CLI (Tools/setup.sh installs it)")
    try:
        import bitx  # noqa: F401  (needs numpy, zstandard)
    except SystemExit:
        die("Tools/bitx.py needs the zstandard package (Tools/setup.sh installs it)")

    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="tenpak-bench-")
    t_start = time.time()
    load_start = os.getloadavg()[0]
    try:
        tp = os.path.join(work, "tpstore")
        shutil.copy2(a.tpstore, tp)  # a private copy: a concurrent rebuild cannot swap it mid-run
        tp_sha = sha256(tp)
        try:
            tp_version = run([tp, "--version"]).decode().strip()
        except RuntimeError:
            tp_version = "?"
        ft_sha = sha256(os.path.join(a.corpus, "minilm-ft105", "model.safetensors")) if os.path.isfile(
            os.path.join(a.corpus, "minilm-ft105", "model.safetensors")) else None
        pairs = prepare_inputs(cases, a.corpus, work)
        zipnn = ZipNNRunner()
        if not zipnn.ok:
            log(f"ZipNN: n/a ({zipnn.reason})")
        results = []
        for c in cases:
            base, subject, desc = pairs[c]
            raw = os.path.getsize(subject)
            log(f"{c}: raw {raw:,} bytes")
            r = {"case": c, "raw": raw, "desc": desc}
            tr = tenpak(tp, work, c, base, subject)
            r.update(tenpak=tr["stored"], put_s=tr["put_s"], get_s=tr["get_s"], put_internal_s=tr["put_internal_s"],
                     tenpak_base=tr["base"], encodings=tr["encodings"])
            r["zstd3"] = zstd_alone(subject)
            r["patch_from"] = zstd_patch_from(base, subject) if base else "n/a"
            r["zipnn"] = zipnn.size(subject) if zipnn.ok else "n/a"
            r["bitx"] = bitx_size(base, subject) if base else "n/a"
            log(f"{c}: TenPak {r['tenpak'] / raw:.3f}, zstd {r['zstd3'] / raw:.3f}, "
                f"put {raw / r['put_s'] / 1e6:.0f} MB/s, get {raw / r['get_s'] / 1e6:.0f} MB/s")
            results.append(r)

        head, rows = table_rows(results)
        by_case = {r["case"]: r for r in results}
        rlines, targets = ratios_and_targets(by_case)
        git = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL).stdout.decode().strip() or "?"
        notes = [
            f"tpstore {tp_version} ({a.tpstore}, sha256 {tp_sha[:12]}…), repo HEAD {git} (the binary may be built from a dirty tree)",
            f"machine: {os.cpu_count()} cores, {platform.machine()}, load average {load_start:.1f} at start and "
            f"{os.getloadavg()[0]:.1f} at end (other work on the machine skews the MB/s), Python {platform.python_version()}; "
            "zstd " + run(["zstd", "--version"]).decode().strip("* \n").split(" v", 1)[-1].split(",")[0],
            "corpus fine-tune: " + ("the real one (SHA-256 4035447f…)" if ft_sha == REAL_FT_SHA else
                                    f"NOT the real fine-tune (SHA-256 {ft_sha and ft_sha[:12]}…), probably synthetic"),
            f"ZipNN: {'zipnn ' + zipnn.version + ', per float tensor, method HUFFMAN, input_format torch' if zipnn.ok else 'n/a — ' + zipnn.reason}",
            "sizes: bytes (fraction of the fine-tune's raw bytes); MB/s = raw bytes / wall-clock seconds of one "
            "tpstore CLI call (1 MB = 1e6 bytes); no-base rows: the base itself into an empty store",
            "BitX and patch-from need a base, so they are n/a on no-base rows",
        ]
        elapsed = time.time() - t_start

        text = [text_table(head, rows), ""]
        if rlines:
            text += ["Corpus ratios:"] + ["  " + x for x in rlines] + [""]
        text += ["Targets:", text_table(["target", "measured", "status"], targets, left=True), ""]
        text += ["Notes:"] + ["  " + x for x in notes] + [f"  run time {elapsed:.0f} s"]
        print("\n".join(text))

        md = ["# TenPak delta benchmark", "", md_table(head, rows), ""]
        if rlines:
            md += ["## Corpus ratios", ""] + ["- " + x for x in rlines] + [""]
        md += ["## Targets", "", md_table(["target", "measured", "status"], targets, left=True), ""]
        md += ["## Cases and TenPak encodings", "", md_table(["case", "inputs", "encodings (chunks)"],
               [[r["case"], r["desc"], r["encodings"]] for r in results], left=True), ""]
        md += ["## Notes", ""] + ["- " + x for x in notes] + [f"- run time {elapsed:.0f} s",
                                                               f"- command: `{' '.join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])}`", ""]
        with open(os.path.join(a.out, "bench_delta.md"), "w") as f:
            f.write("\n".join(md))
        write_csv(os.path.join(a.out, "bench_delta.csv"), results)
        png = os.path.join(a.out, "bench_delta.png")
        err = write_chart(png, results)
        log(err if err else f"wrote {os.path.join(a.out, 'bench_delta.md')}, .csv and {png}")
    finally:
        if a.keep_work:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
