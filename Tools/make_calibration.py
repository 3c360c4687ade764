#!/usr/bin/env python3
"""Makes a TenPak calibration file: input activation samples for every linear weight of a model.

Output (SPEC.md, "Calibration file"): a safetensors file with one F32 tensor per linear weight,
named exactly like the weight, of shape [samples, in_features]; row i is an input vector x the
layer multiplies (y = W x). Metadata: format=tenpak-calibration, version=1, source=<how made>.

Two sources of activations:
  * BERT-family models (config.json model_type "bert", e.g. all-MiniLM-L6-v2): a numpy forward
    pass over real text (the model's README.md, or --text FILE), tokenized with the model's
    vocab.txt (lower-case WordPiece), recording each linear layer's inputs. GELU uses the tanh
    approximation. Token positions are sampled at random (seeded) across all sequences.
  * anything else, or --synthetic: correlated Gaussian inputs (rank-32 structure plus noise, with
    1% of the channels scaled by 10 as activation outliers), seeded by the weight's name.

Linear weights are chosen as TenPakOptimizer does: 2-D F32/F16/BF16 tensors named *.weight with
both dimensions non-zero, except names containing embed, lm_head, wte or wpe.

Usage: make_calibration.py MODEL_DIR OUT.safetensors [--samples N] [--seed S] [--synthetic] [--text FILE]
"""
import argparse
import json
import os
import re
import sys
import zlib

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def is_linear_weight(name, dtype, shape):
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0 or dtype not in ("F32", "F16", "BF16"):
        return False
    if not name.endswith(".weight"):
        return False
    lower = name.lower()
    if "embed" in lower or "lm_head" in lower:
        return False
    parts = lower.split(".")
    return "wte" not in parts and "wpe" not in parts


def load_weights(model_dir):
    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    weights, shapes = {}, {}
    for f in files:
        with safe_open(os.path.join(model_dir, f), "np") as st:
            for k in st.keys():
                sl = st.get_slice(k)
                shapes[k] = (sl.get_dtype(), sl.get_shape())
                if sl.get_dtype() in ("F32", "F16", "BF16"):
                    try:
                        weights[k] = st.get_tensor(k).astype(np.float32)
                    except TypeError:  # BF16 needs torch in safetensors' numpy loader
                        pass
    return weights, shapes


# ---- BERT forward pass -------------------------------------------------------------------------

def wordpiece(text, vocab):
    ids = [vocab["[CLS]"]]
    for word in re.findall(r"\w+|[^\w\s]", text.lower()):
        start = 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    found = vocab[piece]
                    break
                end -= 1
            if found is None:
                ids.append(vocab.get("[UNK]", 100))
                break
            ids.append(found)
            start = end
    return ids


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


def bert_inputs(model_dir, weights, config, text, seq_len=128, max_sequences=16):
    vocab = {}
    with open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    ids = wordpiece(text, vocab)[1:]
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    body = seq_len - 2
    sequences = [[cls] + ids[i:i + body] + [sep] for i in range(0, max(1, len(ids)), body)][:max_sequences]
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
    g = lambda k: weights[prefix + k]
    heads = config["num_attention_heads"]
    eps = config.get("layer_norm_eps", 1e-12)
    records = {}

    def rec(name, x):
        records.setdefault(prefix + name, []).append(x.astype(np.float32))

    for seq in sequences:
        n = len(seq)
        h = g("embeddings.word_embeddings.weight")[seq] + g("embeddings.position_embeddings.weight")[:n] \
            + g("embeddings.token_type_embeddings.weight")[0]
        h = layer_norm(h, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"), eps)
        for l in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{l}."
            lin = lambda name, x: x @ g(p + name + ".weight").T + g(p + name + ".bias")
            for m in ("query", "key", "value"):
                rec(p + f"attention.self.{m}.weight", h)
            q, k, v = (lin(f"attention.self.{m}", h) for m in ("query", "key", "value"))
            d = q.shape[1] // heads
            q, k, v = (t.reshape(n, heads, d).transpose(1, 0, 2) for t in (q, k, v))
            s = q @ k.transpose(0, 2, 1) / np.sqrt(d)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(n, heads * d)
            rec(p + "attention.output.dense.weight", ctx)
            h1 = layer_norm(lin("attention.output.dense", ctx) + h, g(p + "attention.output.LayerNorm.weight"),
                            g(p + "attention.output.LayerNorm.bias"), eps)
            rec(p + "intermediate.dense.weight", h1)
            inter = gelu(lin("intermediate.dense", h1))
            rec(p + "output.dense.weight", inter)
            h = layer_norm(lin("output.dense", inter) + h1, g(p + "output.LayerNorm.weight"), g(p + "output.LayerNorm.bias"), eps)
        rec("pooler.dense.weight", h[:1])
    return {k: np.concatenate(v, axis=0) for k, v in records.items()}


def synthetic_inputs(name, cols, samples, seed):
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    r = min(cols, 32)
    z = rng.standard_normal((samples, r)).astype(np.float32)
    a = (rng.standard_normal((r, cols)) / np.sqrt(r)).astype(np.float32)
    x = z @ a + 0.1 * rng.standard_normal((samples, cols)).astype(np.float32)
    outliers = rng.choice(cols, size=max(1, cols // 100), replace=False)
    x[:, outliers] *= 10
    return x.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--samples", type=int, default=256, help="rows per layer (default 256)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic", action="store_true", help="correlated Gaussian inputs even for BERT models")
    ap.add_argument("--text", help="text to run through a BERT model (default: the model's README.md)")
    args = ap.parse_args()
    weights, shapes = load_weights(args.model_dir)
    linear = {k: s for k, (dt, s) in shapes.items() if is_linear_weight(k, dt, s)}
    config = {}
    cfg_path = os.path.join(args.model_dir, "config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            config = json.load(f)
    recorded, source = {}, "synthetic correlated Gaussian"
    if not args.synthetic and config.get("model_type") == "bert" and os.path.exists(os.path.join(args.model_dir, "vocab.txt")):
        text_path = args.text or os.path.join(args.model_dir, "README.md")
        with open(text_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        recorded = bert_inputs(args.model_dir, weights, config, text)
        source = f"BERT forward pass over {os.path.basename(text_path)}"
    rng = np.random.default_rng(args.seed)
    out = {}
    for name, shape in sorted(linear.items()):
        cols = shape[1]
        x = recorded.get(name)
        if x is not None and x.shape[1] == cols:
            if x.shape[0] > args.samples:
                x = x[np.sort(rng.choice(x.shape[0], size=args.samples, replace=False))]
        else:
            x = synthetic_inputs(name, cols, args.samples, args.seed)
        out[name] = np.ascontiguousarray(x.astype(np.float32))
    save_file(out, args.out, metadata={"format": "tenpak-calibration", "version": "1", "source": source})
    total = sum(v.nbytes for v in out.values())
    print(f"wrote {args.out}: {len(out)} layers, {total / 1e6:.1f} MB, source: {source}")


if __name__ == "__main__":
    sys.exit(main())
