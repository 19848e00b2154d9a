"""Fine-tune the demo model on long answers (tasks_long.py) and export `models/demo-long`.

Usage (GPU machine, from the repo root; models/demo's safetensors must be there):
  python3 tools/train/train_long.py --out $OUT/demo-long --sft-seconds 300
Tiny CPU check of the code paths (a 2-layer model from scratch, a few steps):
  python3 tools/train/train_long.py --out /tmp/tl --device cpu --tiny --sft-steps 3

Starts from models/demo's weights (same tokenizer, architecture and 512-token context) and runs
SFT only: prompt + answer + <|eot_id|> + <|endoftext|> padding to G answer tokens, G drawn per
example from the generation lengths {128, 256, 448} that hold the answer, so the model sees
every answer length under every canvas it will be run with. Only the answer part is masked and
scored (sum(CE / t) / G per example). Batches hold one (prompt length, G) bucket, about
--batch-tokens tokens. Then exports bf16 shards like train.py and decodes a few test prompts per
(task, G) with LLaDA's sampler (greedy, block 32, steps G / 2) as a first check; the real
evaluation is `dlm eval` on the exported model.
"""

import argparse
import json
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks_long  # noqa: E402
import train  # noqa: E402
from model import LLaDA, Config  # noqa: E402

SPECIAL = train.SPECIAL


def build_data(tok, n_per_task, device):
    tests = tasks_long.test_sets(tok)
    exclude = {p for items in tests.values() for p, _ in items}
    buckets = {}
    rng = random.Random(77)
    for i, task in enumerate(tasks_long.TASKS):
        pool = tasks_long.train_pool(task, n_per_task, 2000 + i, tok, exclude)
        P = tok.encode_batch([tasks_long.chat_prompt(p) for p, _ in pool],
                             add_special_tokens=False)
        A = tok.encode_batch([a + "<|eot_id|>" for _, a in pool], add_special_tokens=False)
        for p, a in zip(P, A):
            fits = [g for g in tasks_long.GENS
                    if len(a.ids) <= g and len(p.ids) + g <= tasks_long.CONTEXT]
            if not fits:
                continue
            g = rng.choice(fits)
            row = p.ids + a.ids + [SPECIAL["eos"]] * (g - len(a.ids))
            buckets.setdefault((len(p.ids), g), []).append(row)
    out = {k: torch.tensor(v, dtype=torch.int32, device=device) for k, v in buckets.items()}
    train.log(f"data: {sum(len(v) for v in buckets.values())} sft examples in {len(out)} "
              f"(prompt length, G) buckets")
    return out, tests


def load_demo(model, folder):
    from safetensors.torch import load_file
    idx = json.load(open(os.path.join(folder, "model.safetensors.index.json")))
    sd = {}
    for fn in sorted(set(idx["weight_map"].values())):
        sd.update(load_file(os.path.join(folder, fn)))
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()},
                                                strict=False)
    assert not unexpected and all(not k.startswith("model.") for k in missing), (missing,
                                                                              unexpected)


@torch.no_grad()
def quick_eval(model, tok, tests, device, per_set, batch=64):
    model.eval()
    res = {}
    for (task, gen), items in tests.items():
        items = items[:per_set]
        outs = train.decode_answers(
            tok, [tasks_long.chat_prompt(p) for p, _ in items], device, batch,
            lambda pr: train.generate(model, pr, steps=gen // 2, gen_length=gen,
                                      block_length=32))
        correct = sum(o == a for o, (_, a) in zip(outs, items))
        key = f"{task}-{gen}"
        res[key] = {"correct": correct, "total": len(items),
                    "samples": [{"prompt": p, "answer": a, "output": o}
                                for (p, a), o in list(zip(items, outs))[:2]]}
        train.log(f"eval {key}: {correct}/{len(items)}")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--init", default="models/demo")
    ap.add_argument("--tokenizer", default="models/demo/tokenizer.json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-per-task", type=int, default=60_000)
    ap.add_argument("--batch-tokens", type=int, default=65_536)
    ap.add_argument("--sft-lr", type=float, default=5e-4)
    ap.add_argument("--sft-steps", type=int, default=0)
    ap.add_argument("--sft-seconds", type=float, default=300)
    ap.add_argument("--eval-per-set", type=int, default=16)
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    train.LOG = open(os.path.join(args.out, "train.log"), "w")
    train.log("args", vars(args))
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        train.log("gpu", torch.cuda.get_device_name(0), "torch", torch.__version__)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(args.tokenizer)
    assert tok.get_vocab_size() == 4096 and tok.token_to_id("<|mdm_mask|>") == SPECIAL["mask"]

    t_start = time.time()
    buckets, tests = build_data(tok, 500 if args.tiny else args.n_per_task, dev)
    train.log(f"data built in {time.time() - t_start:.1f}s")

    if args.tiny:
        cfg = Config(d_model=64, n_heads=4, n_layers=2, mlp_hidden_size=192)
        model = LLaDA(cfg).to(dev)
    else:
        cfg = Config()
        model = LLaDA(cfg)
        load_demo(model, args.init)
        model = model.to(dev)
    nparam = sum(p.numel() for p in model.parameters())
    train.log(f"model: {cfg} params {nparam}, init {'random' if args.tiny else args.init}")
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if dev.type == "cuda" else (
        lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=False))

    opt = train.adamw(model, args.sft_lr, dev.type == "cuda")
    g = torch.Generator(device=dev).manual_seed(args.seed + 1)
    keys = sorted(buckets)
    sizes = torch.tensor([buckets[k].shape[0] for k in keys], dtype=torch.float32, device=dev)

    def sft_batch(f):
        P, G = keys[int(torch.multinomial(sizes, 1, generator=g).item())]
        rows = buckets[(P, G)]
        n = max(8, args.batch_tokens // (P + G))
        idx = torch.randint(0, rows.shape[0], (n,), generator=g, device=dev)
        x = rows[idx].long()
        noisy, m, p = train.noise(x, g, answer_from=P)
        ls = train.diffusion_loss(f, x, noisy, m, p, G)
        return ls, {"sft": ls.detach()}

    steps, secs = train.run_phase("sft", model, model, opt, sft_batch, args.sft_steps,
                                  args.sft_seconds, 1 if args.tiny else 50, args.sft_lr,
                                  args.sft_lr * 0.1, amp, None)
    train.log(f"sft done: {steps} steps in {secs:.0f}s")

    sd = train.export(model, cfg, args.out)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": SPECIAL["bos"], "eos_token_id": SPECIAL["eos"],
                   "pad_token_id": SPECIAL["eos"], "steps": 128, "gen_length": 256,
                   "block_length": 32}, f, indent=2)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    model.float()
    t_eval = time.time()
    res = quick_eval(model, tok, tests, dev, 2 if args.tiny else args.eval_per_set)
    train.log(f"eval done in {time.time() - t_eval:.0f}s")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"params": nparam, "config": vars(cfg), "sft_steps": steps,
                   "sft_seconds": secs, "tasks": res, "args": vars(args),
                   "total_seconds": time.time() - t_start}, f, indent=2)


if __name__ == "__main__":
    main()
