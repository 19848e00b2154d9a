"""Pretrain + SFT a small LLaDA model, export it in the Hugging Face layout, evaluate it.

Usage (GPU machine, from the repo root):
  python3 tools/train/train.py --out $OUT --pretrain-seconds 300 --sft-seconds 120
Tiny CPU check:
  python3 tools/train/train.py --out /tmp/t --device cpu --tiny --pretrain-steps 3 --sft-steps 2

Phases
  data      corpus split (every 20th doc held out), task pools (seed 1000+i, test prompts excluded)
  pretrain  LLaDA objective on 512-token windows: half corpus text, half chat-formatted task
            examples packed with <|endoftext|>; t ~ U(0,1) per row (floor eps 1e-3), each token
            masked with prob t, loss = sum(CE(masked) / t) / (rows * 512)
  sft       (eager, no compile) prompt + answer + <|eot_id|> + <|endoftext|> padding to 32 answer tokens; only the
            answer part is masked and scored (sum(CE / t) / 32 per example), plus a corpus batch
  export    bf16 safetensors shards + index, config.json, generation_config.json
  eval      LLaDA low-confidence remasking sampler, greedy, gen 32 / block 32 / steps 32, on
            the bf16-rounded weights computed in f32; accuracy = exact match of the text
            before the first <|eot_id|>/<|endoftext|>
With --pretrain-seconds / --sft-seconds the step count is fixed after timing steps 10..30 and
printed; pass it back as --pretrain-steps / --sft-steps to repeat a run step for step.
"""

import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks  # noqa: E402
from model import LLaDA, Config  # noqa: E402
from prepare import load_docs, split_docs  # noqa: E402

SPECIAL = {"bos": 4090, "eos": 4091, "sh": 4092, "eh": 4093, "eot": 4094, "mask": 4095}
GEN = 32
EPS = 1e-3
LOG = None


def log(*a):
    s = " ".join(str(x) for x in a)
    print(s, flush=True)
    if LOG:
        LOG.write(s + "\n")
        LOG.flush()


def build_data(tok, tok_path, corpus, n_per_task, device, tiny):
    docs = load_docs(corpus)
    train_docs, held_docs = split_docs(docs)
    if tiny:
        train_docs, held_docs = train_docs[:40], held_docs[:4]
    words = tasks.corpus_words(split_docs(docs)[0])
    test_words, train_words = tasks.split_words(words)
    tests = tasks.test_sets(test_words, train_words)
    exclude = {p for items in tests.values() for p, _ in items}
    for task, items in tests.items():
        path = os.path.join(os.path.dirname(os.path.abspath(tok_path)), "tasks", f"{task}.jsonl")
        with open(path, encoding="utf-8") as f:
            saved = [tuple(json.loads(line)[k] for k in ("prompt", "answer")) for line in f]
        assert saved == items, f"{path} differs from the regenerated test set"

    def stream(texts):
        ids = []
        for e in tok.encode_batch(texts):
            ids.extend(e.ids)
            ids.append(SPECIAL["eos"])
        return torch.tensor(ids, dtype=torch.int32, device=device)

    text_train = stream(train_docs)
    text_val = stream(held_docs)

    task_stream, sft = [], {}
    for i, task in enumerate(tasks.TASKS):
        pool = tasks.train_pool(task, n_per_task, 1000 + i, train_words, exclude)
        P = tok.encode_batch([tasks.chat_prompt(p) for p, _ in pool], add_special_tokens=False)
        A = tok.encode_batch([a + "<|eot_id|>" for _, a in pool], add_special_tokens=False)
        for p, a in zip(P, A):
            assert len(a.ids) <= GEN, a.tokens
            task_stream.extend(p.ids)
            task_stream.extend(a.ids)
            task_stream.append(SPECIAL["eos"])
            row = p.ids + a.ids + [SPECIAL["eos"]] * (GEN - len(a.ids))
            sft.setdefault(len(p.ids), []).append(row)
    task_stream = torch.tensor(task_stream, dtype=torch.int32, device=device)
    buckets = {L: torch.tensor(rows, dtype=torch.int32, device=device) for L, rows in sft.items()}
    log(f"data: text train {text_train.numel()} tok, val {text_val.numel()} tok, "
        f"task stream {task_stream.numel()} tok, sft examples {sum(len(r) for r in sft.values())} "
        f"in {len(buckets)} prompt-length buckets")
    return text_train, text_val, task_stream, buckets, tests


