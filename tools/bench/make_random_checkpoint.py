#!/usr/bin/env python3
"""Write a random LLaDA-shaped Hugging Face folder for benchmarks.

The folder has the layout of a real LLaDA checkpoint (config.json with `model_type: llada`,
bf16 `model-0000K-of-0000N.safetensors` shards with `model.transformer.*` names and a
`model.safetensors.index.json`), with weights drawn from N(0, 0.02) and norms set to 1.
The tokenizer files are copied from a reference folder (default: ../shared/reference/llada-tiny
beside the checkout); when --vocab is larger than that tokenizer, the extra embedding rows have
no token (the converter stores them as empty strings) and the special ids stay where the
reference put them.

Example (a LLaDA-1B-like shape):
    python3 tools/bench/make_random_checkpoint.py /tmp/llada-1b \
        --d-model 2048 --layers 16 --heads 16 --mlp 5632 --vocab 32768
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TOKENIZER = REPO / ".." / "shared" / "reference" / "llada-tiny"


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """f32 -> bf16 bit patterns (round to nearest even), as uint16."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + (0x7FFF + ((bits >> 16) & 1))
    return (rounded >> 16).astype(np.uint16)


def tensor_shapes(a):
    """(name, shape) of every tensor of a LLaDA checkpoint, in file order."""
    d, f, v = a.d_model, a.mlp, a.vocab
    head_dim = d // a.heads
    kv = a.kv_heads * head_dim
    out = [("model.transformer.wte.weight", (v, d))]
    for i in range(a.layers):
        p = f"model.transformer.blocks.{i}."
        out += [
            (p + "attn_norm.weight", (d,)),
            (p + "q_proj.weight", (d, d)),
            (p + "k_proj.weight", (kv, d)),
            (p + "v_proj.weight", (kv, d)),
            (p + "attn_out.weight", (d, d)),
            (p + "ff_norm.weight", (d,)),
            (p + "ff_proj.weight", (f, d)),
            (p + "up_proj.weight", (f, d)),
            (p + "ff_out.weight", (d, f)),
        ]
    out += [
        ("model.transformer.ln_f.weight", (d,)),
        ("model.transformer.ff_out.weight", (v, d)),
    ]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder to create (must not exist unless --force)")
    ap.add_argument("--d-model", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    ap.add_argument("--mlp", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--max-seq", type=int, default=4096)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-bytes", type=int, default=2 << 30, help="bytes per shard, at most")
    ap.add_argument("--tokenizer-from", type=Path, default=DEFAULT_TOKENIZER)
    ap.add_argument("--force", action="store_true", help="replace an existing folder")
    a = ap.parse_args()
    a.kv_heads = a.kv_heads or a.heads
    if a.d_model % a.heads or a.heads % a.kv_heads:
        sys.exit("d_model must divide by heads, and heads by kv_heads")

    src_cfg = json.loads((a.tokenizer_from / "config.json").read_text())
    if a.vocab < src_cfg["vocab_size"]:
        sys.exit(f"--vocab must be at least the tokenizer's {src_cfg['vocab_size']} ids")
    if a.out.exists():
        if not a.force:
            sys.exit(f"{a.out} exists (use --force)")
        shutil.rmtree(a.out)
    a.out.mkdir(parents=True)

    cfg = dict(src_cfg)
    cfg.update(
        d_model=a.d_model,
        n_layers=a.layers,
        n_heads=a.heads,
        n_kv_heads=a.kv_heads,
        mlp_hidden_size=a.mlp,
        vocab_size=a.vocab,
        embedding_size=a.vocab,
        max_sequence_length=a.max_seq,
        init_std=a.std,
    )
    (a.out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    for f in ["generation_config.json", "tokenizer.json", "tokenizer_config.json"]:
        if (a.tokenizer_from / f).exists():
            shutil.copyfile(a.tokenizer_from / f, a.out / f)

    # Group tensors into shards of at most --shard-bytes, then write each shard.
    shapes = tensor_shapes(a)
    shards, cur, cur_bytes = [], [], 0
    for name, shape in shapes:
        nbytes = 2 * int(np.prod(shape))
        if cur and cur_bytes + nbytes > a.shard_bytes:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, shape))
        cur_bytes += nbytes
    shards.append(cur)

    rng = np.random.default_rng(a.seed)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        path = a.out / fname
        write_shard(path, shard, rng, a.std)
        for name, shape in shard:
            weight_map[name] = fname
            total += 2 * int(np.prod(shape))
        print(f"wrote {path} ({len(shard)} tensors)", flush=True)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (a.out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    n_params = total // 2
    print(f"{a.out}: {n_params / 1e9:.3f} B parameters, {total / 2**30:.2f} GiB bf16")


def write_shard(path: Path, shard, rng, std: float):
    """Stream one bf16 safetensors file: header (offsets known from the shapes), then each
    tensor as it is drawn, so memory stays at one tensor. (safetensors.numpy has no bf16.)"""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shard:
        nbytes = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for name, shape in shard:
            if name.endswith("norm.weight") or name.endswith("ln_f.weight"):
                x = np.ones(shape, dtype=np.float32)
            else:
                x = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
            f.write(to_bf16_bits(x).tobytes())


if __name__ == "__main__":
    main()
