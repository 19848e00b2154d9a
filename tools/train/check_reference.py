"""Check model.py and the sampler in train.py against the reference llada-tiny checkpoint.

Usage: python3 tools/train/check_reference.py [../shared/reference]
Loads llada-tiny's bf16 shards into model.LLaDA (f32), compares the logits with
llada-tiny.expected.safetensors and replays the `generate` runs (threshold null) of
llada-tiny.expected.json. Prints max |diff| and exits non-zero on a mismatch.
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import LLaDA, Config  # noqa: E402
from train import generate  # noqa: E402


def main():
    ref = sys.argv[1] if len(sys.argv) > 1 else "../shared/reference"
    d = os.path.join(ref, "llada-tiny")
    c = json.load(open(os.path.join(d, "config.json")))
    cfg = Config(d_model=c["d_model"], n_heads=c["n_heads"], n_layers=c["n_layers"],
                 mlp_hidden_size=c["mlp_hidden_size"], vocab_size=c["vocab_size"],
                 max_sequence_length=c["max_sequence_length"], rope_theta=c["rope_theta"],
                 rms_norm_eps=c["rms_norm_eps"])
    model = LLaDA(cfg)
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    sd = {}
    for fn in sorted(set(idx["weight_map"].values())):
        sd.update(load_file(os.path.join(d, fn)))
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    model.eval()
    exp = json.load(open(os.path.join(ref, "llada-tiny.expected.json")))
    tens = load_file(os.path.join(ref, "llada-tiny.expected.safetensors"))
    ok = True
    with torch.no_grad():
        for case in exp["logits"]:
            ids = tens[case["input"]].long()
            want = tens[case["logits"]].float()
            got = model(ids.view(1, -1))[0]
            diff = (got - want).abs().max().item()
            print(f"logits {case['input']}: len {ids.numel()} max|diff| {diff:.2e}")
            ok &= diff < 1e-3
        for case in exp["generate"]:
            if case["sampler"] != "generate" or case["threshold"] is not None:
                continue
            pr = torch.tensor([case["prompt"]])
            out = generate(model, pr, steps=case["steps"], gen_length=case["gen_length"],
                           block_length=case["block_length"], mask_id=exp["mask_id"])
            same = out[0].tolist() == case["output"]
            print(f"generate steps {case['steps']} gen {case['gen_length']} "
                  f"block {case['block_length']}: {'same' if same else 'DIFFERENT'}")
            ok &= same
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