def windows(stream, n, L, gen):
    # stream: [N] int32 -> [n, L] int64 windows at random offsets
    starts = torch.randint(0, stream.numel() - L, (n,), generator=gen, device=stream.device)
    idx = starts[:, None] + torch.arange(L, device=stream.device)[None, :]
    return stream[idx].long()


def noise(x, gen, answer_from=None):
    # x: [B, T]; returns noisy ids, mask [B, T] bool, p_mask [B, 1]
    B, T = x.shape
    t = torch.rand(B, generator=gen, device=x.device)
    p = ((1 - EPS) * t + EPS)[:, None]
    m = torch.rand(B, T, generator=gen, device=x.device) < p
    if answer_from is not None:
        m[:, :answer_from] = False
    return torch.where(m, SPECIAL["mask"], x), m, p


def diffusion_loss(model, x, noisy, m, p, norm):
    # sum over masked tokens of CE / p, divided by `norm` (tokens per row) and rows
    logits = model(noisy)
    ce = F.cross_entropy(logits.float().flatten(0, 1), x.flatten(), reduction="none").view(x.shape)
    return (ce * m / p).sum() / (x.shape[0] * norm)


def lr_at(step, total, warm, peak, floor):
    if step < warm:
        return peak * (step + 1) / warm
    pr = min(1.0, (step - warm) / max(1, total - warm))
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * pr))


@torch.no_grad()
def eval_text(model, stream, gen_seed, rows, L, amp):
    # Monte Carlo estimate of the masked-diffusion bound (nats/token), t stratified over rows.
    g = torch.Generator(device=stream.device).manual_seed(gen_seed)
    x = windows(stream, rows, L, g)
    t = (torch.arange(rows, device=x.device, dtype=torch.float32) + 0.5) / rows
    p = ((1 - EPS) * t + EPS)[:, None]
    m = torch.rand(x.shape, generator=g, device=x.device) < p
    noisy = torch.where(m, SPECIAL["mask"], x)
    tot = 0.0
    for i in range(0, rows, 16):
        with amp():
            tot += diffusion_loss(model, x[i:i + 16], noisy[i:i + 16], m[i:i + 16], p[i:i + 16],
                                  L).item() * x[i:i + 16].shape[0]
    return tot / rows


def run_phase(name, model, fwd, opt, batch_fn, steps, seconds, warm, peak, floor, amp, evals):
    model.train()
    total = steps if steps else None
    t0 = time.time()
    tmark = None
    step = 0
    ema = None
    while True:
        if total is not None and step >= total:
            break
        if step == 10:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            tmark = time.time()
        if step == 30:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            dt = (time.time() - tmark) / 20
            log(f"{name}: {dt * 1000:.1f} ms/step after warm-up ({time.time() - t0:.0f}s so far)")
            if total is None:
                total = max(31, int((seconds - (time.time() - t0)) / dt) + 30)
                log(f"{name}: fixing total steps = {total}")
        lr = lr_at(step, total or 10 ** 9, warm, peak, floor)
        for g_ in opt.param_groups:
            g_["lr"] = lr
        with amp():
            loss, parts = batch_fn(fwd)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0 or step == 1 or step == total:
            lv = loss.item()
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            extra = " ".join(f"{k} {v.item():.4f}" for k, v in parts.items())
            log(f"{name} step {step}/{total} loss {lv:.4f} {extra} lr {lr:.2e} gnorm {gn.item():.2f} "
                f"t {time.time() - t0:.0f}s")
        if evals and (step % evals[0] == 0 or step == total):
            evals[1](step)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return step, time.time() - t0


