#!/usr/bin/env python3
"""Writes TenPak's small, deterministic test inputs (seeded numpy RNG; ~3.8 MB in all).

Usage: Tools/make_fixtures.py [OUTDIR]      (OUTDIR defaults to the repository's Fixtures/)

Layout (every file is listed with size, SHA-256 and purpose in OUTDIR/MANIFEST.txt, followed by
a table of the tensors in each model file):
  models/tiny-base/     a small model repository: config.json, tokenizer.json, README.md with
                        YAML front matter, model.safetensors (F32, BF16, F16, I8, BOOL, I64, empty
                        tensors [0] and [0,4], a scalar [], a 1 MiB + 4 B tensor, odd element
                        counts, __metadata__), sub/dir/notes.txt, empty.bin (0 bytes)
  models/tiny-ft/       the same repository fine-tuned: every float tensor nudged (relative change
                        ~1e-3) except pooler.dense.{weight,bias} (bit-identical, like the integer
                        and empty tensors), embeddings.word_embeddings.weight grown from 500 to 512
                        rows, config.json vocab_size 512, README front matter `base_model: tiny-base`
  models/tiny-sharded/  tiny-ft's tensors in two shards, in another order, with
                        model.safetensors.index.json
  malformed/            safetensors files the `safetensors` package rejects
  misc/                 non-safetensors inputs for content-defined chunking (weights.bin, edited.bin)

Only OUTDIR/{models,malformed,misc} and OUTDIR/MANIFEST.txt are replaced. After writing, every
valid .safetensors file is loaded with the `safetensors` package (framework "numpy"; BF16 through
torch when it is installed, otherwise checked by dtype/shape and raw bytes, because numpy has no
bfloat16) and compared with what was written, and every malformed file must be rejected by it.
"""

import hashlib
import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stlib  # noqa: E402
from stlib import Tensor  # noqa: E402

SEED = 20261126
H = 48          # hidden size
VOCAB = 500     # base vocabulary; the fine-tune has VOCAB + 12
VOCAB_FT = 512
META = {"format": "pt"}

DESCRIPTIONS = {}   # relative path -> one line for MANIFEST.txt


def put(outdir, rel, data, what):
    path = os.path.join(outdir, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)
    DESCRIPTIONS[rel] = what


# ---------------------------------------------------------------- model repository text files

def config_json(vocab):
    cfg = {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": H,
        "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 4 * H,
        "max_position_embeddings": 64, "vocab_size": vocab, "type_vocab_size": 2,
        "hidden_act": "gelu", "layer_norm_eps": 1e-12, "torch_dtype": "float32",
        "transformers_version": "4.44.0",
    }
    return json.dumps(cfg, indent=2) + "\n"


def tokenizer_json(rng):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = specials + letters + ["##" + c for c in letters]
    onsets = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "st", "tr"]
    nuclei = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
    seen = set(vocab)
    while len(vocab) < VOCAB:
        w = "".join(onsets[rng.integers(len(onsets))] + nuclei[rng.integers(len(nuclei))]
                    for _ in range(rng.integers(1, 3)))
        if rng.random() < 0.3:
            w = "##" + w
        if w not in seen:
            seen.add(w)
            vocab.append(w)
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, s in enumerate(specials)],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                              "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": {w: i for i, w in enumerate(vocab)}},
    }
    return json.dumps(tok, indent=2, ensure_ascii=False) + "\n"


def readme(name, base=None):
    front = ["---", "license: mit", "library_name: tenpak-fixtures", "pipeline_tag: feature-extraction"]
    if base:
        front.append(f"base_model: {base}")
    front += ["tags:", "- test-fixture", "- bert", "---"]
    body = [f"# {name}", "",
            "A tiny BERT-shaped model generated by `Tools/make_fixtures.py` for TenPak's tests.",
            "Its weights are random numbers and mean nothing." if not base else
            f"A synthetic fine-tune of `{base}`: small updates to most weights, vocabulary extended to {VOCAB_FT}.",
            ""]
    return "\n".join(front + body)


# ---------------------------------------------------------------- tensors

