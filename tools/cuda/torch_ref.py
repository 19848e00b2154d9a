#!/usr/bin/env python3
"""PyTorch reference timing for the CUDA backend: an LLaDA-shaped bidirectional transformer in
plain PyTorch, bf16, random weights (written here from the architecture, not from any model's
code): RMSNorm, rotate-half RoPE, attention without a mask through
`scaled_dot_product_attention`, SwiGLU MLP, untied head.

It times, after warm-up, with CUDA events:
- a full forward of prompt + gen tokens (512 at the defaults), logits for every row, as the
  original LLaDA generation code does at every step without a cache;
- a Fast-dLLM dual-cache step: the block's 32 rows run through every layer, their keys and
  values written into the layer's cache of all 512 positions, attention of the 32 queries
  over the whole cache, logits for the 32 rows;
and prints the tokens/s of the dual-cache schedule at 1 token per step (per block one full
forward that refills the cache, then block - 1 cached steps), the figure `dlm bench` reports.

    python3 tools/cuda/torch_ref.py [--dim 4096 --layers 32 --heads 32 --mlp 12288 ...]
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--dim", type=int, default=4096)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=32)
    p.add_argument("--mlp", type=int, default=12288)
    p.add_argument("--vocab", type=int, default=126464)
    p.add_argument("--prompt", type=int, default=256)
    p.add_argument("--gen", type=int, default=256)
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--theta", type=float, default=500000.0)
    p.add_argument("--iters", type=int, default=20)
    return p.parse_args()


class Model:
    """Weights as plain tensors, [out, in] like nn.Linear."""

    def __init__(self, a, dev):
        self.a = a
        d, hd = a.dim, a.dim // a.heads
        kv = a.kv_heads * hd
        g = torch.Generator(device=dev).manual_seed(0)

        def w(*shape):
            return (torch.randn(*shape, generator=g, device=dev, dtype=torch.bfloat16) * 0.02)

        ones = lambda n: torch.ones(n, device=dev, dtype=torch.bfloat16)  # noqa: E731
        self.embed = w(a.vocab, d)
        self.layers = []
        for _ in range(a.layers):
            self.layers.append(dict(
                attn_norm=ones(d), wq=w(d, d), wk=w(kv, d), wv=w(kv, d), wo=w(d, d),
                ffn_norm=ones(d), w_gate=w(a.mlp, d), w_up=w(a.mlp, d), w_down=w(d, a.mlp),
            ))
        self.out_norm = ones(d)
        self.head = w(a.vocab, d)
        seq = a.prompt + a.gen
        inv = 1.0 / (a.theta ** (torch.arange(0, hd, 2, device=dev, dtype=torch.float32) / hd))
        ang = torch.arange(seq, device=dev, dtype=torch.float32)[:, None] * inv[None, :]
        self.cos = torch.cat([ang.cos(), ang.cos()], -1).to(torch.bfloat16)  # [seq, hd]
        self.sin = torch.cat([ang.sin(), ang.sin()], -1).to(torch.bfloat16)

    @staticmethod
    def rmsnorm(x, w, eps=1e-5):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w

    def rope(self, x, pos):
        # x [1, heads, n, hd]; rotate-half
        c, s = self.cos[pos][None, None], self.sin[pos][None, None]
        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], -1)
        return x * c + rot * s

    def forward(self, tokens, pos, cache=None, fill=False):
        """tokens [n] at positions pos [n]. cache: per layer (k, v) [1, kv_heads, seq, hd];
        fill=True writes every position (full forward), else the span's positions are
        replaced and the queries attend to the whole cache (dual-cache step)."""
        a = self.a
        hd = a.dim // a.heads
        n = tokens.shape[0]
        x = self.embed[tokens][None]  # [1, n, d]
        for i, L in enumerate(self.layers):
            h = self.rmsnorm(x, L["attn_norm"])
            q = (h @ L["wq"].T).view(1, n, a.heads, hd).transpose(1, 2)
            k = (h @ L["wk"].T).view(1, n, a.kv_heads, hd).transpose(1, 2)
            v = (h @ L["wv"].T).view(1, n, a.kv_heads, hd).transpose(1, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if cache is not None:
                ck, cv = cache[i]
                ck[:, :, pos] = k
                cv[:, :, pos] = v
                if not fill:
                    k, v = ck, cv
            rep = a.heads // a.kv_heads
            if rep > 1:
                k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            o = F.scaled_dot_product_attention(q, k, v)  # no mask: bidirectional
            x = x + o.transpose(1, 2).reshape(1, n, a.dim) @ L["wo"].T
            h = self.rmsnorm(x, L["ffn_norm"])
            x = x + (F.silu(h @ L["w_gate"].T) * (h @ L["w_up"].T)) @ L["w_down"].T
        return self.rmsnorm(x, self.out_norm) @ self.head.T  # [1, n, vocab]


def timed(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def main():
    a = parse()
    dev = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = False
    t0 = time.time()
    m = Model(a, dev)
    torch.cuda.synchronize()
    print(f"built {sum(p.numel() for L in m.layers for p in L.values()) / 1e9 + 2 * a.vocab * a.dim / 1e9:.2f} B "
          f"random bf16 parameters in {time.time() - t0:.1f} s on {torch.cuda.get_device_name()} "
          f"(torch {torch.__version__})")
    seq = a.prompt + a.gen
    hd = a.dim // a.heads
    tokens = torch.randint(0, a.vocab, (seq,), device=dev)
    pos = torch.arange(seq, device=dev)
    cache = [(torch.zeros(1, a.kv_heads, seq, hd, device=dev, dtype=torch.bfloat16),
              torch.zeros(1, a.kv_heads, seq, hd, device=dev, dtype=torch.bfloat16))
             for _ in range(a.layers)]
    with torch.inference_mode():
        full = timed(lambda: m.forward(tokens, pos), a.iters)
        m.forward(tokens, pos, cache, fill=True)
        b0 = a.prompt
        bpos = torch.arange(b0, b0 + a.block, device=dev)
        cached = timed(lambda: m.forward(tokens[bpos], bpos, cache), a.iters)
        refill = timed(lambda: m.forward(tokens, pos, cache, fill=True), a.iters)
    blocks = a.gen // a.block
    total_ms = blocks * refill + (a.gen - blocks) * cached
    print(f"torch bf16 full forward ({seq} tokens, logits for every row): {full:.2f} ms")
    print(f"torch bf16 dual-cache step ({a.block} query rows over a {seq}-position cache): {cached:.2f} ms")
    print(f"torch bf16 full forward that refills the cache: {refill:.2f} ms")
    print(f"torch bf16 dual cache, 1 token per step: {a.gen / (total_ms / 1000):.1f} tokens/s "
          f"({blocks} refills + {a.gen - blocks} cached steps = {total_ms:.0f} ms)")
    print(f"torch peak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