@torch.no_grad()
def generate(model, prompt, steps=32, gen_length=32, block_length=32, mask_id=SPECIAL["mask"]):
    # LLaDA's sampler: low-confidence remasking, temperature 0. prompt: [B, P] int64.
    B, P = prompt.shape
    x = torch.full((B, P + gen_length), mask_id, dtype=torch.long, device=prompt.device)
    x[:, :P] = prompt
    nblocks = gen_length // block_length
    spb = steps // nblocks
    for b in range(nblocks):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        nmask = (x[:, lo:hi] == mask_id).sum(1)  # [B]
        base, rem = nmask // spb, nmask % spb
        for i in range(spb):
            k = base + (i < rem).long()  # tokens to unmask this step, per row
            mask_index = x == mask_id
            logits = model(x).double()
            x0 = logits.argmax(-1)
            p = torch.softmax(logits, -1)
            x0_p = torch.gather(p, -1, x0[..., None])[..., 0]
            x0_p[:, hi:] = -math.inf
            x0 = torch.where(mask_index, x0, x)
            conf = torch.where(mask_index, x0_p, torch.tensor(-math.inf, dtype=x0_p.dtype,
                                                                device=x.device))
            ks = k.tolist()
            if len(set(ks)) == 1:
                if ks[0] > 0:
                    sel = torch.topk(conf, ks[0], dim=-1).indices  # [B, k]
                    x.scatter_(1, sel, torch.gather(x0, 1, sel))
            else:
                for j in range(B):
                    if ks[j] > 0:
                        sel = torch.topk(conf[j], ks[j]).indices
                        x[j, sel] = x0[j, sel]
    return x


def answer_text(tok, ids):
    out = []
    for t in ids:
        if t in (SPECIAL["eot"], SPECIAL["eos"]):
            break
        out.append(t)
    return tok.decode(out, skip_special_tokens=False).strip()


