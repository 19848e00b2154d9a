"""A LLaDA (masked diffusion, LLaMA-style block) transformer in plain PyTorch.

Computes what LLaDA's `modeling_llada.py` computes for `block_type: llama` with no biases,
RMSNorm (f32 inside, eps from the config, weight applied after casting back), RoPE rotate-half
in f32, bidirectional softmax attention with scale 1/sqrt(head_dim), SwiGLU MLP
(silu(ff_proj(x)) * up_proj(x) -> ff_out) and an untied output head. Parameter names match
the Hugging Face checkpoints: model.transformer.{wte,blocks.N.*,ln_f,ff_out}.weight.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    d_model: int = 384
    n_heads: int = 6
    n_layers: int = 6
    mlp_hidden_size: int = 1152
    vocab_size: int = 4096
    max_sequence_length: int = 512
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    init_std: float = 0.02


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            dt = x.dtype
            y = x.float()
            y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
            y = y.to(dt)
        return self.weight * y


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        d, h = cfg.d_model, cfg.mlp_hidden_size
        self.n_heads = cfg.n_heads
        self.attn_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.ff_proj = nn.Linear(d, h, bias=False)
        self.up_proj = nn.Linear(d, h, bias=False)
        self.ff_out = nn.Linear(h, d, bias=False)

    def forward(self, x, cos, sin):
        # x: [B, T, d]; cos/sin: [T, head_dim] f32
        B, T, d = x.shape
        hd = d // self.n_heads
        y = self.attn_norm(x)
        q = self.q_proj(y).view(B, T, self.n_heads, hd).transpose(1, 2)  # [B, H, T, hd]
        k = self.k_proj(y).view(B, T, self.n_heads, hd).transpose(1, 2)
        v = self.v_proj(y).view(B, T, self.n_heads, hd).transpose(1, 2)
        with torch.autocast(device_type=x.device.type, enabled=False):
            qf, kf = q.float(), k.float()
            qf = qf * cos + rotate_half(qf) * sin
            kf = kf * cos + rotate_half(kf) * sin
        q, k = qf.to(q.dtype), kf.to(k.dtype)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=False)  # [B, H, T, hd]
        a = a.transpose(1, 2).reshape(B, T, d)
        x = x + self.attn_out(a)
        y = self.ff_norm(x)
        y = F.silu(self.ff_proj(y)) * self.up_proj(y)
        return x + self.ff_out(y)


class LLaDA(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.model = nn.Module()
        self.model.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.d_model),
            blocks=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)]),
            ln_f=RMSNorm(cfg.d_model, cfg.rms_norm_eps),
            ff_out=nn.Linear(cfg.d_model, cfg.vocab_size, bias=False),
        ))
        hd = cfg.d_model // cfg.n_heads
        inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        pos = torch.arange(cfg.max_sequence_length, dtype=torch.float32)
        f = torch.outer(pos, inv)
        f = torch.cat((f, f), dim=-1)  # [T, hd]
        self.register_buffer("rope_cos", f.cos(), persistent=False)
        self.register_buffer("rope_sin", f.sin(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if name.endswith("norm.weight") or "ln_f" in name:
                nn.init.ones_(p)
            elif name.endswith("attn_out.weight") or (".blocks." in name and name.endswith("ff_out.weight")):
                nn.init.normal_(p, std=std / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, std=std)

    def forward(self, ids):
        # ids: [B, T] int64 -> logits [B, T, vocab]
        T = ids.shape[1]
        tr = self.model.transformer
        x = tr.wte(ids)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        for blk in tr.blocks:
            x = blk(x, cos, sin)
        return tr.ff_out(tr.ln_f(x))
