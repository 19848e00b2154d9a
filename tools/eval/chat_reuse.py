#!/usr/bin/env python3
"""Chat with and without the earlier turns' keys and values reused (`dlm chat` vs
`dlm chat --no-reuse`), on multi-turn conversations built from the demo tasks.

Each conversation asks T prompts drawn from models/demo/tasks/*.jsonl (task files in turn,
prompts at random, fixed seed); both modes run the same conversations greedily, one after the
other, so the timings compare side by side. Prints a markdown table: accuracy by turn index
(the answer of turn t against the task's answer), exact agreement of the two modes' answers,
prompt tokens, reused tokens and seconds per turn.

    python3 tools/eval/chat_reuse.py --dlm target/release/dlm --conversations 20 --turns 6
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_tasks(names):
    tasks = {}
    for n in names:
        path = ROOT / "models/demo/tasks" / f"{n}.jsonl"
        tasks[n] = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    return tasks


def conversations(tasks, n, turns, seed):
    rng = random.Random(seed)
    names = sorted(tasks)
    out = []
    for c in range(n):
        conv = []
        for t in range(turns):
            name = names[(c + t) % len(names)]
            conv.append((name, rng.choice(tasks[name])))
        out.append(conv)
    return out


def chat(dlm, model, conv, extra):
    args = [dlm, "chat", "--json", "--seed", "0", *extra]
    if model:
        args += ["-m", model]
    stdin = "".join(item["prompt"] + "\n" for _, item in conv)
    start = time.time()
    p = subprocess.run(args, input=stdin, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        sys.exit(f"dlm chat failed: {p.stderr}")
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    if len(lines) != len(conv):
        sys.exit(f"{len(lines)} answers for {len(conv)} turns: {p.stderr}")
    return lines, time.time() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dlm", default=str(ROOT / "target/release/dlm"))
    ap.add_argument("--model", default=None, help="default: the demo model")
    ap.add_argument("--tasks", default="sort,add,reverse,lookup")
    ap.add_argument("--conversations", type=int, default=20)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="also write the raw turns here")
    ap.add_argument("extra", nargs="*", help="flags for dlm chat (after --)")
    a = ap.parse_args()

    tasks = load_tasks(a.tasks.split(","))
    convs = conversations(tasks, a.conversations, a.turns, a.seed)
    T = a.turns
    acc = {m: [0] * T for m in ("on", "off")}
    agree = [0] * T
    secs = {m: [[] for _ in range(T)] for m in ("on", "off")}
    prompt = [[] for _ in range(T)]
    reused = [[] for _ in range(T)]
    raw = []
    for i, conv in enumerate(convs):
        on, _ = chat(a.dlm, a.model, conv, a.extra)
        off, _ = chat(a.dlm, a.model, conv, ["--no-reuse", *a.extra])
        raw.append({"conversation": [c[1] for c in conv], "on": on, "off": off})
        for t, ((_, item), x, y) in enumerate(zip(conv, on, off)):
            acc["on"][t] += x["text"].strip() == item["answer"]
            acc["off"][t] += y["text"].strip() == item["answer"]
            agree[t] += x["text"] == y["text"]
            secs["on"][t].append(x["seconds"])
            secs["off"][t].append(y["seconds"])
            prompt[t].append(x["prompt_tokens"])
            reused[t].append(x["reused_tokens"])
        print(f"conversation {i + 1}/{len(convs)} done", file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps(raw, indent=1))

    n = len(convs)
    med = statistics.median
    print(f"{n} conversations of {T} turns (tasks {a.tasks}; flags: {' '.join(a.extra) or 'the model defaults'})\n")
    print("| turn | prompt tokens (median) | reused (median) | accuracy reuse | accuracy recompute | same answer | s/turn reuse | s/turn recompute | × |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in range(T):
        on_s, off_s = med(secs["on"][t]), med(secs["off"][t])
        print(
            f"| {t + 1} | {med(prompt[t]):.0f} | {med(reused[t]):.0f} | "
            f"{acc['on'][t] / n:.0%} | {acc['off'][t] / n:.0%} | {agree[t] / n:.0%} | "
            f"{on_s:.2f} | {off_s:.2f} | {off_s / on_s:.2f} |"
        )
    tot_on = sum(acc["on"]) / (n * T)
    tot_off = sum(acc["off"]) / (n * T)
    last_on = acc["on"][T - 1] / n
    last_off = acc["off"][T - 1] / n
    print(f"\nall turns: accuracy {tot_on:.1%} with reuse, {tot_off:.1%} recomputed; "
          f"last turn: {last_on:.0%} vs {last_off:.0%}; answers identical in "
          f"{sum(agree) / (n * T):.1%} of turns")


if __name__ == "__main__":
    main()
