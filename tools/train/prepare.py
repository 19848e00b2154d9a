"""Prepare data and tokenizer (runs on CPU): corpus split, byte-level BPE, held-out test sets.

Usage: python3 tools/train/prepare.py [--corpus /work/shared/corpus/rustdocs.txt] [--out models/demo]

Writes
  OUT/tokenizer.json, OUT/tokenizer_config.json   byte-level BPE, 4090 tokens + 6 specials at the end
  OUT/tasks/<task>.jsonl                          held-out test sets, {"prompt", "answer"} per line
  OUT/heldout.txt                                 a few held-out documents (<= 100 KB), `<|doc|>` lines
  tools/train/data/rustdocs.txt                   copy of the corpus, carried to the GPU machine
Every 20th document (index 19, 39, ...) of the corpus is held out of tokenizer and model training.
"""

import argparse
import json
import os
import random
import shutil
import sys

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks  # noqa: E402

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>", "<|mdm_mask|>"]
VOCAB = 4096
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def load_docs(path):
    """All documents of the corpus, in file order (split on `<|doc|>` lines)."""
    text = open(path, encoding="utf-8").read()
    docs = [d.strip() for d in text.split("\n<|doc|>\n")]
    return [d for d in docs if d]


def split_docs(docs):
    """(train, heldout): every 20th document is held out."""
    train = [d for i, d in enumerate(docs) if (i + 1) % 20 != 0]
    held = [d for i, d in enumerate(docs) if (i + 1) % 20 == 0]
    return train, held


def train_tokenizer(texts):
    """Byte-level BPE with the LLaMA-3 pre-tokenizer, digits kept as single-digit tokens.

    The trainer is given room for extra merges; every token that holds a digit (digits are
    pre-tokenized apart from everything else, so such tokens are all-digit) is dropped with its
    merges, the rest is renumbered in order and cut to VOCAB - 6 tokens, then the special tokens
    take the last 6 ids.
    """
    tok = Tokenizer(models.BPE())
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    n_regular = VOCAB - len(SPECIALS)
    trainer = trainers.BpeTrainer(vocab_size=n_regular + 1500, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator(texts, trainer=trainer)
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    merges = [m if isinstance(m, list) else m.split(" ") for m in j["model"]["merges"]]
    has_digit = lambda s: any(c.isdigit() for c in s)  # noqa: E731
    ordered = sorted(vocab.items(), key=lambda kv: kv[1])
    kept = [t for t, i in ordered if len(t) == 1 or not has_digit(t)][:n_regular]
    assert len(kept) == n_regular, len(kept)
    new_vocab = {t: i for i, t in enumerate(kept)}
    new_merges = [[a, b] for a, b in merges
                  if a in new_vocab and b in new_vocab and (a + b) in new_vocab]
    assert len(new_merges) == n_regular - 256, len(new_merges)
    j["model"]["vocab"] = new_vocab
    j["model"]["merges"] = new_merges
    j["added_tokens"] = [
        {"id": n_regular + k, "content": s, "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": True}
        for k, s in enumerate(SPECIALS)
    ]
    return Tokenizer.from_str(json.dumps(j))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="/work/shared/corpus/rustdocs.txt")
    ap.add_argument("--out", default="models/demo")
    ap.add_argument("--data", default="tools/train/data")
    args = ap.parse_args()

    docs = load_docs(args.corpus)
    train_docs, held_docs = split_docs(docs)
    print(f"docs: {len(docs)} train {len(train_docs)} heldout {len(held_docs)}")

    words = tasks.corpus_words(train_docs)
    test_words, train_words = tasks.split_words(words)
    tests = tasks.test_sets(test_words, train_words)
    exclude = {p for items in tests.values() for p, _ in items}

    # Tokenizer text: the training documents plus task strings (from a seed of their own).
    tok_texts = list(train_docs)
    for i, task in enumerate(tasks.TASKS):
        for p, a in tasks.train_pool(task, 3000, 777 + i, train_words, exclude):
            tok_texts.append(p + "\n" + (a if task != "reverse" else ""))
    tok = train_tokenizer(tok_texts)

    os.makedirs(os.path.join(args.out, "tasks"), exist_ok=True)
    tok_json = json.loads(tok.to_str())
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=2)
    cfg = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
           "pad_token": "<|endoftext|>", "chat_template": CHAT_TEMPLATE,
           "model_max_length": 512, "tokenizer_class": "PreTrainedTokenizerFast"}
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)

    for task, items in tests.items():
        with open(os.path.join(args.out, "tasks", f"{task}.jsonl"), "w", encoding="utf-8") as f:
            for p, a in items:
                f.write(json.dumps({"prompt": p, "answer": a}, ensure_ascii=False) + "\n")

    # Held-out text sample: whole held-out documents in order while under 100 KB.
    picked, size = [], 0
    for d in held_docs:
        n = len(("\n<|doc|>\n" if picked else "") .encode()) + len(d.encode())
        if size + n > 100_000:
            continue
        picked.append(d)
        size += n
    with open(os.path.join(args.out, "heldout.txt"), "w", encoding="utf-8") as f:
        f.write("\n<|doc|>\n".join(picked) + "\n")
    print(f"heldout.txt: {len(picked)} docs, {size} bytes")

    os.makedirs(args.data, exist_ok=True)
    shutil.copyfile(args.corpus, os.path.join(args.data, "rustdocs.txt"))

    n_tok = sum(len(e.ids) for e in tok.encode_batch(train_docs))
    print(f"train docs tokens: {n_tok}, chars per token {sum(map(len, train_docs)) / n_tok:.2f}")
    for task in tasks.TASKS:
        p, a = tests[task][0]
        print(task, repr(p), "->", repr(a), tok.encode(p).tokens[:24], tok.encode(a).tokens)
    rnd = random.Random(0)
    s = rnd.choice(train_docs)[:200]
    assert tok.decode(tok.encode(s).ids) == s


if __name__ == "__main__":
    main()
