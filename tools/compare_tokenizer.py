#!/usr/bin/env python3
"""Compare the runtime's tokenizer with Hugging Face `tokenizers` (a dev tool, not a test).

Writes one JSON line per case, {"name", "text", "ids", "decoded"}, with the ids and decoded text
that `tokenizers` gives (add_special_tokens=False, skip_special_tokens=False) for both reference
tokenizers, over: every line of the corpus, 4 KiB chunks of it, the whole corpus as one text,
and random strings built from tricky characters. Then runs the ignored Rust test that encodes
every case with `dlm_runtime::Tokenizer` and counts mismatches.

Usage: pip install tokenizers; python3 tools/compare_tokenizer.py [--fuzz N] [--seed S]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
NAMES = ["llada-tiny", "dream-tiny"]

POOL = (
    list(" \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2028\u2029\u202f\u3000\x1c\x00")  # spaces
    + list("'''''sStTrReEvVmMlLdDſK\u212a")  # contractions
    + list("0123456789\u0661\u00b2\u2160\u16ee\U0001ccf0\u0966")  # numbers
    + list("abcXYZéÅßΩωжЖ中文字日本語한국어\u1c89\u0870\U00011f04\U0001e6c0")  # letters
    + list("\u0301\u0308\u20dd\u200d\ufe0f")  # marks, joiners
    + list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~¡¿…—“”")  # punctuation
    + ["🚀", "✨", "👩", "💻", "🇫", "🇷", "\ue000", "\U0010fffd", "\ufffd"]
    + ["<|eot_id|>", "<|im_end|>", "<|mask|>", "<|mdm_mask|>", "<|", "|>", "<|eot_id"]
    + ["e\u0301", "A\u030a", "\u1100\u1161\u11a8", "Å", "Ω", "é"]  # NFC material
)


def fuzz_strings(n, rng):
    out = []
    for _ in range(n):
        k = rng.randint(0, 40)
        parts = []
        for _ in range(k):
            r = rng.random()
            if r < 0.75:
                parts.append(rng.choice(POOL))
            elif r < 0.9:
                parts.append(" " * rng.randint(1, 4))
            else:
                cp = rng.randint(0x20, 0x10FFFF)
                if not 0xD800 <= cp <= 0xDFFF:
                    parts.append(chr(cp))
        out.append("".join(parts))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fuzz", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", help="write the cases here instead of a temp file")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    corpus = open(os.path.join(SHARED, "corpus", "rustdocs.txt"), encoding="utf-8").read()
    lines = corpus.splitlines(keepends=True)
    chunks = [corpus[i : i + 4096] for i in range(0, len(corpus), 4096)]
    fuzz = fuzz_strings(args.fuzz, rng)
    texts = lines + chunks + fuzz + [corpus]
    print(f"{len(lines)} lines, {len(chunks)} chunks, {len(fuzz)} fuzz strings, whole corpus")

    path = args.keep or tempfile.mkstemp(suffix=".jsonl")[1]
    with open(path, "w", encoding="utf-8") as f:
        for name in NAMES:
            tok = Tokenizer.from_file(os.path.join(SHARED, "reference", name, "tokenizer.json"))
            encs = tok.encode_batch(texts, add_special_tokens=False)
            for text, enc in zip(texts, encs):
                ids = enc.ids
                decoded = tok.decode(ids, skip_special_tokens=False)
                f.write(json.dumps({"name": name, "text": text, "ids": ids, "decoded": decoded}))
                f.write("\n")
    env = dict(os.environ, DLM_TOKENIZER_COMPARE=path)
    env.setdefault("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    cmd = ["cargo", "test", "--release", "-p", "dlm-runtime", "--test", "tokenizer_reference",
           "compare_file", "--", "--ignored", "--nocapture"]
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    if not args.keep:
        os.unlink(path)
    sys.exit(rc)


if __name__ == "__main__":
    main()
