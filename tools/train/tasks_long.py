"""Long-answer tasks for `models/demo-long`: short prompts, answers of up to 444 tokens.

The demo model's answers fit in 32 tokens, so every cache mode decodes one block and stops;
these tasks make answers that span many 32-token blocks (numbers are one token per digit, so
`Count from 120 to 210.` answers 91 numbers, about 364 tokens), for measuring what a KV cache
keeps or loses over a long answer (issue 11). Every answer is exact and checkable.

  count      `Count from 37 to 52.`                      -> `37 38 39 ... 52`
  countdown  `Count down from 52 to 37.`                 -> `52 51 50 ... 37`
  step       `Count from 12 to 60 in steps of 4.`        -> `12 16 20 ... 60`
  number     `Number the words: apple river stone`       -> `1. apple` / `2. river` / `3. stone` (one per line)

Test sets are drawn per generation length G (128, 256, 448): answers of G/2 to G - 4 tokens
(for `number`, whose prompt grows with its answer, of min(G/2, 100) tokens up), prompts short
enough that prompt + G fits the 512-token context. Training draws answers of 4 to 447 tokens
and skips every test prompt.
"""

import json
import os
import random
import re

TASKS = ["count", "countdown", "step", "number"]
GENS = [128, 256, 448]
CONTEXT = 512
TEST_SEED = 4321
TEST_PER_TASK = 100


def vocab_words(tok):
    """Lowercase words of 3..9 letters that are one token with a leading space, sorted."""
    out = []
    for t in tok.get_vocab():
        if t.startswith("\u0120") and re.fullmatch(r"[a-z]{3,9}", t[1:]):
            out.append(t[1:])
    return sorted(out)


def _run(a, n, k):
    return " ".join(str(a + k * i) for i in range(n))


def gen_count(rng, _words, n):
    a = rng.randrange(0, 1000)
    return f"Count from {a} to {a + n - 1}.", _run(a, n, 1)


def gen_countdown(rng, _words, n):
    b = rng.randrange(0, 1000)
    a = b + n - 1
    return f"Count down from {a} to {b}.", _run(a, n, -1)


def gen_step(rng, _words, n):
    k = rng.randint(2, 9)
    a = rng.randrange(0, 1000)
    return f"Count from {a} to {a + k * (n - 1)} in steps of {k}.", _run(a, n, k)


def gen_number(rng, words, n):
    ws = [rng.choice(words) for _ in range(n)]
    return ("Number the words: " + " ".join(ws),
            "\n".join(f"{i + 1}. {w}" for i, w in enumerate(ws)))


GENERATORS = {"count": gen_count, "countdown": gen_countdown, "step": gen_step,
              "number": gen_number}
# Items per answer: up to about 440 tokens of answer (4-5 tokens per number, 4-6 per word line).
MAX_ITEMS = {"count": 115, "countdown": 115, "step": 115, "number": 80}


def chat_prompt(prompt):
    """The demo's chat prefix (the same as tasks.chat_prompt)."""
    return ("<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n" + prompt.strip()
            + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def token_len(tok, text):
    return len(tok.encode(text, add_special_tokens=False).ids)


def draw(task, rng, words, tok, lo, hi, max_prompt):
    """One (prompt, answer) whose answer is lo..hi tokens and whose chat prompt fits max_prompt."""
    while True:
        n = rng.randint(2, MAX_ITEMS[task])
        p, a = GENERATORS[task](rng, words, n)
        la = token_len(tok, a)
        if lo <= la <= hi and token_len(tok, chat_prompt(p)) <= max_prompt:
            return p, a


def test_sets(tok):
    """{(task, gen): [(prompt, answer)]}: TEST_PER_TASK distinct prompts each."""
    words = vocab_words(tok)
    out = {}
    for i, task in enumerate(TASKS):
        for j, gen in enumerate(GENS):
            rng = random.Random(TEST_SEED + 100 * i + j)
            lo = min(gen // 2, 100) if task == "number" else gen // 2
            seen, items = set(), []
            while len(items) < TEST_PER_TASK:
                p, a = draw(task, rng, words, tok, lo, gen - 4, CONTEXT - gen)
                if p not in seen:
                    seen.add(p)
                    items.append((p, a))
            out[(task, gen)] = items
    return out


def train_pool(task, n, seed, tok, exclude, chunk=2000):
    """n training pairs of `task` with answers of 4..447 tokens, no prompt in `exclude`.

    Candidates are drawn and tokenized in chunks (encode_batch runs in parallel); the same seed
    gives the same pool."""
    words = vocab_words(tok)
    rng = random.Random(seed)
    items = []
    while len(items) < n:
        cands = [GENERATORS[task](rng, words, rng.randint(2, MAX_ITEMS[task]))
                 for _ in range(chunk)]
        la = tok.encode_batch([a for _, a in cands], add_special_tokens=False)
        lp = tok.encode_batch([chat_prompt(p) for p, _ in cands], add_special_tokens=False)
        for (p, a), ea, ep in zip(cands, la, lp):
            if (4 <= len(ea.ids) <= 447 and len(ep.ids) <= CONTEXT - 64 and p not in exclude
                    and len(items) < n):
                items.append((p, a))
    return items


def write_test_sets(tok, out_dir):
    """Writes OUT/tasks/<task>-<gen>.jsonl."""
    os.makedirs(os.path.join(out_dir, "tasks"), exist_ok=True)
    for (task, gen), items in test_sets(tok).items():
        with open(os.path.join(out_dir, "tasks", f"{task}-{gen}.jsonl"), "w",
                  encoding="utf-8") as f:
            for p, a in items:
                f.write(json.dumps({"prompt": p, "answer": a}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    import sys
    from tokenizers import Tokenizer
    out = sys.argv[1] if len(sys.argv) > 1 else "models/demo-long"
    write_test_sets(Tokenizer.from_file("models/demo/tokenizer.json"), out)
