#!/usr/bin/env python3
"""Makes synthetic fine-tunes of a real base model for TenPak's compression benchmark.

Usage: Tools/make_finetunes.py BASE.safetensors OUTDIR [--only NAME[,NAME...]]

Writes into OUTDIR (or only the named ones, e.g. --only small_update) (created if needed), each with the base's tensor order, names, dtypes and
__metadata__, header padded like the safetensors package does:
  lora.safetensors            a rank-8 LoRA update B·A merged into the attention query and value
                              weights of 2 layers (the middle and the last one), relative L2 change
                              1e-2 per merged matrix; every other tensor bit-identical
  last_layers.safetensors     only the last 2 transformer layers' float tensors updated, AdamW-like:
                              per element +-m with m log-uniform in [1e-4, 1e-3] (absolute, not
                              proportional to the weight); everything else bit-identical
  vocab_extended.safetensors  the word-embedding matrix gets 1,000 rows appended (drawn from its own
                              mean/std), and every float tensor gets the small_update change below
  small_update.safetensors    every float tensor gets an AdamW-like update (random sign, magnitude
                              uniform in [0.5, 1.5] of a per-tensor step), scaled to a relative L2
                              change of 1e-3; integer tensors unchanged
  unrelated.safetensors       every float tensor freshly drawn from a normal with that tensor's
                              mean/std (a separately trained model of the same architecture);
                              integer tensors unchanged
Float tensors may be F32, F16 or BF16 (updates are computed in float64 and rounded to nearest
even). Layers are found by names like `encoder.layer.N.` or `model.layers.N.`; attention
projections by `query`/`q_proj` and `value`/`v_proj`; the embedding by `word_embeddings` or
`embed_tokens`. Deterministic: each output has its own fixed seed.
"""

import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stlib  # noqa: E402
from stlib import Tensor  # noqa: E402

SEED = 105
VARIANTS = ("lora", "last_layers", "vocab_extended", "small_update", "unrelated")
LAYER_RE = re.compile(r"(?:^|\.)layers?\.(\d+)\.")
Q_RE = re.compile(r"\.(?:query|q_proj)\.weight$")
V_RE = re.compile(r"\.(?:value|v_proj)\.weight$")
EMBED_RE = re.compile(r"(?:word_embeddings|embed_tokens)\.weight$")


def is_float(t):
    return t.dtype in ("F32", "F16", "BF16") and t.numel > 0


def to_f64(t):
    a = t.array()
    if t.dtype == "BF16":
        a = stlib.bf16_bits_to_f32(a)
    return a.astype(np.float64)


def from_f64(name, dtype, a):
    a32 = a.astype("<f4")
    if dtype == "BF16":
        return Tensor.from_array(name, "BF16", stlib.f32_to_bf16_bits(a32))
    return Tensor.from_array(name, dtype, a32.astype(stlib.NP_DTYPES[dtype]))


def layer_of(name):
    m = LAYER_RE.search(name)
    return int(m.group(1)) if m else None


def adamw_like(rng, w, rel=1e-3):
    """Random-sign update of roughly uniform magnitude, scaled to relative L2 change `rel`."""
    u = rng.choice([-1.0, 1.0], size=w.shape) * rng.uniform(0.5, 1.5, size=w.shape)
    norm_w, norm_u = np.linalg.norm(w), np.linalg.norm(u)
    if norm_w == 0 or norm_u == 0:  # an all-zero tensor: step of 1e-6 per element
        return 1e-6 * u
    return u * (rel * norm_w / norm_u)


def small_update(tensors, rng):
    return [from_f64(t.name, t.dtype, (w := to_f64(t)) + adamw_like(rng, w)) if is_float(t) else t
            for t in tensors]


