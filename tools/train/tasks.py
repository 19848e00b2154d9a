"""Synthetic tasks with exact answers (addition, sorting, reversal, table lookup, Rust completion).

Every generator takes a `random.Random` so that the same seed always gives the same examples.
The held-out test sets are drawn first (seed TEST_SEED); the training pools are drawn with other
seeds and skip every prompt that is in a test set, and the word-based tasks (reverse) use a word
list from which the test words were removed, so test prompts never occur in training.
"""

import random
import re

TASKS = ["add", "sort", "reverse", "lookup", "rust"]
TEST_SEED = 1234
TEST_PER_TASK = 100

RUST_KEYWORDS = {
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "union", "new",
}
STRUCT_NAMES = [
    "Point", "Config", "User", "Account", "Buffer", "Counter", "Player", "Window", "Server",
    "Client", "Packet", "Sensor", "Record", "Entry", "Matrix", "Vector", "Circle", "Square",
    "Ticket", "Order", "Invoice", "Device", "Channel", "Frame", "Token", "Parser", "Reader",
    "Writer", "Timer", "Cache", "Node", "Edge", "Graph", "Robot", "Engine", "Planet", "Color",
    "Pixel", "Message", "Session",
]
FIELD_TYPES = ["u8", "u16", "u32", "u64", "i32", "i64", "usize", "bool", "f32", "f64", "char"]


def corpus_words(docs):
    """Sorted lowercase words of 3..10 letters that occur in `docs` (a list of strings)."""
    words = set()
    for d in docs:
        words.update(re.findall(r"(?<![A-Za-z_])[a-z]{3,10}(?![A-Za-z_])", d))
    return sorted(words)


def split_words(words):
    """(test_words, train_words): 100 reverse-test words held out from every training use."""
    rng = random.Random(TEST_SEED + 7)
    test = sorted(rng.sample(words, TEST_PER_TASK))
    held = set(test)
    return test, [w for w in words if w not in held]


def gen_add(rng, _words):
    na, nb = rng.randint(1, 4), rng.randint(1, 4)
    a = rng.randrange(0 if na == 1 else 10 ** (na - 1), 10 ** na)
    b = rng.randrange(0 if nb == 1 else 10 ** (nb - 1), 10 ** nb)
    return f"Add: {a} + {b}", str(a + b)


def gen_sort(rng, _words):
    n = rng.randint(3, 6)
    xs = [rng.randrange(100) for _ in range(n)]
    return "Sort: " + " ".join(map(str, xs)), " ".join(map(str, sorted(xs)))


def gen_reverse(rng, words):
    w = rng.choice(words)
    return f"Reverse: {w}", w[::-1]


def gen_lookup(rng, _words):
    n = rng.randint(3, 6)
    keys = rng.sample("abcdefghijklmnopqrstuvwxyz", n)
    vals = [rng.randrange(100) for _ in range(n)]
    k = rng.randrange(n)
    table = " ".join(f"{a}={v}" for a, v in zip(keys, vals))
    return f"Table: {table}. Lookup: {keys[k]}", str(vals[k])


def _fields(rng, words, n):
    names = []
    while len(names) < n:
        w = rng.choice(words)
        if 3 <= len(w) <= 8 and w not in RUST_KEYWORDS and w not in names:
            names.append(w)
    return [(f, rng.choice(FIELD_TYPES)) for f in names]


def gen_rust(rng, words):
    name = rng.choice(STRUCT_NAMES)
    fields = _fields(rng, words, rng.randint(2, 3))
    decl = f"struct {name} {{ " + ", ".join(f"{f}: {t}" for f, t in fields) + " }"
    if rng.random() < 0.5:
        args = ", ".join(f"{f}: {t}" for f, t in fields)
        prompt = f"Complete: {decl} impl {name} {{ fn new({args}) -> Self {{"
        answer = "Self { " + ", ".join(f for f, _ in fields) + " } } }"
    else:
        f, t = rng.choice(fields)
        prompt = f"Complete: {decl} impl {name} {{ fn {f}(&self) -> {t} {{"
        answer = f"self.{f} }} }}"
    return prompt, answer


GENERATORS = {"add": gen_add, "sort": gen_sort, "reverse": gen_reverse, "lookup": gen_lookup,
              "rust": gen_rust}


def test_sets(test_words, train_words):
    """{task: [(prompt, answer)]}: TEST_PER_TASK distinct prompts per task, seed TEST_SEED."""
    out = {}
    for i, task in enumerate(TASKS):
        rng = random.Random(TEST_SEED + 100 * i)
        words = test_words if task == "reverse" else train_words
        seen, items = set(), []
        while len(items) < TEST_PER_TASK:
            p, a = GENERATORS[task](rng, words)
            if p not in seen:
                seen.add(p)
                items.append((p, a))
        out[task] = items
    return out


def train_pool(task, n, seed, train_words, exclude):
    """n training (prompt, answer) pairs of `task`, none of whose prompts is in `exclude`."""
    rng = random.Random(seed)
    items = []
    while len(items) < n:
        p, a = GENERATORS[task](rng, train_words)
        if p not in exclude:
            items.append((p, a))
    return items


def chat_prompt(prompt):
    """The LLaMA-3 style chat prefix (tokenizer_config.json's template, generation prompt on)."""
    return ("<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n" + prompt.strip()
            + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