def base_tensors(rng):
    """List of Tensor in file order. BF16 tensors are made from float32 values by RNE rounding."""
    def f32(shape, std, mean=0.0):
        return (mean + std * rng.standard_normal(shape)).astype("<f4")

    def bf16(shape, std):
        return stlib.f32_to_bf16_bits(f32(shape, std))

    def f16(shape, std):
        return f32(shape, std).astype("<f2")

    T = Tensor.from_array
    p = "encoder.layer.0."
    return [
        T("embeddings.word_embeddings.weight", "F32", f32((VOCAB, H), 0.05)),
        T("embeddings.position_ids", "I64", np.arange(64, dtype="<i8").reshape(1, 64)),
        T("embeddings.LayerNorm.weight", "F32", f32((H,), 0.02, 1.0)),
        T("embeddings.LayerNorm.bias", "F32", f32((H,), 0.02)),
        T(p + "attention.self.query.weight", "BF16", bf16((H, H), 0.08)),
        T(p + "attention.self.query.bias", "BF16", bf16((H,), 0.02)),
        T(p + "attention.self.key.weight", "F16", f16((H, H), 0.08)),
        T(p + "attention.self.key.bias", "F16", f16((H,), 0.02)),
        T(p + "attention.self.value.weight", "F32", f32((H, H), 0.08)),
        T(p + "attention.self.value.bias", "F32", f32((H,), 0.02)),
        # 5 * 52429 = 262145 F32 elements = 1 MiB + 4 bytes
        T(p + "intermediate.dense.weight", "F32", f32((5, 52429), 0.04)),
        T(p + "output.dense.qweight", "I8", rng.integers(-128, 128, (33, 17)).astype("i1")),
        T(p + "output.dense.scales", "F16", (0.01 + 0.002 * rng.random(33)).astype("<f2")),
        T(p + "attention.mask_template", "BOOL", rng.random((7, 9)) < 0.5),
        T("extra.odd_bf16", "BF16", bf16((3, 5, 7), 0.1)),
        T("extra.odd_f32", "F32", f32((101,), 0.1)),
        T("extra.empty_vector", "F32", np.zeros((0,), "<f4")),
        T("extra.empty_matrix", "BF16", np.zeros((0, 4), "<u2")),
        T("logit_scale", "F32", np.array(2.6592, dtype="<f4")),
        T("pooler.dense.weight", "F32", f32((H, H), 0.08)),
        T("pooler.dense.bias", "F32", f32((H,), 0.02)),
    ]


FROZEN = ("pooler.dense.weight", "pooler.dense.bias")


def finetune_tensors(base, rng):
    """Every float tensor gets w + N(0,1) * 1e-3 * rms(w) (rounded back to its dtype), except the
    FROZEN ones; word embeddings gain VOCAB_FT - VOCAB rows."""
    out = []
    for t in base:
        if t.dtype not in stlib.FLOAT_DTYPES or t.name in FROZEN or t.numel == 0:
            out.append(Tensor(t.name, t.dtype, t.shape, t.data))
            continue
        w = stlib.bf16_bits_to_f32(t.array()) if t.dtype == "BF16" else t.array().astype("<f4")
        rms = float(np.sqrt(np.mean(np.square(w, dtype=np.float64))))
        new = (w + 1e-3 * rms * rng.standard_normal(w.shape)).astype("<f4")
        if t.name == "embeddings.word_embeddings.weight":
            extra = (w.mean() + w.std() * rng.standard_normal((VOCAB_FT - VOCAB, H))).astype("<f4")
            new = np.concatenate([new, extra])
        if t.dtype == "BF16":
            arr = stlib.f32_to_bf16_bits(new)
        else:
            arr = new.astype(stlib.NP_DTYPES[t.dtype])
        out.append(Tensor.from_array(t.name, t.dtype, arr))
    return out


# ---------------------------------------------------------------- malformed files