def adamw(model, lr, fused):
    """AdamW as every script here trains: weight decay 0.1 on matrices, none on vectors."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": nodecay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=fused)


@torch.no_grad()
def decode_answers(tok, prompts, device, batch, decode):
    """The answer text of each chat prompt string. Prompts are batched by token length (no
    padding inside a prompt); `decode(ids [B, L]) -> canvas [B, L + gen]` runs one batch."""
    enc = [tok.encode(p, add_special_tokens=False).ids for p in prompts]
    by_len = {}
    for i, e in enumerate(enc):
        by_len.setdefault(len(e), []).append(i)
    outs = [None] * len(prompts)
    for L, idxs in by_len.items():
        for s in range(0, len(idxs), batch):
            chunk = idxs[s:s + batch]
            x = decode(torch.tensor([enc[i] for i in chunk], dtype=torch.long, device=device))
            gen = x[:, L:].cpu().tolist()
            for r, i in enumerate(chunk):
                outs[i] = answer_text(tok, gen[r])
    return outs


@torch.no_grad()
def evaluate(model, tok, tests, device, batch=128):
    model.eval()
    res = {}
    for task, items in tests.items():
        outs = decode_answers(tok, [tasks.chat_prompt(p) for p, _ in items], device, batch,
                              lambda pr: generate(model, pr))
        correct = sum(o == a for o, (_, a) in zip(outs, items))
        res[task] = {"correct": correct, "total": len(items), "accuracy": correct / len(items),
                     "samples": [{"prompt": p, "answer": a, "output": o}
                                 for (p, a), o in list(zip(items, outs))[:4]]}
        log(f"eval {task}: {correct}/{len(items)}")
    return res


def export(model, cfg, out, shard_bytes=12_000_000):
    from safetensors.torch import save_file
    sd = {k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in model.state_dict().items()
          if k.startswith("model.")}
    shards, cur, size = [], {}, 0
    for k, v in sd.items():
        n = v.numel() * 2
        if cur and size + n > shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += n
    shards.append(cur)
    N = len(shards)
    wmap = {}
    for i, sh in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{N:05d}.safetensors"
        save_file(sh, os.path.join(out, fn), metadata={"format": "pt"})
        for k in sh:
            wmap[k] = fn
    total = sum(v.numel() * 2 for v in sd.values())
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))}, f,
                  indent=2)
    conf = {
        "activation_type": "silu", "alibi": False, "alibi_bias_max": 8.0,
        "architectures": ["LLaDAModelLM"], "attention_dropout": 0.0,
        "attention_layer_norm": False, "attention_layer_norm_with_affine": True,
        "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                     "AutoModel": "modeling_llada.LLaDAModelLM",
                     "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"},
        "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama",
        "bos_token_id": SPECIAL["bos"], "d_model": cfg.d_model, "embedding_dropout": 0.0,
        "embedding_size": cfg.vocab_size, "eos_token_id": SPECIAL["eos"], "flash_attention": False,
        "include_bias": False, "include_qkv_bias": False, "init_cutoff_factor": None,
        "init_device": "cpu", "init_fn": "normal", "init_std": cfg.init_std,
        "input_emb_norm": False, "layer_norm_type": "rms", "layer_norm_with_affine": True,
        "mask_token_id": SPECIAL["mask"], "max_sequence_length": cfg.max_sequence_length,
        "mlp_hidden_size": cfg.mlp_hidden_size, "mlp_ratio": cfg.mlp_hidden_size // cfg.d_model,
        "model_type": "llada", "multi_query_attention": None, "n_heads": cfg.n_heads,
        "n_kv_heads": cfg.n_heads, "n_layers": cfg.n_layers, "pad_token_id": SPECIAL["eos"],
        "precision": None, "residual_dropout": 0.0, "rms_norm_eps": cfg.rms_norm_eps,
        "rope": True, "rope_full_precision": True, "rope_theta": cfg.rope_theta,
        "scale_logits": False, "torch_dtype": "bfloat16",
        "train_max_sequence_length": cfg.max_sequence_length, "transformers_version": "4.49.0",
        "use_cache": False, "vocab_size": cfg.vocab_size, "weight_tying": False,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": SPECIAL["bos"], "eos_token_id": SPECIAL["eos"],
                   "pad_token_id": SPECIAL["eos"]}, f, indent=2)
    log(f"export: {N} shards, {total} bytes of bf16 weights")
    return sd


def main():
    global LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus", default="tools/train/data/rustdocs.txt")
    ap.add_argument("--tokenizer", default="models/demo/tokenizer.json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-per-task", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--text-frac", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--pretrain-steps", type=int, default=0)
    ap.add_argument("--pretrain-seconds", type=float, default=300)
    ap.add_argument("--sft-batch", type=int, default=512)
    ap.add_argument("--sft-text-batch", type=int, default=32)
    ap.add_argument("--sft-lr", type=float, default=5e-4)
    ap.add_argument("--sft-steps", type=int, default=0)
    ap.add_argument("--sft-seconds", type=float, default=120)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    LOG = open(os.path.join(args.out, "train.log"), "w")
    log("args", vars(args))
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        log("gpu", torch.cuda.get_device_name(0), "torch", torch.__version__)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(args.tokenizer)
    assert tok.get_vocab_size() == 4096 and tok.token_to_id("<|mdm_mask|>") == SPECIAL["mask"]

    t_start = time.time()
    text_train, text_val, task_stream, buckets, tests = build_data(
        tok, args.tokenizer, args.corpus, 2000 if args.tiny else args.n_per_task, dev, args.tiny)
    log(f"data built in {time.time() - t_start:.1f}s")

    cfg = Config(d_model=64, n_heads=4, n_layers=2, mlp_hidden_size=192) if args.tiny else Config()
    model = LLaDA(cfg).to(dev)
    nparam = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg} params {nparam}")
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if dev.type == "cuda" else (
        lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=False))
    fwd = model if args.no_compile or dev.type != "cuda" else torch.compile(model)

    opt = adamw(model, args.lr, dev.type == "cuda")
    g = torch.Generator(device=dev).manual_seed(args.seed + 1)
    B, L = args.batch, args.seq
    n_text = int(round(B * args.text_frac))
    history = []

    def pre_batch(f):
        x = torch.cat([windows(text_train, n_text, L, g), windows(task_stream, B - n_text, L, g)])
        noisy, m, p = noise(x, g)
        loss = diffusion_loss(f, x, noisy, m, p, L)
        return loss, {}

    def do_eval(step):
        model.eval()
        vt = eval_text(model, text_val, 99, 64, L, amp)
        tt = eval_text(model, text_train, 98, 64, L, amp)
        model.train()
        history.append({"step": step, "val_text": vt, "train_text": tt})
        log(f"  eval step {step}: heldout text loss {vt:.4f}  train text loss {tt:.4f} (nats/token bound)")

    evals_every = 10 ** 9 if args.tiny else 500
    do_eval(0)
    pre_steps, pre_time = run_phase("pretrain", model, fwd, opt, pre_batch, args.pretrain_steps,
                                    args.pretrain_seconds, 200 if not args.tiny else 1, args.lr,
                                    args.lr * 0.1, amp, (evals_every, do_eval))
    log(f"pretrain done: {pre_steps} steps in {pre_time:.0f}s")

    lens = sorted(buckets)
    sizes = torch.tensor([buckets[k].shape[0] for k in lens], dtype=torch.float32, device=dev)
    hist_sft = []

    def sft_batch(f):
        bi = int(torch.multinomial(sizes, 1, generator=g).item())
        P = lens[bi]
        rows = buckets[P]
        idx = torch.randint(0, rows.shape[0], (args.sft_batch,), generator=g, device=dev)
        x = rows[idx].long()
        noisy, m, p = noise(x, g, answer_from=P)
        ls = diffusion_loss(model, x, noisy, m, p, GEN)
        xt = windows(text_train, args.sft_text_batch, L, g)
        noisy_t, mt, pt = noise(xt, g)
        lt = diffusion_loss(model, xt, noisy_t, mt, pt, L)
        return ls + lt, {"sft": ls.detach(), "text": lt.detach()}

    for gr in opt.param_groups:
        gr["lr"] = args.sft_lr
    sft_steps, sft_time = run_phase("sft", model, fwd, opt, sft_batch, args.sft_steps,
                                    args.sft_seconds, 50 if not args.tiny else 1, args.sft_lr,
                                    args.sft_lr * 0.1, amp, None)
    log(f"sft done: {sft_steps} steps in {sft_time:.0f}s")
    do_eval(pre_steps + sft_steps)

    sd = export(model, cfg, args.out)
    # Evaluate the exported (bf16-rounded) weights in f32.
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    model.float()
    t_eval = time.time()
    res = evaluate(model, tok, tests, dev)
    vt = eval_text(model, text_val, 99, 64, L, lambda: torch.autocast(dev.type, enabled=False))
    log(f"eval done in {time.time() - t_eval:.0f}s; heldout text loss (bf16 weights, f32) {vt:.4f}")
    summary = {"params": nparam, "config": vars(cfg), "pretrain_steps": pre_steps,
               "pretrain_seconds": pre_time, "sft_steps": sft_steps, "sft_seconds": sft_time,
               "history": history, "heldout_text_loss_f32": vt, "tasks": res,
               "args": vars(args), "total_seconds": time.time() - t_start}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log(json.dumps({k: v["accuracy"] for k, v in res.items()}))


if __name__ == "__main__":
    main()
