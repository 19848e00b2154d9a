"""Step distillation of models/demo: a student that decodes a 32-token answer in 2-8 steps.

Method: dParallel's certainty-forcing distillation (Chen et al. 2025, arXiv 2509.26488), made
small. The teacher (models/demo) decodes fresh prompts from the task generators with its own
sampler at full quality (low-confidence remasking, 32 steps for 32 tokens); the student, the
same architecture initialised from the teacher, is trained on those trajectories to
  1. predict the teacher's final answer at every masked position (cross-entropy, mean over the
     masked tokens: trajectory consistency), from partial canvases of two kinds: random masking
     of the answer with ratio t ~ U(0,1), and the teacher's own intermediate canvases (the
     positions it had not committed yet after step s of its 32, s ~ U{0..31});
  2. be certain where it is right: the entropy of softmax(logits / T) over the masked positions
     whose argmax already equals the teacher's token is minimised (certainty forcing), so that
     many positions cross the confidence needed to be committed together;
plus dParallel's semi-autoregressive masking for long canvases (gen 256, blocks of 32: earlier
blocks clean, the current block partly masked, later blocks all masked; scored on the current
block), and the LLaDA pretraining loss on corpus windows, so that the text bound stays near
the teacher's. Data: only the task generators (seeds 3000 + task index, held-out prompts
skipped, reverse test words never used) and the training documents; never models/demo/tasks
or the held-out documents.

Usage (GPU machine, repo root):
  python3 tools/distill/distill.py --out $OUT/fast --train-seconds 150
CPU smoke run:
  python3 tools/distill/distill.py --out /tmp/d --device cpu --n-per-task 64 --train-steps 3 \
      --eval-limit 4
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

HERE = os.path.dirname(os.path.abspath(__file__))
# tools/train beside this folder, or under the working directory (a copy run from elsewhere)
for _d in (os.path.join(HERE, "..", "train"), os.path.join(os.getcwd(), "tools", "train")):
    if os.path.exists(os.path.join(_d, "train.py")):
        sys.path.insert(0, _d)
        break
import tasks  # noqa: E402
import train as T  # noqa: E402  (export, eval_text, windows, noise, diffusion_loss, lr_at)
from model import LLaDA, Config  # noqa: E402
from prepare import load_docs, split_docs  # noqa: E402

SP = T.SPECIAL
MASK, EOS, EOT = SP["mask"], SP["eos"], SP["eot"]
GEN = 32
LOG = None


def log(*a):
    s = " ".join(str(x) for x in a)
    print(s, flush=True)
    if LOG:
        LOG.write(s + "\n")
        LOG.flush()


def load_teacher(path, device):
    from safetensors.torch import load_file
    with open(os.path.join(path, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    sd = {}
    for fn in files:
        sd.update(load_file(os.path.join(path, fn)))
    model = LLaDA(Config()).to(device)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    assert not unexpected and all(k.startswith("rope_") for k in missing), (missing, unexpected)
    return model


@torch.no_grad()
def decode_threshold(model, prompt, threshold, min_per_step, gen_length=GEN, block_length=GEN):
    """The student's rule, as the runtime runs it (`diffusion.min_per_step`): per step commit
    every masked position of the block whose confidence is >= threshold, and at least the
    `min_per_step` most confident ones, so a block takes at most ceil(block / min) steps.
    Greedy; prompt [B, P] int64. Returns (canvas [B, P + gen], forward passes per row [B])."""
    B, P = prompt.shape
    x = torch.full((B, P + gen_length), MASK, dtype=torch.long, device=prompt.device)
    x[:, :P] = prompt
    nfe = torch.zeros(B, dtype=torch.long, device=prompt.device)
    for b in range(gen_length // block_length):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        for _ in range(-(-block_length // min_per_step)):
            masked = x[:, lo:hi] == MASK
            live = masked.any(1)
            if not live.any():
                break
            nfe += live.long()
            logits = logits_at(model, x, lo, hi).float()
            mx, arg = logits.max(-1)
            conf = torch.exp(mx - torch.logsumexp(logits, -1))
            conf = torch.where(masked, conf, torch.full_like(conf, -math.inf))
            rank = conf.argsort(-1, descending=True).argsort(-1)  # 0 = most confident
            k = masked.sum(1, keepdim=True).clamp(max=min_per_step)
            commit = masked & ((conf >= threshold) | (rank < k))
            x[:, lo:hi] = torch.where(commit, arg, x[:, lo:hi])
    return x, nfe


@torch.no_grad()
def decode(model, prompt, steps, gen_length=GEN, block_length=GEN, amp=None):
    """LLaDA low-confidence remasking, greedy, in blocks; prompt [B, P] int64.

    Returns (canvas [B, P + gen], commit step [B, gen] int64). Confidence is the top-1
    probability in f32 from logsumexp (the original uses f64 softmax; ties may break
    differently, which only matters for training data, not for the runtime's results)."""
    B, P = prompt.shape
    x = torch.full((B, P + gen_length), MASK, dtype=torch.long, device=prompt.device)
    x[:, :P] = prompt
    order = torch.full((B, gen_length), -1, dtype=torch.long, device=prompt.device)
    nblocks = gen_length // block_length
    spb = steps // nblocks
    s_global = 0
    for b in range(nblocks):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        base, rem = block_length // spb, block_length % spb
        for i in range(spb):
            k = base + (1 if i < rem else 0)
            if amp is not None:
                with amp():
                    logits = logits_at(model, x, lo, hi).float()
            else:
                logits = logits_at(model, x, lo, hi).float()
            mx, arg = logits.max(-1)  # [B, block]
            conf = torch.exp(mx - torch.logsumexp(logits, -1))
            masked = x[:, lo:hi] == MASK
            conf = torch.where(masked, conf, torch.full_like(conf, -math.inf))
            sel = torch.topk(conf, k, dim=-1).indices  # [B, k]
            blk = x[:, lo:hi]
            blk.scatter_(1, sel, torch.gather(arg, 1, sel))
            x[:, lo:hi] = blk
            order[:, lo - P:hi - P].scatter_(1, sel, torch.full_like(sel, s_global + i))
        s_global += spb
    return x, order


def answer_text(tok, ids):
    return T.answer_text(tok, ids)


def logits_at(model, ids, lo, hi):
    """model(ids)[:, lo:hi] without running the head over the other positions."""
    tr = model.model.transformer
    x = tr.wte(ids)
    L = ids.shape[1]
    cos, sin = model.rope_cos[:L], model.rope_sin[:L]
    for blk in tr.blocks:
        x = blk(x, cos, sin)
    return tr.ff_out(tr.ln_f(x[:, lo:hi]))


def build(tok, corpus, n_per_task, device, seed_base):
    docs = load_docs(corpus)
    train_docs, held_docs = split_docs(docs)
    words = tasks.corpus_words(train_docs)
    test_words, train_words = tasks.split_words(words)
    tests = tasks.test_sets(test_words, train_words)
    exclude = {p for items in tests.values() for p, _ in items}
    for task, items in tests.items():  # the held-out sets we must stay clear of, as shipped
        with open(os.path.join("models/demo/tasks", f"{task}.jsonl"), encoding="utf-8") as f:
            saved = [tuple(json.loads(line)[k] for k in ("prompt", "answer")) for line in f]
        assert saved == items, f"{task}: regenerated test set differs from models/demo/tasks"

    def stream(texts):
        ids = []
        for e in tok.encode_batch(texts):
            ids.extend(e.ids)
            ids.append(EOS)
        return torch.tensor(ids, dtype=torch.int32, device=device)

    text_train, text_val = stream(train_docs), stream(held_docs)
    prompts = {}  # prompt length -> list of (task index, ids, generator answer)
    for i, task in enumerate(tasks.TASKS):
        pool = tasks.train_pool(task, n_per_task, seed_base + i, train_words, exclude)
        enc = tok.encode_batch([tasks.chat_prompt(p) for p, _ in pool], add_special_tokens=False)
        for e, (_, a) in zip(enc, pool):
            prompts.setdefault(len(e.ids), []).append((i, e.ids, a))
    # A validation pool for choosing between runs (never the held-out test sets): fresh
    # generator prompts, none in the test sets or the training pool.
    seen = exclude | {p for i, t in enumerate(tasks.TASKS)
                      for p, _ in tasks.train_pool(t, n_per_task, seed_base + i, train_words,
                                                   exclude)}
    val = {t: tasks.train_pool(t, 200, seed_base + 500 + i, train_words, seen)
           for i, t in enumerate(tasks.TASKS)}
    return text_train, text_val, prompts, tests, val


@torch.no_grad()
def trajectories(teacher, tok, prompts, device, steps, batch, amp, keep_wrong):
    """Teacher decodes every training prompt: per prompt-length bucket, rows [n, P + 32] and
    commit steps [n, 32]; rows whose answer differs from the generator's are dropped unless
    `keep_wrong`. Also returns the teacher's agreement with the generators per task."""
    teacher.eval()
    out = {}
    agree = {}
    for P, items in sorted(prompts.items()):
        rows, orders, keep = [], [], []
        for s in range(0, len(items), batch):
            chunk = items[s:s + batch]
            pr = torch.tensor([ids for _, ids, _ in chunk], dtype=torch.long, device=device)
            x, o = decode(teacher, pr, steps, amp=amp)
            rows.append(x)
            orders.append(o)
            gen = x[:, P:].cpu().tolist()
            for r, (ti, _, a) in enumerate(chunk):
                ok = answer_text(tok, gen[r]) == a
                keep.append(ok or keep_wrong)
                c = agree.setdefault(tasks.TASKS[ti], [0, 0])
                c[0] += ok
                c[1] += 1
        k = torch.tensor(keep, device=device)
        if k.any():
            out[P] = (torch.cat(rows)[k], torch.cat(orders)[k])
    return out, {k: v[0] / v[1] for k, v in agree.items()}


def evaluate(model, tok, tests, device, steps, gen_length, block_length, limit, batch=512,
             threshold=0.0):
    """Exact-match accuracy per task: `steps` fixed steps per block, or with `threshold` > 0
    the student's rule with at least block / steps commits per step."""
    model.eval()
    res = {}
    for task, items in tests.items():
        items = items[:limit]

        def run(pr):
            if threshold > 0:
                return decode_threshold(model, pr, threshold, block_length // steps,
                                        gen_length, block_length)[0]
            return decode(model, pr, steps, gen_length, block_length)[0]

        outs = T.decode_answers(tok, [tasks.chat_prompt(p) for p, _ in items], device, batch,
                                run)
        res[task] = sum(o == a for o, (_, a) in zip(outs, items)) / len(items)
    return res


def main():
    global LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--teacher", default="models/demo")
    ap.add_argument("--corpus", default="tools/train/data/rustdocs.txt")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=3000, help="task pools: seed + task index")
    ap.add_argument("--n-per-task", type=int, default=16_000)
    ap.add_argument("--teacher-steps", type=int, default=32)
    ap.add_argument("--gen-batch", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256, help="short canvases (prompt + 32) per step")
    ap.add_argument("--long-batch", type=int, default=32, help="gen-256 canvases per step")
    ap.add_argument("--text-batch", type=int, default=16, help="512-token corpus rows per step")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--beta", type=float, default=1.0, help="weight of the certainty loss")
    ap.add_argument("--temp", type=float, default=0.5, help="temperature of the certainty loss")
    ap.add_argument("--traj-frac", type=float, default=0.5,
                    help="share of short rows masked as the teacher's own intermediate canvases")
    ap.add_argument("--text-weight", type=float, default=1.0, help="weight of the text loss")
    ap.add_argument("--keep-wrong", action="store_true",
                    help="also train on teacher answers that differ from the generator's")
    ap.add_argument("--eval-teacher", action="store_true", help="also evaluate the teacher")
    ap.add_argument("--train-steps", type=int, default=0)
    ap.add_argument("--train-seconds", type=float, default=150)
    ap.add_argument("--eval-limit", type=int, default=100)
    ap.add_argument("--steps", type=int, default=4, help="the student's stored default steps")
    ap.add_argument("--threshold", type=float, default=0.9,
                    help="the student's stored confidence threshold (0 = fixed schedule)")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    LOG = open(os.path.join(args.out, "distill.log"), "w")
    log("args", vars(args))
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        log("gpu", torch.cuda.get_device_name(0), "torch", torch.__version__)
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else (
        lambda: torch.autocast("cpu", enabled=False))
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(args.teacher, "tokenizer.json"))
    t0 = time.time()

    text_train, text_val, prompts, tests, val = build(tok, args.corpus, args.n_per_task, dev,
                                                 args.data_seed)
    log(f"data: {sum(len(v) for v in prompts.values())} prompts in {len(prompts)} length buckets, "
        f"text {text_train.numel()} tokens ({time.time() - t0:.1f}s)")

    teacher = load_teacher(args.teacher, dev)
    t1 = time.time()
    traj, agree = trajectories(teacher, tok, prompts, dev, args.teacher_steps, args.gen_batch, amp,
                               args.keep_wrong)
    if cuda:
        torch.cuda.synchronize()
    log(f"teacher trajectories ({args.teacher_steps} steps, bf16): {time.time() - t1:.1f}s; "
        f"teacher answer = generator answer: "
        + " ".join(f"{k} {v:.3f}" for k, v in agree.items()))
    log(f"trajectories kept for training: {sum(v[0].shape[0] for v in traj.values())}")
    teacher_text = T.eval_text(teacher, text_val, 99, 64, 512, lambda: torch.autocast(dev.type, enabled=False))
    log(f"teacher heldout text bound (f32) {teacher_text:.4f}")

    student = load_teacher(args.teacher, dev)
    student.train()
    opt = T.adamw(student, args.lr, cuda)
    g = torch.Generator(device=dev).manual_seed(args.seed + 1)
    lens = sorted(traj)
    sizes = torch.tensor([traj[k][0].shape[0] for k in lens], dtype=torch.float32, device=dev)

    def cf_loss(logits, target, m):
        # logits [B, L, V] f32, target [B, L], m [B, L] bool (scored positions)
        ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(target.shape)
        n = m.sum().clamp(min=1)
        ce = (ce * m).sum() / n
        right = m & (logits.argmax(-1) == target)
        lp = F.log_softmax(logits / args.temp, -1)
        ent = -(lp.exp() * lp).sum(-1)
        ent = (ent * right).sum() / right.sum().clamp(min=1)
        return ce, ent

    def pick(n):
        bi = int(torch.multinomial(sizes, 1, generator=g).item())
        P = lens[bi]
        rows, orders = traj[P]
        idx = torch.randint(0, rows.shape[0], (n,), generator=g, device=dev)
        return P, rows[idx], orders[idx]

    def batch_fn():
        # short canvases: prompt + 32 answer tokens
        P, x, order = pick(args.batch)
        B = x.shape[0]
        t = torch.rand(B, 1, generator=g, device=dev)
        rand_m = torch.rand(B, GEN, generator=g, device=dev) < t
        s = torch.randint(0, args.teacher_steps, (B, 1), generator=g, device=dev)
        traj_m = order >= s
        use_traj = torch.rand(B, 1, generator=g, device=dev) < args.traj_frac
        m = torch.where(use_traj, traj_m, rand_m)
        m[:, 0] |= ~m.any(1)  # at least one masked position per row
        noisy = x.clone()
        noisy[:, P:] = torch.where(m, MASK, x[:, P:])
        logits = logits_at(student, noisy, P, P + GEN).float()
        ce, ent = cf_loss(logits, x[:, P:], m)
        loss = ce + args.beta * ent
        parts = {"ce": ce.detach(), "cert": ent.detach()}
        # long canvases: gen 256 in blocks of 32, semi-autoregressive masking
        if args.long_batch:
            P, x, _ = pick(args.long_batch)
            Bl = x.shape[0]
            xl = torch.cat([x, torch.full((Bl, 256 - GEN), EOS, dtype=x.dtype, device=dev)], 1)
            blk = int(torch.randint(0, 8, (1,), generator=g, device=dev).item())
            if torch.rand(1, generator=g, device=dev).item() < 0.5:
                blk = 0  # the answer block is the one that matters
            lo = P + 32 * blk
            t = torch.rand(Bl, 1, generator=g, device=dev)
            mb = torch.rand(Bl, 32, generator=g, device=dev) < t
            mb[:, 0] |= ~mb.any(1)
            noisy = xl.clone()
            noisy[:, lo:lo + 32] = torch.where(mb, MASK, xl[:, lo:lo + 32])
            noisy[:, lo + 32:] = MASK
            logits = logits_at(student, noisy, lo, lo + 32).float()
            ce_l, ent_l = cf_loss(logits, xl[:, lo:lo + 32], mb)
            loss = loss + ce_l + args.beta * ent_l
            parts["ce256"] = ce_l.detach()
        if args.text_batch:
            xt = T.windows(text_train, args.text_batch, 512, g)
            noisy_t, mt, pt = T.noise(xt, g)
            lt = T.diffusion_loss(student, xt, noisy_t, mt, pt, 512)
            loss = loss + args.text_weight * lt
            parts["text"] = lt.detach()
        return loss, parts

    # training loop with a time budget turned into a fixed step count (as tools/train does)
    total = args.train_steps or None
    step, tstart, tmark = 0, time.time(), None
    while total is None or step < total:
        if step == 20:
            if cuda:
                torch.cuda.synchronize()
            tmark = time.time()
        if step == 40 and total is None:
            if cuda:
                torch.cuda.synchronize()
            dt = (time.time() - tmark) / 20
            total = max(41, int((args.train_seconds - (time.time() - tstart)) / dt) + 40)
            log(f"train: {dt * 1000:.1f} ms/step; fixing total steps = {total}")
        lr = T.lr_at(step, total or 10 ** 9, 20, args.lr, args.lr * 0.1)
        for gr in opt.param_groups:
            gr["lr"] = lr
        with amp():
            loss, parts = batch_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0 or step == 1 or step == total:
            log(f"step {step}/{total} loss {loss.item():.4f} "
                + " ".join(f"{k} {v.item():.4f}" for k, v in parts.items())
                + f" lr {lr:.2e} gnorm {gn.item():.2f} t {time.time() - tstart:.0f}s")
    if cuda:
        torch.cuda.synchronize()
    train_time = time.time() - tstart
    log(f"train done: {step} steps in {train_time:.0f}s")

    sd = T.export(student, Config(), args.out)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        # The few-step schedule the runtime reads (formats/SPEC.md, "Few-step schedules"): at
        # most `steps` steps per 32-token block, each committing every position of confidence
        # >= threshold and at least 32 / steps.
        gc = {"bos_token_id": SP["bos"], "eos_token_id": EOS, "pad_token_id": EOS,
              "steps": args.steps, "gen_length": GEN, "block_length": GEN}
        if args.threshold > 0:
            gc.update(threshold=args.threshold, min_per_step=GEN // args.steps)
        json.dump(gc, f, indent=2)
    student.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    student.float()
    f32 = lambda: torch.autocast(dev.type, enabled=False)  # noqa: E731
    student_text = T.eval_text(student, text_val, 99, 64, 512, f32)
    log(f"student heldout text bound (bf16 weights, f32) {student_text:.4f} "
        f"(teacher {teacher_text:.4f})")
    t2 = time.time()
    evals = []
    # gen 32 only here (gen 256 runs one bucket of prompt lengths at a time: slow in eager
    # PyTorch); the runtime's table (tools/distill/table.sh) covers gen 256.
    runs = (("teacher", teacher, (32, 16, 8, 4)),) if args.eval_teacher else ()
    for name, model, steps_list in runs + (("student", student, (8, 4, 2)),):
        for gen in (32,):
            for steps in steps_list:
                st = steps * gen // 32  # steps per 32-token block
                acc = evaluate(model, tok, tests, dev, st, gen, 32, args.eval_limit)
                evals.append({"model": name, "gen": gen, "steps_per_block": steps, "acc": acc})
                log(f"eval {name} gen {gen} steps/block {steps}: "
                    + " ".join(f"{k} {100 * v:.0f}%" for k, v in acc.items()))
    # The stored rule on the validation pool (how tools/distill/sweep.sh picks a run) and on
    # the held-out sets (reported, never used to choose).
    if args.threshold > 0:
        for name, sets in (("val", val), ("test", tests)):
            acc = evaluate(student, tok, sets, dev, args.steps, GEN, GEN, args.eval_limit * 2,
                           threshold=args.threshold)
            evals.append({"model": "student", "set": name, "gen": GEN,
                          "rule": f"<= {args.steps} steps, threshold {args.threshold}",
                          "acc": acc})
            log(f"eval student {name} stored rule: "
                + " ".join(f"{k} {100 * v:.1f}%" for k, v in acc.items()))
    log(f"evals in {time.time() - t2:.0f}s")
    summary = {"args": vars(args), "train_steps": step, "train_seconds": train_time,
               "teacher_agreement": agree, "heldout_text_teacher": teacher_text,
               "heldout_text_student": student_text, "evals": evals,
               "total_seconds": time.time() - t0}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