def lora(tensors, rng, layers):
    chosen = {layers[len(layers) // 2], layers[-1]}
    out, hit = [], 0
    for t in tensors:
        if is_float(t) and len(t.shape) == 2 and layer_of(t.name) in chosen and (Q_RE.search(t.name) or V_RE.search(t.name)):
            w = to_f64(t)
            r, alpha = 8, 16
            a = rng.standard_normal((r, w.shape[1])) / np.sqrt(w.shape[1])
            b = rng.standard_normal((w.shape[0], r)) * 0.01
            d = (alpha / r) * (b @ a)
            d *= 1e-2 * np.linalg.norm(w) / np.linalg.norm(d)
            out.append(from_f64(t.name, t.dtype, w + d))
            hit += 1
        else:
            out.append(t)
    if hit == 0:
        stlib.die("no attention query/value weights (…query.weight / …q_proj.weight) found in the chosen layers")
    return out, sorted(chosen), hit


def last_layers(tensors, rng, layers):
    chosen = set(layers[-2:])
    out = []
    for t in tensors:
        if is_float(t) and layer_of(t.name) in chosen:
            w = to_f64(t)
            m = np.exp(rng.uniform(np.log(1e-4), np.log(1e-3), size=w.shape))
            out.append(from_f64(t.name, t.dtype, w + rng.choice([-1.0, 1.0], size=w.shape) * m))
        else:
            out.append(t)
    return out, sorted(chosen)


def vocab_extended(tensors, rng, extra=1000):
    out, grown = [], None
    for t in small_update(tensors, rng):
        if EMBED_RE.search(t.name) and len(t.shape) == 2 and is_float(t):
            w = to_f64(t)
            rows = w.mean() + w.std() * rng.standard_normal((extra, w.shape[1]))
            t = from_f64(t.name, t.dtype, np.concatenate([w, rows]))
            grown = (t.name, t.shape)
        out.append(t)
    if grown is None:
        stlib.die("no word-embedding matrix (…word_embeddings.weight / …embed_tokens.weight) found")
    return out, grown


def unrelated(tensors, rng):
    out = []
    for t in tensors:
        if is_float(t):
            w = to_f64(t)
            out.append(from_f64(t.name, t.dtype, w.mean() + w.std() * rng.standard_normal(w.shape)))
        else:
            out.append(t)
    return out


def main():
    usage = "usage: make_finetunes.py BASE.safetensors OUTDIR [--only NAME[,NAME...]]"
    args = sys.argv[1:]
    only = set(VARIANTS)
    if "--only" in args:
        i = args.index("--only")
        if i + 1 >= len(args):
            stlib.die(usage)
        only = set(args[i + 1].split(","))
        del args[i:i + 2]
        if not only <= set(VARIANTS):
            stlib.die(f"--only: unknown variant(s) {', '.join(sorted(only - set(VARIANTS)))}; known: {', '.join(VARIANTS)}")
    if len(args) != 2:
        stlib.die(usage)
    base_path, outdir = args
    if not os.path.isfile(base_path):
        stlib.die(f"{base_path}: no such file")
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        stlib.die(f"{outdir} exists and is not a directory")
    try:
        meta, base = stlib.read(base_path)
    except stlib.FormatError as e:
        stlib.die(str(e))
    layers = sorted({n for n in (layer_of(t.name) for t in base) if n is not None})
    if len(layers) < 2:
        stlib.die(f"{base_path}: fewer than 2 numbered layers (names like encoder.layer.N.…)")
    os.makedirs(outdir, exist_ok=True)

    def rng(i):
        return np.random.default_rng([SEED, i])

    def emit(fname, tensors, what):
        path = os.path.join(outdir, fname)
        stlib.write(path, tensors, meta)
        changed = sum(1 for a, b in zip(base, tensors) if a.data != b.data)
        print(f"make_finetunes: {path}: {what}; {changed} of {len(tensors)} tensors differ from the base")

    if "lora" in only:
        t, chosen, hit = lora(base, rng(1), layers)
        emit("lora.safetensors", t, f"rank-8 LoRA merged into {hit} query/value weights of layers {chosen}")
    if "last_layers" in only:
        t, chosen = last_layers(base, rng(2), layers)
        emit("last_layers.safetensors", t, f"AdamW-like updates to layers {chosen}")
    if "vocab_extended" in only:
        t, (name, shape) = vocab_extended(base, rng(3))
        emit("vocab_extended.safetensors", t, f"{name} grown to {shape}, small update everywhere")
    if "small_update" in only:
        emit("small_update.safetensors", small_update(base, rng(4)), "AdamW-like update, relative change 1e-3, every float tensor")
    if "unrelated" in only:
        emit("unrelated.safetensors", unrelated(base, rng(5)), "fresh values with each tensor's mean/std")


if __name__ == "__main__":
    main()