def malformed(outdir):
    def hdr(h):
        return json.dumps(h, separators=(",", ":")).encode()

    def f32(s, e):
        return {"dtype": "F32", "shape": [(e - s) // 4], "data_offsets": [s, e]}

    def file(h, data, length=None):
        hb = hdr(h)
        return struct.pack("<Q", len(hb) if length is None else length) + hb + data

    data40 = np.arange(10, dtype="<f4").tobytes()
    valid = file({"__metadata__": META, "a": f32(0, 16), "b": {"dtype": "F32", "shape": [2, 3], "data_offsets": [16, 40]}}, data40)
    m = "malformed/"
    put(outdir, m + "truncated.safetensors", valid[:-13],
        "valid 2-tensor file cut 13 bytes short, inside tensor b's data")
    past = file({"a": f32(0, 16)}, bytes(16), length=4096)
    put(outdir, m + "header_past_eof.safetensors", past,
        f"header length field 4096 but the file is {len(past)} bytes")
    put(outdir, m + "header_huge.safetensors", file({"a": f32(0, 16)}, bytes(16), length=1 << 62),
        "header length field 2^62")
    put(outdir, m + "bad_json.safetensors", struct.pack("<Q", 32) + b'{"a":{"dtype":"F32","shape":[4],' + bytes(16),
        "header is 32 bytes of truncated JSON")
    put(outdir, m + "overlapping.safetensors", file({"a": f32(0, 16), "b": f32(8, 24)}, bytes(24)),
        "tensors a [0,16) and b [8,24) overlap")
    put(outdir, m + "out_of_range.safetensors", file({"a": f32(0, 16), "b": f32(16, 64)}, bytes(32)),
        "tensor b's offsets [16,64) run past the 32-byte data region")
    put(outdir, m + "hole.safetensors", file({"a": f32(0, 16), "b": f32(24, 40)}, bytes(40)),
        "8 unused bytes between tensors a [0,16) and b [24,40)")
    put(outdir, m + "short.safetensors", b"\x10\x00\x00\x00\x00",
        "5 bytes: shorter than the 8-byte header length")
    put(outdir, m + "size_mismatch.safetensors",
        file({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, bytes(16)),
        "shape [3] F32 (12 bytes) but data_offsets span 16 bytes")
    put(outdir, m + "bad_dtype.safetensors",
        file({"a": {"dtype": "F33", "shape": [4], "data_offsets": [0, 16]}}, bytes(16)),
        "unknown dtype F33")


# ---------------------------------------------------------------- misc binaries

def misc(outdir, rng):
    def rnd(n):
        return rng.integers(0, 256, n, dtype=np.uint8).tobytes()

    a, b = rnd(49152), rnd(24576)
    parts = [a, rnd(16384), b, a, rnd(20000), b]
    parts.append(rnd(204800 - sum(map(len, parts))))
    weights = b"".join(parts)
    put(outdir, "misc/weights.bin", weights,
        "204800 random bytes with repeats: A(48 KiB) R1 B(24 KiB) A R2(20000) B R3 - chunk dedup within a file")
    ed = bytearray(weights)
    for i in range(102400, 102408):
        ed[i] ^= 0xFF
    ed[1000:1000] = rnd(100)
    put(outdir, "misc/edited.bin", bytes(ed),
        "weights.bin with bytes 102400..102407 inverted, then 100 random bytes inserted at offset 1000 - CDC resync")
    words = ["tensor", "chunk", "shard", "delta", "base", "weights", "store", "pack", "index", "hash"]
    lines = [" ".join(words[i] for i in rng.integers(0, len(words), 12)) for _ in range(120)]
    put(outdir, "misc/notes.txt", "\n".join(lines) + "\n", "plain text (~9 KB), not a model file")


# ---------------------------------------------------------------- repositories

def write_repo(outdir, name, files, what):
    for rel, (content, desc) in files.items():
        put(outdir, f"models/{name}/{rel}", content, f"{what}: {desc}")


def generate(outdir):
    rng = np.random.default_rng(SEED)
    tok = tokenizer_json(rng)
    base = base_tensors(rng)
    ft = finetune_tensors(base, rng)
    notes = "Nested file: checks that directory structure is kept.\n"
    common = {
        "tokenizer.json": (tok, "WordPiece tokenizer JSON (text file)"),
        "sub/dir/notes.txt": (notes, "nested directory"),
        "empty.bin": (b"", "empty file"),
    }
    write_repo(outdir, "tiny-base", {
        "config.json": (config_json(VOCAB), "config JSON"),
        "README.md": (readme("tiny-base"), "model card with YAML front matter"),
        "model.safetensors": (stlib.encode(base, META), "every dtype, empty/scalar/1 MiB+4 B/odd-sized tensors, __metadata__"),
        **common}, "tiny-base")
    write_repo(outdir, "tiny-ft", {
        "config.json": (config_json(VOCAB_FT), "config JSON, vocab_size 512 (differs from tiny-base)"),
        "README.md": (readme("tiny-ft", "tiny-base"), "model card, front matter base_model: tiny-base"),
        "model.safetensors": (stlib.encode(ft, META), "fine-tune of tiny-base (small deltas, pooler identical, vocab 500->512)"),
        **{k: (c, d + " (same as tiny-base)") for k, (c, d) in common.items()}}, "tiny-ft")

    order = sorted(ft, key=lambda t: t.name)
    half = len(order) // 2
    shards = {"model-00001-of-00002.safetensors": order[:half], "model-00002-of-00002.safetensors": order[half:]}
    index = {"metadata": {"total_size": sum(len(t.data) for t in ft)},
             "weight_map": {t.name: s for s, ts in shards.items() for t in ts}}
    write_repo(outdir, "tiny-sharded", {
        "config.json": (config_json(VOCAB_FT), "config JSON (same as tiny-ft)"),
        "README.md": (readme("tiny-ft", "tiny-base"), "model card (same as tiny-ft)"),
        "model.safetensors.index.json": (json.dumps(index, indent=2, sort_keys=True) + "\n", "shard index (weight_map, total_size)"),
        **{s: (stlib.encode(ts, META), f"shard {i + 1}/2 of tiny-ft's tensors, sorted by name")
           for i, (s, ts) in enumerate(shards.items())},
        **{k: (c, d + " (same as tiny-base)") for k, (c, d) in common.items()}}, "tiny-sharded")

    malformed(outdir)
    misc(outdir, rng)
    return {"models/tiny-base/model.safetensors": base, "models/tiny-ft/model.safetensors": ft,
            **{f"models/tiny-sharded/{s}": ts for s, ts in shards.items()}}


# ---------------------------------------------------------------- verification and manifest

def verify(outdir, written):
    from safetensors import safe_open
    try:
        import torch
    except ImportError:
        torch = None
    for rel, tensors in written.items():
        path = os.path.join(outdir, rel)
        meta, mine = stlib.read(path)
        assert [t.name for t in mine] == [t.name for t in tensors], rel
        with safe_open(path, framework="numpy") as f:
            assert f.metadata() == META, rel
            assert sorted(f.keys()) == sorted(t.name for t in tensors), rel
            for t in tensors:
                if t.dtype == "BF16":
                    sl = f.get_slice(t.name)
                    assert sl.get_dtype() == "BF16" and list(sl.get_shape()) == t.shape, (rel, t.name)
                    continue
                arr = f.get_tensor(t.name)
                assert list(arr.shape) == t.shape and arr.tobytes() == t.data, (rel, t.name)
        if torch is not None:
            with safe_open(path, framework="pt") as f:
                for t in tensors:
                    if t.dtype == "BF16":
                        x = f.get_tensor(t.name)
                        assert x.dtype == torch.bfloat16 and list(x.shape) == t.shape, (rel, t.name)
                        assert x.view(torch.int16).numpy().tobytes() == t.data, (rel, t.name)
    for rel in DESCRIPTIONS:
        if not rel.startswith("malformed/"):
            continue
        path = os.path.join(outdir, rel)
        try:
            with safe_open(path, framework="numpy") as f:
                for k in f.keys():
                    f.get_tensor(k)
        except Exception:  # the package raises SafetensorError, or OSError/ValueError for some
            pass
        else:
            raise AssertionError(f"safetensors accepted {rel}")
        try:
            stlib.read(path)
        except stlib.FormatError:
            pass
        else:
            raise AssertionError(f"stlib accepted {rel}")
    return "torch" if torch is not None else "numpy only (BF16 checked by dtype/shape)"


def manifest(outdir, written):
    rows = []
    for root, _, names in os.walk(outdir):
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), outdir).replace(os.sep, "/")
            if rel == "MANIFEST.txt" or not rel.startswith(("models/", "malformed/", "misc/")):
                continue
            if rel not in DESCRIPTIONS:
                raise AssertionError(f"no description for {rel}")
            with open(os.path.join(root, n), "rb") as f:
                data = f.read()
            rows.append((rel, len(data), hashlib.sha256(data).hexdigest(), DESCRIPTIONS[rel]))
    rows.sort()
    lines = ["# TenPak test fixtures, generated by Tools/make_fixtures.py (do not edit by hand).",
             "# path<TAB>size<TAB>sha256<TAB>what it exercises", ""]
    lines += [f"{r}\t{s}\t{h}\t{d}" for r, s, h, d in rows]
    lines += ["", f"# total {sum(r[1] for r in rows)} bytes in {len(rows)} files", ""]
    for rel, tensors in written.items():
        lines.append(f"# tensors of {rel}, in file order: name dtype shape bytes")
        lines += [f"#   {t.name}\t{t.dtype}\t{t.shape}\t{len(t.data)}" for t in tensors]
        lines.append("")
    with open(os.path.join(outdir, "MANIFEST.txt"), "w") as f:
        f.write("\n".join(lines))
    return sum(r[1] for r in rows), len(rows)


def main():
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and sys.argv[1].startswith("-")):
        stlib.die("usage: make_fixtures.py [OUTDIR]")
    outdir = sys.argv[1] if len(sys.argv) == 2 else os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Fixtures")
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        stlib.die(f"{outdir} exists and is not a directory")
    os.makedirs(outdir, exist_ok=True)
    for d in ("models", "malformed", "misc"):
        shutil.rmtree(os.path.join(outdir, d), ignore_errors=True)
    written = generate(outdir)
    how = verify(outdir, written)
    total, count = manifest(outdir, written)
    print(f"make_fixtures: wrote {count} files, {total} bytes, to {outdir}; verified with safetensors ({how})")


if __name__ == "__main__":
    main()
